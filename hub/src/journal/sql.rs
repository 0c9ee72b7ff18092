//! The SQL of the writer's operations: a submit, an event append, and the savepoint each
//! runs in, with the per-command cache that spares a read per event.

use std::collections::HashMap;

use helix_mesh::pb::Provider;
use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use super::{JournalError, SubmitOutcome, TurnEnd, read};
use crate::{
    bus::StatusEvent,
    command::{EventKind, FinalStatus, NewCommand, StoredEvent},
};

/// What the writer keeps in memory about a command that is still live (not finished): its row,
/// its last seq, and what its status events carry, so that an append reads nothing.
#[derive(Debug, Clone)]
pub(super) struct LiveCommand {
    row: i64,
    last_seq: u64,
    session_id: String,
    provider: Provider,
    source_device_id: String,
    executed_at_ms: Option<i64>,
    /// The prompt's length in bytes, for its turn.
    prompt_bytes: usize,
}

/// How an operation is kept apart from the rest of its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Isolation {
    /// In a savepoint of its own, so one failing operation leaves the rest of its batch intact.
    Savepoint,
    /// Alone in its batch: a failure rolls the whole transaction back instead, which spares a
    /// `SAVEPOINT` and a `RELEASE` on the path a waiting caller takes.
    Alone,
}

/// Runs `f` as one operation of a batch (see [`Isolation`]).
pub(super) fn isolated<T>(
    tx: &Connection,
    live: &mut HashMap<Uuid, LiveCommand>,
    isolation: Isolation,
    f: impl FnOnce(&Connection, &mut HashMap<Uuid, LiveCommand>) -> Result<T, JournalError>,
) -> Result<T, JournalError> {
    if isolation == Isolation::Alone {
        return f(tx, live);
    }
    // Cached statements: these run for every operation, and parsing them each time showed
    // in the writer's profile.
    tx.prepare_cached("SAVEPOINT op")?.execute([])?;
    match f(tx, live) {
        Ok(v) => {
            tx.prepare_cached("RELEASE op")?.execute([])?;
            Ok(v)
        }
        Err(e) => {
            tx.execute_batch("ROLLBACK TO op; RELEASE op")?;
            Err(e)
        }
    }
}

/// What a submit stored, for the reply and the bus.
pub(super) struct Stored {
    pub(super) outcome: SubmitOutcome,
    pub(super) status: Option<StatusEvent>,
    pub(super) started: Option<(StoredEvent, Option<StatusEvent>)>,
}

pub(super) fn submit(
    conn: &Connection,
    live: &mut HashMap<Uuid, LiveCommand>,
    cmd: NewCommand,
    position: u32,
    start: bool,
    isolation: Isolation,
) -> Result<Stored, JournalError> {
    let command_id = cmd.command_id;
    let stored = isolated(conn, live, isolation, |conn, live| {
        let at_ms = helix_mesh::proto_ext::now_ms();
        // The row is inserted as its events leave it (`queued`, then `started` when it starts
        // at once), so the submit writes each index once and updates nothing. The insert is
        // the existence check: a known command_id inserts nothing.
        let (status, attempts, executed_at_ms, last_seq) = if start {
            ("executing", 1, Some(at_ms), 2)
        } else {
            ("pending", 0, None, 1)
        };
        let inserted = conn
            .prepare_cached(
                "INSERT INTO commands (command_id, source_device_id, source_user_id, agent_id,
                    provider, model, content, session_id, channel_id, created_at_ms, expires_at_ms,
                    received_at_ms, status, attempts, executed_at_ms, last_seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
                 ON CONFLICT (command_id) DO NOTHING",
            )?
            .execute(params![
                command_id.to_string(),
                cmd.source_device_id,
                cmd.source_user_id,
                cmd.agent_id,
                cmd.provider.name(),
                cmd.model,
                cmd.content,
                cmd.session_id,
                cmd.channel_id,
                cmd.created_at_ms,
                cmd.expires_at_ms,
                at_ms,
                status,
                attempts,
                executed_at_ms,
                last_seq,
            ])?;
        if inserted == 0 {
            return Ok(None);
        }
        let mut state = LiveCommand {
            row: conn.last_insert_rowid(),
            last_seq: 0,
            session_id: cmd.session_id,
            provider: cmd.provider,
            source_device_id: cmd.source_device_id,
            executed_at_ms: None,
            prompt_bytes: cmd.content.len(),
        };
        let (event, status) = insert_event(
            conn,
            &mut state,
            command_id,
            EventKind::Queued { position },
            at_ms,
        )?;
        let started = if start {
            Some(insert_event(
                conn,
                &mut state,
                command_id,
                EventKind::started(1),
                at_ms,
            )?)
        } else {
            None
        };
        debug_assert_eq!(state.last_seq, last_seq);
        live.insert(command_id, state);
        Ok(Some(Stored {
            outcome: SubmitOutcome::Created(event),
            status,
            started,
        }))
    });
    match stored {
        Ok(Some(stored)) => Ok(stored),
        Ok(None) => {
            let existing =
                read::command(conn, command_id)?.ok_or(JournalError::UnknownCommand(command_id))?;
            Ok(Stored {
                outcome: SubmitOutcome::Existing {
                    status: existing.status,
                    existing: Box::new(existing.command),
                },
                status: None,
                started: None,
            })
        }
        Err(e) => {
            // Rolled back: nothing of this command is stored, so nothing may be cached.
            live.remove(&command_id);
            Err(e)
        }
    }
}

