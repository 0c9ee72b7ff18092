//! The journal's writer: applies operations in batches, one transaction each, and publishes
//! what a batch stored only after its commit. The writer thread applies what was queued; a
//! caller that finds the writer free and nothing queued applies its own operation at once.

use std::{
    cell::Cell,
    collections::HashMap,
    sync::{
        Mutex, MutexGuard, PoisonError, TryLockError,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{
    JournalError, MAX_BATCH, PendingCommand, RESTARTED_ERROR, Recovery, SubmitOutcome, inbox,
    sql::{Active, Isolation, Stored, append_event, isolated, submit},
};
use crate::{
    bus::{Bus, StatusEvent},
    command::{EventKind, FinalStatus, NewCommand, StoredEvent},
};

pub(super) enum Op {
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

/// What the writer thread's inbox carries.
pub(super) enum Request {
    Apply(Op),
    /// Copy the WAL into the database file, after the batch this arrives in.
    Checkpoint,
}

/// WAL size, in pages, from which the journal checkpoints: SQLite's own default threshold.
/// The write connection's automatic checkpoint is off (a checkpoint takes milliseconds, with
/// two fsyncs: too long for a runtime thread, where commits may run); the writer thread
/// checkpoints instead, after its own batch or when a caller's commit asks it to.
pub(super) const CHECKPOINT_PAGES: i32 = 1000;

thread_local! {
    /// The WAL's size in pages after the commit that just ran on this thread, if it wrote
    /// anything (set by [`note_wal_size`]).
    static WAL_PAGES: Cell<Option<i32>> = const { Cell::new(None) };
}

/// SQLite's WAL hook: runs inside each commit, on the committing thread. Installing it also
/// turns SQLite's automatic checkpoint off (that is a WAL hook too).
fn note_wal_size(_wal: &rusqlite::hooks::Wal, pages: std::ffi::c_int) -> rusqlite::Result<()> {
    WAL_PAGES.with(|p| p.set(Some(pages)));
    Ok(())
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

pub(super) struct Writer {
    conn: Connection,
    active: HashMap<Uuid, Active>,
    /// The WAL's size in pages after the last commit.
    wal_pages: i32,
}

impl Writer {
    /// The writer for the journal's write connection (schema already in place). From here on
    /// its commits never checkpoint by themselves: see [`CHECKPOINT_PAGES`].
    pub(super) fn new(conn: Connection) -> Self {
        conn.wal_hook(Some(note_wal_size));
        Self {
            conn,
            active: HashMap::new(),
            wal_pages: 0,
        }
    }

    /// Whether the WAL has grown enough for a checkpoint.
    fn checkpoint_due(&self) -> bool {
        self.wal_pages >= CHECKPOINT_PAGES
    }

    /// Copies what the WAL holds into the database file (PASSIVE: never waits for readers).
    fn checkpoint(&mut self) {
        let started = std::time::Instant::now();
        match self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        {
            Ok(()) => {
                // The next commit writes from the WAL's start again (unless a reader still
                // needs its end), and its hook reports the size afresh.
                self.wal_pages = 0;
                tracing::trace!(
                    micros = started.elapsed().as_micros() as u64,
                    "journal checkpoint"
                );
            }
            Err(e) => tracing::warn!(error = %e, "journal checkpoint failed"),
        }
    }
}

/// The writer, shared by the writer thread and the callers that find it free.
pub(super) struct Shared {
    writer: Mutex<Writer>,
    /// Operations sent to the writer thread and not yet applied.
    queued: AtomicUsize,
    /// A checkpoint was asked of the writer thread and has not run yet.
    checkpoint_asked: AtomicBool,
    bus: Bus,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shared {{ queued: {:?}, .. }}", self.queued)
    }
}

impl Shared {
    pub(super) fn new(writer: Writer, bus: Bus) -> Self {
        Self {
            writer: Mutex::new(writer),
            queued: AtomicUsize::new(0),
            checkpoint_asked: AtomicBool::new(false),
            bus,
        }
    }

    /// Applies `op` on the caller's thread, as a batch of its own, when the writer is free and
    /// nothing is queued ahead of it (so order is kept); gives it back otherwise. `Ok(true)`:
    /// a checkpoint is due and the caller should ask the writer thread for it.
    pub(super) fn try_apply_now(&self, op: Op) -> Result<bool, Op> {
        let mut writer = match self.writer.try_lock() {
            Ok(w) => w,
            Err(TryLockError::WouldBlock) => return Err(op),
            Err(TryLockError::Poisoned(p)) => self.unpoisoned(p),
        };
        if self.queued.load(Ordering::Acquire) != 0 {
            return Err(op);
        }
        writer.apply_batch(vec![op], &self.bus);
        let due = writer.checkpoint_due();
        Ok(due && !self.checkpoint_asked.swap(true, Ordering::AcqRel))
    }

    #[cfg(test)]
    pub(super) fn is_poisoned(&self) -> bool {
        self.writer.is_poisoned()
    }

    /// Holds the writer, as a long batch would.
    #[cfg(test)]
    pub(super) fn hold(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| self.unpoisoned(p))
    }

    /// A checkpoint that was due could not be asked for: the next caller commit asks again.
    pub(super) fn checkpoint_not_asked(&self) {
        self.checkpoint_asked.store(false, Ordering::Release);
    }

    /// Counts an operation about to be sent to the writer thread.
    pub(super) fn will_queue(&self) {
        self.queued.fetch_add(1, Ordering::AcqRel);
    }

    pub(super) fn run(&self, mut rx: mpsc::Receiver<Request>) {
        while let Some(first) = inbox::next(&mut rx) {
            let mut batch = Vec::with_capacity(16);
            let mut checkpoint = false;
            let mut take = |request| match request {
                Request::Apply(op) => batch.push(op),
                Request::Checkpoint => checkpoint = true,
            };
            take(first);
            let mut n = 1;
            while n < MAX_BATCH {
                match rx.try_recv() {
                    Ok(request) => take(request),
                    Err(_) => break,
                }
                n += 1;
            }
            let mut writer = self.writer.lock().unwrap_or_else(|p| self.unpoisoned(p));
            if !batch.is_empty() {
                writer.apply_batch(batch, &self.bus);
            }
            if checkpoint || writer.checkpoint_due() {
                self.checkpoint_asked.store(false, Ordering::Release);
                writer.checkpoint();
            }
            self.queued.fetch_sub(n, Ordering::AcqRel);
        }
        tracing::debug!("journal writer stopped");
    }

    /// The writer after a panic mid-batch: its transaction was rolled back, so its cached
    /// counters may be ahead of the database. They are dropped once, and the lock is usable
    /// again.
    fn unpoisoned<'a>(&self, p: PoisonError<MutexGuard<'a, Writer>>) -> MutexGuard<'a, Writer> {
        self.writer.clear_poison();
        let mut w = p.into_inner();
        w.active.clear();
        w
    }
}

