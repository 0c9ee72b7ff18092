//! Queries on the journal: events after a seq, one command, pages of commands.
//!
//! Plain functions over a `rusqlite::Connection`, so the writer (inside its transaction) and
//! the read pool share them.

use helix_mesh::{
    pb::{self, CommandStatus, Provider, ResultStatus},
    proto_ext::ms_to_timestamp,
};
use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;

use super::JournalError;
use crate::{
    command::{EventKind, NewCommand, StoredEvent},
    history::{HistoryBudget, SessionHistory, Turn},
};

/// A command as the journal holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRecord {
    pub command: NewCommand,
    pub status: CommandStatus,
    pub attempts: u32,
    pub error: Option<String>,
    pub executed_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub last_seq: u64,
    /// The concatenated output, when asked for.
    pub output: Option<String>,
}

impl CommandRecord {
    pub fn to_proto(&self) -> pb::Command {
        let c = &self.command;
        // Finished commands always carry a result; running ones do when their output was asked
        // for (GetCommand), with the output so far and no result status yet.
        let result =
            (self.status.is_terminal() || self.output.is_some()).then(|| pb::CommandResult {
                status: match self.status {
                    CommandStatus::Completed => ResultStatus::Success,
                    s if s.is_terminal() => ResultStatus::Error,
                    _ => ResultStatus::Unspecified,
                } as i32,
                output: self.output.clone().unwrap_or_default(),
                executed_at: self.executed_at_ms.map(ms_to_timestamp),
                error: self.error.clone().unwrap_or_default(),
                attempts: self.attempts,
            });
        pb::Command {
            command_id: c.command_id.to_string(),
            source_device_id: c.source_device_id.clone(),
            source_user_id: c.source_user_id.clone(),
            agent_id: c.agent_id.clone(),
            provider: c.provider as i32,
            content: c.content.clone(),
            session_id: c.session_id.clone(),
            channel_id: c.channel_id.clone(),
            created_at: Some(ms_to_timestamp(c.created_at_ms)),
            expires_at: Some(ms_to_timestamp(c.expires_at_ms)),
            model: c.model.clone(),
            status: self.status as i32,
            result,
            last_seq: self.last_seq,
        }
    }
}

/// Which commands to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub status: Option<CommandStatus>,
    pub session_id: Option<String>,
    /// Only commands older than this position (from a page token).
    pub before_row: Option<i64>,
    pub limit: usize,
}

/// A page of commands and the position to continue from.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub commands: Vec<CommandRecord>,
    pub next_before_row: Option<i64>,
}

const COMMAND_COLUMNS: &str =
    "id, command_id, source_device_id, source_user_id, agent_id, provider, model,
    content, session_id, channel_id, created_at_ms, expires_at_ms, status, attempts, error,
    executed_at_ms, finished_at_ms, last_seq";

fn record_from_row(r: &Row<'_>) -> rusqlite::Result<(i64, CommandRecord)> {
    let id_text: String = r.get(1)?;
    let command_id = Uuid::parse_str(&id_text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
    })?;
    let provider: String = r.get(5)?;
    let status: String = r.get(12)?;
    Ok((
        r.get(0)?,
        CommandRecord {
            command: NewCommand {
                command_id,
                source_device_id: r.get(2)?,
                source_user_id: r.get(3)?,
                agent_id: r.get(4)?,
                provider: provider.parse().unwrap_or(Provider::Unspecified),
                model: r.get(6)?,
                content: r.get(7)?,
                session_id: r.get(8)?,
                channel_id: r.get(9)?,
                created_at_ms: r.get(10)?,
                expires_at_ms: r.get(11)?,
            },
            status: status.parse().unwrap_or(CommandStatus::Unspecified),
            attempts: r.get(13)?,
            error: r.get(14)?,
            executed_at_ms: r.get(15)?,
            finished_at_ms: r.get(16)?,
            last_seq: r.get(17)?,
            output: None,
        },
    ))
}

/// One command by id, without its output.
pub(super) fn command(
    conn: &Connection,
    command_id: Uuid,
) -> Result<Option<CommandRecord>, JournalError> {
    Ok(find_command(conn, command_id)?.map(|(_, record)| record))
}

/// One command by id, with its whole output.
pub(super) fn command_with_output(
    conn: &Connection,
    command_id: Uuid,
) -> Result<Option<CommandRecord>, JournalError> {
    let Some((row, mut record)) = find_command(conn, command_id)? else {
        return Ok(None);
    };
    record.output = Some(output_of(conn, row, command_id)?);
    Ok(Some(record))
}

/// One command by id, with its row in the commands table.
fn find_command(
    conn: &Connection,
    command_id: Uuid,
) -> Result<Option<(i64, CommandRecord)>, JournalError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COMMAND_COLUMNS} FROM commands WHERE command_id = ?1"
        ))?
        .query_row([command_id.to_string()], record_from_row)
        .optional()?)
}

