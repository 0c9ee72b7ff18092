//! `helix-bench`: the mesh measured against its own limits, every scenario side by side in one
//! process run on loopback, so ratios compare like with like. Build in release first:
//! `scripts/bench` (or `cargo build --release --workspace --bins && target/release/helix-bench`).
//!
//! Prints a Markdown table on stdout; `--json FILE` also writes the numbers as one object.

mod counting_proxy;
mod hub_bench;
mod procs;
mod relay_bench;
mod stats;
mod transport;

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use clap::Parser;
use serde_json::{Map, Value, json};
use stats::{Samples, median, ms};

/// Benchmarks of Helix Mesh on this machine (loopback only).
#[derive(Debug, Parser)]
#[command(name = "helix-bench", version)]
struct Args {
    /// Smaller runs: the whole benchmark in under 3 minutes on 2 cores.
    #[arg(long)]
    quick: bool,
    /// Also write the results as one JSON object to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Only the transport scenarios (raw iroh, tonic/TCP, gRPC over iroh).
    #[arg(long)]
    transport_only: bool,
    /// Only the table-relay scenario (needs PostgreSQL and postrust).
    #[arg(long)]
    relay_only: bool,
    /// Only raw iroh's round trip and the in-process hub (first output, token events).
    #[arg(long)]
    first_output_only: bool,
}

/// How much each scenario does.
struct Sizes {
    bytes: usize,
    /// Interleaved rounds of the three transports; medians are reported.
    rounds: usize,
    relay_bytes: usize,
    pings: usize,
    relay_pings: usize,
    first_outputs: usize,
    token_events: usize,
    concurrent: usize,
    words: usize,
    cold_runs: usize,
    idle: Duration,
    /// How long the idle hub's requests to the cloud are counted.
    idle_cloud: Duration,
}

impl Sizes {
    fn new(quick: bool) -> Self {
        if quick {
            Sizes {
                bytes: 64 << 20,
                rounds: 3,
                relay_bytes: 16 << 20,
                pings: 200,
                relay_pings: 50,
                first_outputs: 100,
                token_events: 20_000,
                concurrent: 1000,
                words: 30,
                cold_runs: 5,
                idle: Duration::from_secs(5),
                idle_cloud: Duration::from_secs(32),
            }
        } else {
            Sizes {
                bytes: 256 << 20,
                rounds: 3,
                relay_bytes: 64 << 20,
                pings: 500,
                relay_pings: 200,
                first_outputs: 300,
                token_events: 50_000,
                concurrent: 1000,
                words: 50,
                cold_runs: 10,
                idle: Duration::from_secs(10),
                idle_cloud: Duration::from_secs(92),
            }
        }
    }
}

/// Rounds of raw round trips and first outputs, interleaved.
const FIRST_OUTPUT_ROUNDS: usize = 5;

/// The pause before each command of the "first output after idle" row.
const IDLE_PAUSE: Duration = Duration::from_millis(2);

/// Rows of the Markdown table and the JSON object, filled as scenarios finish.
#[derive(Default)]
struct Report {
    rows: Vec<[String; 4]>,
    json: Map<String, Value>,
}

impl Report {
    fn row(&mut self, scenario: &str, measure: &str, value: String, target: &str) {
        self.rows
            .push([scenario.into(), measure.into(), value, target.into()]);
    }

    fn set(&mut self, key: &str, value: Value) {
        self.json.insert(key.into(), value);
    }

    #[allow(clippy::print_stdout)]
    fn print(&self) {
        println!("| scenario | measure | value | target |");
        println!("|---|---|---|---|");
        for [a, b, c, d] in &self.rows {
            println!("| {a} | {b} | {c} | {d} |");
        }
    }
}

