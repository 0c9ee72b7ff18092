//! `helix hubs` probes the paired hubs at the same time, not one after another, and still
//! lists them in name order.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use helix_mesh::{
    proto_ext::now_ms,
    transport::{ALPN_GRPC, CLOSE_NOT_PAIRED},
};
use helix_spoke::config::{KnownHub, SpokeConfig};
use iroh::{SecretKey, endpoint::VarInt};
use tokio::sync::watch;

use crate::support::{
    bins::{run_helix, spoke},
    json_lines, loopback_endpoint,
};

/// How many of the fake hubs' connections are open, and the most that were open together.
struct Gauge {
    open: AtomicUsize,
    peak: watch::Sender<usize>,
}

/// A stand-in hub: accepts `helix/grpc/1` connections and holds each, answering nothing,
/// until `hubs` connections have been open at the same time; then closes it as a hub closes
/// an unpaired device's. A spoke that probes hubs one at a time never gets there: each probe
/// waits out its timeout alone.
async fn fake_hub(gauge: Arc<Gauge>, hubs: usize) -> iroh::EndpointAddr {
    let endpoint = loopback_endpoint(SecretKey::generate(), &[ALPN_GRPC]).await;
    let addr = endpoint.addr();
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            let gauge = gauge.clone();
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                let open = gauge.open.fetch_add(1, Ordering::SeqCst) + 1;
                gauge.peak.send_if_modified(|peak| {
                    let higher = open > *peak;
                    *peak = (*peak).max(open);
                    higher
                });
                let mut peak = gauge.peak.subscribe();
                tokio::select! {
                    _ = peak.wait_for(|p| *p >= hubs) => {
                        conn.close(VarInt::from_u32(CLOSE_NOT_PAIRED), b"this device is not paired (test hub)");
                    }
                    _ = conn.closed() => {}
                }
                gauge.open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    addr
}

#[tokio::test]
async fn hubs_are_probed_concurrently_and_listed_in_order() {
    const HUBS: usize = 3;
    let gauge = Arc::new(Gauge {
        open: AtomicUsize::new(0),
        peak: watch::channel(0).0,
    });
    let config_dir = tempfile::tempdir().unwrap();
    let config = SpokeConfig::new(config_dir.path().to_owned());
    let names = ["alpha", "bravo", "charlie"];
    for name in names {
        let addr = fake_hub(gauge.clone(), HUBS).await;
        let hub = KnownHub {
            hub_id: addr.id,
            hub_name: format!("{name}-desk"),
            addr,
            paired_at_ms: now_ms(),
        };
        config.save_hub(name, hub).unwrap();
    }
    let mut cmd = spoke(config_dir.path());
    cmd.args(["--connect-timeout", "5s", "hubs", "--json"]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert_eq!(
        *gauge.peak.borrow(),
        HUBS,
        "every hub was being probed at once"
    );
    let rows = json_lines(&done.stdout);
    let listed: Vec<(&str, bool)> = rows
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap(),
                r["reachable"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        names.iter().map(|n| (*n, false)).collect::<Vec<_>>(),
        "{}",
        done.stdout
    );
}
