//! One command's attempts: credentials, the provider's stream into the journal, retries with
//! backoff, the one refresh-and-retry of a refused OAuth token, and cancellation.

use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    Executor, SHUTDOWN_ERROR, finished,
    plan::{Ended, Plan, TurnSoFar},
};
use crate::{
    command::{EventKind, FinalStatus, NewCommand},
    credentials::{Credential, Secret, default_profile_id},
    provider::{ErrorKind, ProviderError, ProviderRequest},
    retry,
};

/// An attempt that failed and may be tried again.
struct Failed {
    failure: ProviderError,
    /// Whether any of the answer got out before it failed (then it is not retried).
    streamed: bool,
    /// The OAuth access token it sent to OpenAI Codex, which may be refreshed after a 401.
    used_access: Option<Secret>,
}

/// What a failed attempt leads to.
enum Next {
    /// The provider refused this OAuth token: refresh it, then try again at once.
    Refresh(Secret),
    /// Try again after this delay.
    Retry(Duration),
    /// The command ends.
    Finish(EventKind),
}

impl Executor {
    /// Runs the attempts of one command; returns its `finished` event with what is known of
    /// its turn (the whole answer, when it completed).
    pub(super) async fn execute(
        &self,
        command_id: Uuid,
        known: Option<Box<NewCommand>>,
        started: bool,
        token: &CancellationToken,
    ) -> Ended {
        let mut so_far = TurnSoFar::default();
        let end = self
            .attempts(command_id, known, started, token, &mut so_far)
            .await;
        so_far.ended(end)
    }

