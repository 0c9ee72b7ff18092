//! The journal: every command and every event, in SQLite (WAL mode), in the hub's data dir.
//!
//! One writer thread owns the write connection. Appends reach it through a bounded channel; it
//! takes whatever has queued up (up to [`MAX_BATCH`]), applies it in one transaction, commits,
//! and only then hands the events to the [`Bus`] and answers the callers: "stored before sent"
//! holds per batch, and a stream of tiny output events costs one commit per batch rather than
//! one per token, without ever waiting for a batch to fill.
//!
//! Reads use a small pool of read-only connections on the blocking thread pool; WAL lets them
//! run beside the writer.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    thread,
};

use helix_mesh::pb::{CommandStatus, Provider};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, params};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

mod sql;
mod writer;

use writer::{Op, Writer};

use crate::{
    bus::{Bus, StatusEvent},
    command::{EventKind, FinalStatus, NewCommand, StoredEvent},
    journal_read::{self, CommandRecord, ListFilter, ListPage},
};

/// The journal's file name inside the data dir.
pub const FILE_NAME: &str = "journal.sqlite";

/// Capacity of the writer's inbox. Large enough that token-rate appends from many running
/// commands rarely wait; small enough that a stalled disk pushes back on the workers instead
/// of growing memory.
pub const INBOX_CAPACITY: usize = 4096;

/// Most operations applied in one transaction. Bounds the latency of the first event in a
/// batch behind a long burst.
pub const MAX_BATCH: usize = 1024;

/// Most idle read connections kept open.
const MAX_IDLE_READERS: usize = 4;

/// Schema version stored in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = r#"
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

/// The error written into commands that were running when the hub died.
pub const RESTARTED_ERROR: &str = "hub restarted during execution";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "journal {path} has schema version {found}, newer than this hub understands ({SCHEMA_VERSION}): upgrade helix-hub"
    )]
    TooNew { path: PathBuf, found: i64 },
    #[error("journal: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("journal: stored event of command {command_id} seq {seq} is unreadable: {problem}")]
    CorruptEvent {
        command_id: String,
        seq: u64,
        problem: String,
    },
    #[error("journal: unknown command {0}")]
    UnknownCommand(Uuid),
    #[error("journal: commit failed: {0}")]
    Commit(String),
    #[error("journal: the writer has stopped")]
    Closed,
}

/// What submitting a command found.
#[derive(Debug)]
pub enum SubmitOutcome {
    /// Stored, with its `queued` event (and its first `started`, when asked to start it).
    Created(StoredEvent),
    /// A command with this id exists already.
    Existing {
        existing: Box<NewCommand>,
        status: CommandStatus,
    },
}

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
}

/// Handle to the journal; cheap to clone.
#[derive(Debug, Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tx: mpsc::Sender<Op>,
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
}

impl Journal {
    /// Opens (or creates) the journal in `data_dir`, finishes commands interrupted by a crash,
    /// and starts the writer thread. Events are published to `bus` after they are committed.
    pub fn open(data_dir: &Path, bus: Bus) -> Result<(Journal, Recovery), JournalError> {
        let path = data_dir.join(FILE_NAME);
        let open_err = |source| JournalError::Open {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(open_err)?;
        configure(&conn).map_err(open_err)?;
        let found: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(open_err)?;
        if found > SCHEMA_VERSION {
            return Err(JournalError::TooNew { path, found });
        }
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(open_err)?;

        let mut writer = Writer::new(conn);
        let recovery = writer.recover()?;

        let (tx, rx) = mpsc::channel(INBOX_CAPACITY);
        thread::Builder::new()
            .name("helix-journal".into())
            .spawn(move || writer.run(rx, bus))
            .map_err(|e| JournalError::Open {
                path: path.clone(),
                source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
            })?;
        let journal = Journal {
            inner: Arc::new(Inner {
                tx,
                path,
                readers: Mutex::new(Vec::new()),
            }),
        };
        Ok((journal, recovery))
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Stores a new command with its `queued` event, or reports the existing one. With
    /// `start`, a new command's `started` event of attempt 1 is stored in the same transaction:
    /// a command that starts at once costs one commit, and is shown `executing` before anything
    /// runs.
    pub async fn submit(
        &self,
        cmd: NewCommand,
        position: u32,
        start: bool,
    ) -> Result<SubmitOutcome, JournalError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Submit {
            cmd: Box::new(cmd),
            position,
            start,
            reply,
        })
        .await?;
        rx.await.map_err(|_| JournalError::Closed)?
    }

    /// Appends an event and waits until it is committed (and published).
    pub async fn append(
        &self,
        command_id: Uuid,
        kind: EventKind,
    ) -> Result<StoredEvent, JournalError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Append {
            command_id,
            kind,
            reply: Some(reply),
        })
        .await?;
        rx.await.map_err(|_| JournalError::Closed)?
    }

    /// Queues an event without waiting for its commit. Order with every other operation on
    /// this handle is kept; waits only when the writer's inbox is full.
    pub async fn append_nowait(
        &self,
        command_id: Uuid,
        kind: EventKind,
    ) -> Result<(), JournalError> {
        self.send(Op::Append {
            command_id,
            kind,
            reply: None,
        })
        .await
    }

    async fn send(&self, op: Op) -> Result<(), JournalError> {
        self.inner
            .tx
            .send(op)
            .await
            .map_err(|_| JournalError::Closed)
    }

    /// Events of a command with seq greater than `after_seq`, in order, at most `limit`.
    pub async fn events_after(
        &self,
        command_id: Uuid,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, JournalError> {
        self.read(move |c| journal_read::events_after(c, command_id, after_seq, limit))
            .await
    }

    /// One command, with its whole output when `with_output`.
    pub async fn command(
        &self,
        command_id: Uuid,
        with_output: bool,
    ) -> Result<Option<CommandRecord>, JournalError> {
        self.read(move |c| journal_read::command(c, command_id, with_output))
            .await
    }

    /// A page of commands, newest first.
    pub async fn list(&self, filter: ListFilter) -> Result<ListPage, JournalError> {
        self.read(move |c| journal_read::list(c, &filter)).await
    }

    async fn read<T, F>(&self, f: F) -> Result<T, JournalError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, JournalError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match inner.readers.lock().ok().and_then(|mut r| r.pop()) {
                Some(c) => c,
                None => open_reader(&inner.path)?,
            };
            let result = f(&conn);
            if let Ok(mut readers) = inner.readers.lock()
                && readers.len() < MAX_IDLE_READERS
            {
                readers.push(conn);
            }
            result
        })
        .await
        .map_err(|_| JournalError::Closed)?
    }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // WAL: readers never block the writer. synchronous=NORMAL: a commit survives the process
    // being killed (the hub's crash model); only an OS crash can lose the last commits.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(())
}

fn open_reader(path: &Path) -> Result<Connection, JournalError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| JournalError::Open {
        path: path.to_owned(),
        source,
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}
