//! The journal: every command and every event, in SQLite (WAL mode), in the hub's data dir.
//!
//! One write connection, behind a lock, used by a writer thread and by callers that find it
//! free. Most appends reach the writer thread through a bounded channel; it takes whatever has
//! queued up (up to [`MAX_BATCH`]), applies it in one transaction, commits, and only then hands
//! the events to the [`Bus`] and answers the callers: "stored before sent" holds per batch, and
//! a stream of tiny output events costs one commit per batch rather than one per token, without
//! ever waiting for a batch to fill. An operation somebody waits on (a submit, an append whose
//! commit is awaited, a command's first output) is applied on the caller's own thread when the
//! writer is free and nothing is queued ahead of it: the same transaction and the same order,
//! without two thread hand-offs.
//!
//! Reads use a small pool of read-only connections on the blocking thread pool; WAL lets them
//! run beside the writer.
//!
//! This file holds the handle: opening, where an operation is applied, reads. The rest:
//! - `writer`: the write connection, the lock it shares, the writer thread's loop; `inbox`:
//!   how that thread waits for work;
//! - `op`: operations and their replies; `batch`: one transaction of operations, published
//!   after its commit; `sql`: each operation's SQL;
//! - `checkpoint`: WAL checkpoints, off runtime threads; `recovery`: finishing what a crash
//!   interrupted, before the writer thread starts;
//! - `schema`: tables and connection settings; `read`: the queries.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    thread,
};

use helix_mesh::pb::{self, CommandStatus};
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

mod batch;
mod checkpoint;
mod inbox;
mod op;
mod read;
mod recovery;
mod schema;
#[cfg(test)]
mod session_tests;
mod sessions;
mod sql;
#[cfg(test)]
mod tests;
mod writer;

pub use read::{CommandRecord, ListFilter, ListPage};
pub use recovery::{PendingCommand, RESTARTED_ERROR, Recovery};

use op::Op;
use schema::{SCHEMA_VERSION, configure, open_reader, open_writer, upgrade};
use writer::{Request, SharedWriter, Writer};

