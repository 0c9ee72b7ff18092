//! Rows this hub left `executing` (both origins: claimed from the cloud or mirrored): it was
//! killed or restarted while it wrote them, or it gave up writing to a failing cloud (at the
//! command's expiry, or when it stopped). The claim only takes `pending` rows, so without this a
//! device following one would wait for nothing.
//!
//! At start, and every three safety polls after (`CloudSettings::orphan_scan`, 15 minutes:
//! one small query, 4 an hour), the cloud route reads its own `executing` rows of
//! `cloud_commands` and resumes each one no handler of this process works on (as many as there
//! are free handlers; the rest wait for the next scan), from the journal:
//! - a command the journal has: published first if the row has no prompt yet (the hub died
//!   between claim and publish), then its events after the row's `last_seq` (never sent, so
//!   sealed now under the same derived content key; those up to `last_seq` were sent and are
//!   not sealed again: the cloud refuses a re-sent seq with another envelope) are appended,
//!   following the command live if it still runs (pending commands run again after a
//!   restart), and the row is completed with the journal's final status. A command that was
//!   running when the hub died is finished `failed` with [`RESTARTED_ERROR`] by the journal,
//!   and that reason goes on the row too;
//! - a command the journal does not have (the hub died between claim and queueing, or gave up
//!   refusing it): completed `failed` with [`RESTARTED_ERROR`].

use helix_discovery::rest::Rest;
use helix_mesh::proto_ext::now_ms;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    CloudRoute,
    publish::{NotPublished, content_key},
    row::Row,
};
use crate::{executor::SHUTDOWN_ERROR, journal::RESTARTED_ERROR};

/// Rows read per scan at most (no more than there can be handlers).
pub const ORPHAN_BATCH: usize = super::MAX_HANDLERS;

/// What may go on a row's `reason` in clear: only the hub's own texts. Other errors may quote a
/// provider's answer, so they travel only inside the encrypted `finished` event.
pub(super) fn clear_reason(error: &str) -> Option<String> {
    [RESTARTED_ERROR, SHUTDOWN_ERROR]
        .contains(&error)
        .then(|| error.to_owned())
}

impl CloudRoute {
    /// Resumes this hub's `executing` rows that no handler here has. Whether the rows could be
    /// read (if not, the caller tries again next round).
    pub(super) async fn resume_orphans(&self, rest: &Rest, cancel: &CancellationToken) -> bool {
        let query = format!(
            "hub_id=eq.{}&status=eq.executing&select=command_id,source_device_id,origin,last_seq&order=created_at.asc&limit={ORPHAN_BATCH}",
            self.caller.hub_id
        );
        let rows = match rest.select::<Value>("cloud_commands", &query).await {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(%error, "cloud route: reading this hub's executing rows failed");
                return false;
            }
        };
        for row in rows {
            let Some(guard) = row["command_id"]
                .as_str()
                .and_then(|id| self.handlers.begin(id))
            else {
                continue;
            };
            let Some(permit) = self.handlers.free_permits(1).pop() else {
                tracing::debug!("cloud route: no free handler; the next scan resumes the rest");
                break;
            };
            let route = self.clone();
            let rest = rest.clone();
            let cancel = cancel.clone();
            self.handlers.spawn(permit, guard, async move {
                route.resume(&rest, &row, &cancel).await;
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
            caller: &self.caller,
            command_id,
            // Retried until the next scan would take it up again anyway.
            deadline_ms: now_ms() + self.ctx.config.cloud.orphan_scan().as_millis() as i64,
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
                tracing::warn!(%command_id, "a command left executing in the cloud is not in the journal; failing it");
                cloud_row
                    .complete("failed", Some(RESTARTED_ERROR.into()))
                    .await;
                return;
            }
            Err(error) => {
                tracing::warn!(%command_id, %error, "reading a command left executing failed");
                return;
            }
        };
        // The journal's command must be the one the row names: sent by the row's device, or
        // (a mirrored row) by this hub's local listener.
        let Some(source) = row["source_device_id"].as_str() else {
            return;
        };
        let journal_source = record.command.source_device_id.as_str();
        let local = row["origin"] == "hub" && source == self.caller.hub_id;
        if source != journal_source && !local {
            cloud_row
                .complete("failed", Some(super::REPLAYED.into()))
                .await;
            return;
        }
        cloud_row.deadline_ms = cloud_row.deadline_ms.max(record.command.expires_at_ms);
        tracing::info!(%command_id, after_seq = sent, status = record.status.name(), "resuming a command left executing in the cloud");
        let Some(unpublished) = self.is_unpublished(rest, command_id).await else {
            // The next scan tries again.
            return;
        };
        let key = if unpublished {
            match self.publish(&cloud_row, &record.command, source).await {
                Ok(key) => key,
                Err(NotPublished::Refused(reason)) => {
                    cloud_row.complete("failed", Some(reason)).await;
                    return;
                }
                Err(NotPublished::GaveUp) => return,
            }
        } else {
            content_key(&self.secret, command_id)
        };
        if record.status.is_terminal() && record.last_seq <= sent {
            // Every event was sent; only the completion was not.
            let reason = clear_reason(record.error.as_deref().unwrap_or_default());
            cloud_row.complete(record.status.name(), reason).await;
            return;
        }
        self.stream_back(&cloud_row, id, &key, sent).await;
    }

    /// Whether the row has no prompt yet (`None` when the read fails).
    async fn is_unpublished(&self, rest: &Rest, command_id: &str) -> Option<bool> {
        let query = format!("command_id=eq.{command_id}&prompt=is.null&select=command_id");
        match rest.select::<Value>("cloud_commands", &query).await {
            Ok(rows) => Some(!rows.is_empty()),
            Err(error) => {
                tracing::warn!(%command_id, %error, "reading whether a command was published failed");
                None
            }
        }
    }
}
