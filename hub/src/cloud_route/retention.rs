//! Retention: the cloud keeps a finished command (its row, keys and events) for
//! `[cloud] retention_days` (default 30) after it ended. The hub deletes what is older with
//! `prune_cloud` when its cloud route starts and every [`PRUNE_EVERY`] after; a call deletes at
//! most [`PRUNE_BATCH`] commands, so it is called again at once while it deletes that many.
//! Commands still `pending` or `executing` are never deleted, whatever their age.

use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::CloudRoute;

/// How often the hub prunes: daily, one request a day when there is nothing to delete.
pub const PRUNE_EVERY: Duration = Duration::from_secs(24 * 3600);
/// How soon a prune that failed is tried again.
pub const PRUNE_RETRY: Duration = Duration::from_secs(3600);
/// Most commands one `prune_cloud` call deletes (the function's own limit).
pub const PRUNE_BATCH: u64 = 10_000;
/// Calls in one prune at most (a million commands), so a misbehaving answer cannot loop.
const PRUNE_CALLS: u32 = 100;

/// Why a prune did not finish.
#[derive(Debug, thiserror::Error)]
enum PruneError {
    #[error(transparent)]
    Rest(#[from] helix_discovery::rest::RestError),
    #[error(transparent)]
    Cloud(#[from] helix_discovery::cloud::CloudError),
    #[error("not signed in to the cloud")]
    SignedOut,
}

impl CloudRoute {
    /// Prunes now and every [`PRUNE_EVERY`] until `cancel`.
    pub(super) async fn prune_until(&self, cancel: &CancellationToken) {
        loop {
            let wait = match self.prune().await {
                Ok(deleted) => {
                    tracing::info!(
                        deleted,
                        retention_days = self.ctx.config.cloud.retention_days,
                        "pruned finished commands from the cloud"
                    );
                    PRUNE_EVERY
                }
                Err(error) => {
                    tracing::warn!(%error, "pruning the cloud failed; trying again in an hour");
                    PRUNE_RETRY
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One prune: calls `prune_cloud` until it deletes fewer than [`PRUNE_BATCH`]. How many
    /// commands it deleted.
    async fn prune(&self) -> Result<u64, PruneError> {
        let (rest, _) = self.cloud.rest().await?.ok_or(PruneError::SignedOut)?;
        let args = self.caller.args(json!({
            "p_retention_days": self.ctx.config.cloud.retention_days,
        }));
        let mut deleted = 0;
        for _ in 0..PRUNE_CALLS {
            let batch: u64 = rest.rpc("prune_cloud", &args).await?;
            deleted += batch;
            if batch < PRUNE_BATCH {
                break;
            }
        }
        Ok(deleted)
    }
}
