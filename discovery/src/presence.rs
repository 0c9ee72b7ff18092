//! Hub presence rows (`cloud_presence`): a hub announces where it can be dialed (its key, relay
//! URL, direct addresses) every [`HEARTBEAT`] through `announce_cloud_hub`, proving its claim
//! token, and withdraws the row at shutdown (`withdraw_cloud_hub`); spokes list the hubs seen
//! within [`ONLINE_WITHIN`] by the server's clock. Rows are keyed by (user, hub): nobody else
//! can write a hub's row, and another user's row for the same hub id is a different row.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::rest::{Rest, RestError};

/// How often a hub refreshes its row: 30 requests an hour, within an idle hub's budget of 60.
pub const HEARTBEAT: Duration = Duration::from_secs(120);
/// A hub seen within this long is online (two heartbeats and some slack: one lost beat does
/// not make a hub look offline).
pub const ONLINE_WITHIN: Duration = Duration::from_secs(300);

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

/// Writes (or refreshes) the hub's row, proving the hub's claim `token` (sent only in the
/// request body).
pub async fn announce(rest: &Rest, token: &str, presence: &Presence) -> Result<(), RestError> {
    let args = json!({
        "p_hub_id": presence.hub_id,
        "p_token": token,
        "p_hub_name": presence.hub_name,
        "p_relay_url": presence.relay_url,
        "p_direct_addrs": presence.direct_addrs,
        "p_providers": presence.providers,
        "p_version": presence.version,
    });
    rest.rpc::<serde_json::Value>("announce_cloud_hub", &args)
        .await
        .map(drop)
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
pub async fn withdraw(rest: &Rest, hub_id: &str, token: &str) -> Result<bool, RestError> {
    rest.rpc(
        "withdraw_cloud_hub",
        &json!({"p_hub_id": hub_id, "p_token": token}),
    )
    .await
}