    /// The attempts of [`Executor::execute`]; what the last one did is left in `so_far`.
    async fn attempts(
        &self,
        command_id: Uuid,
        known: Option<Box<NewCommand>>,
        started: bool,
        token: &CancellationToken,
        so_far: &mut TurnSoFar,
    ) -> EventKind {
        let journal = &self.inner.journal;
        let cmd = match known {
            Some(cmd) => *cmd,
            None => match journal.command(command_id).await {
                Ok(Some(record)) => record.command,
                Ok(None) => {
                    return finished(FinalStatus::Failed, "command vanished from the journal", 0);
                }
                Err(e) => return finished(FinalStatus::Failed, &e.to_string(), 0),
            },
        };
        let plan = match self.plan(cmd).await {
            Ok(plan) => plan,
            Err(end) => return end,
        };
        // The OAuth access token the provider refused with a 401, to refresh once.
        let mut refused: Option<Secret> = None;
        let mut refreshed_after_401 = false;

        let mut attempt = 0;
        loop {
            attempt += 1;
            // `started` is stored before the provider is called: a hub that dies during an
            // attempt finds the command `executing` on restart and fails it, instead of finding
            // it `pending` and running it a second time. A command that started at submit has
            // its first `started` stored already, in the same commit as the command (only a
            // command without earlier turns does: that event has no history to tell of).
            if !(attempt == 1 && started)
                && let Err(e) = journal.append(command_id, plan.started(attempt)).await
            {
                return finished(FinalStatus::Failed, &e.to_string(), attempt);
            }
            so_far.attempt(&plan);
            let failed = match self
                .attempt(command_id, attempt, &plan, refused.take(), token, so_far)
                .await
            {
                Ok(failed) => failed,
                Err(end) => return end,
            };
            so_far.attempt_failed();
            let message = failed.failure.message.clone();
            let (retrying, delay) = match self.next(failed, attempt, !refreshed_after_401) {
                Next::Finish(end) => return end,
                Next::Refresh(used_access) => {
                    refreshed_after_401 = true;
                    refused = Some(used_access);
                    tracing::info!(%command_id, attempt, "the provider refused the token; refreshing it once");
                    let retrying = EventKind::Retrying {
                        attempt: attempt + 1,
                        delay_ms: 0,
                        reason: format!("{message} (refreshing the token)"),
                    };
                    (retrying, None)
                }
                Next::Retry(delay) => {
                    tracing::info!(%command_id, attempt, delay_ms = delay.as_millis() as u64, reason = %message, "retrying");
                    let retrying = EventKind::Retrying {
                        attempt: attempt + 1,
                        delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        reason: message,
                    };
                    (retrying, Some(delay))
                }
            };
            if let Err(e) = journal.append(command_id, retrying).await {
                return finished(FinalStatus::Failed, &e.to_string(), attempt);
            }
            if let Some(delay) = delay {
                tokio::select! {
                    _ = token.cancelled() => return self.stopped(command_id, attempt),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }

    /// One attempt: a fresh credential (`refused`: the token to replace), then the provider's
    /// stream into the journal. `Ok(failed)`: it failed and may be retried; `Err(finished)`:
    /// the command ended.
    async fn attempt(
        &self,
        command_id: Uuid,
        attempt: u32,
        plan: &Plan,
        refused: Option<Secret>,
        token: &CancellationToken,
        so_far: &mut TurnSoFar,
    ) -> Result<Failed, EventKind> {
        let provider = plan.cmd.provider;
        let credential = match self
            .inner
            .refresher
            .ensure_fresh(provider, refused.as_ref())
            .await
        {
            Ok(Some((c, _))) => c,
            Ok(None) => {
                return Err(finished(
                    FinalStatus::Failed,
                    &format!(
                        "no credential for {p} (profile {id}): run `helix-hub login {p}{flag}` on the hub",
                        p = provider,
                        id = default_profile_id(provider),
                        flag = login_flag(provider),
                    ),
                    attempt,
                ));
            }
            // A refresh that failed for now (network, 5xx) is retried like a provider error.
            Err(e) if e.is_transient() => {
                return Ok(Failed {
                    failure: ProviderError::new(ErrorKind::Connection, e.to_string()),
                    streamed: false,
                    used_access: None,
                });
            }
            Err(e) => return Err(finished(FinalStatus::Failed, &e.to_string(), attempt)),
        };
        let mut used_access = None;
        if let Credential::OAuth { access, .. } = &credential
            && provider == helix_mesh::pb::Provider::OpenaiCodex
        {
            used_access = Some(access.clone());
        }
        let output = plan.exec.execute(ProviderRequest {
            command_id,
            content: plan.cmd.content.clone(),
            model: plan.model.clone(),
            max_tokens: self.inner.config.providers.anthropic.max_tokens,
            system: plan.system.clone(),
            history: plan.history.clone(),
            cli_session: so_far.cli.clone(),
            credential,
        });
        let mut streamed = false;
        let failure = self
            .stream_attempt(
                command_id,
                attempt,
                output,
                token,
                &mut streamed,
                &mut so_far.answer,
            )
            .await?;
        Ok(Failed {
            failure,
            streamed,
            used_access,
        })
    }

    /// Decides what follows failed attempt number `attempt`. `may_refresh`: no token of this
    /// command was refreshed after a 401 yet.
    fn next(&self, failed: Failed, attempt: u32, may_refresh: bool) -> Next {
        let Failed {
            failure,
            streamed,
            used_access,
        } = failed;
        // A refused OAuth token (401; not a 403, which a new token would get too) is
        // refreshed once and tried again at once.
        if failure.kind == ErrorKind::Unauthorized
            && !streamed
            && may_refresh
            && let Some(used_access) = used_access
        {
            return Next::Refresh(used_access);
        }
        let config = &self.inner.config;
        let retries_done = attempt - 1;
        if !failure.is_retryable() || retries_done >= config.retry.max_retries {
            return Next::Finish(finished(FinalStatus::Failed, &failure.to_string(), attempt));
        }
        if streamed {
            return Next::Finish(finished(
                FinalStatus::Failed,
                &format!(
                    "{} (not retried: part of the answer had already been streamed)",
                    failure.message
                ),
                attempt,
            ));
        }
        Next::Retry(retry::delay(
            &config.retry,
            retries_done + 1,
            failure.retry_after,
        ))
    }

    /// Streams one attempt's output into the journal, and its text into `answer`.
    /// `Ok(failure)`: the attempt failed (`streamed` says whether any text got out first);
    /// `Err(finished)`: the command ended.
    async fn stream_attempt(
        &self,
        command_id: Uuid,
        attempt: u32,
        mut output: crate::provider::OutputStream,
        token: &CancellationToken,
        streamed: &mut bool,
        answer: &mut String,
    ) -> Result<ProviderError, EventKind> {
        let journal = &self.inner.journal;
        let failure: ProviderError = loop {
            let item = tokio::select! {
                biased;
                _ = token.cancelled() => return Err(self.stopped(command_id, attempt)),
                item = output.next() => item,
            };
            match item {
                Some(Ok(text)) => {
                    answer.push_str(&text);
                    let kind = EventKind::Output { text };
                    let stored = if *streamed {
                        journal.append_queued(command_id, kind).await
                    } else {
                        tracing::trace!(%command_id, attempt, "first output from the provider");
                        *streamed = true;
                        let stored = journal.append_here_if_free(command_id, kind).await;
                        // The stream that waits for this event was just woken on this thread.
                        // Let it send the event before this task commits whatever the provider
                        // has ready next (`finished`, for a short answer): the first output
                        // then reaches the spoke one commit sooner.
                        tokio::task::yield_now().await;
                        stored
                    };
                    if let Err(e) = stored {
                        return Err(finished(FinalStatus::Failed, &e.to_string(), attempt));
                    }
                    // An earlier output's batch did not commit: the text has a hole, so the
                    // command must not complete (its end says why).
                    if let Some(lost) = journal.lost_write(&command_id) {
                        return Err(super::end::journal_failure(attempt, &lost));
                    }
                }
                Some(Err(e)) => break e,
                None => return Err(finished(FinalStatus::Completed, "", attempt)),
            }
        };
        Ok(failure)
    }

    /// The `finished` event of a command whose token was cancelled: by a user (with the
    /// reason given, if any), or by shutdown.
    pub(super) fn stopped(&self, command_id: Uuid, attempts: u32) -> EventKind {
        if self.inner.abort.is_cancelled() {
            return finished(FinalStatus::Failed, SHUTDOWN_ERROR, attempts);
        }
        let reason = self.state().cancel_reasons.remove(&command_id);
        finished(
            FinalStatus::Cancelled,
            reason.as_deref().unwrap_or("cancelled"),
            attempts,
        )
    }
}

/// The `helix-hub login` flag that stores the credential a provider needs.
fn login_flag(provider: helix_mesh::pb::Provider) -> &'static str {
    match provider {
        helix_mesh::pb::Provider::OpenaiCodex => "",
        _ => " --api-key",
    }
}
