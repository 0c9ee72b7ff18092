//! The hub: in process (first output, token-sized events) and as a process (1,000 concurrent
//! commands, cold `helix run`, idle CPU).

use std::time::Duration;

use anyhow::Context;
use serde_json::json;

use crate::{
    Sizes, hub_bench, hub_processes,
    report::{Report, met, progress, spread},
    stats::{Samples, median, ms},
    transport,
};

/// Rounds of raw round trips and first outputs, interleaved.
const FIRST_OUTPUT_ROUNDS: usize = 5;

/// The pause before each command of the "first output after idle" row.
const IDLE_PAUSE: Duration = Duration::from_millis(2);

/// The in-process hub with the instant provider: `Execute` → first output against a raw iroh
/// round trip, then token-sized events per second.
pub async fn hub_in_process(report: &mut Report, sizes: &Sizes) -> anyhow::Result<()> {
    progress("first output and token-sized events through the hub…");
    // The raw round trips are measured in rounds interleaved with the first outputs, so a
    // slow or fast moment of the machine lands on both sides of the ratio.
    let raw_server = transport::start_server(None).await?;
    let raw_client = transport::client_endpoint(None).await?;
    let raw_addr = transport::dial_addr(&raw_server, None)?;
    let mut hub = hub_bench::in_process_hub().await?;
    let (mut rtt, mut first) = (Samples::default(), Samples::default());
    // Each round's raw RTT p50 and first-output p50.
    let mut rounds = Vec::new();
    for _ in 0..FIRST_OUTPUT_ROUNDS {
        let round_rtt = transport::raw_rtt(&raw_client, raw_addr.clone(), sizes.pings)
            .await
            .context("raw iroh QUIC round trips")?;
        let round_first =
            hub_bench::first_output(&mut hub.client, sizes.first_outputs, Duration::ZERO).await?;
        rounds.push((round_rtt.p50(), round_first.p50()));
        rtt.merge(&round_rtt);
        first.merge(&round_first);
    }
    raw_client.close().await;
    raw_server.endpoint.close().await;
    let ratios: Vec<f64> = rounds
        .iter()
        .map(|(rtt, first)| first.as_secs_f64() / rtt.as_secs_f64())
        .collect();
    let ratio = median(ratios.iter().copied());
    report.row(
        "raw iroh QUIC stream (between the first-output rounds)",
        "RTT p50 / p99",
        rtt.p50_p99_ms(),
        "baseline",
    );
    report.row(
        "Execute → first output (instant provider, iroh direct)",
        "p50 / p99",
        first.p50_p99_ms(),
        "",
    );
    report.row(
        "Execute → first output (instant provider, iroh direct)",
        "× raw iroh RTT (rounds)",
        format!("{ratio:.2} ({})", spread(&ratios)),
        // The loopback target (≤ 3) is retired: the WAN rows measure what a person waits.
        "",
    );
    report.set("first_output_ms", json!(ms(first.p50())));
    report.set("first_output_p99_ms", json!(ms(first.p99())));
    report.set("first_output_raw_rtt_ms", json!(ms(rtt.p50())));
    report.set("first_output_vs_iroh_rtt", json!(ratio));
    report.set("first_output_vs_iroh_rtt_rounds", json!(ratios));
    let round_ms = |pick: fn(&(Duration, Duration)) -> Duration| -> Vec<f64> {
        rounds.iter().map(|r| ms(pick(r))).collect()
    };
    report.set("first_output_raw_rtt_rounds_ms", json!(round_ms(|r| r.0)));
    report.set("first_output_rounds_ms", json!(round_ms(|r| r.1)));
    // The same after 2 ms of nothing: every thread of the process has parked, as for a lone
    // command (the raw RTT above is measured back to back, so this row has no target).
    let idle_first =
        hub_bench::first_output(&mut hub.client, sizes.first_outputs / 2, IDLE_PAUSE).await?;
    report.row(
        "Execute → first output after 2 ms idle",
        "p50 / p99",
        idle_first.p50_p99_ms(),
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

/// A real `helix-hub` process: 1,000 concurrent streaming commands, cold `helix run`s against
/// it, then its idle CPU.
pub async fn hub_process(report: &mut Report, sizes: &Sizes) -> anyhow::Result<()> {
    progress(&format!(
        "{} concurrent streaming commands on a hub process…",
        sizes.concurrent
    ));
    let hub_proc = hub_processes::HubProcess::start(u32::try_from(sizes.concurrent)?, 2).await?;
    let c = hub_processes::concurrent(&hub_proc, sizes.concurrent, sizes.words).await?;
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
    let cold_local = hub_processes::cold_run(&local_args, sizes.cold_runs).await?;
    let spoke_dir = tempfile::tempdir()?;
    let mut iroh_args = hub_processes::pair_spoke(&hub_proc, spoke_dir.path()).await?;
    iroh_args.extend(["--quiet", "run", "--hub", "bench", "hello"].map(String::from));
    let cold_iroh = hub_processes::cold_run(&iroh_args, sizes.cold_runs).await?;
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
    let idle = hub_processes::idle_cpu(hub_proc.pid, sizes.idle).await?;
    report.row(
        "idle hub",
        "CPU (share of one core)",
        format!("{:.2} %", idle * 100.0),
        "near zero",
    );
    report.set("idle_cpu_percent", json!(idle * 100.0));
    Ok(())
}
