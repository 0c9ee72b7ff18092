//! Crash recovery, when the journal opens and before its writer thread starts: commands that
//! were executing when the hub died are finished as failed ([`RESTARTED_ERROR`]), and the
//! pending ones are handed to the executor, oldest first.

use uuid::Uuid;

use super::{JournalError, batch::Batch, sql::append_event, writer::Writer};
use crate::command::{EventKind, FinalStatus};

/// The error written into commands that were running when the hub died.
pub const RESTARTED_ERROR: &str = "hub restarted during execution";

/// What the journal held for the executor when it was opened.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Commands still waiting to run, oldest first.
    pub pending: Vec<PendingCommand>,
    /// Commands that were executing and are now finished as failed.
    pub interrupted: Vec<Uuid>,
}

/// A command waiting for a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCommand {
    pub command_id: Uuid,
    pub expires_at_ms: i64,
    /// Its session: the executor runs a session's commands one at a time.
    pub session_id: String,
}

impl Writer {
    /// Finishes interrupted commands and lists pending ones. Runs before the writer thread.
    pub(super) fn recover(&mut self) -> Result<Recovery, JournalError> {
        let tx = Batch::begin(&self.conn)?;
        let interrupted: Vec<Uuid> = {
            let mut stmt = tx.conn.prepare(
                "SELECT command_id FROM commands WHERE status = 'executing' ORDER BY id",
            )?;
            let ids = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            ids.iter().filter_map(|s| Uuid::parse_str(s).ok()).collect()
        };
        for id in &interrupted {
            let attempts: u32 = tx.conn.query_row(
                "SELECT attempts FROM commands WHERE command_id = ?1",
                [id.to_string()],
                |r| r.get(0),
            )?;
            let kind = EventKind::Finished {
                status: FinalStatus::Failed,
                error: RESTARTED_ERROR.into(),
                attempts,
                executed_at_ms: None,
            };
            append_event(tx.conn, &mut self.live, *id, kind, None)?;
        }
        let pending = {
            let mut stmt = tx.conn.prepare(
                "SELECT command_id, expires_at_ms, session_id FROM commands WHERE status = 'pending' ORDER BY id",
            )?;
            stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter_map(|(id, expires_at_ms, session_id)| {
                Some(PendingCommand {
                    command_id: Uuid::parse_str(&id).ok()?,
                    expires_at_ms,
                    session_id,
                })
            })
            .collect()
        };
        tx.commit()?;
        Ok(Recovery {
            pending,
            interrupted,
        })
    }
}
