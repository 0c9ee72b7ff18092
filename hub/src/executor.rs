//! The executor: a bounded FIFO queue in front of at most `max_concurrent` workers.
//!
//! Ownership: the queue and the table of running commands sit behind one `std` mutex that is
//! never held across an `.await`. One dispatcher task takes a worker permit, then the oldest
//! queued command, and spawns its worker; every task is tracked so shutdown can wait for them.
//! Every state change goes through the journal first (see [`crate::journal`]).

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use futures::StreamExt;
use helix_mesh::{pb::CommandStatus, proto_ext::now_ms};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use uuid::Uuid;

use crate::{
    bus::Bus,
    command::{EventKind, FinalStatus, NewCommand},
    config::HubConfig,
    credentials::{Credential, CredentialStore, Secret, default_profile_id},
    journal::{Journal, JournalError, PendingCommand, SubmitOutcome},
    provider::{ErrorKind, ProviderError, ProviderRequest, Providers},
    refresh::Refresher,
    retry,
};

/// How long `Cancel` waits for a running command to acknowledge before answering anyway.
const CANCEL_ACK_TIMEOUT: Duration = Duration::from_secs(10);

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
    expires_at_ms: i64,
    /// The command itself when it was submitted to this process; recovered commands are read
    /// back from the journal when they start.
    command: Option<Box<NewCommand>>,
    /// Its first `started` event was stored with the command (it started at submit).
    started: bool,
}

