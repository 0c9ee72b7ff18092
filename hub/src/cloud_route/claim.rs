//! Commands devices send through the cloud: claim them (as many as there are free handlers),
//! open each one's sealed envelope, accept it only from a paired device, for this row, never
//! seen before; publish it to every paired device; run it through the same executor and journal
//! as any other command; stream its events and complete its row.

use helix_discovery::rest::Rest;
use helix_mesh::{
    cloud_payload::{CommandPayload, PayloadError},
    envelope_v2::{self, EnvelopeError, SealedKind},
    proto_ext::now_ms,
};
use iroh::PublicKey;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    CLAIM_BATCH, CloudRoute, REPLAYED,
    claim_token::{Registration, register},
    publish::NotPublished,
    row::Row,
};
use crate::{
    command::{DEFAULT_TTL_MS, InvalidCommand, NewCommand},
    executor::SubmitError,
    journal::JournalError,
};

/// Why a claimed row's envelope is refused; the text goes on the row as its reason.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("the row has no envelope")]
    NoEnvelope,
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("envelope does not belong to this row")]
    OtherRow,
    #[error("envelope sender differs from the row's source device")]
    OtherSender,
    #[error("envelope content is not a command: {0}")]
    NotACommand(#[source] PayloadError),
    #[error("envelope command id differs from the row")]
    OtherCommandId,
    #[error("bad command id")]
    BadCommandId(#[source] uuid::Error),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("{}", REPLAYED)]
    Replayed,
    #[error("invalid command: {0}")]
    Invalid(#[source] InvalidCommand),
}

/// How a claim round ended.
enum Round {
    /// No more pending rows (or a failure, logged): wait for a wake-up or the poll.
    Done,
    /// The cloud refuses this hub's claim token (logged): the cloud route stops.
    Refused,
    /// The hub stops.
    Stopped,
}

impl CloudRoute {
    /// Claims and runs commands until `claims` (the hub stops, or starts to): on every wake-up
    /// and every poll (`[cloud] poll_interval` while Realtime is down, `safety_poll` while it
    /// listens). Looks for orphaned rows at start and every three safety polls. `false` when
    /// the cloud refused the claim token.
    pub(super) async fn claim_until(
        &self,
        wake: &mut mpsc::Receiver<()>,
        realtime: &watch::Receiver<bool>,
        claims: &CancellationToken,
        cancel: &CancellationToken,
    ) -> bool {
        // Due at once: rows left `executing` by this hub's previous run.
        let mut next_scan = tokio::time::Instant::now();
        loop {
            match self.cloud.rest().await {
                Ok(Some((rest, session))) => {
                    self.access_token.send_if_modified(|t| {
                        let changed = *t != session.access_token;
                        if changed {
                            t.clone_from(&session.access_token);
                        }
                        changed
                    });
                    if tokio::time::Instant::now() >= next_scan
                        && self.resume_orphans(&rest, cancel).await
                    {
                        next_scan =
                            tokio::time::Instant::now() + self.ctx.config.cloud.orphan_scan();
                    }
                    match self.claim_round(&rest, claims, cancel).await {
                        Round::Done => {}
                        Round::Refused => return false,
                        Round::Stopped => return true,
                    }
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "cloud route: no usable cloud session"),
            }
            let cloud = &self.ctx.config.cloud;
            let poll = match *realtime.borrow() {
                true => cloud.realtime_poll(),
                false => cloud.poll_interval,
            };
            tokio::select! {
                _ = claims.cancelled() => return true,
                _ = wake.recv() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Claims pending rows, as many at a time as there are free handlers (waiting for one),
    /// until none is left.
    async fn claim_round(
        &self,
        rest: &Rest,
        claims: &CancellationToken,
        cancel: &CancellationToken,
    ) -> Round {
        loop {
            let Some(first) = self.handlers.permit(claims).await else {
                return Round::Stopped;
            };
            let mut permits = vec![first];
            permits.extend(self.handlers.free_permits(CLAIM_BATCH - 1));
            let limit = permits.len();
            let args = self.caller.args(json!({"p_limit": limit}));
            let claimed: Result<Vec<Value>, _> = rest.rpc("claim_cloud_commands", &args).await;
            let rows = match claimed {
                Ok(rows) => rows,
                Err(error) if error.is_permission_denied() => {
                    // Signed in to another account since, or the registration is gone:
                    // register again (that logs a refusal).
                    tracing::warn!(%error, "the cloud refused this hub's claim; registering again");
                    let again = register(
                        &self.cloud,
                        &self.caller,
                        &self.data_dir,
                        self.ctx.config.cloud.poll_interval,
                        claims,
                    );
                    match again.await {
                        Registration::Registered => continue,
                        Registration::Refused => return Round::Refused,
                        Registration::Stopped => return Round::Stopped,
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "claiming cloud commands failed");
                    return Round::Done;
                }
            };
            let full = rows.len() >= limit;
            for row in rows {
                // A claimed row was `pending`: no handler can have it yet.
                let (Some(permit), Some(guard)) = (
                    permits.pop(),
                    row["command_id"]
                        .as_str()
                        .and_then(|id| self.handlers.begin(id)),
                ) else {
                    continue;
                };
                let route = self.clone();
                let rest = rest.clone();
                let cancel = cancel.clone();
                self.handlers.spawn(permit, guard, async move {
                    route.handle(&rest, row, &cancel).await;
                });
            }
            if !full {
                return Round::Done;
            }
        }
    }

    /// One claimed row: verify, publish, run, stream back, complete.
    async fn handle(&self, rest: &Rest, row: Value, cancel: &CancellationToken) {
        let Some(command_id) = row["command_id"].as_str().map(str::to_owned) else {
            return;
        };
        // Until the envelope is opened the command's expiry is unknown: a refusal is written
        // back for at most as long as a command lives by default.
        let mut cloud_row = Row {
            cloud: &self.cloud,
            rest,
            caller: &self.caller,
            command_id: &command_id,
            deadline_ms: now_ms() + DEFAULT_TTL_MS,
            cancel,
        };
        let (device, cmd) = match self.accept(&command_id, &row).await {
            Ok(found) => found,
            Err(reason) => {
                tracing::warn!(%command_id, %reason, "refused a cloud command");
                cloud_row.complete("failed", Some(reason.to_string())).await;
                return;
            }
        };
        cloud_row.deadline_ms = cmd.expires_at_ms;
        let id = cmd.command_id;
        let key = match self.publish(&cloud_row, &cmd, &device.to_string()).await {
            Ok(key) => key,
            Err(NotPublished::Refused(reason)) => {
                cloud_row.complete("failed", Some(reason)).await;
                return;
            }
            // Still `executing`: the orphan scan takes it up again.
            Err(NotPublished::GaveUp) => return,
        };
        match self.ctx.executor.submit(cmd).await {
            Ok(_) => {}
            Err(SubmitError::AlreadyExists(_)) => {
                cloud_row.complete("failed", Some(REPLAYED.into())).await;
                return;
            }
            Err(other) => {
                cloud_row
                    .complete(
                        "failed",
                        Some(format!("the hub could not queue it: {other}")),
                    )
                    .await;
                return;
            }
        }
        self.stream_back(&cloud_row, id, &key, 0).await;
    }

    /// The checks a cloud command's envelope must pass; why it is refused otherwise.
    async fn accept(
        &self,
        command_id: &str,
        row: &Value,
    ) -> Result<(PublicKey, NewCommand), Refusal> {
        let text = row["envelope"].as_str().ok_or(Refusal::NoEnvelope)?;
        let opened = envelope_v2::open_sealed(&self.secret, text, now_ms().unsigned_abs(), |k| {
            self.ctx.devices.is_paired(k)
        })?;
        if opened.header.kind != SealedKind::Command || opened.header.context != command_id {
            return Err(Refusal::OtherRow);
        }
        if row["source_device_id"].as_str() != Some(opened.sender.to_string().as_str()) {
            return Err(Refusal::OtherSender);
        }
        let payload = CommandPayload::from_json(&opened.plaintext).map_err(Refusal::NotACommand)?;
        if payload.command_id != command_id {
            return Err(Refusal::OtherCommandId);
        }
        let request = payload.into_request().map_err(Refusal::NotACommand)?;
        let id = Uuid::parse_str(command_id).map_err(Refusal::BadCommandId)?;
        if self.ctx.journal.command(id).await?.is_some() {
            return Err(Refusal::Replayed);
        }
        let config = self.ctx.config.clone();
        let cmd = NewCommand::from_request(
            request,
            |agent| config.default_provider(agent),
            Some(opened.sender.to_string()),
        )
        .map_err(Refusal::Invalid)?;
        Ok((opened.sender, cmd))
    }
}
