//! The hub's presence heartbeat when cloud is configured: every 30 s (and at once) it writes
//! its row (id, name, relay URL, direct addresses, providers, version) with a fresh session,
//! and removes the row on graceful shutdown. Without cloud settings or a session it does
//! nothing, and the cloud being unreachable only makes the row go stale.

use std::{path::PathBuf, time::Duration};

use helix_discovery::{
    cloud::Cloud,
    presence::{self, HEARTBEAT, Presence},
};
use iroh::{Endpoint, TransportAddr};
use tokio_util::sync::CancellationToken;

/// How long the final withdraw may take at shutdown.
const WITHDRAW_TIMEOUT: Duration = Duration::from_secs(5);

/// The row this hub announces now.
fn row(endpoint: &Endpoint, hub_name: &str, providers: &[String]) -> Presence {
    let addr = endpoint.addr();
    let mut relay_url = None;
    let mut direct_addrs = Vec::new();
    for a in &addr.addrs {
        match a {
            TransportAddr::Relay(url) => relay_url = Some(url.to_string()),
            TransportAddr::Ip(ip) => direct_addrs.push(ip.to_string()),
            _ => {}
        }
    }
    Presence {
        hub_id: endpoint.id().to_string(),
        hub_name: hub_name.to_owned(),
        relay_url,
        direct_addrs,
        providers: providers.to_vec(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        last_seen: None,
    }
}

/// Runs until `cancel`; then withdraws the row.
pub async fn heartbeat(
    data_dir: PathBuf,
    endpoint: Endpoint,
    hub_name: String,
    providers: Vec<String>,
    cancel: CancellationToken,
) {
    let cloud = Cloud::in_dir(&data_dir);
    let mut announced = false;
    loop {
        match cloud.rest().await {
            Ok(Some((rest, _))) => {
                match presence::announce(&rest, &row(&endpoint, &hub_name, &providers)).await {
                    Ok(_) => announced = true,
                    Err(error) => tracing::warn!(%error, "presence heartbeat failed"),
                }
            }
            // Not signed in (yet, or any more): check again at the next beat, so a later
            // `helix-hub cloud login` takes effect without a restart.
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "presence heartbeat: no usable cloud session"),
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(HEARTBEAT) => {}
        }
    }
    if announced {
        let withdraw = async {
            if let Ok(Some((rest, _))) = cloud.rest().await {
                let _ = presence::withdraw(&rest, &endpoint.id().to_string()).await;
            }
        };
        let _ = tokio::time::timeout(WITHDRAW_TIMEOUT, withdraw).await;
    }
}
