//! A command's end in the journal: its `finished` event with its turn, tried again while the
//! disk is full, and turned into a failure that says so when some of its output was lost.

use std::time::Duration;

use uuid::Uuid;

use super::{Executor, finished};
use crate::{
    command::{EventKind, FinalStatus},
    journal::TurnEnd,
};

/// How long to wait before each try again to record a command's end (a full disk may clear).
const END_RETRIES: [Duration; 3] = [
    Duration::from_millis(200),
    Duration::from_secs(1),
    Duration::from_secs(3),
];

impl Executor {
    /// Records `end` with the command's `turn`, or, when an output of the command was not
    /// stored (see [`crate::journal::Journal::lost_write`]), a failure that says so; a failed
    /// write is tried again after each of [`END_RETRIES`], and if none is stored, the end is
    /// still published.
    /// Returns whether `end` itself was stored.
    pub(super) async fn record_end(
        &self,
        command_id: Uuid,
        mut end: EventKind,
        mut turn: TurnEnd,
    ) -> bool {
        let journal = &self.inner.journal;
        let mut retries = END_RETRIES.iter();
        let mut as_given = true;
        loop {
            if let Some(lost) = journal.lost_write(&command_id) {
                end = journal_failed(&end, &lost);
            }
            if !matches!(
                end,
                EventKind::Finished {
                    status: FinalStatus::Completed,
                    ..
                }
            ) && turn.answer.is_some()
            {
                // No longer a completed turn: its answer and CLI session are not the
                // conversation's.
                turn = TurnEnd::default();
                as_given = false;
            }
            let Err(error) = journal.finish(command_id, end.clone(), turn.clone()).await else {
                return as_given;
            };
            end = journal_failed(&end, &error.to_string());
            let Some(delay) = retries.next() else {
                tracing::error!(%command_id, %error, "could not record the end of a command; its followers are told without it");
                journal.publish_unstored_end(command_id, end).await;
                return false;
            };
            tracing::warn!(%command_id, %error, "could not record the end of a command; trying again");
            tokio::time::sleep(*delay).await;
        }
    }
}

/// The text a command ends with when the journal could not store one of its events.
pub const JOURNAL_WRITE_FAILED: &str = "the journal could not be written";

/// The end of a command after `attempts` whose event the journal could not store: `error`.
pub(super) fn journal_failure(attempts: u32, error: &str) -> EventKind {
    finished(
        FinalStatus::Failed,
        &format!("{JOURNAL_WRITE_FAILED}: {error}; output may be missing"),
        attempts,
    )
}

/// `end` turned into a [`journal_failure`] (unless it is one already, whose reason stays).
fn journal_failed(end: &EventKind, error: &str) -> EventKind {
    match end {
        EventKind::Finished {
            status: FinalStatus::Failed,
            error: already,
            ..
        } if already.starts_with(JOURNAL_WRITE_FAILED) => end.clone(),
        EventKind::Finished { attempts, .. } => journal_failure(*attempts, error),
        _ => journal_failure(0, error),
    }
}
