//! The hub's side of the Supabase table relay: claim commands addressed to this hub, accept
//! only envelopes signed by a paired device, addressed here, unexpired and never seen before;
//! run them through the same executor and journal as any other command; write every event
//! back as an envelope sealed to the sending device; complete the row.
//!
//! Wake-ups: a signal on the `wake` channel (Supabase Realtime, when running) or the safety
//! poll. Correctness comes only from the rows: a missed wake-up costs at most one poll interval.

use std::{sync::Arc, time::Duration};

use helix_discovery::cloud::Cloud;
use helix_mesh::{
    envelope::{self, EnvelopeKind, Header},
    pb,
    proto_ext::now_ms,
};
use iroh::{PublicKey, SecretKey};
use prost::Message;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    bus::Bus,
    command::NewCommand,
    config::HubConfig,
    devices::Devices,
    executor::{Executor, SubmitError},
    journal::Journal,
};

/// Most events written back in one append call.
pub const APPEND_BATCH: usize = 64;
/// Commands claimed per round.
pub const CLAIM_BATCH: u32 = 8;
/// The reason a relayed command fails with when the cloud already holds other events under
/// the seqs the hub writes.
pub const CONFLICTING_EVENTS: &str =
    "the cloud already holds different events for this command; the hub stopped relaying it";
/// How long an event envelope stays valid for the spoke.
const EVENT_TTL_MS: i64 = 24 * 3600 * 1000;

/// What the relay worker needs.
#[derive(Debug, Clone)]
pub struct Relay {
    pub cloud: Cloud,
    pub secret: SecretKey,
    pub devices: Arc<Devices>,
    pub executor: Executor,
    pub journal: Journal,
    pub bus: Bus,
    pub config: Arc<HubConfig>,
    /// The current access token, for the Realtime client (refreshed here every round).
    pub token: tokio::sync::watch::Sender<String>,
}

