//! The transports across a network link instead of loopback: a veth pair to another network
//! namespace (MTU 1,500), first unshaped, then shaped to 1 Gbit/s in both directions (a wired
//! LAN, faster than most paths from a phone to a desktop). The same bench servers and rounds
//! as the loopback comparison; only the path differs.

use std::net::SocketAddr;

use anyhow::Context;
use serde_json::{Value, json};

use crate::{
    Sizes,
    link::Link,
    report::{Report, progress},
    scenarios::transports::ratio_rows,
    stats::ms,
    transport::{self, Comparison, Targets},
};

/// The link's cases: the name in the report, the JSON keys' prefix, and the rate (`tc`'s
/// syntax; `None` leaves the link unshaped).
const CASES: [(&str, &str, Option<&str>); 2] = [
    ("veth link, MTU 1,500, unshaped", "link_unshaped", None),
    (
        "veth link, MTU 1,500, 1 Gbit/s",
        "link_1gbit",
        Some("1gbit"),
    ),
];

/// Raw iroh, tonic/TCP and gRPC over iroh across the link, for each of [`CASES`]. A link that
/// cannot be made or measured is reported as such; the rest of the bench goes on.
pub async fn link(report: &mut Report, sizes: &Sizes) -> anyhow::Result<()> {
    progress("raw iroh QUIC, tonic/TCP, gRPC over iroh across a veth link…");
    // Null until measured: the keys say a case was not measured, whatever stopped it.
    for (_, key, _) in CASES {
        report.set(&format!("{key}_grpc_iroh_vs_tcp_throughput"), Value::Null);
    }
    let not_measured = |report: &mut Report, why: String| {
        report.row(
            "veth link (another network namespace)",
            "raw iroh, tonic/TCP, gRPC over iroh",
            format!("not measured: {why}"),
            "",
        );
    };
    match Link::create() {
        Ok(link) => {
            if let Err(e) = measure(report, sizes, &link).await {
                not_measured(report, format!("{e:#}"));
            }
        }
        Err(why) => not_measured(report, format!("{why} (needs root and iproute2)")),
    }
    Ok(())
}

/// Each of [`CASES`] across `link`: the servers on its far side, the clients on this one.
async fn measure(report: &mut Report, sizes: &Sizes, link: &Link) -> anyhow::Result<()> {
    let far = link.far;
    let far_side = link.far_runtime()?;
    let (server, tcp_addr) = far_side
        .run(async move {
            let server = transport::start_server_at(None, SocketAddr::from((far, 0))).await?;
            let tcp = transport::tcp_server(SocketAddr::from((far, 0))).await?;
            anyhow::Ok((server, tcp))
        })
        .await??;
    let client = transport::direct_client_at(SocketAddr::from((link.near, 0))).await?;
    let addr = transport::dial_addr(&server, None)?;
    let tcp = transport::tcp_connect(tcp_addr)
        .await
        .context("tonic over TCP across the link")?;
    for (name, key, rate) in CASES {
        if let Some(rate) = rate {
            link.shape(rate).map_err(anyhow::Error::msg)?;
        }
        let compared = transport::compare(
            &client,
            addr.clone(),
            tcp.clone(),
            sizes.bytes,
            sizes.pings,
            sizes.rounds,
        )
        .await
        .with_context(|| name.to_owned())?;
        let targets = match rate {
            Some(_) => Targets::LINK_1GBIT,
            None => Targets::LINK,
        };
        rows(report, name, key, &compared, targets);
        if let Some(path) = server.raw_path() {
            report.row(
                name,
                "raw iroh: mean datagram / packets lost",
                format!(
                    "{:.0} bytes / {:.2} %",
                    path.datagram_bytes,
                    path.loss * 100.0
                ),
                "",
            );
            report.set(
                &format!("{key}_raw_iroh_datagram_bytes"),
                json!(path.datagram_bytes),
            );
            report.set(&format!("{key}_raw_iroh_loss"), json!(path.loss));
        }
    }
    client.close().await;
    let endpoint = server.endpoint.clone();
    far_side.run(async move { endpoint.close().await }).await?;
    Ok(())
}

/// One case's rows and keys.
fn rows(report: &mut Report, name: &str, key: &str, compared: &Comparison, targets: Targets) {
    let (raw, tcp, grpc) = (&compared.raw, &compared.tcp, &compared.grpc);
    report.row(
        name,
        "throughput: raw iroh / tonic TCP / gRPC over iroh",
        format!(
            "{:.0} / {:.0} / {:.0} MiB/s",
            raw.mib_per_s, tcp.mib_per_s, grpc.mib_per_s
        ),
        "",
    );
    report.row(
        name,
        "RTT p50: raw iroh / tonic TCP unary / gRPC over iroh unary",
        format!(
            "{:.3} / {:.3} / {:.3} ms",
            ms(raw.rtt.p50()),
            ms(tcp.rtt.p50()),
            ms(grpc.rtt.p50())
        ),
        "",
    );
    ratio_rows(report, name, "gRPC over iroh ", compared, targets);
    report.row(
        name,
        "CPU per MiB moved: raw iroh / tonic TCP / gRPC over iroh",
        compared.cpu_per_mib(),
        "",
    );
    for (name, value) in compared.keys() {
        report.set(&format!("{key}_{name}"), value);
    }
}
