//! The hub's presence when its cloud route runs (and iroh is on: presence says where to dial):
//! once the hub is registered, every `[cloud] presence_interval` (2 minutes; and at once) it writes its row (id, name,
//! relay URL, direct addresses, providers, version) with `announce_cloud_hub` and a fresh
//! session, and removes it with `withdraw_cloud_hub` when the cloud route stops. Failures are
//! logged and retried at the next beat (the row simply goes stale while the cloud is
//! unreachable).

use std::time::Duration;

use helix_discovery::{
    cloud::Cloud,
    presence::{self, Presence},
};
use iroh::{Endpoint, TransportAddr};
use tokio_util::sync::CancellationToken;

/// How long the final withdraw may take at shutdown.
const WITHDRAW_TIMEOUT: Duration = Duration::from_secs(5);

/// What the hub announces: where it is dialed and what it runs.
#[derive(Debug, Clone)]
pub struct PresenceSource {
    pub endpoint: Endpoint,
    pub hub_name: String,
    pub providers: Vec<String>,
}

impl PresenceSource {
    /// The row this hub announces now.
    fn row(&self) -> Presence {
        let addr = self.endpoint.addr();
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
            hub_id: self.endpoint.id().to_string(),
            hub_name: self.hub_name.clone(),
            relay_url,
            direct_addrs,
            providers: self.providers.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            last_seen: None,
        }
    }
}

/// Announces every `interval` until `cancel`, then withdraws the row. `token` is the hub's
/// claim token.
pub async fn heartbeat(
    cloud: Cloud,
    interval: Duration,
    source: PresenceSource,
    token: &str,
    cancel: CancellationToken,
) {
    let mut announced = false;
    loop {
        match cloud.rest().await {
            Ok(Some((rest, _))) => match presence::announce(&rest, token, &source.row()).await {
                Ok(()) => announced = true,
                Err(error) => tracing::warn!(%error, "presence heartbeat failed"),
            },
            // Not signed in (any more): check again at the next beat.
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "presence heartbeat: no usable cloud session"),
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
    if announced {
        let hub_id = source.endpoint.id().to_string();
        let withdraw = async {
            if let Ok(Some((rest, _))) = cloud.rest().await
                && let Err(error) = presence::withdraw(&rest, &hub_id, token).await
            {
                tracing::warn!(%error, "could not withdraw the presence row");
            }
        };
        if tokio::time::timeout(WITHDRAW_TIMEOUT, withdraw)
            .await
            .is_err()
        {
            tracing::warn!("withdrawing the presence row timed out");
        }
    }
}
