//! Writing one relayed command back: its stored events, sealed to the sending device, appended
//! to its row in batches of what is ready, then the row completed with the command's final
//! status. A row that ends in the cloud meanwhile (a device cancelled it) cancels the command
//! here.

use helix_mesh::{
    envelope::{self, EnvelopeError, EnvelopeKind, Header},
    pb::CommandStatus,
    proto_ext::now_ms,
};
use iroh::PublicKey;
use prost::Message;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    APPEND_BATCH, CONFLICTING_EVENTS, CloudRoute, EVENT_TTL_MS,
    resume::clear_reason,
    row::{GaveUp, Row},
};
use crate::{
    command::{EventKind, StoredEvent},
    executor::CancelError,
};

/// A batch of events sealed for the cloud.
struct Sealed {
    /// The append's `{"seq", "envelope"}` items.
    items: Vec<Value>,
    /// The last seq in the batch.
    last: u64,
    /// The command's final status and the reason that may go on the row in clear, when the
    /// batch holds its `finished` event.
    finished: Option<(CommandStatus, Option<String>)>,
}

impl CloudRoute {
    /// Streams the command's stored events after seq `after` (those up to it are in the cloud)
    /// to the row, sealed to the device, in batches of what is ready, then completes the row
    /// with the command's final status.
    pub(super) async fn stream_back(
        &self,
        cloud_row: &Row<'_>,
        id: Uuid,
        device: &PublicKey,
        after: u64,
    ) {
        let command_id = cloud_row.command_id;
        let mut last = after;
        loop {
            let events = match self.ctx.journal.events_after(id, last, APPEND_BATCH).await {
                Ok(events) => events,
                Err(error) => {
                    cloud_row
                        .complete("failed", Some(format!("journal: {error}")))
                        .await;
                    return;
                }
            };
            if events.is_empty() {
                if cloud_row.cancel.is_cancelled() {
                    // The hub stops and everything stored so far is written.
                    return;
                }
                if let Some(status) = self.wait_for_event(cloud_row, id, last).await {
                    self.cancel_ended(id, command_id, &status).await;
                    return;
                }
                continue;
            }
            // Sealed once: a retry of the append must send these very envelopes.
            let sealed = match self.seal(command_id, device, &events) {
                Ok(sealed) => sealed,
                Err(error) => {
                    cloud_row
                        .complete("failed", Some(format!("sealing an event: {error}")))
                        .await;
                    return;
                }
            };
            last = sealed.last;
            if let Err(gave_up) = cloud_row.append(&sealed.items).await {
                self.append_failed(cloud_row, id, gave_up).await;
                return;
            }
            if let Some((status, reason)) = sealed.finished {
                cloud_row.complete(status.name(), reason).await;
                return;
            }
        }
    }

    /// Seals `events` (at least one) to `device`, each under the command id and its seq.
    fn seal(
        &self,
        command_id: &str,
        device: &PublicKey,
        events: &[StoredEvent],
    ) -> Result<Sealed, EnvelopeError> {
        let mut sealed = Sealed {
            items: Vec::with_capacity(events.len()),
            last: 0,
            finished: None,
        };
        for event in events {
            let header = Header {
                kind: EnvelopeKind::Event,
                context: command_id.to_owned(),
                seq: event.seq,
                expires_at_ms: now_ms() + EVENT_TTL_MS,
            };
            let bytes = event.to_proto().encode_to_vec();
            let envelope = envelope::seal(&self.secret, device, &header, &bytes)?;
            sealed
                .items
                .push(json!({"seq": event.seq, "envelope": envelope}));
            sealed.last = event.seq;
            if let EventKind::Finished { status, error, .. } = &event.kind {
                sealed.finished = Some((status.to_status(), clear_reason(error)));
            }
        }
        Ok(sealed)
    }

    /// Acts on an append that did not get through: a conflict fails the row; a refusal most
    /// likely means a device ended the row, so the command is cancelled here.
    async fn append_failed(&self, cloud_row: &Row<'_>, id: Uuid, gave_up: GaveUp) {
        let command_id = cloud_row.command_id;
        match gave_up {
            GaveUp::Refused(error) if error.is_conflict() => {
                // The cloud holds other events under these seqs (another writer, or a hub
                // that lost its journal): the spoke cannot get a consistent stream.
                tracing::error!(%command_id, %error, "the cloud holds different events for this relayed command");
                cloud_row
                    .complete("failed", Some(CONFLICTING_EVENTS.into()))
                    .await;
            }
            GaveUp::Refused(error) => {
                // Most likely the row is no longer `executing`: a device cancelled it.
                let ended = match cloud_row.status().await {
                    Some(status) => (status != "executing").then_some(status),
                    None => (error.code() == Some("P0002")).then(|| "not executing".into()),
                };
                match ended {
                    Some(status) => self.cancel_ended(id, command_id, &status).await,
                    None => {
                        tracing::warn!(%command_id, %error, "the cloud refused a relayed command's events");
                    }
                }
            }
            // Logged where it was given up.
            GaveUp::Expired(_) | GaveUp::Stopping(_) => {}
        }
    }

    /// Waits for the command's next stored event, or the hub stopping (`None`). While the
    /// command is silent, reads its row every poll interval: `Some(status)` when the row is no
    /// longer `executing` (a device cancelled it).
    async fn wait_for_event(&self, cloud_row: &Row<'_>, id: Uuid, last: u64) -> Option<String> {
        let mut live = self.ctx.bus.subscribe_command(id);
        loop {
            // Checked after subscribing, so nothing committed in between is missed.
            let stored = self.ctx.journal.events_after(id, last, 1).await;
            if stored.map_or(true, |events| !events.is_empty()) {
                return None;
            }
            tokio::select! {
                _ = cloud_row.cancel.cancelled() => return None,
                _ = live.recv() => return None,
                _ = tokio::time::sleep(self.ctx.config.cloud.poll_interval) => {
                    match cloud_row.status().await {
                        Some(status) if status != "executing" => return Some(status),
                        _ => {}
                    }
                }
            }
        }
    }

    /// The row ended in the cloud while the command is here (a device cancelled it): nobody
    /// can receive more of it, so the executor cancels it (and aborts the provider's stream).
    async fn cancel_ended(&self, id: Uuid, command_id: &str, status: &str) {
        tracing::info!(%command_id, %status, "a relayed command was ended in the cloud; cancelling it");
        let reason = format!("cancelled in the cloud (the relayed row is {status})");
        match self.ctx.executor.cancel_because(id, Some(&reason)).await {
            Ok(done) => {
                tracing::debug!(%command_id, status = ?done.status, "cancelled a relayed command");
            }
            Err(CancelError::AlreadyFinished { .. }) => {}
            Err(error) => {
                tracing::warn!(%command_id, %error, "cancelling a relayed command failed");
            }
        }
    }
}
