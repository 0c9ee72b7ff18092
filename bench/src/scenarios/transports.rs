//! The transports: raw iroh QUIC, tonic over TCP and gRPC over iroh in interleaved rounds,
//! then gRPC over iroh through a local relay.

use anyhow::Context;
use serde_json::json;

use crate::{
    Sizes,
    report::{Report, met, progress, spread},
    stats::ms,
    transport::{self, Comparison, Solo, TARGET_CPU_VS_RAW, TARGET_VS_RAW, TARGET_VS_TCP, Targets},
};

/// Raw iroh, tonic/TCP and gRPC over iroh direct, side by side.
pub async fn transports(report: &mut Report, sizes: &Sizes) -> anyhow::Result<()> {
    progress("raw iroh QUIC, tonic/TCP, gRPC over iroh direct…");
    let server = transport::start_server(None).await?;
    let client = transport::client_endpoint(None).await?;
    let addr = transport::dial_addr(&server, None)?;
    let tcp = transport::tcp_channel().await.context("tonic over TCP")?;
    let compared =
        transport::compare(&client, addr, tcp, sizes.bytes, sizes.pings, sizes.rounds).await?;
    let (raw, tcp, grpc_iroh) = (&compared.raw, &compared.tcp, &compared.grpc);
    report.row(
        "raw iroh QUIC stream",
        "throughput",
        format!("{:.0} MiB/s", raw.mib_per_s),
        "baseline",
    );
    report.row(
        "raw iroh QUIC stream",
        "RTT p50 / p99",
        raw.rtt.p50_p99_ms(),
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
        tcp.rtt.p50_p99_ms(),
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
        grpc_iroh.rtt.p50_p99_ms(),
        "",
    );
    ratio_rows(
        report,
        "gRPC over iroh direct",
        "",
        &compared,
        Targets::LOOPBACK,
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
        compared.cpu_per_mib(),
        "",
    );
    for (name, value) in compared.keys() {
        report.set(name, value);
    }
    report.set("transport_rounds", json!(sizes.rounds));
    client.close().await;
    server.endpoint.close().await;
    Ok(())
}

/// The rows of gRPC over iroh's two throughput ratios, each with its rounds' range, and its
/// CPU per MiB against raw iroh's, each with a target where `targets` holds it to one;
/// `measure` starts each row's measure ("" or "gRPC over iroh ").
pub fn ratio_rows(
    report: &mut Report,
    scenario: &str,
    measure: &str,
    compared: &Comparison,
    targets: Targets,
) {
    let (vs_raw, vs_tcp) = (compared.grpc_vs_raw(), compared.grpc_vs_tcp());
    let target = |held: bool, text: String| if held { text } else { String::new() };
    report.row(
        scenario,
        &format!("{measure}× raw iroh throughput (rounds)"),
        format!("{vs_raw:.2} ({})", spread(&compared.vs_raw)),
        &target(
            targets.vs_raw,
            format!("≥ {TARGET_VS_RAW:.2}: {}", met(vs_raw >= TARGET_VS_RAW)),
        ),
    );
    report.row(
        scenario,
        &format!("{measure}× tonic/TCP throughput (rounds)"),
        format!("{vs_tcp:.2} ({})", spread(&compared.vs_tcp)),
        &target(
            targets.vs_tcp,
            format!("≥ {TARGET_VS_TCP:.2}: {}", met(vs_tcp >= TARGET_VS_TCP)),
        ),
    );
    let cpu = compared.grpc_cpu_vs_raw();
    report.row(
        scenario,
        &format!("{measure}CPU per MiB ÷ raw iroh's"),
        format!("{cpu:.2}"),
        &target(
            targets.cpu_vs_raw,
            format!(
                "≤ {TARGET_CPU_VS_RAW:.1}: {}",
                met(cpu <= TARGET_CPU_VS_RAW)
            ),
        ),
    );
}

/// How many downloads `--solo` makes.
const SOLO_RUNS: usize = 4;

/// One transport alone, [`SOLO_RUNS`] downloads, each reported: for profiling.
pub async fn solo(report: &mut Report, sizes: &Sizes, which: Solo) -> anyhow::Result<()> {
    progress(&format!("{} alone, {SOLO_RUNS} downloads…", which.name()));
    let server = transport::start_server(None).await?;
    let client = transport::client_endpoint(None).await?;
    let addr = transport::dial_addr(&server, None)?;
    let runs = transport::solo(&client, addr, which, sizes.bytes, sizes.pings, SOLO_RUNS).await?;
    for (i, run) in runs.iter().enumerate() {
        report.row(
            which.name(),
            &format!("download {} of {SOLO_RUNS}: throughput, CPU per MiB", i + 1),
            format!("{:.0} MiB/s, {:.2} ms", run.mib_per_s, run.cpu_ms_per_mib),
            "",
        );
    }
    report.set("solo_transport", json!(which.key()));
    report.set(
        "solo_mib_s",
        json!(runs.iter().map(|r| r.mib_per_s).collect::<Vec<_>>()),
    );
    report.set(
        "solo_cpu_ms_per_mib",
        json!(runs.iter().map(|r| r.cpu_ms_per_mib).collect::<Vec<_>>()),
    );
    client.close().await;
    server.endpoint.close().await;
    Ok(())
}

/// gRPC over iroh through a local relay server, the client without UDP of its own.
pub async fn relayed(report: &mut Report, sizes: &Sizes) -> anyhow::Result<()> {
    progress("gRPC over iroh through a local relay…");
    let relay = helix_testkit::relay::LocalRelay::start().await;
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
        relayed.rtt.p50_p99_ms(),
        "",
    );
    report.set("grpc_relay_mib_s", json!(relayed.mib_per_s));
    report.set("grpc_relay_rtt_ms", json!(ms(relayed.rtt.p50())));
    relay_client.close().await;
    relay_server.endpoint.close().await;
    Ok(())
}
