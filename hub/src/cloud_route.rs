//! The hub's side of the cloud route (v2, `cloud_commands`): commands that travel through the
//! Supabase tables, readable by every paired device.
//!
//! When the route starts it loads (or creates) the hub's claim token and registers the hub
//! with it (`claim_token`); every hub call after proves the token. Then, side by side until
//! the hub stops:
//! - `claim`: commands devices sent through the cloud are claimed, opened (sealed by a paired
//!   device to this hub, for this row, never seen before), published, run through the same
//!   executor and journal as any other command, streamed and completed;
//! - `mirror`: every command accepted over iroh or the local listener is published, streamed
//!   and completed too, so the cloud holds one history of everything;
//! - `retention`: finished commands past `[cloud] retention_days` are pruned daily;
//! - `pairing`: pairing requests devices sealed to this hub in `cloud_pairings` are answered
//!   at the hub's pairing desk (`crate::cloud_pairing`);
//! - presence (`crate::presence`): the hub announces where it can be dialed.
//!
//! Publishing (`publish`) writes the command's prompt under its content key (derived from the
//! hub's secret key and the command id) and that key sealed to each device paired now; events
//! (`stream`) go under the same key, signed by the hub and bound to command and seq. Every
//! command is written by one handler, at most [`MAX_HANDLERS`] at once (`handlers`); their
//! calls are retried while the cloud is unreachable or failing (`row`); a refusal is acted on
//! at once. Rows this hub left `executing` are resumed from the journal (`resume`).
//!
//! Wake-ups: Supabase Realtime (INSERTs on `cloud_commands` and `cloud_pairings` for this hub),
//! or the safety poll:
//! every `[cloud] poll_interval` while Realtime is down, every `[cloud] safety_poll` (5
//! minutes) while it listens. Correctness comes only from the rows: a missed wake-up costs one poll interval.
//!
//! A device cancels a command by ending its row `cancelled`. The hub notices when its next
//! append is refused (the row is no longer `executing`), or, while the command is silent, by
//! reading the row every poll interval; it then cancels the command in its executor.

mod claim;
mod claim_token;
mod handlers;
mod mirror;
mod pairing;
mod publish;
mod resume;
mod retention;
mod row;
mod stream;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use helix_discovery::{
    cloud::Cloud,
    realtime::{RealtimeConfig, Watch},
};
use iroh::SecretKey;
use tokio::sync::{mpsc, watch};
use tokio_util::{sync::CancellationToken, task::AbortOnDropHandle};

pub use self::{
    claim_token::{CLAIM_TOKEN_FILE, ClaimToken, ClaimTokenError, REGISTER_RETRY_MAX},
    handlers::MAX_HANDLERS,
    mirror::{MIRROR_QUEUE, MirrorFeed, MirrorIntake, MirrorRequest, mirror_queue},
    pairing::{PAIRING_GRACE, PAIRING_POLL},
    publish::{CONTENT_KEY_SALT, MAX_KEYS, content_key},
    resume::ORPHAN_BATCH,
    retention::{PRUNE_BATCH, PRUNE_EVERY, PRUNE_RETRY},
    row::{RETRY_FIRST, RETRY_MAX},
    stream::{APPEND_BATCH, APPEND_BYTES},
};
use self::{
    claim_token::{HubCaller, Registration, register},
    handlers::Handlers,
};
use crate::{
    background::BackgroundTask, context::HubContext, pairing::PairingDesk, presence::PresenceSource,
};

/// Most commands claimed per call (fewer when fewer handlers are free).
pub const CLAIM_BATCH: usize = 8;
/// The reason a command fails with when the cloud already holds other events under the seqs
/// the hub writes.
pub const CONFLICTING_EVENTS: &str =
    "the cloud already holds different events for this command; the hub stopped writing it";
/// The reason a row gets when its command id was used before (a replayed envelope).
pub const REPLAYED: &str = "replayed envelope: this command id was already used";
/// How long a stopping hub waits for its cloud route handlers to write what their commands
/// ended with (one try per call: retries stop with the hub).
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// A running cloud route: its tasks and its wake-up channel.
#[derive(Debug)]
#[must_use = "dropping a CloudRouteHandle aborts the cloud route"]
pub struct CloudRouteHandle {
    /// Kept here so the worker's channel stays open (Realtime, when running, sends on it too).
    wake: mpsc::Sender<()>,
    /// Kept so the pairing task's wake-up channel stays open (Realtime sends on it for new
    /// pairing requests).
    _pair_wake: mpsc::Sender<()>,
    /// Stops claiming new cloud commands (the first step of a hub's shutdown).
    claims: CancellationToken,
    task: BackgroundTask,
}

impl CloudRouteHandle {
    /// Wakes the claim loop now (what a Realtime insert notification does).
    pub fn wake(&self) {
        let _ = self.wake.try_send(());
    }

    /// Claims no more cloud commands (the hub is about to stop; mirrors and the handlers of
    /// commands already here carry on).
    pub fn stop_claiming(&self) {
        self.claims.cancel();
    }

    /// Stops claiming and mirroring, waits up to [`STOP_GRACE`] for the handlers, withdraws
    /// presence, stops Realtime.
    pub async fn stop(self) {
        self.task.stop().await;
    }
}

