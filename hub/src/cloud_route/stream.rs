//! Writing one command's events to its row: its stored events, each sealed under the command's
//! content key and signed by the hub (bound to the command and its seq), appended in batches of
//! what is ready (at most [`APPEND_BATCH`] events and [`APPEND_BYTES`] of envelope text per
//! call), then the row completed with the command's final status. A row that ends in the cloud
//! meanwhile (a device cancelled it) cancels the command here.

use helix_mesh::{
    cloud_payload::EventPayload,
    envelope_v2::{self, ContentKey, ContentKind},
    pb::CommandStatus,
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    CONFLICTING_EVENTS, CloudRoute,
    resume::clear_reason,
    row::{GaveUp, Row},
};
use crate::{
    command::{EventKind, StoredEvent},
    executor::CancelError,
};

/// Most events in one append call (what `append_cloud_events` accepts).
pub const APPEND_BATCH: usize = 64;
/// Most envelope text in one append call (what `append_cloud_events` accepts): a batch of
/// ready events larger than this goes in several calls.
pub const APPEND_BYTES: usize = 4 * 1024 * 1024;

/// Events sealed for the cloud.
#[derive(Debug, Default)]
struct Sealed {
    /// The append calls' `{"seq", "envelope"}` items, each within the bounds.
    batches: Vec<Vec<Value>>,
    /// The last seq sealed.
    last: u64,
    /// The command's final status and the reason that may go on the row in clear, when the
    /// events hold its `finished` event.
    finished: Option<(CommandStatus, Option<String>)>,
}

impl Sealed {
    /// Adds one envelope, starting a new batch when the current one is full.
    fn push(&mut self, seq: u64, envelope: String) {
        let bytes = |batch: &Vec<Value>| -> usize {
            batch
                .iter()
                .map(|item| item["envelope"].as_str().map_or(0, str::len))
                .sum()
        };
        let fits = self.batches.last().is_some_and(|batch| {
            batch.len() < APPEND_BATCH && bytes(batch) + envelope.len() <= APPEND_BYTES
        });
        if !fits {
            self.batches.push(Vec::new());
        }
        if let Some(batch) = self.batches.last_mut() {
            batch.push(json!({"seq": seq, "envelope": envelope}));
        }
        self.last = seq;
    }
}

/// Why an event could not be sealed.
#[derive(Debug, thiserror::Error)]
enum SealEventError {
    #[error("event {0} has no kind")]
    NoKind(u64),
    #[error(transparent)]
    Payload(#[from] helix_mesh::cloud_payload::PayloadError),
    #[error(transparent)]
    Envelope(#[from] helix_mesh::envelope_v2::EnvelopeError),
}

impl CloudRoute {
    /// Streams the command's stored events after seq `after` (those up to it are in the cloud)
    /// to the row, sealed under `key`, in batches of what is ready, then completes the row with
    /// the command's final status.
    pub(super) async fn stream_back(
        &self,
        cloud_row: &Row<'_>,
        id: Uuid,
        key: &ContentKey,
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
            // Sealed once: a retry of an append must send these very envelopes.
            let sealed = match self.seal(command_id, key, &events) {
                Ok(sealed) => sealed,
                Err(error) => {
                    cloud_row
                        .complete("failed", Some(format!("sealing an event: {error}")))
                        .await;
                    return;
                }
            };
            last = sealed.last;
            for batch in &sealed.batches {
                if let Err(gave_up) = cloud_row.append(batch).await {
                    self.append_failed(cloud_row, id, gave_up).await;
                    return;
                }
            }
            if let Some((status, reason)) = sealed.finished {
                cloud_row.complete(status.name(), reason).await;
                return;
            }
        }
    }

    /// Seals `events` under `key`, each bound to the command id and its seq.
    fn seal(
        &self,
        command_id: &str,
        key: &ContentKey,
        events: &[StoredEvent],
    ) -> Result<Sealed, SealEventError> {
        let mut sealed = Sealed::default();
        for event in events {
            let payload = EventPayload::from_event(&event.to_proto())
                .ok_or(SealEventError::NoKind(event.seq))?;
            let envelope = envelope_v2::seal_content(
                &self.secret,
                key,
                ContentKind::Event,
                command_id,
                event.seq,
                &payload.to_json()?,
            )?;
            sealed.push(event.seq, envelope);
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
                // The cloud holds other events under these seqs (a hub that lost its journal):
                // the devices cannot get a consistent stream.
                tracing::error!(%command_id, %error, "the cloud holds different events for this command");
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
                        tracing::warn!(%command_id, %error, "the cloud refused a command's events");
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

    /// The row ended in the cloud while the command is here (a device cancelled it): the
    /// executor cancels it (and aborts the provider's stream).
    async fn cancel_ended(&self, id: Uuid, command_id: &str, status: &str) {
        tracing::info!(%command_id, %status, "a command was ended in the cloud; cancelling it");
        let reason = format!("cancelled in the cloud (its row is {status})");
        match self.ctx.executor.cancel_because(id, Some(&reason)).await {
            Ok(done) => {
                tracing::debug!(%command_id, status = ?done.status, "cancelled a command ended in the cloud");
            }
            Err(CancelError::AlreadyFinished { .. }) => {}
            Err(error) => {
                tracing::warn!(%command_id, %error, "cancelling a command ended in the cloud failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_hold_at_most_64_events_and_4_mib_of_envelopes() {
        let mut sealed = Sealed::default();
        for seq in 1..=130 {
            sealed.push(seq, "e".repeat(10));
        }
        let sizes: Vec<usize> = sealed.batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, [64, 64, 2]);
        assert_eq!(sealed.last, 130);

        let mut sealed = Sealed::default();
        let big = 1_400_000;
        for seq in 1..=5 {
            sealed.push(seq, "e".repeat(big));
        }
        let sizes: Vec<usize> = sealed.batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 2, 1], "three 1.4 MB envelopes would pass 4 MiB");
        let seqs: Vec<u64> = sealed
            .batches
            .iter()
            .flatten()
            .map(|item| item["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5], "in order, none lost");
    }
}
