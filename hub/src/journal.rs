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

enum Op {
    Submit {
        cmd: Box<NewCommand>,
        position: u32,
        start: bool,
        reply: oneshot::Sender<Result<SubmitOutcome, JournalError>>,
    },
    Append {
        command_id: Uuid,
        kind: EventKind,
        reply: Option<oneshot::Sender<Result<StoredEvent, JournalError>>>,
    },
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
        let mut conn = Connection::open(&path).map_err(open_err)?;
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

        let mut writer = Writer {
            conn: Connection::open_in_memory()?,
            active: HashMap::new(),
        };
        std::mem::swap(&mut writer.conn, &mut conn);
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

/// What the writer keeps in memory about a command that is still live.
#[derive(Debug, Clone)]
struct Active {
    row: i64,
    last_seq: u64,
    session_id: String,
    provider: Provider,
    source_device_id: String,
    executed_at_ms: Option<i64>,
}

/// The result of one applied operation, held until its batch commits.
enum Applied {
    Submitted {
        reply: oneshot::Sender<Result<SubmitOutcome, JournalError>>,
        outcome: SubmitOutcome,
        status: Option<StatusEvent>,
        /// The `started` event stored with it, if it was asked to start.
        started: Option<(StoredEvent, Option<StatusEvent>)>,
    },
    Appended {
        reply: Option<oneshot::Sender<Result<StoredEvent, JournalError>>>,
        event: StoredEvent,
        status: Option<StatusEvent>,
    },
    Failed {
        reply: Reply,
        error: JournalError,
    },
}

enum Reply {
    Submit(oneshot::Sender<Result<SubmitOutcome, JournalError>>),
    Append(Option<oneshot::Sender<Result<StoredEvent, JournalError>>>),
}

impl Reply {
    fn send_err(self, error: JournalError) {
        match self {
            Reply::Submit(r) => {
                let _ = r.send(Err(error));
            }
            Reply::Append(Some(r)) => {
                let _ = r.send(Err(error));
            }
            Reply::Append(None) => {
                tracing::error!(%error, "journal append failed");
            }
        }
    }
}

struct Writer {
    conn: Connection,
    active: HashMap<Uuid, Active>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Op>, bus: Bus) {
        while let Some(first) = crate::inbox::next(&mut rx) {
            let mut batch = Vec::with_capacity(16);
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            self.apply_batch(batch, &bus);
        }
        tracing::debug!("journal writer stopped");
    }

