//! The executor: a bounded FIFO queue in front of at most `max_concurrent` workers, running a
//! session's commands one at a time (see `queue`).
//!
//! Ownership: the queue and the table of running commands sit behind one `std` mutex that is
//! never held across an `.await`. One dispatcher task takes a worker permit, then the oldest
//! ready command, and spawns its worker; every task is tracked so shutdown can wait for them.
//! Every state change goes through the journal first (see [`crate::journal`]).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use helix_mesh::{pb::CommandStatus, proto_ext::now_ms};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use uuid::Uuid;

mod attempts;
mod cancel;
mod end;
mod plan;
mod queue;
#[cfg(test)]
mod tests;

pub use end::JOURNAL_WRITE_FAILED;

use crate::{
    bus::Bus,
    command::{EventKind, FinalStatus, NewCommand},
    config::HubConfig,
    credentials::CredentialStore,
    journal::{Journal, JournalError, PendingCommand, SubmitOutcome},
    provider::Providers,
    refresh::Refresher,
};

/// Error text of commands stopped because the hub shut down before they finished.
pub const SHUTDOWN_ERROR: &str = "hub shut down during execution";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    #[error("command {0} already exists with different content")]
    AlreadyExists(Uuid),
    #[error("the hub's queue is full ({0} commands waiting); try again later")]
    QueueFull(usize),
    #[error("the hub is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Journal(#[from] JournalError),
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CancelError {
    #[error("no command {0} on this hub")]
    NotFound(Uuid),
    #[error("command {id} has already finished ({status})")]
    AlreadyFinished { id: Uuid, status: CommandStatus },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// What a submit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// Stored and queued.
    New,
    /// The same command was already here, in this status; nothing new runs.
    Existing(CommandStatus),
}

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled {
    pub status: CommandStatus,
    pub was_queued: bool,
}

/// Handle to the executor; cheap to clone.
#[derive(Debug, Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    journal: Journal,
    bus: Bus,
    providers: Providers,
    refresher: Refresher,
    config: Arc<HubConfig>,
    state: Mutex<State>,
    wake: Notify,
    permits: Arc<Semaphore>,
    tasks: TaskTracker,
    /// Stops the dispatcher from starting commands.
    stop_dispatch: CancellationToken,
    /// Parent of every running command's token: cancelled when the drain deadline passes.
    abort: CancellationToken,
}

/// A command waiting for a worker.
#[derive(Debug)]
struct Waiting {
    command_id: Uuid,
    session_id: String,
    expires_at_ms: i64,
    /// The command itself when it was submitted to this process; recovered commands are read
    /// back from the journal when they start.
    command: Option<Box<NewCommand>>,
    /// Its first `started` event was stored with the command (it started at submit).
    started: bool,
    /// Its place in submission order (set by the queue).
    order: u64,
}

