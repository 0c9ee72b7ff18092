//! Rows this hub left `executing`: it was killed or restarted while it relayed them, or it gave
//! up writing to a failing cloud (at the command's expiry, or when it stopped). The claim only
//! takes `pending` rows, so without this a spoke following one would wait for nothing.
//!
//! At start, and every [`ORPHAN_SCAN`] after, the cloud route's worker reads its own `executing` rows
//! and resumes each one no handler of this process works on, from the journal:
//! - a command the journal has: its events after the row's `last_seq` (never sent, so sealed
//!   now; those up to `last_seq` were sent and are not sealed again: the cloud refuses a re-sent
//!   seq with another envelope) are appended, following the command live if it still runs
//!   (pending commands run again after a restart), and the row is completed with the journal's
//!   final status. A command that was running when the hub died is finished `failed` with
//!   [`RESTARTED_ERROR`] by the journal, and that reason goes on the row too;
//! - a command the journal does not have (the hub died between claim and queueing, or gave up
//!   refusing it): completed `failed` with [`RESTARTED_ERROR`].

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use helix_discovery::rest::Rest;
use helix_mesh::proto_ext::now_ms;
use iroh::PublicKey;
use serde_json::Value;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use uuid::Uuid;

use super::{CloudRoute, row::Row};
use crate::{executor::SHUTDOWN_ERROR, journal::RESTARTED_ERROR};

/// How often a running hub looks for its `executing` rows that nothing here works on (rows it
/// gave up on while the cloud failed). One small query per interval; a hub also looks at start.
pub const ORPHAN_SCAN: Duration = Duration::from_secs(300);
/// Rows resumed per scan at most (bounds the handlers spawned at once; the rest wait for the
/// next scan).
pub const ORPHAN_BATCH: usize = 64;

/// The rows (by command id) a handler of this process is working on: a row is handled by one
/// handler at a time, whether it was claimed or is resumed.
#[derive(Debug, Clone, Default)]
pub(super) struct RowsInHand(Arc<Mutex<HashSet<String>>>);

/// A row in hand: its command id is in the set until this is dropped.
#[derive(Debug)]
pub(super) struct RowInHand {
    set: RowsInHand,
    id: String,
}

impl RowsInHand {
    /// Takes the row of `id` in hand, unless a handler already has it.
    pub fn begin(&self, id: &str) -> Option<RowInHand> {
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        set.insert(id.to_owned()).then(|| RowInHand {
            set: self.clone(),
            id: id.to_owned(),
        })
    }
}

impl Drop for RowInHand {
    fn drop(&mut self) {
        let mut set = self.set.0.lock().unwrap_or_else(|e| e.into_inner());
        set.remove(&self.id);
    }
}

/// What may go on a row's `reason` in clear: only the hub's own texts. Other errors may quote a
/// provider's answer, so they travel only inside the sealed `finished` event.
pub(super) fn clear_reason(error: &str) -> Option<String> {
    [RESTARTED_ERROR, SHUTDOWN_ERROR]
        .contains(&error)
        .then(|| error.to_owned())
}

impl CloudRoute {
    /// Resumes this hub's `executing` rows that no handler here has. Whether the rows could be
    /// read (if not, the caller tries again next round).
    pub(super) async fn resume_orphans(
        &self,
        rest: &Rest,
        hub_id: &str,
        cancel: &CancellationToken,
        handlers: &TaskTracker,
        in_hand: &RowsInHand,
    ) -> bool {
        let query = format!(
            "target_hub_id=eq.{hub_id}&status=eq.executing&select=command_id,source_device_id,last_seq&order=created_at.asc&limit={ORPHAN_BATCH}"
        );
        let rows = match rest.select::<Value>("remote_commands", &query).await {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(%error, "cloud route: reading this hub's executing rows failed");
                return false;
            }
        };
        for row in rows {
            let Some(guard) = row["command_id"].as_str().and_then(|id| in_hand.begin(id)) else {
                continue;
            };
            let route = self.clone();
            let rest = rest.clone();
            let cancel = cancel.clone();
            handlers.spawn(async move {
                route.resume(&rest, &row, &cancel).await;
                drop(guard);
            });
        }
        true
    }

    /// Ends one row left `executing`, from what the journal holds.
    async fn resume(&self, rest: &Rest, row: &Value, cancel: &CancellationToken) {
        let Some(command_id) = row["command_id"].as_str() else {
            return;
        };
        let sent = row["last_seq"].as_u64().unwrap_or(0);
        let mut cloud_row = Row {
            cloud: &self.cloud,
            rest,
            command_id,
            // Retried until the next scan would take it up again anyway.
            deadline_ms: now_ms() + ORPHAN_SCAN.as_millis() as i64,
            cancel,
        };
        let Ok(id) = Uuid::parse_str(command_id) else {
            cloud_row
                .complete("failed", Some("bad command id".into()))
                .await;
            return;
        };
        let record = match self.ctx.journal.command(id).await {
            Ok(Some(record)) => record,
            Ok(None) => {
                tracing::warn!(%command_id, "a relayed command left executing is not in the journal; failing it");
                cloud_row
                    .complete("failed", Some(RESTARTED_ERROR.into()))
                    .await;
                return;
            }
            Err(error) => {
                tracing::warn!(%command_id, %error, "reading a relayed command left executing failed");
                return;
            }
        };
        // The journal's command must be the one the row's device sent.
        let device = record.command.source_device_id.as_str();
        let device = match device.parse::<PublicKey>() {
            Ok(key) if row["source_device_id"].as_str() == Some(device) => key,
            _ => {
                cloud_row
                    .complete("failed", Some(super::REPLAYED.into()))
                    .await;
                return;
            }
        };
        cloud_row.deadline_ms = cloud_row.deadline_ms.max(record.command.expires_at_ms);
        tracing::info!(%command_id, after_seq = sent, status = record.status.name(), "resuming a relayed command left executing");
        if record.status.is_terminal() && record.last_seq <= sent {
            // Every event was sent; only the completion was not.
            let reason = clear_reason(record.error.as_deref().unwrap_or_default());
            cloud_row.complete(record.status.name(), reason).await;
            return;
        }
        self.stream_back(&cloud_row, id, &device, sent).await;
    }
}
