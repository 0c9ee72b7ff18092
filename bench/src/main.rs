//! `helix-bench`: the mesh measured against its own limits, every scenario side by side in one
//! process run on loopback (and, with root, across a veth link to a network namespace it
//! makes, and across a 40 ms WAN in a network lab), so ratios compare like with like. Build in
//! release first: `scripts/bench` (or `cargo build --release --workspace --bins && target/release/helix-bench`).
//!
//! Prints a Markdown table on stdout; `--json FILE` also writes the numbers as one object.

mod counting_proxy;
mod hub_bench;
mod hub_processes;
mod link;
mod loopback;
mod procs;
mod relay_bench;
mod report;
mod scenarios;
mod slow_auth;
mod stats;
mod transport;
mod wan;

use std::{path::PathBuf, time::Duration};

use clap::Parser;
use report::{Report, progress};
use scenarios::{
    hub::{hub_in_process, hub_process},
    link::link,
    relay::relay_scenario,
    transports::{relayed, solo, transports},
    wan::wan,
};
use serde_json::json;

/// Benchmarks of Helix Mesh on this machine (loopback, and a veth link when run as root).
#[derive(Debug, Parser)]
#[command(name = "helix-bench", version)]
struct Args {
    /// Smaller runs: the whole benchmark in under 3 minutes on 2 cores.
    #[arg(long)]
    quick: bool,
    /// Also write the results as one JSON object to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Only the transport scenarios (raw iroh, tonic/TCP, gRPC over iroh; loopback and link).
    #[arg(long)]
    transport_only: bool,
    /// Only the table-relay scenario (needs PostgreSQL and postrust).
    #[arg(long)]
    relay_only: bool,
    /// Only raw iroh's round trip and the in-process hub (first output, token events).
    #[arg(long)]
    first_output_only: bool,
    /// Only the transports across a veth link to another network namespace (MTU 1,500;
    /// unshaped, then 1 Gbit/s). Needs root and iproute2.
    #[arg(long, conflicts_with_all = ["transport_only", "relay_only", "first_output_only"])]
    link_only: bool,
    /// Only the WAN lab: the hub and `helix` in two sites 40 ms apart (no NAT) and a relay on
    /// the WAN, every row a ratio to the round trip. Needs root, iproute2 and nftables.
    #[arg(
        long,
        conflicts_with_all = ["transport_only", "relay_only", "first_output_only", "link_only"]
    )]
    wan_only: bool,
    /// One transport alone, 4 downloads (256 MiB each, 64 MiB with --quick), each reported:
    /// the run to profile, e.g. `perf record -g target/release/helix-bench --solo grpc`.
    #[arg(
        long,
        value_enum,
        value_name = "TRANSPORT",
        conflicts_with_all = ["transport_only", "relay_only", "first_output_only", "link_only", "wan_only"]
    )]
    solo: Option<transport::Solo>,
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
    /// WAN lab: warm `Execute` calls per route, cold (and repeat) `helix run`s per route,
    /// streamed answers per route, and UDP probes per round-trip measurement.
    wan_calls: usize,
    wan_runs: usize,
    wan_streams: usize,
    wan_rtt_probes: usize,
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
                wan_calls: 50,
                wan_runs: 5,
                wan_streams: 3,
                wan_rtt_probes: 20,
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
                wan_calls: 200,
                wan_runs: 10,
                wan_streams: 5,
                wan_rtt_probes: 50,
            }
        }
    }
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

    if let Some(which) = args.solo {
        solo(&mut report, &sizes, which).await?;
    } else if args.relay_only {
        relay_scenario(&mut report, &sizes).await?;
    } else if args.first_output_only {
        hub_in_process(&mut report, &sizes).await?;
    } else if args.link_only {
        link(&mut report, &sizes).await?;
    } else if args.wan_only {
        wan(&mut report, &sizes).await?;
    } else {
        transports(&mut report, &sizes).await?;
        link(&mut report, &sizes).await?;
        if !args.transport_only {
            relayed(&mut report, &sizes).await?;
            hub_in_process(&mut report, &sizes).await?;
            hub_process(&mut report, &sizes).await?;
            relay_scenario(&mut report, &sizes).await?;
            wan(&mut report, &sizes).await?;
        }
    }
    report.set("quick", json!(args.quick));
    report.set("total_seconds", json!(started.elapsed().as_secs_f64()));

    report.print();
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_vec_pretty(&report.into_json())?)?;
        progress(&format!("wrote {}", path.display()));
    }
    Ok(())
}
