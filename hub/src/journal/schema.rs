//! The journal's tables and the settings of its connections.

use std::{ffi::CStr, path::Path};

use rusqlite::{Connection, OpenFlags};

use super::JournalError;

/// Schema version stored in `PRAGMA user_version`.
pub(super) const SCHEMA_VERSION: i64 = 1;

pub(super) const SCHEMA: &str = r#"
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