impl Relay {
    /// Claims and runs commands until `cancel`: on every wake-up and every `poll`.
    pub async fn run(
        self,
        mut wake: mpsc::Receiver<()>,
        poll: Duration,
        cancel: CancellationToken,
    ) {
        let hub_id = self.secret.public().to_string();
        loop {
            match self.cloud.rest().await {
                Ok(Some((rest, session))) => loop {
                    self.token.send_if_modified(|t| {
                        let changed = *t != session.access_token;
                        if changed {
                            t.clone_from(&session.access_token);
                        }
                        changed
                    });
                    let claimed: Result<Vec<Value>, _> = rest
                        .rpc(
                            "claim_remote_commands",
                            &json!({"p_hub_id": hub_id, "p_limit": CLAIM_BATCH}),
                        )
                        .await;
                    match claimed {
                        Ok(rows) if rows.is_empty() => break,
                        Ok(rows) => {
                            for row in rows {
                                let relay = self.clone();
                                let rest = rest.clone();
                                tokio::spawn(async move { relay.handle(&rest, row).await });
                            }
                        }
                        Err(error) => {
                            tracing::warn!(%error, "claiming relayed commands failed");
                            break;
                        }
                    }
                },
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "table relay: no usable cloud session"),
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = wake.recv() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// One claimed row: verify, run, stream back, complete.
    async fn handle(&self, rest: &helix_discovery::rest::Rest, row: Value) {
        let Some(command_id) = row["command_id"].as_str().map(str::to_owned) else {
            return;
        };
        let complete = |status: &'static str, reason: Option<String>| {
            let id = command_id.clone();
            async move {
                let done: Result<Value, _> = rest
                    .rpc(
                        "complete_remote_command",
                        &json!({"p_command_id": id, "p_status": status, "p_reason": reason}),
                    )
                    .await;
                if let Err(error) = done {
                    tracing::warn!(command_id = %id, %error, "completing a relayed command failed");
                }
            }
        };
        let accepted = self.accept(&command_id, &row).await;
        let (device, cmd) = match accepted {
            Ok(found) => found,
            Err(reason) => {
                tracing::warn!(%command_id, %reason, "refused a relayed command");
                complete("failed", Some(reason)).await;
                return;
            }
        };
        let id = cmd.command_id;
        match self.executor.submit(cmd).await {
            Ok(_) => {}
            Err(SubmitError::AlreadyExists(_)) => {
                complete(
                    "failed",
                    Some("replayed envelope: this command id was already used".into()),
                )
                .await;
                return;
            }
            Err(other) => {
                complete(
                    "failed",
                    Some(format!("the hub could not queue it: {other}")),
                )
                .await;
                return;
            }
        }
        // Stream the stored events back, sealed to the device, in batches of what is ready.
        let mut last = 0u64;
        loop {
            let events = match self.journal.events_after(id, last, APPEND_BATCH).await {
                Ok(events) => events,
                Err(error) => {
                    complete("failed", Some(format!("journal: {error}"))).await;
                    return;
                }
            };
            if events.is_empty() {
                let mut live = self.bus.subscribe_command(id);
                // Re-check after subscribing, then wait for the next event.
                if self
                    .journal
                    .events_after(id, last, 1)
                    .await
                    .map(|e| e.is_empty())
                    .unwrap_or(false)
                {
                    let _ = tokio::time::timeout(Duration::from_secs(30), live.recv()).await;
                }
                continue;
            }
            let mut batch = Vec::with_capacity(events.len());
            let mut finished = None;
            for event in &events {
                let header = Header {
                    kind: EnvelopeKind::Event,
                    context: command_id.clone(),
                    seq: event.seq,
                    expires_at_ms: now_ms() + EVENT_TTL_MS,
                };
                let bytes = event.to_proto().encode_to_vec();
                match envelope::seal(&self.secret, &device, &header, &bytes) {
                    Ok(sealed) => batch.push(json!({"seq": event.seq, "envelope": sealed})),
                    Err(error) => {
                        complete("failed", Some(format!("sealing an event: {error}"))).await;
                        return;
                    }
                }
                last = event.seq;
                if let crate::command::EventKind::Finished { status, .. } = &event.kind {
                    finished = Some(status.to_status());
                }
            }
            let appended: Result<Value, _> = rest
                .rpc(
                    "append_remote_command_events",
                    &json!({"p_command_id": command_id, "p_events": batch}),
                )
                .await;
            if let Err(error) = appended {
                if error.is_conflict() {
                    // The cloud holds other events under these seqs (another writer, or a hub
                    // that lost its journal): the spoke cannot get a consistent stream.
                    tracing::error!(%command_id, %error, "the cloud holds different events for this relayed command");
                    complete("failed", Some(CONFLICTING_EVENTS.into())).await;
                } else {
                    tracing::warn!(%command_id, %error, "appending relayed events failed");
                }
                return;
            }
            if let Some(status) = finished {
                complete(status.name(), None).await;
                return;
            }
        }
    }

    /// The checks a relayed envelope must pass; the refusal reason otherwise.
    async fn accept(
        &self,
        command_id: &str,
        row: &Value,
    ) -> Result<(PublicKey, NewCommand), String> {
        let text = row["envelope"].as_str().ok_or("the row has no envelope")?;
        let opened = envelope::open(&self.secret, text, now_ms(), |k| self.devices.is_paired(k))
            .map_err(|e| e.to_string())?;
        if opened.header.kind != EnvelopeKind::Command || opened.header.context != command_id {
            return Err("envelope does not belong to this row".into());
        }
        if row["source_device_id"].as_str() != Some(opened.sender.to_string().as_str()) {
            return Err("envelope sender differs from the row's source device".into());
        }
        let request = pb::ExecuteRequest::decode(opened.plaintext.as_slice())
            .map_err(|e| format!("envelope content is not a command: {e}"))?;
        if request.command_id != command_id {
            return Err("envelope command id differs from the row".into());
        }
        let id = Uuid::parse_str(command_id).map_err(|_| "bad command id".to_owned())?;
        if self
            .journal
            .command(id, false)
            .await
            .map_err(|e| e.to_string())?
            .is_some()
        {
            return Err("replayed envelope: this command id was already used".into());
        }
        let config = self.config.clone();
        let cmd = NewCommand::from_request(
            request,
            |agent| config.default_provider(agent),
            Some(opened.sender.to_string()),
        )
        .map_err(|e| format!("invalid command: {e}"))?;
        Ok((opened.sender, cmd))
    }
}
