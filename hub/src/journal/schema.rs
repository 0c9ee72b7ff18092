//! The journal's tables, how an older journal is brought up to date, and the settings of its
//! connections.
//!
//! The schema version is `PRAGMA user_version`. A new journal gets version 1's tables
//! ([`SCHEMA_V1`]) and then every migration; an older one only the migrations past its
//! version. Each migration runs in one transaction that also sets the new version, so a hub
//! killed during an upgrade finds the journal at the old version, unchanged, and upgrades it
//! again. A journal newer than this hub is refused (`JournalError::TooNew`).

use std::{ffi::CStr, path::Path};

use rusqlite::{Connection, OpenFlags, params};

use super::JournalError;

/// Schema version stored in `PRAGMA user_version`: version 1 plus one per [`MIGRATIONS`].
pub(super) const SCHEMA_VERSION: i64 = 1 + MIGRATIONS.len() as i64;

/// One step from version `n` to `n + 1` (entry `n - 1`), inside the transaction that sets
/// version `n + 1`.
type Migration = fn(&Connection) -> rusqlite::Result<()>;

/// Every migration, oldest first: `MIGRATIONS[0]` takes version 1 to 2.
const MIGRATIONS: [Migration; 1] = [add_turns];

/// Version 1: commands and their events.
const SCHEMA_V1: &str = r#"
CREATE TABLE IF NOT EXISTS commands (
    id               INTEGER PRIMARY KEY,  -- insertion order: the FIFO order
    command_id       TEXT NOT NULL UNIQUE,
    source_device_id TEXT NOT NULL,
    source_user_id   TEXT NOT NULL,
    agent_id         TEXT NOT NULL,
    provider         TEXT NOT NULL,
    model            TEXT,
    content          TEXT NOT NULL,
    session_id       TEXT NOT NULL,
    channel_id       TEXT,
    created_at_ms    INTEGER NOT NULL,
    expires_at_ms    INTEGER NOT NULL,
    received_at_ms   INTEGER NOT NULL,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    error            TEXT,
    executed_at_ms   INTEGER,
    finished_at_ms   INTEGER,
    last_seq         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS commands_by_status ON commands(status, id);
CREATE INDEX IF NOT EXISTS commands_by_session ON commands(session_id, id);
CREATE TABLE IF NOT EXISTS events (
    command    INTEGER NOT NULL REFERENCES commands(id),
    seq        INTEGER NOT NULL,
    at_ms      INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    body       TEXT NOT NULL,             -- EventKind as JSON
    PRIMARY KEY (command, seq)
) WITHOUT ROWID;
"#;

/// Version 2: the turns of sessions. A command's turn is stored with its `finished` event, so
/// a session's turns are in the order they ended, which is the order they ran (a session runs
/// one command at a time). `answer` is the whole output of a completed turn (the text its
/// provider is given back as the assistant's part); `bytes` its prompt's and answer's UTF-8
/// length, so the history budget is applied without reading any text; `cli_session` the
/// Claude Code session the turn ran in, when it ran through Claude Code, and `cli_turns` how
/// many completed turns that session holds (this one included).
const TURNS: &str = r#"
CREATE TABLE turns (
    id             INTEGER PRIMARY KEY,   -- the order the turns ended in
    session_id     TEXT NOT NULL,
    command        INTEGER NOT NULL UNIQUE REFERENCES commands(id),
    status         TEXT NOT NULL,         -- completed, failed, cancelled or expired
    answer         TEXT,                  -- completed turns only
    bytes          INTEGER NOT NULL,
    cli_session    TEXT,
    cli_turns      INTEGER NOT NULL DEFAULT 0,
    finished_at_ms INTEGER NOT NULL
);
CREATE INDEX turns_by_session ON turns(session_id, status, id);
"#;

/// Version 1 → 2: the turns table, filled from the commands that had already ended (in the
/// order they ended; a completed one's answer is its output events' text, gathered one
/// command at a time so a large journal does not need its answers in memory at once).
fn add_turns(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(TURNS)?;
    conn.execute(
        "INSERT INTO turns (session_id, command, status, answer, bytes, finished_at_ms)
         SELECT session_id, id, status, CASE status WHEN 'completed' THEN '' END,
             length(CAST(content AS BLOB)), coalesce(finished_at_ms, received_at_ms)
         FROM commands WHERE status IN ('completed', 'failed', 'cancelled', 'expired')
         ORDER BY coalesce(finished_at_ms, received_at_ms), id",
        [],
    )?;
    let mut outputs = conn.prepare(
        "SELECT e.command, json_extract(e.body, '$.text') FROM events e
         JOIN commands c ON c.id = e.command
         WHERE c.status = 'completed' AND e.kind = 'output' ORDER BY e.command, e.seq",
    )?;
    let mut answer_of = conn.prepare(
        "UPDATE turns SET answer = ?2, bytes = bytes + length(CAST(?2 AS BLOB)) WHERE command = ?1",
    )?;
    let mut rows = outputs.query([])?;
    let mut current: Option<(i64, String)> = None;
    while let Some(r) = rows.next()? {
        let command: i64 = r.get(0)?;
        let text: Option<String> = r.get(1)?;
        match &mut current {
            Some((c, answer)) if *c == command => answer.push_str(text.as_deref().unwrap_or("")),
            _ => {
                if let Some((c, answer)) = current.take() {
                    answer_of.execute(params![c, answer])?;
                }
                current = Some((command, text.unwrap_or_default()));
            }
        }
    }
    if let Some((c, answer)) = current {
        answer_of.execute(params![c, answer])?;
    }
    Ok(())
}

/// Brings the journal on `conn` to [`SCHEMA_VERSION`]: version 1's tables for a new file,
/// then each migration it lacks, each in a transaction of its own.
pub(super) fn upgrade(conn: &Connection, path: &Path) -> Result<(), JournalError> {
    let open_err = |source| JournalError::Open {
        path: path.to_owned(),
        source,
    };
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(open_err)?;
    if found > SCHEMA_VERSION {
        return Err(JournalError::TooNew {
            path: path.to_owned(),
            found,
        });
    }
    if found < 1 {
        in_transaction(conn, 1, |conn| conn.execute_batch(SCHEMA_V1)).map_err(open_err)?;
    }
    for (from, step) in (1..).zip(MIGRATIONS).skip_while(|(from, _)| *from < found) {
        in_transaction(conn, from + 1, step).map_err(|source| JournalError::Migrate {
            path: path.to_owned(),
            to: from + 1,
            source,
        })?;
        tracing::info!(journal = %path.display(), version = from + 1, "journal upgraded");
    }
    Ok(())
}

/// Runs `step` and sets the schema version to `version` in one transaction (rolled back if
/// either fails).
fn in_transaction(conn: &Connection, version: i64, step: Migration) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN")?;
    let done = step(conn)
        .and_then(|()| conn.pragma_update(None, "user_version", version))
        .and_then(|()| conn.execute_batch("COMMIT"));
    if done.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    done
}