/// The lowest and highest of some ratios, as "a–b".
fn spread(values: &[f64]) -> String {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{lo:.2}–{hi:.2}")
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

#[allow(clippy::print_stderr)]
fn progress(line: &str) {
    eprintln!("helix-bench: {line}");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HELIX_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let sizes = Sizes::new(args.quick);
    let mut report = Report::default();
    let started = std::time::Instant::now();
    if cfg!(debug_assertions) {
        progress("warning: this is a debug build; numbers mean little (use scripts/bench)");
    }

    if args.relay_only {
        relay_scenario(&mut report, &sizes).await?;
        report.print();
        return Ok(());
    }

    if args.first_output_only {
        hub_in_process(&mut report, &sizes).await?;
        report.print();
        return Ok(());
    }

    // ---- transports -------------------------------------------------------------------
    progress("raw iroh QUIC, tonic/TCP, gRPC over iroh direct…");
    let server = transport::start_server(None).await?;
    let client = transport::client_endpoint(None).await?;
    let addr = transport::dial_addr(&server, None)?;
    let compared =
        transport::compare(&client, addr, sizes.bytes, sizes.pings, sizes.rounds).await?;
    let (raw, tcp, grpc_iroh) = (&compared.raw, &compared.tcp, &compared.grpc);
    let vs_raw = grpc_iroh.mib_per_s / raw.mib_per_s;
    let vs_tcp = grpc_iroh.mib_per_s / tcp.mib_per_s;
    report.row(
        "raw iroh QUIC stream",
        "throughput",
        format!("{:.0} MiB/s", raw.mib_per_s),
        "baseline",
    );
    report.row(
        "raw iroh QUIC stream",
        "RTT p50 / p99",
        format!("{:.3} / {:.3} ms", ms(raw.rtt.p50()), ms(raw.rtt.p99())),
        "baseline",
    );
    if let Some(path) = server.raw_path() {
        report.row(
            "raw iroh QUIC stream",
            "mean datagram / packets lost",
            format!(
                "{:.0} bytes / {:.2} %",
                path.datagram_bytes,
                path.loss * 100.0
            ),
            "",
        );
        report.set("raw_iroh_datagram_bytes", json!(path.datagram_bytes));
        report.set("raw_iroh_loss", json!(path.loss));
    }
    report.row(
        "tonic over TCP",
        "throughput",
        format!("{:.0} MiB/s", tcp.mib_per_s),
        "baseline",
    );
    report.row(
        "tonic over TCP",
        "unary RTT p50 / p99",
        format!("{:.3} / {:.3} ms", ms(tcp.rtt.p50()), ms(tcp.rtt.p99())),
        "baseline",
    );
    report.row(
        "gRPC over iroh direct",
        "throughput",
        format!("{:.0} MiB/s", grpc_iroh.mib_per_s),
        "",
    );
    report.row(
        "gRPC over iroh direct",
        "unary RTT p50 / p99",
        format!(
            "{:.3} / {:.3} ms",
            ms(grpc_iroh.rtt.p50()),
            ms(grpc_iroh.rtt.p99())
        ),
        "",
    );
    report.row(
        "gRPC over iroh direct",
        "× raw iroh throughput (rounds)",
        format!("{vs_raw:.2} ({})", spread(&compared.vs_raw)),
        &format!("≥ 0.90: {}", met(vs_raw >= 0.9)),
    );
    report.row(
        "gRPC over iroh direct",
        "× tonic/TCP throughput (rounds)",
        format!("{vs_tcp:.2} ({})", spread(&compared.vs_tcp)),
        &format!("≥ 0.50: {}", met(vs_tcp >= 0.5)),
    );
    // gRPC over iroh cannot outrun the QUIC stream it rides on: this is the ceiling of the
    // row above.
    let raw_vs_tcp = raw.mib_per_s / tcp.mib_per_s;
    report.row(
        "raw iroh QUIC stream",
        "× tonic/TCP throughput (the ceiling of the row above)",
        format!("{raw_vs_tcp:.2}"),
        "",
    );
    report.set("raw_iroh_vs_tcp_throughput", json!(raw_vs_tcp));
    report.row(
        "CPU per MiB moved (both ends)",
        "raw iroh / tonic TCP / gRPC over iroh",
        format!(
            "{:.2} / {:.2} / {:.2} ms",
            raw.cpu_ms_per_mib, tcp.cpu_ms_per_mib, grpc_iroh.cpu_ms_per_mib
        ),
        "",
    );
    report.set("raw_iroh_cpu_ms_per_mib", json!(raw.cpu_ms_per_mib));
    report.set("tcp_grpc_cpu_ms_per_mib", json!(tcp.cpu_ms_per_mib));
    report.set("grpc_iroh_cpu_ms_per_mib", json!(grpc_iroh.cpu_ms_per_mib));
    report.set("raw_iroh_mib_s", json!(raw.mib_per_s));
    report.set("raw_iroh_rtt_ms", json!(ms(raw.rtt.p50())));
    report.set("tcp_grpc_mib_s", json!(tcp.mib_per_s));
    report.set("tcp_grpc_rtt_ms", json!(ms(tcp.rtt.p50())));
    report.set("grpc_iroh_mib_s", json!(grpc_iroh.mib_per_s));
    report.set("grpc_iroh_rtt_ms", json!(ms(grpc_iroh.rtt.p50())));
    report.set("grpc_iroh_vs_raw_iroh_throughput", json!(vs_raw));
    report.set("grpc_iroh_vs_tcp_throughput", json!(vs_tcp));
    report.set("transport_rounds", json!(sizes.rounds));
    report.set(
        "grpc_iroh_vs_raw_iroh_throughput_rounds",
        json!(compared.vs_raw),
    );
    report.set("grpc_iroh_vs_tcp_throughput_rounds", json!(compared.vs_tcp));
    if args.transport_only {
        client.close().await;
        server.endpoint.close().await;
        report.print();
        return Ok(());
    }

    progress("gRPC over iroh through a local relay…");
    let relay = LocalRelay::start().await?;
    let relay_server = transport::start_server(Some(&relay.url)).await?;
    let relay_client = transport::client_endpoint(Some(&relay.url)).await?;
    let relay_addr = transport::dial_addr(&relay_server, Some(&relay.url))?;
    let relayed = transport::grpc(
        transport::iroh_channel(&relay_client, relay_addr).await?,
        sizes.relay_bytes,
        sizes.relay_pings,
    )
    .await?;
    report.row(
        "gRPC over iroh via local relay",
        "throughput",
        format!("{:.0} MiB/s", relayed.mib_per_s),
        "",
    );
    report.row(
        "gRPC over iroh via local relay",
        "unary RTT p50 / p99",
        format!(
            "{:.3} / {:.3} ms",
            ms(relayed.rtt.p50()),
            ms(relayed.rtt.p99())
        ),
        "",
    );
    report.set("grpc_relay_mib_s", json!(relayed.mib_per_s));
    report.set("grpc_relay_rtt_ms", json!(ms(relayed.rtt.p50())));
    for endpoint in [
        &relay_client,
        &relay_server.endpoint,
        &client,
        &server.endpoint,
    ] {
        endpoint.close().await;
    }

    hub_in_process(&mut report, &sizes).await?;

    // ---- hub as a process ----------------------------------------------------------------
    progress(&format!(
        "{} concurrent streaming commands on a hub process…",
        sizes.concurrent
    ));
    let hub_proc = hub_bench::HubProcess::start(u32::try_from(sizes.concurrent)?, 2).await?;
    let c = hub_bench::concurrent(&hub_proc, sizes.concurrent, sizes.words).await?;
    let lost = c.lost_events + c.duplicated_events + c.failed_commands as u64;
    let label = format!("{} concurrent streaming commands", c.commands);
    report.row(
        &label,
        "events lost / duplicated / commands wrong",
        format!(
            "{} / {} / {}",
            c.lost_events, c.duplicated_events, c.failed_commands
        ),
        &format!("0: {}", met(lost == 0)),
    );
    report.row(
        &label,
        "hub RSS before → peak",
        format!("{:.0} → {:.0} MiB", c.rss_before_mb, c.peak_rss_mb),
        "bounded",
    );
    report.row(
        &label,
        "first output p50 / p99",
        format!(
            "{:.1} / {:.1} ms",
            ms(c.first_output.p50()),
            ms(c.first_output.p99())
        ),
        "",
    );
    report.row(&label, "wall time", format!("{:.2} s", c.seconds), "");
    report.set("concurrent_1000_lost", json!(lost));
    report.set("concurrent_1000_peak_rss_mb", json!(c.peak_rss_mb));
    report.set(
        "concurrent_1000_first_output_p50_ms",
        json!(ms(c.first_output.p50())),
    );
    report.set(
        "concurrent_1000_first_output_p99_ms",
        json!(ms(c.first_output.p99())),
    );

    progress("cold helix run…");
    let local_args: Vec<String> = [
        "--quiet",
        "--hub-dir",
        &hub_proc.path().display().to_string(),
        "run",
        "hello",
    ]
    .map(String::from)
    .to_vec();
    let cold_local = hub_bench::cold_run(&local_args, sizes.cold_runs).await?;
    let spoke_dir = tempfile::tempdir()?;
    let mut iroh_args = hub_bench::pair_spoke(&hub_proc, spoke_dir.path()).await?;
    iroh_args.extend(["--quiet", "run", "--hub", "bench", "hello"].map(String::from));
    let cold_iroh = hub_bench::cold_run(&iroh_args, sizes.cold_runs).await?;
    report.row(
        "cold `helix run` (start → first output)",
        "local TCP p50",
        format!("{:.1} ms", ms(cold_local.p50())),
        "",
    );
    report.row(
        "cold `helix run` (start → first output)",
        "iroh direct p50",
        format!("{:.1} ms", ms(cold_iroh.p50())),
        "",
    );
    report.set("cold_run_local_ms", json!(ms(cold_local.p50())));
    report.set("cold_run_iroh_ms", json!(ms(cold_iroh.p50())));

    progress("idle hub…");
    let idle = hub_bench::idle_cpu(hub_proc.pid, sizes.idle).await?;
    report.row(
        "idle hub",
        "CPU (share of one core)",
        format!("{:.2} %", idle * 100.0),
        "near zero",
    );
    report.set("idle_cpu_percent", json!(idle * 100.0));

    relay_scenario(&mut report, &sizes).await?;
    report.set("quick", json!(args.quick));
    report.set("total_seconds", json!(started.elapsed().as_secs_f64()));

    report.print();
    if let Some(path) = args.json {
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(&Value::Object(report.json))?,
        )?;
        progress(&format!("wrote {}", path.display()));
    }
    Ok(())
}