impl Writer {
    fn apply_batch(&mut self, batch: Vec<Op>, bus: &Bus) {
        let started = std::time::Instant::now();
        let ops = batch.len();
        let mut applied = Vec::with_capacity(batch.len());
        WAL_PAGES.with(|p| p.set(None));
        let isolation = if ops == 1 {
            Isolation::Alone
        } else {
            Isolation::Savepoint
        };
        let commit = (|| -> Result<(), rusqlite::Error> {
            let tx = Batch::begin(&self.conn)?;
            for op in batch {
                applied.push(apply_op(tx.conn, &mut self.active, op, isolation));
            }
            if isolation == Isolation::Alone && matches!(applied[..], [Applied::Failed { .. }]) {
                // Its only operation failed: dropping the batch rolls it back, and the caller
                // gets that operation's error.
                return Ok(());
            }
            tx.commit()
        })();
        if let Some(pages) = WAL_PAGES.with(Cell::take) {
            self.wal_pages = pages;
        }
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
            append_event(tx.conn, &mut self.active, *id, kind)?;
        }
        let pending = {
            let mut stmt = tx.conn.prepare(
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

/// A transaction of the write connection (each batch's, and recovery's), begun and committed
/// with cached statements: rusqlite's `Connection::transaction` parses `BEGIN` and `COMMIT`
/// again each time (~5 % of a commit's instructions here). Rolled back when dropped uncommitted: after an error, or a panic
/// mid-batch (the writer's lock is then recovered by `Shared::unpoisoned`).
struct Batch<'c> {
    conn: &'c Connection,
}

impl<'c> Batch<'c> {
    fn begin(conn: &'c Connection) -> rusqlite::Result<Self> {
        conn.prepare_cached("BEGIN")?.execute([])?;
        Ok(Self { conn })
    }

    fn commit(self) -> rusqlite::Result<()> {
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if !self.conn.is_autocommit()
            && let Err(e) = self.conn.execute_batch("ROLLBACK")
        {
            tracing::error!(error = %e, "journal rollback failed");
        }
    }
}

fn apply_op(
    tx: &Connection,
    active: &mut HashMap<Uuid, Active>,
    op: Op,
    isolation: Isolation,
) -> Applied {
    match op {
        Op::Submit {
            cmd,
            position,
            start,
            reply,
        } => match submit(tx, active, *cmd, position, start, isolation) {
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
        } => match isolated(tx, active, isolation, |tx, active| {
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

#[cfg(test)]
mod batch_tests {
    use super::*;

    fn count(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_batch_left_by_a_panic_is_rolled_back_and_the_next_one_commits() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x)").unwrap();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let tx = Batch::begin(&conn).unwrap();
            tx.conn.execute("INSERT INTO t VALUES (1)", []).unwrap();
            panic!("mid-batch");
        }));
        assert!(panicked.is_err());
        assert!(conn.is_autocommit(), "no transaction left open");
        assert_eq!(count(&conn), 0);

        let tx = Batch::begin(&conn).unwrap();
        tx.conn.execute("INSERT INTO t VALUES (2)", []).unwrap();
        tx.commit().unwrap();
        assert_eq!(count(&conn), 1);
    }
}
