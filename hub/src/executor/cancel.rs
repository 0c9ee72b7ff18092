//! Cancelling a command: a queued one is ended at once; a running one is told through its
//! token, and the answer waits (briefly) for its worker's `finished` event.

use std::time::Duration;

use helix_mesh::pb::CommandStatus;
use uuid::Uuid;

use super::{CancelError, Cancelled, Executor, finished};
use crate::command::{EventKind, FinalStatus};

/// How long `Cancel` waits for a running command to acknowledge before answering anyway.
const CANCEL_ACK_TIMEOUT: Duration = Duration::from_secs(10);

impl Executor {
    /// Cancels a queued or running command.
    pub async fn cancel(&self, command_id: Uuid) -> Result<Cancelled, CancelError> {
        self.cancel_because(command_id, None).await
    }

    /// Cancels a queued or running command; `reason` becomes its `finished` event's error
    /// (default: "cancelled").
    pub async fn cancel_because(
        &self,
        command_id: Uuid,
        reason: Option<&str>,
    ) -> Result<Cancelled, CancelError> {
        let (was_queued, running) = {
            let mut state = self.state();
            let removed = state.queue.remove(command_id);
            if let Some((_, true)) = removed {
                // The next command of its session may start now.
                self.inner.wake.notify_one();
            }
            (removed.is_some(), state.running.get(&command_id).cloned())
        };
        if was_queued {
            self.inner
                .journal
                .append(
                    command_id,
                    finished(
                        FinalStatus::Cancelled,
                        &match reason {
                            Some(reason) => format!("{reason} (before it started)"),
                            None => "cancelled before it started".to_owned(),
                        },
                        0,
                    ),
                )
                .await?;
            return Ok(Cancelled {
                status: CommandStatus::Cancelled,
                was_queued: true,
            });
        }
        if let Some(token) = running {
            let mut sub = self.inner.bus.subscribe_command(command_id);
            if let Some(reason) = reason {
                self.state()
                    .cancel_reasons
                    .insert(command_id, reason.to_owned());
            }
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
        match self.inner.journal.command(command_id).await? {
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
            .command(command_id)
            .await?
            .ok_or(CancelError::NotFound(command_id))?
            .status)
    }
}