impl From<PendingCommand> for Waiting {
    fn from(p: PendingCommand) -> Self {
        Self {
            command_id: p.command_id,
            expires_at_ms: p.expires_at_ms,
            command: None,
            started: false,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Waiting>,
    /// Submits between the capacity check and the journal's answer.
    reserved: usize,
    running: HashMap<Uuid, CancellationToken>,
    closed: bool,
}

impl Executor {
    /// Creates the executor with the commands recovered from the journal already queued, and
    /// starts its dispatcher.
    pub fn start(
        journal: Journal,
        bus: Bus,
        providers: Providers,
        credentials: CredentialStore,
        config: Arc<HubConfig>,
        recovered: Vec<PendingCommand>,
    ) -> Self {
        let permits = Arc::new(Semaphore::new(config.max_concurrent as usize));
        let refresher = Refresher::new(credentials.clone(), &config.providers.openai_codex.issuer);
        let inner = Arc::new(Inner {
            journal,
            bus,
            providers,
            refresher,
            config,
            state: Mutex::new(State {
                queue: recovered.into_iter().map(Waiting::from).collect(),
                ..State::default()
            }),
            wake: Notify::new(),
            permits,
            tasks: TaskTracker::new(),
            stop_dispatch: CancellationToken::new(),
            abort: CancellationToken::new(),
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
                return match self.inner.journal.command(cmd.command_id, false).await? {
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
        // A free slot and nobody ahead: the command starts here rather than through the
        // dispatcher (one task hand-off less before the first output), and its `started` event
        // is stored in the same transaction as the command. A hub that is stopping keeps the
        // command queued; it runs after the next start.
        let start_now = {
            let state = self.state();
            if state.queue.is_empty() && !state.closed && expires_at_ms > now_ms() {
                self.inner.permits.clone().try_acquire_owned().ok()
            } else {
                None
            }
        };
        let outcome = self
            .inner
            .journal
            .submit(cmd.clone(), position, start_now.is_some())
            .await;
        let mut state = self.state();
        state.reserved -= 1;
        match outcome? {
            SubmitOutcome::Created(_) => {
                let waiting = Waiting {
                    command_id,
                    expires_at_ms,
                    command: Some(Box::new(cmd)),
                    started: start_now.is_some(),
                };
                // Stored as `executing`: it runs even if the hub began stopping meanwhile (the
                // drain waits for it, or a restart marks it interrupted).
                if let Some(permit) = start_now {
                    let token = self.inner.abort.child_token();
                    state.running.insert(command_id, token.clone());
                    drop(state);
                    self.spawn_worker(waiting, token, permit);
                } else {
                    state.queue.push_back(waiting);
                    drop(state);
                    self.inner.wake.notify_one();
                }
                Ok(Submitted::New)
            }
            SubmitOutcome::Existing { existing, status } if existing.same_work(&cmd) => {
                Ok(Submitted::Existing(status))
            }
            SubmitOutcome::Existing { .. } => Err(SubmitError::AlreadyExists(command_id)),
        }
    }

    /// Cancels a queued or running command.
    pub async fn cancel(&self, command_id: Uuid) -> Result<Cancelled, CancelError> {
        let (was_queued, running) = {
            let mut state = self.state();
            let queued = state
                .queue
                .iter()
                .position(|p| p.command_id == command_id)
                .and_then(|i| state.queue.remove(i))
                .is_some();
            (queued, state.running.get(&command_id).cloned())
        };
        if was_queued {
            self.inner
                .journal
                .append(
                    command_id,
                    finished(FinalStatus::Cancelled, "cancelled before it started", 0),
                )
                .await?;
            return Ok(Cancelled {
                status: CommandStatus::Cancelled,
                was_queued: true,
            });
        }
        if let Some(token) = running {
            let mut sub = self.inner.bus.subscribe_command(command_id);
            token.cancel();
            // The worker may have finished before we subscribed: then the journal says so.
            let now = self.current_status(command_id).await?;
            if now.is_terminal() {
                return Ok(Cancelled {
                    status: now,
                    was_queued: false,
                });
            }
            // Otherwise wait for the worker's `finished`.
            let status = tokio::time::timeout(CANCEL_ACK_TIMEOUT, async {
                loop {
                    match sub.recv().await {
                        Ok(ev) => {
                            if let EventKind::Finished { status, .. } = ev.kind {
                                return Some(status.to_status());
                            }
                        }
                        Err(_) => return None,
                    }
                }
            })
            .await
            .ok()
            .flatten();
            let status = match status {
                Some(s) => s,
                None => self.current_status(command_id).await?,
            };
            return Ok(Cancelled {
                status,
                was_queued: false,
            });
        }
        match self.inner.journal.command(command_id, false).await? {
            None => Err(CancelError::NotFound(command_id)),
            Some(record) => Err(CancelError::AlreadyFinished {
                id: command_id,
                status: record.status,
            }),
        }
    }

    async fn current_status(&self, command_id: Uuid) -> Result<CommandStatus, CancelError> {
        Ok(self
            .inner
            .journal
            .command(command_id, false)
            .await?
            .ok_or(CancelError::NotFound(command_id))?
            .status)
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
                    state.queue.pop_front().map(|next| {
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
        let end = if !next.started && next.expires_at_ms <= now_ms() {
            finished(FinalStatus::Expired, "expired before it could start", 0)
        } else {
            self.execute(command_id, next.command, next.started, &token)
                .await
        };
        if let Err(error) = self.inner.journal.append(command_id, end).await {
            tracing::error!(%command_id, %error, "could not record the end of a command");
        }
        self.state().running.remove(&command_id);
        drop(permit);
    }

    /// Runs the attempts of one command; returns its `finished` event.
    async fn execute(
        &self,
        command_id: Uuid,
        known: Option<Box<NewCommand>>,
        started: bool,
        token: &CancellationToken,
    ) -> EventKind {
        let journal = &self.inner.journal;
        let cmd = match known {
            Some(cmd) => *cmd,
            None => match journal.command(command_id, false).await {
                Ok(Some(record)) => record.command,
                Ok(None) => {
                    return finished(FinalStatus::Failed, "command vanished from the journal", 0);
                }
                Err(e) => return finished(FinalStatus::Failed, &e.to_string(), 0),
            },
        };
        let Some(exec) = self.inner.providers.get(cmd.provider).cloned() else {
            return finished(
                FinalStatus::Failed,
                &format!("provider {} is not supported by this hub", cmd.provider),
                0,
            );
        };
        let config = &self.inner.config;
        let agent = config.agents.get(&cmd.agent_id);
        let anthropic = &config.providers.anthropic;
        let model = cmd
            .model
            .clone()
            .or_else(|| agent.and_then(|a| a.model.clone()))
            .unwrap_or_else(|| config.default_model(cmd.provider).to_owned());
        let max_retries = config.retry.max_retries;
        // The OAuth access token the provider refused with a 401, to refresh once.
        let mut refused: Option<Secret> = None;
        let mut refreshed_after_401 = false;

        let mut attempt = 0;
        loop {
            attempt += 1;
            // `started` is stored before the provider is called: a hub that dies during an
            // attempt finds the command `executing` on restart and fails it, instead of finding
            // it `pending` and running it a second time. A command that started at submit has
            // its first `started` stored already, in the same commit as the command.
            if !(attempt == 1 && started)
                && let Err(e) = journal
                    .append(command_id, EventKind::Started { attempt })
                    .await
            {
                return finished(FinalStatus::Failed, &e.to_string(), attempt);
            }
            let credential = match self
                .inner
                .refresher
                .ensure_fresh(cmd.provider, refused.take().as_ref())
                .await
            {
                Ok(Some((c, _))) => Ok(c),
                Ok(None) => {
                    return finished(
                        FinalStatus::Failed,
                        &format!(
                            "no credential for {p} (profile {id}): run `helix-hub login {p}{flag}` on the hub",
                            p = cmd.provider,
                            id = default_profile_id(cmd.provider),
                            flag = login_flag(cmd.provider),
                        ),
                        attempt,
                    );
                }
                // A refresh that failed for now (network, 5xx) is retried like a provider error.
                Err(e) if e.is_transient() => {
                    Err(ProviderError::new(ErrorKind::Connection, e.to_string()))
                }
                Err(e) => return finished(FinalStatus::Failed, &e.to_string(), attempt),
            };
            let mut streamed = false;
            let mut used_access = None;
            let failure = match credential {
                Err(e) => e,
                Ok(credential) => {
                    if let Credential::OAuth { access, .. } = &credential
                        && cmd.provider == helix_mesh::pb::Provider::OpenaiCodex
                    {
                        used_access = Some(access.clone());
                    }
                    let output = exec.execute(ProviderRequest {
                        command_id,
                        content: cmd.content.clone(),
                        model: model.clone(),
                        max_tokens: anthropic.max_tokens,
                        system: agent.and_then(|a| a.system.clone()),
                        credential,
                    });
                    match self
                        .stream_attempt(command_id, attempt, output, token, &mut streamed)
                        .await
                    {
                        Ok(failure) => failure,
                        Err(end) => return end,
                    }
                }
            };
            // A refused OAuth token (401; not a 403, which a new token would get too) is
            // refreshed once and tried again at once.
            if failure.kind == ErrorKind::Unauthorized
                && !streamed
                && !refreshed_after_401
                && used_access.is_some()
            {
                refreshed_after_401 = true;
                refused = used_access;
                tracing::info!(%command_id, attempt, "the provider refused the token; refreshing it once");
                let retrying = EventKind::Retrying {
                    attempt: attempt + 1,
                    delay_ms: 0,
                    reason: format!("{} (refreshing the token)", failure.message),
                };
                if let Err(e) = journal.append(command_id, retrying).await {
                    return finished(FinalStatus::Failed, &e.to_string(), attempt);
                }
                continue;
            }
            let retries_done = attempt - 1;
            if !failure.is_retryable() || retries_done >= max_retries {
                return finished(FinalStatus::Failed, &failure.to_string(), attempt);
            }
            if streamed {
                return finished(
                    FinalStatus::Failed,
                    &format!(
                        "{} (not retried: part of the answer had already been streamed)",
                        failure.message
                    ),
                    attempt,
                );
            }
            let delay = retry::delay(&config.retry, retries_done + 1, failure.retry_after);
            tracing::info!(%command_id, attempt, delay_ms = delay.as_millis() as u64, reason = %failure.message, "retrying");
            let retrying = EventKind::Retrying {
                attempt: attempt + 1,
                delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                reason: failure.message,
            };
            if let Err(e) = journal.append(command_id, retrying).await {
                return finished(FinalStatus::Failed, &e.to_string(), attempt);
            }
            tokio::select! {
                _ = token.cancelled() => return self.stopped(attempt),
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Streams one attempt's output into the journal. `Ok(failure)`: the attempt failed
    /// (`streamed` says whether any text got out first); `Err(finished)`: the command ended.
    async fn stream_attempt(
        &self,
        command_id: Uuid,
        attempt: u32,
        mut output: crate::provider::OutputStream,
        token: &CancellationToken,
        streamed: &mut bool,
    ) -> Result<ProviderError, EventKind> {
        let journal = &self.inner.journal;
        let failure: ProviderError = loop {
            let item = tokio::select! {
                biased;
                _ = token.cancelled() => return Err(self.stopped(attempt)),
                item = output.next() => item,
            };
            match item {
                Some(Ok(text)) => {
                    if !*streamed {
                        tracing::trace!(%command_id, attempt, "first output from the provider");
                    }
                    *streamed = true;
                    if let Err(e) = journal
                        .append_nowait(command_id, EventKind::Output { text })
                        .await
                    {
                        return Err(finished(FinalStatus::Failed, &e.to_string(), attempt));
                    }
                }
                Some(Err(e)) => break e,
                None => return Err(finished(FinalStatus::Completed, "", attempt)),
            }
        };
        Ok(failure)
    }

    /// The `finished` event of a command whose token was cancelled: by a user, or by shutdown.
    fn stopped(&self, attempts: u32) -> EventKind {
        if self.inner.abort.is_cancelled() {
            finished(FinalStatus::Failed, SHUTDOWN_ERROR, attempts)
        } else {
            finished(FinalStatus::Cancelled, "cancelled", attempts)
        }
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

/// The `helix-hub login` flag that stores the credential a provider needs.
fn login_flag(provider: helix_mesh::pb::Provider) -> &'static str {
    match provider {
        helix_mesh::pb::Provider::OpenaiCodex => "",
        _ => " --api-key",
    }
}