/// The in-process hub with the instant provider: `Execute` → first output against a raw iroh
/// round trip, then token-sized events per second.
async fn hub_in_process(report: &mut Report, sizes: &Sizes) -> anyhow::Result<()> {
    progress("first output and token-sized events through the hub…");
    // The raw round trips are measured in rounds interleaved with the first outputs, so a
    // slow or fast moment of the machine lands on both sides of the ratio.
    let raw_server = transport::start_server(None).await?;
    let raw_client = transport::client_endpoint(None).await?;
    let raw_addr = transport::dial_addr(&raw_server, None)?;
    let mut hub = hub_bench::in_process_hub().await?;
    let (mut rtt, mut first, mut ratios) = (Samples::default(), Samples::default(), Vec::new());
    for _ in 0..FIRST_OUTPUT_ROUNDS {
        let round_rtt = transport::raw_rtt(&raw_client, raw_addr.clone(), sizes.pings)
            .await
            .context("raw iroh QUIC round trips")?;
        let round_first =
            hub_bench::first_output(&mut hub.client, sizes.first_outputs, Duration::ZERO).await?;
        ratios.push(round_first.p50().as_secs_f64() / round_rtt.p50().as_secs_f64());
        rtt.merge(&round_rtt);
        first.merge(&round_first);
    }
    raw_client.close().await;
    raw_server.endpoint.close().await;
    let ratio = median(ratios.iter().copied());
    report.row(
        "raw iroh QUIC stream (between the first-output rounds)",
        "RTT p50 / p99",
        format!("{:.3} / {:.3} ms", ms(rtt.p50()), ms(rtt.p99())),
        "baseline",
    );
    report.row(
        "Execute → first output (instant provider, iroh direct)",
        "p50 / p99",
        format!("{:.3} / {:.3} ms", ms(first.p50()), ms(first.p99())),
        "",
    );
    report.row(
        "Execute → first output (instant provider, iroh direct)",
        "× raw iroh RTT (rounds)",
        format!("{ratio:.2} ({})", spread(&ratios)),
        &format!("≤ 3: {}", met(ratio <= 3.0)),
    );
    report.set("first_output_ms", json!(ms(first.p50())));
    report.set("first_output_p99_ms", json!(ms(first.p99())));
    report.set("first_output_raw_rtt_ms", json!(ms(rtt.p50())));
    report.set("first_output_vs_iroh_rtt", json!(ratio));
    report.set("first_output_vs_iroh_rtt_rounds", json!(ratios));
    // The same after 2 ms of nothing: every thread of the process has parked, as for a lone
    // command (the raw RTT above is measured back to back, so this row has no target).
    let idle_first =
        hub_bench::first_output(&mut hub.client, sizes.first_outputs / 2, IDLE_PAUSE).await?;
    report.row(
        "Execute → first output after 2 ms idle",
        "p50 / p99",
        format!(
            "{:.3} / {:.3} ms",
            ms(idle_first.p50()),
            ms(idle_first.p99())
        ),
        "",
    );
    report.set("first_output_after_idle_ms", json!(ms(idle_first.p50())));
    let events = hub_bench::token_events(&mut hub.client, sizes.token_events).await?;
    report.row(
        "20-byte output events, one stream, end to end",
        "events/s",
        format!("{events:.0}"),
        "",
    );
    report.set("token_events_per_s", json!(events));
    hub.endpoint.close().await;
    hub.hub.shutdown().await;
    Ok(())
}

