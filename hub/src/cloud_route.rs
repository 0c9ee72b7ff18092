//! The hub's side of the cloud route, commands that travel through the Supabase tables (a
//! "relayed command" below is one of them): claim commands addressed to this hub, accept only
//! envelopes signed by a paired device, addressed here, unexpired and never seen before; run
//! them through the same executor and journal as any other command; write every event back as
//! an envelope sealed to the sending device; complete the row.
//!
//! Wake-ups: a signal on the `wake` channel (Supabase Realtime, when running) or the safety
//! poll. Correctness comes only from the rows: a missed wake-up costs at most one poll interval.
//!
//! Appending events and completing the row are retried while the cloud is unreachable or
//! failing (see the `row` module); a refusal is acted on at once.
//!
//! A device cancels a relayed command by completing its row `cancelled`. The hub notices when
//! its next append is refused (the row is no longer `executing`), or, while the command is
//! silent, by reading the row every poll interval; it then cancels the command in its
//! executor, which aborts the provider's stream.
//!
//! Rows this hub left `executing` (it died, or gave up on a failing cloud) are found at start
//! and every [`ORPHAN_SCAN`], and ended from the journal (see the `resume` module).

mod resume;
mod row;
mod stream;

use std::{path::Path, sync::Arc, time::Duration};

use helix_discovery::{cloud::Cloud, realtime::RealtimeConfig};
use helix_mesh::{
    envelope::{self, EnvelopeError, EnvelopeKind},
    pb,
    proto_ext::now_ms,
};
use iroh::{PublicKey, SecretKey};
use prost::Message;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_util::{
    sync::CancellationToken,
    task::{AbortOnDropHandle, TaskTracker},
};
use uuid::Uuid;

use self::{resume::RowsInHand, row::Row};
pub use self::{
    resume::{ORPHAN_BATCH, ORPHAN_SCAN},
    row::{RETRY_FIRST, RETRY_MAX},
};
use crate::{
    background::BackgroundTask,
    command::{DEFAULT_TTL_MS, InvalidCommand, NewCommand},
    context::HubContext,
    executor::SubmitError,
    journal::JournalError,
};

/// Most events written back in one append call.
pub const APPEND_BATCH: usize = 64;
/// Commands claimed per round.
pub const CLAIM_BATCH: u32 = 8;
/// The reason a relayed command fails with when the cloud already holds other events under
/// the seqs the hub writes.
pub const CONFLICTING_EVENTS: &str =
    "the cloud already holds different events for this command; the hub stopped relaying it";
