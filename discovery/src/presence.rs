//! Hub presence rows: a hub announces where it can be dialed (its key, relay URL, direct
//! addresses) every [`HEARTBEAT`]; spokes list the hubs seen within [`ONLINE_WITHIN`] by the
//! server's clock. Rows are per user (row-level security) and cannot be taken over.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::rest::{Rest, RestError};

/// How often a hub refreshes its row.
pub const HEARTBEAT: Duration = Duration::from_secs(30);
/// A hub seen within this long is online.
pub const ONLINE_WITHIN: Duration = Duration::from_secs(300);
/// The table.
const TABLE: &str = "hub_presence";

/// One hub's row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub hub_id: String,
    #[serde(default)]
    pub hub_name: String,
    #[serde(default)]
    pub relay_url: Option<String>,
    #[serde(default)]
    pub direct_addrs: Vec<String>,
    #[serde(default)]
    pub providers: Vec<String>,
    #[serde(default)]
    pub version: String,
    /// Set by the server; ignored when sent.
    #[serde(default, skip_serializing)]
    pub last_seen: Option<String>,
}

/// Writes (or refreshes) the hub's row; returns it as stored.
pub async fn announce(rest: &Rest, presence: &Presence) -> Result<Presence, RestError> {
    let mut rows: Vec<Presence> = rest.insert(TABLE, &[presence], Some("hub_id")).await?;
    rows.pop().ok_or_else(|| RestError::Decode {
        what: "writing hub_presence".into(),
        message: "no row came back".into(),
    })
}

/// The caller's hubs seen within [`ONLINE_WITHIN`] by the server's clock, most recent first
/// (`online_cloud_hubs`: the caller's `cloud_presence` rows).
pub async fn online(rest: &Rest) -> Result<Vec<Presence>, RestError> {
    rest.rpc(
        "online_cloud_hubs",
        &serde_json::json!({ "p_within_seconds": ONLINE_WITHIN.as_secs() }),
    )
    .await
}

/// Removes the hub's row (graceful shutdown); `true` if there was one.
pub async fn withdraw(rest: &Rest, hub_id: &str) -> Result<bool, RestError> {
    let removed: Vec<Presence> = rest.delete(TABLE, &format!("hub_id=eq.{hub_id}")).await?;
    Ok(!removed.is_empty())
}

/// Announces every [`HEARTBEAT`] until `cancel`, then withdraws. Failures are logged and
/// retried at the next beat (the row simply goes stale if the cloud is unreachable).
pub async fn heartbeat(rest: Rest, presence: Presence, cancel: CancellationToken) {
    loop {
        if let Err(error) = announce(&rest, &presence).await {
            tracing::warn!(%error, "presence heartbeat failed");
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(HEARTBEAT) => {}
        }
    }
    if let Err(error) = withdraw(&rest, &presence.hub_id).await {
        tracing::warn!(%error, "could not remove the presence row");
    }
}
