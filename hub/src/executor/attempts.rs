//! One command's attempts: credentials, the provider's stream into the journal, retries with
//! backoff, the one refresh-and-retry of a refused OAuth token, and cancellation.

use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Executor, SHUTDOWN_ERROR, finished};
use crate::{
    command::{EventKind, FinalStatus, NewCommand},
    credentials::{Credential, Secret, default_profile_id},
    provider::{ErrorKind, ProviderError, ProviderRequest},
    retry,
};

impl Executor {
    /// Runs the attempts of one command; returns its `finished` event.
    pub(super) async fn execute(
        &self,
        command_id: Uuid,
        known: Option<Box<NewCommand>>,
        started: bool,
        token: &CancellationToken,
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
                _ = token.cancelled() => return self.stopped(command_id, attempt),
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
                _ = token.cancelled() => return Err(self.stopped(command_id, attempt)),
                item = output.next() => item,
            };
            match item {
                Some(Ok(text)) => {
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