/// The reason a row gets when its command id was used before (a replayed envelope).
pub const REPLAYED: &str = "replayed envelope: this command id was already used";
/// How long an event envelope stays valid for the spoke.
const EVENT_TTL_MS: i64 = 24 * 3600 * 1000;
/// How long a stopping hub waits for its cloud route handlers to write what their commands
/// ended with (one try per call: retries stop with the hub).
pub const STOP_GRACE: Duration = Duration::from_secs(10);

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
    NotACommand(#[source] prost::DecodeError),
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

/// A running cloud route: its worker (and Realtime, when running) and its wake-up channel.
#[derive(Debug)]
#[must_use = "dropping a CloudRouteHandle aborts the cloud route"]
pub struct CloudRouteHandle {
    /// Kept here so the worker's channel stays open (Realtime, when running, sends on it too).
    wake: mpsc::Sender<()>,
    task: BackgroundTask,
}

impl CloudRouteHandle {
    /// Wakes the worker now (what a Realtime insert notification does).
    pub fn wake(&self) {
        let _ = self.wake.try_send(());
    }

    /// Stops claiming, waits up to [`STOP_GRACE`] for the relayed commands' handlers, then for
    /// Realtime.
    pub async fn stop(self) {
        self.task.stop().await;
    }
}

/// Starts the cloud route when `data_dir` has cloud settings (`None` without them, or when
/// they cannot be read), with Realtime wake-ups when there is a session. Cancelling `cancel`
/// stops both, like [`CloudRouteHandle::stop`].
pub async fn spawn(
    context: Arc<HubContext>,
    secret: SecretKey,
    data_dir: &Path,
    cancel: CancellationToken,
) -> Option<CloudRouteHandle> {
    let cloud = Cloud::in_dir(data_dir);
    let supabase = match cloud.config() {
        Ok(Some(supabase)) => supabase,
        Ok(None) => return None,
        Err(error) => {
            tracing::warn!(%error, "cloud settings unreadable: no cloud route");
            return None;
        }
    };
    let (wake, wake_rx) = mpsc::channel(1);
    let token = match cloud.rest().await {
        Ok(Some((_, session))) => session.access_token,
        _ => String::new(),
    };
    let (token_tx, token_rx) = watch::channel(token.clone());
    // Realtime is only a wake-up: without it (or a session) the safety poll runs.
    let realtime = if token.is_empty() {
        None
    } else {
        match RealtimeConfig::from_supabase(&supabase, &context.hub_id) {
            Ok(rt) => Some(AbortOnDropHandle::new(helix_discovery::realtime::spawn(
                rt,
                token_rx,
                wake.clone(),
                cancel.clone(),
            ))),
            Err(error) => {
                tracing::warn!(%error, "no Realtime wake-ups; the safety poll carries on");
                None
            }
        }
    };
    let poll = context.config.cloud.poll_interval;
    let worker = CloudRoute {
        ctx: context,
        cloud,
        secret,
        token: token_tx,
    };
    let task = BackgroundTask::spawn(cancel, |cancel| async move {
        worker.run(wake_rx, poll, cancel).await;
        if let Some(rt) = realtime {
            let _ = rt.await;
        }
    });
    Some(CloudRouteHandle { wake, task })
}

/// What the cloud route's worker and its handlers share.
#[derive(Debug, Clone)]
struct CloudRoute {
    ctx: Arc<HubContext>,
    cloud: Cloud,
    secret: SecretKey,
    /// The current access token, for the Realtime client (refreshed here every round).
    token: watch::Sender<String>,
}

impl CloudRoute {
    /// Claims and runs commands until `cancel`: on every wake-up and every `poll`. Then waits
    /// up to [`STOP_GRACE`] for the commands' handlers.
    pub async fn run(
        self,
        mut wake: mpsc::Receiver<()>,
        poll: Duration,
        cancel: CancellationToken,
    ) {
        let handlers = TaskTracker::new();
        self.claim_until(&mut wake, poll, &cancel, &handlers).await;
        handlers.close();
        if tokio::time::timeout(STOP_GRACE, handlers.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                handlers = handlers.len(),
                "cloud route: stopped waiting for relayed commands still writing to the cloud"
            );
        }
    }

    async fn claim_until(
        &self,
        wake: &mut mpsc::Receiver<()>,
        poll: Duration,
        cancel: &CancellationToken,
        handlers: &TaskTracker,
    ) {
        let hub_id = self.secret.public().to_string();
        let in_hand = RowsInHand::default();
        // Due at once: rows left `executing` by this hub's previous run.
        let mut next_scan = tokio::time::Instant::now();
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
                    if tokio::time::Instant::now() >= next_scan
                        && self
                            .resume_orphans(&rest, &hub_id, cancel, handlers, &in_hand)
                            .await
                    {
                        next_scan = tokio::time::Instant::now() + ORPHAN_SCAN;
                    }
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
                                // A claimed row was `pending`: no handler can have it yet.
                                let guard =
                                    row["command_id"].as_str().and_then(|id| in_hand.begin(id));
                                let route = self.clone();
                                let rest = rest.clone();
                                let cancel = cancel.clone();
                                handlers.spawn(async move {
                                    route.handle(&rest, row, &cancel).await;
                                    drop(guard);
                                });
                            }
                        }
                        Err(error) => {
                            tracing::warn!(%error, "claiming relayed commands failed");
                            break;
                        }
                    }
                },
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "cloud route: no usable cloud session"),
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = wake.recv() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// One claimed row: verify, run, stream back, complete.
    async fn handle(
        &self,
        rest: &helix_discovery::rest::Rest,
        row: Value,
        cancel: &CancellationToken,
    ) {
        let Some(command_id) = row["command_id"].as_str().map(str::to_owned) else {
            return;
        };
        // Until the envelope is opened the command's expiry is unknown: a refusal is written
        // back for at most as long as a command lives by default.
        let mut cloud_row = Row {
            cloud: &self.cloud,
            rest,
            command_id: &command_id,
            deadline_ms: now_ms() + DEFAULT_TTL_MS,
            cancel,
        };
        let accepted = self.accept(&command_id, &row).await;
        let (device, cmd) = match accepted {
            Ok(found) => found,
            Err(reason) => {
                tracing::warn!(%command_id, %reason, "refused a relayed command");
                cloud_row.complete("failed", Some(reason.to_string())).await;
                return;
            }
        };
        cloud_row.deadline_ms = cmd.expires_at_ms;
        let id = cmd.command_id;
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
        self.stream_back(&cloud_row, id, &device, 0).await;
    }

    /// The checks a relayed envelope must pass; why it is refused otherwise.
    async fn accept(
        &self,
        command_id: &str,
        row: &Value,
    ) -> Result<(PublicKey, NewCommand), Refusal> {
        let text = row["envelope"].as_str().ok_or(Refusal::NoEnvelope)?;
        let opened = envelope::open(&self.secret, text, now_ms(), |k| {
            self.ctx.devices.is_paired(k)
        })?;
        if opened.header.kind != EnvelopeKind::Command || opened.header.context != command_id {
            return Err(Refusal::OtherRow);
        }
        if row["source_device_id"].as_str() != Some(opened.sender.to_string().as_str()) {
            return Err(Refusal::OtherSender);
        }
        let request = pb::ExecuteRequest::decode(opened.plaintext.as_slice())
            .map_err(Refusal::NotACommand)?;
        if request.command_id != command_id {
            return Err(Refusal::OtherCommandId);
        }
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