impl From<PendingCommand> for Waiting {
    fn from(p: PendingCommand) -> Self {
        Self {
            command_id: p.command_id,
            session_id: p.session_id,
            expires_at_ms: p.expires_at_ms,
            command: None,
            started: false,
            order: 0,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    queue: queue::Queue,
    /// Submits between the capacity check and the journal's answer.
    reserved: usize,
    running: HashMap<Uuid, CancellationToken>,
    /// Why a running command was cancelled, for its `finished` event (when not plain
    /// "cancelled").
    cancel_reasons: HashMap<Uuid, String>,
    closed: bool,
}

impl Executor {
    /// Creates the executor with the commands recovered from the journal already queued, and
    /// starts its dispatcher. Cancelling `stop` stops it at once, as a drain deadline would (the
    /// hub cancels it when it is dropped instead of shut down).
    pub fn start(
        journal: Journal,
        bus: Bus,
        providers: Providers,
        credentials: CredentialStore,
        config: Arc<HubConfig>,
        recovered: Vec<PendingCommand>,
        stop: CancellationToken,
    ) -> Self {
        let permits = Arc::new(Semaphore::new(config.max_concurrent as usize));
        let refresher = Refresher::new(credentials.clone(), &config.providers.openai_codex.issuer);
        let mut queue = queue::Queue::default();
        for pending in recovered {
            queue.push(Waiting::from(pending));
        }
        let inner = Arc::new(Inner {
            journal,
            bus,
            providers,
            refresher,
            config,
            state: Mutex::new(State {
                queue,
                ..State::default()
            }),
            wake: Notify::new(),
            permits,
            tasks: TaskTracker::new(),
            stop_dispatch: stop.child_token(),
            abort: stop.child_token(),
        });
        let executor = Executor { inner };
        executor.inner.tasks.spawn(executor.clone().dispatch());
        executor
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The lock is only poisoned if code holding it panicked; its data is still consistent
        // (every critical section is a few field updates), so keep going.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stores and queues a command, or finds the same command already here.
    pub async fn submit(&self, cmd: NewCommand) -> Result<Submitted, SubmitError> {
        let reserved = {
            let mut state = self.state();
            let waiting = state.queue.len() + state.reserved;
            if state.closed {
                Err(SubmitError::ShuttingDown)
            } else if waiting >= self.inner.config.queue_capacity as usize {
                Err(SubmitError::QueueFull(waiting))
            } else {
                state.reserved += 1;
                Ok(u32::try_from(waiting + 1).unwrap_or(u32::MAX))
            }
        };
        let position = match reserved {
            Ok(position) => position,
            // A spoke retrying a command that is already here attaches to it even when no
            // new command could be taken.
            Err(refusal) => {
                return match self.inner.journal.command(cmd.command_id).await? {
                    Some(existing) if existing.command.same_work(&cmd) => {
                        Ok(Submitted::Existing(existing.status))
                    }
                    Some(_) => Err(SubmitError::AlreadyExists(cmd.command_id)),
                    None => Err(refusal),
                };
            }
        };
        let command_id = cmd.command_id;
        let expires_at_ms = cmd.expires_at_ms;
        // A free slot, nobody ready ahead and its session idle: the command starts here rather
        // than through the dispatcher (one task hand-off less before the first output). A
        // command without earlier turns also has its `started` event stored in the same
        // transaction as the command; one that may continue a session stores it once its
        // worker has read the session's history, which that event describes. A hub that is
        // stopping keeps the command queued; it runs after the next start.
        let start_now = {
            let mut state = self.state();
            if !state.closed
                && expires_at_ms > now_ms()
                && let Ok(permit) = self.inner.permits.clone().try_acquire_owned()
            {
                state.queue.claim_idle(&cmd.session_id).then_some(permit)
            } else {
                None
            }
        };
        let store_started = start_now.is_some() && cmd.is_own_session();
        let outcome = self
            .inner
            .journal
            .submit(cmd.clone(), position, store_started)
            .await;
        let mut state = self.state();
        state.reserved -= 1;
        let outcome = match outcome {
            Ok(SubmitOutcome::Created(_)) => None,
            Ok(SubmitOutcome::Existing { existing, status }) if existing.same_work(&cmd) => {
                Some(Ok(Submitted::Existing(status)))
            }
            Ok(SubmitOutcome::Existing { .. }) => Some(Err(SubmitError::AlreadyExists(command_id))),
            Err(e) => Some(Err(e.into())),
        };
        if let Some(outcome) = outcome {
            // Nothing new runs: the session claimed for it is free again.
            if start_now.is_some() && state.queue.release(&cmd.session_id) {
                drop(state);
                self.inner.wake.notify_one();
            }
            return outcome;
        }
        let waiting = Waiting {
            command_id,
            session_id: cmd.session_id.clone(),
            expires_at_ms,
            command: Some(Box::new(cmd)),
            started: store_started,
            order: 0,
        };
        // Stored (`executing` if its `started` was stored with it): it runs even if the hub
        // began stopping meanwhile (the drain waits for it, or a restart marks it
        // interrupted).
        if let Some(permit) = start_now {
            let token = self.inner.abort.child_token();
            state.running.insert(command_id, token.clone());
            drop(state);
            self.spawn_worker(waiting, token, permit);
        } else {
            let ready = state.queue.push(waiting);
            drop(state);
            if ready {
                self.inner.wake.notify_one();
            }
        }
        Ok(Submitted::New)
    }

    /// Staged stop: refuse new commands, stop starting queued ones (they stay pending in the
    /// journal and run after the next start), give running ones `drain` to finish, then abort
    /// them (they end failed with [`SHUTDOWN_ERROR`]).
    pub async fn shutdown(&self, drain: Duration) {
        self.state().closed = true;
        self.inner.stop_dispatch.cancel();
        self.inner.tasks.close();
        if tokio::time::timeout(drain, self.inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                running = self.state().running.len(),
                "drain deadline passed; stopping running commands"
            );
            self.inner.abort.cancel();
            self.inner.tasks.wait().await;
        }
    }

    async fn dispatch(self) {
        loop {
            let permit = tokio::select! {
                p = self.inner.permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
                _ = self.inner.stop_dispatch.cancelled() => return,
            };
            let (next, token) = loop {
                let popped = {
                    let mut state = self.state();
                    state.queue.pop_ready().map(|next| {
                        let token = self.inner.abort.child_token();
                        state.running.insert(next.command_id, token.clone());
                        (next, token)
                    })
                };
                if let Some(found) = popped {
                    break found;
                }
                tokio::select! {
                    _ = self.inner.wake.notified() => {}
                    _ = self.inner.stop_dispatch.cancelled() => return,
                }
            };
            self.spawn_worker(next, token, permit);
        }
    }

    fn spawn_worker(&self, next: Waiting, token: CancellationToken, permit: OwnedSemaphorePermit) {
        let worker = self.clone();
        self.inner.tasks.spawn(async move {
            worker.run(next, token, permit).await;
        });
    }

    async fn run(&self, next: Waiting, token: CancellationToken, permit: OwnedSemaphorePermit) {
        let command_id = next.command_id;
        tracing::trace!(%command_id, "worker started");
        let plan::Ended {
            end,
            turn,
            superseded,
        } = if !next.started && next.expires_at_ms <= now_ms() {
            let end = finished(FinalStatus::Expired, "expired before it could start", 0);
            plan::Ended::without_turn(end)
        } else {
            self.execute(command_id, next.command, next.started, &token)
                .await
        };
        // Its turn is stored before the session's next command may start (and read it).
        if self.record_end(command_id, end, turn).await {
            superseded.remove();
        }
        let next_ready = {
            let mut state = self.state();
            state.running.remove(&command_id);
            state.cancel_reasons.remove(&command_id);
            state.queue.release(&next.session_id)
        };
        if next_ready {
            self.inner.wake.notify_one();
        }
        drop(permit);
    }
}

fn finished(status: FinalStatus, error: &str, attempts: u32) -> EventKind {
    EventKind::Finished {
        status,
        error: error.to_owned(),
        attempts,
        executed_at_ms: None,
    }
}