/// Appends one event and applies its status change to the command row. A `finished` event
/// also stores the command's turn of its session, with what `turn` says of it.
pub(super) fn append_event(
    conn: &Connection,
    live: &mut HashMap<Uuid, LiveCommand>,
    command_id: Uuid,
    kind: EventKind,
    turn: Option<Box<TurnEnd>>,
) -> Result<(StoredEvent, Option<StatusEvent>), JournalError> {
    let mut state = match live.get(&command_id) {
        Some(a) => a.clone(),
        None => load_live(conn, command_id)?,
    };
    // A finished event carries the time the last attempt started, whoever wrote it.
    let kind = match kind {
        EventKind::Finished {
            status,
            error: e,
            attempts,
            executed_at_ms: None,
        } if state.executed_at_ms.is_some() && attempts > 0 => EventKind::Finished {
            status,
            error: e,
            attempts,
            executed_at_ms: state.executed_at_ms,
        },
        other => other,
    };
    let at_ms = helix_mesh::proto_ext::now_ms();
    let (event, status) = insert_event(conn, &mut state, command_id, kind, at_ms)?;
    let seq = event.seq;
    match &event.kind {
        EventKind::Started { attempt, .. } => {
            conn.prepare_cached(
                "UPDATE commands SET status = 'executing', attempts = ?2, executed_at_ms = ?3, last_seq = ?4 WHERE id = ?1",
            )?
            .execute(params![state.row, attempt, at_ms, seq])?;
        }
        EventKind::Finished {
            status,
            error: e,
            attempts,
            ..
        } => {
            conn.prepare_cached(
                "UPDATE commands SET status = ?2, attempts = ?3, error = ?4, finished_at_ms = ?5, last_seq = ?6 WHERE id = ?1",
            )?
            .execute(params![
                state.row,
                status.to_status().name(),
                attempts,
                if e.is_empty() { None } else { Some(e.as_str()) },
                at_ms,
                seq
            ])?;
            insert_turn(conn, &state, command_id, *status, turn, at_ms)?;
        }
        // `queued` is only ever stored by a submit, which inserts the row with its status.
        EventKind::Output { .. } | EventKind::Retrying { .. } | EventKind::Queued { .. } => {
            conn.prepare_cached("UPDATE commands SET last_seq = ?2 WHERE id = ?1")?
                .execute(params![state.row, seq])?;
        }
    }
    if matches!(event.kind, EventKind::Finished { .. }) {
        live.remove(&command_id);
    } else {
        live.insert(command_id, state);
    }
    Ok((event, status))
}

/// Stores `kind` as the command's next event, in the events table only (the caller keeps the
/// command row in step), and advances `state` past it.
fn insert_event(
    conn: &Connection,
    state: &mut LiveCommand,
    command_id: Uuid,
    kind: EventKind,
    at_ms: i64,
) -> Result<(StoredEvent, Option<StatusEvent>), JournalError> {
    let seq = state.last_seq + 1;
    let body = serde_json::to_string(&kind).map_err(|source| JournalError::CorruptEvent {
        command_id: command_id.to_string(),
        seq,
        source,
    })?;
    conn.prepare_cached(
        "INSERT INTO events (command, seq, at_ms, kind, body) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![state.row, seq, at_ms, kind.name(), body])?;
    state.last_seq = seq;
    if matches!(kind, EventKind::Started { .. }) {
        state.executed_at_ms = Some(at_ms);
    }
    let status = StatusEvent::for_event(
        command_id,
        &kind,
        seq,
        at_ms,
        &state.session_id,
        state.provider,
        &state.source_device_id,
    );
    Ok((
        StoredEvent {
            command_id,
            seq,
            at_ms,
            kind,
        },
        status,
    ))
}

/// Stores the turn of a command that ended with `status`: a completed one with its whole
/// answer (as the executor collected it, else read back from its output events).
fn insert_turn(
    conn: &Connection,
    state: &LiveCommand,
    command_id: Uuid,
    status: FinalStatus,
    turn: Option<Box<TurnEnd>>,
    at_ms: i64,
) -> Result<(), JournalError> {
    let TurnEnd {
        answer,
        cli_session,
        cli_turns,
    } = turn.map(|t| *t).unwrap_or_default();
    let answer = match status {
        FinalStatus::Completed => Some(match answer {
            Some(answer) => answer,
            None => read::output_of(conn, state.row, command_id)?,
        }),
        _ => None,
    };
    let bytes = state.prompt_bytes + answer.as_ref().map_or(0, String::len);
    conn.prepare_cached(
        "INSERT INTO turns (session_id, command, status, answer, bytes, cli_session, cli_turns,
             finished_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (command) DO NOTHING",
    )?
    .execute(params![
        state.session_id,
        state.row,
        status.to_status().name(),
        answer,
        i64::try_from(bytes).unwrap_or(i64::MAX),
        cli_session,
        cli_turns,
        at_ms
    ])?;
    Ok(())
}

fn load_live(conn: &Connection, command_id: Uuid) -> Result<LiveCommand, JournalError> {
    conn.prepare_cached(
        "SELECT id, last_seq, session_id, provider, source_device_id, executed_at_ms,
             length(CAST(content AS BLOB))
         FROM commands WHERE command_id = ?1",
    )?
    .query_row([command_id.to_string()], |r| {
        Ok(LiveCommand {
            row: r.get(0)?,
            last_seq: r.get(1)?,
            session_id: r.get(2)?,
            provider: r
                .get::<_, String>(3)?
                .parse()
                .unwrap_or(Provider::Unspecified),
            source_device_id: r.get(4)?,
            executed_at_ms: r.get(5)?,
            prompt_bytes: r.get(6)?,
        })
    })
    .optional()?
    .ok_or(JournalError::UnknownCommand(command_id))
}
