//! Queries of sessions (`ListSessions`, `GetSession`): the `turns` table joined with the
//! commands the turns are of. Read-only, on the read pool.

use helix_mesh::{
    pb::{self, CommandStatus, Provider},
    proto_ext::{ms_to_timestamp, session_title},
};
use rusqlite::{Connection, params};

use super::JournalError;

/// Most bytes of prompts and answers one `GetSession` answer carries: under the 4 MiB gRPC
/// message limit with room for the rest.
pub const MAX_SESSION_BYTES: usize = 3 << 20;

/// The sessions with ended turns, the most recently active first, at most `limit`: named
/// ones, and unnamed ones (a command's own id) that a later command continued.
pub(super) fn list_sessions(
    conn: &Connection,
    limit: usize,
) -> Result<Vec<pb::SessionSummary>, JournalError> {
    let mut stmt = conn.prepare_cached(
        "WITH s AS (
             SELECT t.session_id, COUNT(*) AS turns, MIN(t.id) AS first_turn,
                    MAX(t.id) AS last_turn, MAX(t.finished_at_ms) AS last_ms
             FROM turns t JOIN commands c ON c.id = t.command
             GROUP BY t.session_id
             HAVING COUNT(*) > 1 OR SUM(c.command_id != t.session_id) > 0
         )
         SELECT s.session_id, s.turns, s.last_ms, fc.content, lc.provider
         FROM s
         JOIN turns ft ON ft.id = s.first_turn JOIN commands fc ON fc.id = ft.command
         JOIN turns lt ON lt.id = s.last_turn JOIN commands lc ON lc.id = lt.command
         ORDER BY s.last_turn DESC
         LIMIT ?1",
    )?;
    let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
        let first_prompt: String = r.get(3)?;
        let provider: String = r.get(4)?;
        Ok(pb::SessionSummary {
            session_id: r.get(0)?,
            title: session_title(&first_prompt),
            turns: r.get(1)?,
            last_activity: Some(ms_to_timestamp(r.get(2)?)),
            provider: provider.parse().unwrap_or(Provider::Unspecified) as i32,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A session's newest `max_turns` ended turns (fewer when their text passes
/// [`MAX_SESSION_BYTES`]), oldest first; `None` when it has none.
pub(super) fn get_session(
    conn: &Connection,
    session_id: &str,
    max_turns: usize,
) -> Result<Option<pb::Session>, JournalError> {
    let total: u32 = conn.query_row(
        "SELECT COUNT(*) FROM turns WHERE session_id = ?1",
        [session_id],
        |r| r.get(0),
    )?;
    if total == 0 {
        return Ok(None);
    }
    let mut stmt = conn.prepare_cached(
        "SELECT c.command_id, c.content, t.answer, t.status, c.error, c.provider, c.model,
                c.source_device_id, t.finished_at_ms
         FROM turns t JOIN commands c ON c.id = t.command
         WHERE t.session_id = ?1 ORDER BY t.id DESC LIMIT ?2",
    )?;
    let mut rows = stmt.query(params![
        session_id,
        i64::try_from(max_turns).unwrap_or(i64::MAX)
    ])?;
    let mut turns = Vec::new();
    let mut bytes = 0usize;
    while let Some(r) = rows.next()? {
        let prompt: String = r.get(1)?;
        let answer: String = r.get::<_, Option<String>>(2)?.unwrap_or_default();
        bytes += prompt.len() + answer.len();
        if bytes > MAX_SESSION_BYTES && !turns.is_empty() {
            break;
        }
        let status: String = r.get(3)?;
        let provider: String = r.get(5)?;
        turns.push(pb::SessionTurn {
            command_id: r.get(0)?,
            prompt,
            answer,
            status: status.parse().unwrap_or(CommandStatus::Unspecified) as i32,
            error: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
            provider: provider.parse().unwrap_or(Provider::Unspecified) as i32,
            model: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
            source_device_id: r.get(7)?,
            finished_at: Some(ms_to_timestamp(r.get(8)?)),
        });
    }
    turns.reverse();
    Ok(Some(pb::Session {
        session_id: session_id.to_owned(),
        turns,
        total_turns: total,
    }))
}