/// Version 1's tables, for tests that make a journal as an older hub left it.
#[cfg(test)]
pub(super) const OLD_SCHEMA_V1: &str = SCHEMA_V1;

pub(super) fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // WAL: readers never block the writer. synchronous=NORMAL: a commit survives the process
    // being killed (the hub's crash model); only an OS crash can lose the last commits.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(())
}

/// SQLite's `unix-excl` VFS: the hub's process holds the journal's file lock for as long as
/// it has the journal open, and the WAL's index lives in the process's memory instead of a
/// `journal.sqlite-shm` file. Its connections (the writer and the readers) share that memory
/// and lock each other in memory, so a transaction makes no `fcntl` lock calls, where the
/// default VFS makes several per commit: system calls that are a real part of a small
/// commit's cost. Another process cannot open the journal while the hub runs (the data dir's
/// `hub.lock` already keeps a second hub out).
/// Durability is unchanged: commits still go to the `-wal` file, and a restart after a crash
/// rebuilds the index from it.
const VFS: &CStr = c"unix-excl";

/// The journal's one write connection, created if missing.
pub(super) fn open_writer(path: &Path) -> rusqlite::Result<Connection> {
    Connection::open_with_flags_and_vfs(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        VFS,
    )
}

pub(super) fn open_reader(path: &Path) -> Result<Connection, JournalError> {
    let conn = Connection::open_with_flags_and_vfs(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        VFS,
    )
    .map_err(|source| JournalError::Open {
        path: path.to_owned(),
        source,
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}