/// The text of a command's output events, in order.
pub(super) fn output_of(
    conn: &Connection,
    row: i64,
    command_id: Uuid,
) -> Result<String, JournalError> {
    let mut out = String::new();
    let mut stmt = conn.prepare_cached(
        "SELECT seq, body FROM events WHERE command = ?1 AND kind = 'output' ORDER BY seq",
    )?;
    let mut rows = stmt.query([row])?;
    while let Some(r) = rows.next()? {
        match decode(command_id, r.get(0)?, &r.get::<_, String>(1)?)? {
            EventKind::Output { text } => out.push_str(&text),
            _ => continue,
        }
    }
    Ok(out)
}

/// Events with seq > `after_seq`, oldest first, at most `limit`. `UnknownCommand` if the
/// command does not exist.
pub(super) fn events_after(
    conn: &Connection,
    command_id: Uuid,
    after_seq: u64,
    limit: usize,
) -> Result<Vec<StoredEvent>, JournalError> {
    let row: i64 = conn
        .prepare_cached("SELECT id FROM commands WHERE command_id = ?1")?
        .query_row([command_id.to_string()], |r| r.get(0))
        .optional()?
        .ok_or(JournalError::UnknownCommand(command_id))?;
    let mut stmt = conn.prepare_cached(
        "SELECT seq, at_ms, body FROM events WHERE command = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut rows = stmt.query(params![row, after_seq, limit])?;
    let mut events = Vec::new();
    while let Some(r) = rows.next()? {
        let seq: u64 = r.get(0)?;
        events.push(StoredEvent {
            command_id,
            seq,
            at_ms: r.get(1)?,
            kind: decode(command_id, seq, &r.get::<_, String>(2)?)?,
        });
    }
    Ok(events)
}

fn decode(command_id: Uuid, seq: u64, body: &str) -> Result<EventKind, JournalError> {
    serde_json::from_str(body).map_err(|source| JournalError::CorruptEvent {
        command_id: command_id.to_string(),
        seq,
        source,
    })
}

/// A page of commands, newest first.
pub(super) fn list(conn: &Connection, filter: &ListFilter) -> Result<ListPage, JournalError> {
    let limit = filter.limit.max(1);
    let sql = format!(
        "SELECT {COMMAND_COLUMNS} FROM commands
         WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR session_id = ?2) AND (?3 IS NULL OR id < ?3)
         ORDER BY id DESC LIMIT ?4"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt
        .query_map(
            params![
                filter.status.map(|s| s.name()),
                filter.session_id,
                filter.before_row,
                i64::try_from(limit + 1).unwrap_or(i64::MAX),
            ],
            record_from_row,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    let more = rows.len() > limit;
    let mut commands = Vec::with_capacity(limit);
    let mut last_row = None;
    for (row, record) in rows.into_iter().take(limit) {
        last_row = Some(row);
        commands.push(record);
    }
    Ok(ListPage {
        commands,
        next_before_row: if more { last_row } else { None },
    })
}

/// The completed turns of `session_id` that fit `budget`, oldest first, and what is known of
/// the rest. Reads only sizes until it knows which turns are kept, then only their text.
pub(super) fn session_history(
    conn: &Connection,
    session_id: &str,
    budget: &HistoryBudget,
) -> Result<SessionHistory, JournalError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, bytes, cli_session, cli_turns FROM turns
         WHERE session_id = ?1 AND status = 'completed' ORDER BY id DESC",
    )?;
    let mut ids = Vec::new();
    let mut sizes = Vec::new();
    let mut cli_session = None;
    let mut rows = stmt.query([session_id])?;
    while let Some(r) = rows.next()? {
        if ids.is_empty()
            && let Some(id) = r.get::<_, Option<String>>(2)?
        {
            cli_session = Some((id, r.get::<_, u32>(3)?));
        }
        ids.push(r.get::<_, i64>(0)?);
        sizes.push(r.get::<_, i64>(1)?.max(0).unsigned_abs());
    }
    let completed = u32::try_from(ids.len()).unwrap_or(u32::MAX);
    let kept = budget.newest_that_fit(sizes);
    let dropped = u32::try_from(ids.len() - kept).unwrap_or(u32::MAX);
    let mut turns = Vec::with_capacity(kept);
    if let Some(oldest_kept) = kept.checked_sub(1).map(|i| ids[i]) {
        let mut stmt = conn.prepare_cached(
            "SELECT c.content, t.answer FROM turns t JOIN commands c ON c.id = t.command
             WHERE t.session_id = ?1 AND t.status = 'completed' AND t.id >= ?2 ORDER BY t.id",
        )?;
        let mut rows = stmt.query(params![session_id, oldest_kept])?;
        while let Some(r) = rows.next()? {
            let answer: String = r.get::<_, Option<String>>(1)?.unwrap_or_default();
            // An answer with no text says nothing, and the APIs refuse empty messages.
            if answer.trim().is_empty() {
                continue;
            }
            turns.push(Turn {
                prompt: r.get(0)?,
                answer,
            });
        }
    }
    Ok(SessionHistory {
        turns,
        dropped,
        cli_session,
        completed,
    })
}