/// Starts the cloud route when `data_dir` has cloud settings (`None` without them, or when
/// they or the claim token cannot be read), with Realtime wake-ups when there is a session and
/// presence when `presence` is given (iroh is on). `intake` receives the commands to mirror;
/// pairing requests through the cloud are answered at `desk`.
/// Cancelling `cancel` stops it, like [`CloudRouteHandle::stop`].
pub async fn spawn(
    context: Arc<HubContext>,
    secret: SecretKey,
    data_dir: &Path,
    intake: MirrorIntake,
    presence: Option<PresenceSource>,
    desk: PairingDesk,
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
    let token = match ClaimToken::load_or_create(data_dir) {
        Ok(token) => token,
        Err(error) => {
            tracing::error!(%error, "no cloud route: the hub's claim token is unusable");
            return None;
        }
    };
    let (wake, wake_rx) = mpsc::channel(1);
    let (pair_wake, pair_wake_rx) = mpsc::channel(1);
    let access = match cloud.rest().await {
        Ok(Some((_, session))) => session.access_token,
        _ => String::new(),
    };
    let (token_tx, token_rx) = watch::channel(access.clone());
    let realtime_stop = cancel.child_token();
    // Realtime is only a wake-up: without it (or a session) the safety poll runs.
    let watches = vec![
        Watch::hub_commands(&context.hub_id, wake.clone()),
        Watch::hub_pairings(&context.hub_id, pair_wake.clone()),
    ];
    let (realtime, listening) = match RealtimeConfig::for_hub(&supabase, &context.hub_id, watches) {
        Ok(rt) if !access.is_empty() => {
            let (task, listening) =
                helix_discovery::realtime::spawn_with_health(rt, token_rx, realtime_stop.clone());
            (Some(AbortOnDropHandle::new(task)), listening)
        }
        Ok(_) => (None, watch::channel(false).1),
        Err(error) => {
            tracing::warn!(%error, "no Realtime wake-ups; the safety poll carries on");
            (None, watch::channel(false).1)
        }
    };
    let route = CloudRoute {
        caller: HubCaller::new(context.hub_id.clone(), token),
        ctx: context,
        cloud,
        secret,
        data_dir: data_dir.to_owned(),
        handlers: Handlers::new(MAX_HANDLERS),
        access_token: token_tx,
    };
    let claims = cancel.child_token();
    let tasks = Tasks {
        wake: wake_rx,
        pair_wake: pair_wake_rx,
        desk,
        listening,
        intake,
        presence,
        claims: claims.clone(),
    };
    let task = BackgroundTask::spawn(cancel, |cancel| async move {
        route.run(tasks, cancel).await;
        realtime_stop.cancel();
        if let Some(rt) = realtime {
            let _ = rt.await;
        }
    });
    Some(CloudRouteHandle {
        wake,
        _pair_wake: pair_wake,
        claims,
        task,
    })
}

/// What the cloud route's tasks take when they start.
struct Tasks {
    wake: mpsc::Receiver<()>,
    pair_wake: mpsc::Receiver<()>,
    desk: PairingDesk,
    /// Whether Realtime listens now.
    listening: watch::Receiver<bool>,
    intake: MirrorIntake,
    presence: Option<PresenceSource>,
    claims: CancellationToken,
}

/// What the cloud route's tasks and handlers share.
#[derive(Debug, Clone)]
struct CloudRoute {
    ctx: Arc<HubContext>,
    cloud: Cloud,
    secret: SecretKey,
    caller: HubCaller,
    data_dir: PathBuf,
    handlers: Handlers,
    /// The current access token, for the Realtime client (refreshed by the claim loop).
    access_token: watch::Sender<String>,
}

impl CloudRoute {
    /// Registers, then claims, mirrors, prunes and announces until `cancel` (or until the cloud
    /// refuses the claim token); then waits up to [`STOP_GRACE`] for the handlers.
    async fn run(self, tasks: Tasks, cancel: CancellationToken) {
        let poll = self.ctx.config.cloud.poll_interval;
        match register(&self.cloud, &self.caller, &self.data_dir, poll, &cancel).await {
            Registration::Registered => {}
            Registration::Refused | Registration::Stopped => return,
        }
        // Everything below stops with the hub, or when the cloud refuses the token.
        let stop = cancel.child_token();
        let Tasks {
            mut wake,
            pair_wake,
            desk,
            listening,
            intake,
            presence,
            claims,
        } = tasks;
        let claim = async {
            let claims = claims.clone();
            let stop_on_refusal = stop.clone();
            let on_stop = stop.clone();
            // Claiming also ends when everything stops.
            let ended = tokio::select! {
                accepted = self.claim_until(&mut wake, &listening, &claims, &on_stop) => accepted,
                _ = on_stop.cancelled() => true,
            };
            if !ended {
                stop_on_refusal.cancel();
            }
        };
        let announce = async {
            if let Some(source) = presence {
                crate::presence::heartbeat(
                    self.cloud.clone(),
                    self.ctx.config.cloud.presence_interval,
                    source,
                    self.caller.token(),
                    stop.clone(),
                )
                .await;
            }
        };
        tokio::join!(
            claim,
            self.mirror_until(intake, &stop),
            self.prune_until(&stop),
            self.pair_until(desk, pair_wake, listening.clone(), &stop),
            announce,
            async {
                stop.cancelled().await;
                self.handlers.close(STOP_GRACE).await;
            },
        );
    }
}