use crate::{
    bus::Bus,
    command::{EventKind, NewCommand, StoredEvent},
    history::{HistoryBudget, SessionHistory},
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
    #[error(
        "journal {path}: upgrading it to schema version {to} failed (it is left as it was): {source}"
    )]
    Migrate {
        path: PathBuf,
        to: i64,
        #[source]
        source: rusqlite::Error,
    },
    #[error("journal {path}: cannot start its writer thread: {source}")]
    WriterThread {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("journal: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("journal: stored event of command {command_id} seq {seq} is unreadable: {source}")]
    CorruptEvent {
        command_id: String,
        seq: u64,
        #[source]
        source: serde_json::Error,
    },
    #[error("journal: unknown command {0}")]
    UnknownCommand(Uuid),
    /// A batch's commit failed; every caller of the batch gets the same error.
    #[error("journal: commit failed: {0}")]
    Commit(#[source] Arc<rusqlite::Error>),
    #[error("journal: the writer has stopped")]
    Closed,
}

/// What the executor knows of a command's turn of its session when the command ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TurnEnd {
    /// The whole answer of a completed command, as its output events carry it (collected
    /// while they streamed, so nothing is read back); `None`: read it from those events.
    pub answer: Option<String>,
    /// The Claude Code session the command's last attempt ran in.
    pub cli_session: Option<String>,
    /// How many completed turns that session holds, this one included.
    pub cli_turns: u32,
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

/// Where an operation is applied.
#[derive(Debug, Clone, Copy)]
enum Apply {
    /// On the caller's thread if the writer is free and nothing is queued, else queued.
    HereIfFree,
    /// By the writer thread, batched with whatever else is queued.
    Queued,
}

/// Handle to the journal; cheap to clone.
#[derive(Debug, Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tx: mpsc::Sender<Request>,
    writer: Arc<SharedWriter>,
    /// Shared with the writer: commands whose unanswered appends were lost.
    lost: Arc<writer::LostWrites>,
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
}

impl Journal {
    /// Opens (or creates) the journal in `data_dir`, finishes commands interrupted by a crash,
    /// and starts the writer thread. Events are published to `bus` after they are committed.
    pub fn open(data_dir: &Path, bus: Bus) -> Result<(Journal, Recovery), JournalError> {
        let (journal, recovery, inbox) = Self::open_without_writer_thread(data_dir, bus)?;
        let writer = journal.inner.writer.clone();
        thread::Builder::new()
            .name("helix-journal".into())
            .spawn(move || writer.run(inbox))
            .map_err(|source| JournalError::WriterThread {
                path: journal.inner.path.clone(),
                source,
            })?;
        Ok((journal, recovery))
    }

    /// The journal and the writer thread's inbox, with nobody reading it yet.
    fn open_without_writer_thread(
        data_dir: &Path,
        bus: Bus,
    ) -> Result<(Journal, Recovery, mpsc::Receiver<Request>), JournalError> {
        let path = data_dir.join(FILE_NAME);
        let open_err = |source| JournalError::Open {
            path: path.clone(),
            source,
        };
        let conn = open_writer(&path).map_err(open_err)?;
        configure(&conn).map_err(open_err)?;
        upgrade(&conn, &path)?;

        let mut writer = Writer::new(conn);
        let recovery = writer.recover()?;
        let lost = writer.lost.clone();

        let (tx, inbox) = mpsc::channel(INBOX_CAPACITY);
        let journal = Journal {
            inner: Arc::new(Inner {
                tx,
                writer: Arc::new(SharedWriter::new(writer, bus)),
                lost,
                path,
                readers: Mutex::new(Vec::new()),
            }),
        };
        Ok((journal, recovery, inbox))
    }

    /// Why an event of `command_id` appended without waiting for its answer
    /// ([`Journal::append_queued`], [`Journal::append_here_if_free`]) was not stored, once;
    /// `None` while all were. The executor asks after each output and before the command's
    /// end, and fails the command rather than complete it with text missing.
    pub fn lost_write(&self, command_id: &Uuid) -> Option<String> {
        self.inner.lost.take(command_id)
    }

    /// The data dir the journal is in (other state of the hub's sessions lives there too).
    pub fn data_dir(&self) -> &Path {
        self.inner.path.parent().unwrap_or(Path::new("."))
    }

    /// Tells the followers of `command_id` that it ended with `end` although the journal
    /// could not store that (the disk stays full): they stop waiting. Nothing is stored; the
    /// row stays `executing` until the next start's recovery finishes it `failed`, at the seq
    /// given here (the one after the last stored event).
    pub async fn publish_unstored_end(&self, command_id: Uuid, end: EventKind) {
        let Ok(Some(record)) = self.command(command_id).await else {
            return;
        };
        let (seq, at_ms) = (record.last_seq + 1, helix_mesh::proto_ext::now_ms());
        // Watchers see the change too, as they would a stored one.
        let c = &record.command;
        let status = crate::bus::StatusEvent::for_event(
            command_id,
            &end,
            seq,
            at_ms,
            &c.session_id,
            c.provider,
            &c.source_device_id,
        );
        let event = StoredEvent {
            command_id,
            seq,
            at_ms,
            kind: end,
        };
        self.inner.writer.bus().publish(&event, status);
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
        self.send(
            Op::Submit {
                cmd: Box::new(cmd),
                position,
                start,
                reply,
            },
            Apply::HereIfFree,
        )
        .await?;
        rx.await.map_err(|_| JournalError::Closed)?
    }

    /// Appends an event and waits until it is committed (and published). The commit runs on
    /// the caller's thread when the writer is free and nothing is queued ahead, else on the
    /// writer thread.
    pub async fn append(
        &self,
        command_id: Uuid,
        kind: EventKind,
    ) -> Result<StoredEvent, JournalError> {
        self.append_with_turn(command_id, kind, None).await
    }

    /// Appends a command's `finished` event with its turn (see [`TurnEnd`]) and waits until
    /// both are committed, as [`Journal::append`] does.
    pub async fn finish(
        &self,
        command_id: Uuid,
        end: EventKind,
        turn: TurnEnd,
    ) -> Result<StoredEvent, JournalError> {
        self.append_with_turn(command_id, end, Some(Box::new(turn)))
            .await
    }

    async fn append_with_turn(
        &self,
        command_id: Uuid,
        kind: EventKind,
        turn: Option<Box<TurnEnd>>,
    ) -> Result<StoredEvent, JournalError> {
        let (reply, rx) = oneshot::channel();
        self.send(
            Op::Append {
                command_id,
                kind,
                turn,
                reply: Some(reply),
            },
            Apply::HereIfFree,
        )
        .await?;
        rx.await.map_err(|_| JournalError::Closed)?
    }

    /// Queues an event for the writer thread, which commits it in a batch with whatever else
    /// is queued; the caller does not wait for that commit, only for room in the writer's
    /// inbox when it is full. Order with every other operation on this handle is kept. For a
    /// stream of events, so that they share commits.
    pub async fn append_queued(
        &self,
        command_id: Uuid,
        kind: EventKind,
    ) -> Result<(), JournalError> {
        self.append_without_reply(command_id, kind, Apply::Queued)
            .await
    }

    /// Appends an event without waiting for the writer thread: when the writer is free and
    /// nothing is queued ahead, the event is committed and published on the caller's thread
    /// before this returns; otherwise it is queued as by [`Journal::append_queued`], and the
    /// caller does not wait for its commit. For the one event somebody is waiting on (a
    /// command's first output), which then skips two thread hand-offs. A stream of events
    /// should queue instead, so that they share commits.
    pub async fn append_here_if_free(
        &self,
        command_id: Uuid,
        kind: EventKind,
    ) -> Result<(), JournalError> {
        self.append_without_reply(command_id, kind, Apply::HereIfFree)
            .await
    }

    /// Sends an append nobody waits an answer for: a failure is only logged.
    async fn append_without_reply(
        &self,
        command_id: Uuid,
        kind: EventKind,
        apply: Apply,
    ) -> Result<(), JournalError> {
        let op = Op::Append {
            command_id,
            kind,
            turn: None,
            reply: None,
        };
        self.send(op, apply).await
    }

    async fn send(&self, op: Op, apply: Apply) -> Result<(), JournalError> {
        let op = match apply {
            Apply::HereIfFree => match self.inner.writer.try_apply_now(op) {
                Ok(checkpoint_due) => {
                    if checkpoint_due {
                        self.ask_for_checkpoint();
                    }
                    return Ok(());
                }
                Err(op) => op,
            },
            Apply::Queued => op,
        };
        let permit = self
            .inner
            .tx
            .reserve()
            .await
            .map_err(|_| JournalError::Closed)?;
        self.inner.writer.will_queue();
        permit.send(Request::Apply(op));
        Ok(())
    }

    /// Wakes the writer thread for a checkpoint. A full inbox means it is busy already: then
    /// its own commits checkpoint as SQLite's threshold says, and the next commit on a
    /// caller's thread asks again.
    fn ask_for_checkpoint(&self) {
        match self.inner.tx.try_reserve() {
            Ok(permit) => {
                self.inner.writer.will_queue();
                permit.send(Request::Checkpoint);
            }
            Err(_) => self.inner.writer.checkpoint_not_asked(),
        }
    }

    /// Events of a command with seq greater than `after_seq`, in order, at most `limit`.
    pub async fn events_after(
        &self,
        command_id: Uuid,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, JournalError> {
        self.read(move |c| read::events_after(c, command_id, after_seq, limit))
            .await
    }

    /// One command, without its output.
    pub async fn command(&self, command_id: Uuid) -> Result<Option<CommandRecord>, JournalError> {
        self.read(move |c| read::command(c, command_id)).await
    }

    /// One command, with its whole output (so far, for a command still running).
    pub async fn command_with_output(
        &self,
        command_id: Uuid,
    ) -> Result<Option<CommandRecord>, JournalError> {
        self.read(move |c| read::command_with_output(c, command_id))
            .await
    }

    /// The completed turns of `session_id` that fit `budget` (see [`SessionHistory`]). A
    /// session runs one command at a time, so while one of its commands runs these are all
    /// the turns before it.
    pub async fn session_history(
        &self,
        session_id: String,
        budget: HistoryBudget,
    ) -> Result<SessionHistory, JournalError> {
        self.read(move |c| read::session_history(c, &session_id, &budget))
            .await
    }

    /// A page of commands, newest first.
    pub async fn list(&self, filter: ListFilter) -> Result<ListPage, JournalError> {
        self.read(move |c| read::list(c, &filter)).await
    }

    /// The sessions with ended turns, the most recently active first (`ListSessions`).
    pub async fn list_sessions(
        &self,
        limit: usize,
    ) -> Result<Vec<pb::SessionSummary>, JournalError> {
        self.read(move |c| sessions::list_sessions(c, limit)).await
    }

    /// A session's newest ended turns, oldest first; `None` when it has none (`GetSession`).
    pub async fn get_session(
        &self,
        session_id: String,
        max_turns: usize,
    ) -> Result<Option<pb::Session>, JournalError> {
        self.read(move |c| sessions::get_session(c, &session_id, max_turns))
            .await
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