    fn apply_batch(&mut self, batch: Vec<Op>, bus: &Bus) {
        let started = std::time::Instant::now();
        let ops = batch.len();
        let mut applied = Vec::with_capacity(batch.len());
        let commit = (|| -> Result<(), rusqlite::Error> {
            let tx = self.conn.transaction()?;
            for op in batch {
                applied.push(apply_op(&tx, &mut self.active, op));
            }
            tx.commit()
        })();
        if let Err(e) = commit {
            // Nothing of this batch is stored: nobody may see it, and the cached counters may
            // be ahead of the database.
            self.active.clear();
            tracing::error!(error = %e, "journal commit failed");
            for a in applied {
                let reply = match a {
                    Applied::Submitted { reply, .. } => Reply::Submit(reply),
                    Applied::Appended { reply, .. } => Reply::Append(reply),
                    Applied::Failed { reply, .. } => reply,
                };
                reply.send_err(JournalError::Commit(e.to_string()));
            }
            return;
        }
        tracing::trace!(
            ops,
            micros = started.elapsed().as_micros() as u64,
            "journal batch committed"
        );
        for a in applied {
            match a {
                Applied::Submitted {
                    reply,
                    outcome,
                    status,
                    started,
                } => {
                    if let SubmitOutcome::Created(event) = &outcome {
                        bus.publish(event, status);
                    }
                    if let Some((event, status)) = started {
                        bus.publish(&event, status);
                    }
                    let _ = reply.send(Ok(outcome));
                }
                Applied::Appended {
                    reply,
                    event,
                    status,
                } => {
                    bus.publish(&event, status);
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(event));
                    }
                }
                Applied::Failed { reply, error } => reply.send_err(error),
            }
        }
    }

    /// Finishes interrupted commands and lists pending ones. Runs before the writer thread.
    fn recover(&mut self) -> Result<Recovery, JournalError> {
        let tx = self.conn.transaction()?;
        let interrupted: Vec<Uuid> = {
            let mut stmt = tx.prepare(
                "SELECT command_id FROM commands WHERE status = 'executing' ORDER BY id",
            )?;
            let ids = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            ids.iter().filter_map(|s| Uuid::parse_str(s).ok()).collect()
        };
        for id in &interrupted {
            let attempts: u32 = tx.query_row(
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
            append_event(&tx, &mut self.active, *id, kind)?;
        }
        let pending = {
            let mut stmt = tx.prepare(
                "SELECT command_id, expires_at_ms FROM commands WHERE status = 'pending' ORDER BY id",
            )?;
            stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .filter_map(|(id, expires_at_ms)| {
                    Some(PendingCommand {
                        command_id: Uuid::parse_str(&id).ok()?,
                        expires_at_ms,
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

fn apply_op(tx: &Transaction<'_>, active: &mut HashMap<Uuid, Active>, op: Op) -> Applied {
    match op {
        Op::Submit {
            cmd,
            position,
            start,
            reply,
        } => match submit(tx, active, *cmd, position, start) {
            Ok(Stored {
                outcome,
                status,
                started,
            }) => Applied::Submitted {
                reply,
                outcome,
                status,
                started,
            },
            Err(error) => Applied::Failed {
                reply: Reply::Submit(reply),
                error,
            },
        },
        Op::Append {
            command_id,
            kind,
            reply,
        } => match with_savepoint(tx, active, |tx, active| {
            append_event(tx, active, command_id, kind)
        }) {
            Ok((event, status)) => Applied::Appended {
                reply,
                event,
                status,
            },
            Err(error) => Applied::Failed {
                reply: Reply::Append(reply),
                error,
            },
        },
    }
}

/// Runs `f` inside a savepoint, so one failing operation leaves the rest of its batch intact.
fn with_savepoint<T>(
    tx: &Transaction<'_>,
    active: &mut HashMap<Uuid, Active>,
    f: impl FnOnce(&Connection, &mut HashMap<Uuid, Active>) -> Result<T, JournalError>,
) -> Result<T, JournalError> {
    // Cached statements: these run for every operation, and parsing them each time showed
    // in the writer's profile.
    tx.prepare_cached("SAVEPOINT op")?.execute([])?;
    match f(tx, active) {
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
struct Stored {
    outcome: SubmitOutcome,
    status: Option<StatusEvent>,
    started: Option<(StoredEvent, Option<StatusEvent>)>,
}

fn submit(
    tx: &Transaction<'_>,
    active: &mut HashMap<Uuid, Active>,
    cmd: NewCommand,
    position: u32,
    start: bool,
) -> Result<Stored, JournalError> {
    let command_id = cmd.command_id;
    let stored = with_savepoint(tx, active, |conn, active| {
        // The insert is the existence check: a known command_id inserts nothing.
        let inserted = conn
            .prepare_cached(
                "INSERT INTO commands (command_id, source_device_id, source_user_id, agent_id,
                    provider, model, content, session_id, channel_id, created_at_ms, expires_at_ms,
                    received_at_ms, status)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 'pending')
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
                helix_mesh::proto_ext::now_ms(),
            ])?;
        if inserted == 0 {
            return Ok(None);
        }
        // What `append_event` would read back from the row just written.
        active.insert(
            command_id,
            Active {
                row: conn.last_insert_rowid(),
                last_seq: 0,
                session_id: cmd.session_id.clone(),
                provider: cmd.provider,
                source_device_id: cmd.source_device_id.clone(),
                executed_at_ms: None,
            },
        );
        let (event, status) =
            append_event(conn, active, command_id, EventKind::Queued { position })?;
        let started = if start {
            Some(append_event(
                conn,
                active,
                command_id,
                EventKind::Started { attempt: 1 },
            )?)
        } else {
            None
        };
        Ok(Some(Stored {
            outcome: SubmitOutcome::Created(event),
            status,
            started,
        }))
    });
    match stored {
        Ok(Some(stored)) => Ok(stored),
        Ok(None) => {
            let existing = journal_read::command(tx, command_id, false)?
                .ok_or(JournalError::UnknownCommand(command_id))?;
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
            active.remove(&command_id);
            Err(e)
        }
    }
}

/// Appends one event and applies its status change to the command row.
fn append_event(
    conn: &Connection,
    active: &mut HashMap<Uuid, Active>,
    command_id: Uuid,
    kind: EventKind,
) -> Result<(StoredEvent, Option<StatusEvent>), JournalError> {
    let mut state = match active.get(&command_id) {
        Some(a) => a.clone(),
        None => load_active(conn, command_id)?,
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
    let seq = state.last_seq + 1;
    let at_ms = helix_mesh::proto_ext::now_ms();
    let body = serde_json::to_string(&kind).map_err(|e| JournalError::CorruptEvent {
        command_id: command_id.to_string(),
        seq,
        problem: e.to_string(),
    })?;
    conn.prepare_cached(
        "INSERT INTO events (command, seq, at_ms, kind, body) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![state.row, seq, at_ms, kind.name(), body])?;
    let mut error = String::new();
    match &kind {
        EventKind::Started { attempt } => {
            state.executed_at_ms = Some(at_ms);
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
            error = e.clone();
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
        }
        EventKind::Queued { .. } => {
            conn.prepare_cached(
                "UPDATE commands SET status = 'pending', last_seq = ?2 WHERE id = ?1",
            )?
            .execute(params![state.row, seq])?;
        }
        EventKind::Output { .. } | EventKind::Retrying { .. } => {
            conn.prepare_cached("UPDATE commands SET last_seq = ?2 WHERE id = ?1")?
                .execute(params![state.row, seq])?;
        }
    }
    state.last_seq = seq;
    let status = kind.status_change().map(|s| StatusEvent {
        command_id,
        status: s,
        at_ms,
        session_id: state.session_id.clone(),
        provider: state.provider,
        source_device_id: state.source_device_id.clone(),
        error,
        seq,
    });
    let finished = matches!(kind, EventKind::Finished { .. });
    if finished {
        active.remove(&command_id);
    } else {
        active.insert(command_id, state);
    }
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

fn load_active(conn: &Connection, command_id: Uuid) -> Result<Active, JournalError> {
    conn.prepare_cached(
        "SELECT id, last_seq, session_id, provider, source_device_id, executed_at_ms
         FROM commands WHERE command_id = ?1",
    )?
    .query_row([command_id.to_string()], |r| {
        Ok(Active {
            row: r.get(0)?,
            last_seq: r.get(1)?,
            session_id: r.get(2)?,
            provider: r
                .get::<_, String>(3)?
                .parse()
                .unwrap_or(Provider::Unspecified),
            source_device_id: r.get(4)?,
            executed_at_ms: r.get(5)?,
        })
    })
    .optional()?
    .ok_or(JournalError::UnknownCommand(command_id))
}