/// The table relay, when PostgreSQL and postrust are available.
async fn relay_scenario(report: &mut Report, sizes: &Sizes) -> anyhow::Result<()> {
    progress("the table relay (PostgreSQL + postrust)…");
    match relay_bench::available().await {
        Ok(()) => {
            let poll = Duration::from_millis(250);
            let r = relay_bench::run(poll).await.context("table relay")?;
            let fallback = r.fallback.as_secs_f64();
            let label = "table relay (hub without iroh route)";
            report.row(
                label,
                "spoke falls back after",
                format!("{fallback:.2} s"),
                &format!(
                    "3 s iroh window (+ process start ≤ 0.1 s): {}",
                    met(fallback <= 3.1)
                ),
            );
            report.row(
                label,
                "start → first output (safety poll 250 ms)",
                format!("{:.2} s", r.first_output.as_secs_f64()),
                "",
            );
            report.row(
                label,
                "whole command",
                format!("{:.2} s", r.total.as_secs_f64()),
                "",
            );
            report.set("fallback_seconds", json!(fallback));
            report.set(
                "relay_first_output_seconds",
                json!(r.first_output.as_secs_f64()),
            );
            progress(&format!(
                "an idle hub with cloud settings, Realtime up then down, {} s each…",
                sizes.idle_cloud.as_secs()
            ));
            for realtime in [true, false] {
                let idle = relay_bench::idle(Duration::from_secs(2), sizes.idle_cloud, realtime)
                    .await
                    .context("idle hub with cloud settings")?;
                let per_hour = idle.per_hour();
                let breakdown: Vec<String> = idle
                    .requests
                    .iter()
                    .map(|(what, n)| format!("{what} ×{n}"))
                    .collect();
                let (label, key) = match realtime {
                    true => (
                        "idle hub with cloud settings (Realtime up)",
                        "idle_rest_requests_per_hour",
                    ),
                    false => (
                        "idle hub with cloud settings (Realtime down)",
                        "idle_rest_requests_per_hour_realtime_down",
                    ),
                };
                report.row(
                    label,
                    &format!(
                        "Supabase requests/hour (counted over {} s)",
                        idle.window.as_secs()
                    ),
                    format!("{per_hour:.0} ({})", breakdown.join(", ")),
                    "no polling storm",
                );
                report.set(key, json!(per_hour));
            }
        }
        Err(why) => {
            report.row(
                "table relay",
                "fallback; submit → first output",
                format!("not measured: {why}"),
                "fallback ≤ 3 s",
            );
            report.set("fallback_seconds", Value::Null);
            report.set("idle_rest_requests_per_hour", Value::Null);
            report.set("idle_rest_requests_per_hour_realtime_down", Value::Null);
        }
    }
    Ok(())
}

/// A local iroh relay server (plain HTTP on 127.0.0.1).
struct LocalRelay {
    url: String,
    _server: iroh_relay::server::Server,
}

impl LocalRelay {
    async fn start() -> anyhow::Result<Self> {
        let mut relay = iroh_relay::server::RelayConfig::new((std::net::Ipv4Addr::LOCALHOST, 0));
        relay.tls = None;
        let mut config = iroh_relay::server::ServerConfig::default();
        config.relay = Some(relay);
        config.quic = None;
        let server = iroh_relay::server::Server::spawn(config).await?;
        let addr = server
            .http_addr()
            .ok_or_else(|| anyhow::anyhow!("relay has no HTTP address"))?;
        Ok(Self {
            url: format!("http://{addr}"),
            _server: server,
        })
    }
}
