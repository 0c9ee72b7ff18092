//! The journal's writer: its one write connection with the per-command cache, the lock that
//! the writer thread and the callers that find it free share, and the writer thread's loop,
//! which takes what has queued up and applies it as one batch.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError, TryLockError,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use rusqlite::Connection;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{MAX_BATCH, checkpoint, inbox, op::Op, sql::LiveCommand};
use crate::bus::Bus;

/// What the writer thread's inbox carries.
pub(super) enum Request {
    Apply(Op),
    /// Copy the WAL into the database file, after the batch this arrives in.
    Checkpoint,
}

/// The write connection and what the writer caches about live commands.
pub(super) struct Writer {
    pub(super) conn: Connection,
    pub(super) live: HashMap<Uuid, LiveCommand>,
    /// The WAL's size in pages after the last commit.
    pub(super) wal_pages: i32,
    /// Commands whose unanswered appends were not stored.
    pub(super) lost: Arc<LostWrites>,
}

/// Commands some of whose events were not stored although nobody waited for the answer (a
/// streamed output is appended without one): a failed commit (a full disk) or a failed
/// insert. The executor asks before it goes on, and ends such a command failed, saying why,
/// instead of completing it with text missing.
#[derive(Debug, Default)]
pub(super) struct LostWrites {
    /// Whether `commands` holds anything: the check made for every output stays one load.
    any: AtomicBool,
    commands: Mutex<HashMap<Uuid, String>>,
}

impl LostWrites {
    /// Notes that an event of `command_id` was not stored, and why (the first reason kept).
    pub(super) fn record(&self, command_id: Uuid, error: &str) {
        let mut commands = self.commands.lock().unwrap_or_else(PoisonError::into_inner);
        commands
            .entry(command_id)
            .or_insert_with(|| error.to_owned());
        self.any.store(true, Ordering::Release);
    }

    /// Why an event of `command_id` was not stored, once; `None` if all were.
    pub(super) fn take(&self, command_id: &Uuid) -> Option<String> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let mut commands = self.commands.lock().unwrap_or_else(PoisonError::into_inner);
        let error = commands.remove(command_id);
        if commands.is_empty() {
            self.any.store(false, Ordering::Release);
        }
        error
    }
}

impl Writer {
    /// The writer for the journal's write connection (schema already in place). From here on
    /// its commits never checkpoint by themselves: see [`checkpoint::CHECKPOINT_PAGES`].
    pub(super) fn new(conn: Connection) -> Self {
        conn.wal_hook(Some(checkpoint::note_wal_size));
        Self {
            conn,
            live: HashMap::new(),
            wal_pages: 0,
            lost: Arc::default(),
        }
    }
}

/// The [`Writer`] behind its lock, shared by the writer thread and the callers that find it
/// free, with the count of operations queued for the thread (a caller never applies ahead of
/// them) and the bus each commit publishes to.
pub(super) struct SharedWriter {
    writer: Mutex<Writer>,
    /// Operations sent to the writer thread and not yet applied.
    queued: AtomicUsize,
    /// A checkpoint was asked of the writer thread and has not run yet.
    checkpoint_asked: AtomicBool,
    bus: Bus,
}

impl std::fmt::Debug for SharedWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedWriter {{ queued: {:?}, .. }}", self.queued)
    }
}

impl SharedWriter {
    /// The bus the writer publishes to.
    pub(super) fn bus(&self) -> &Bus {
        &self.bus
    }

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

    /// The writer thread's loop: waits for a request, takes whatever else has queued up (at
    /// most [`MAX_BATCH`]), applies it as one batch, checkpoints when asked or due. Ends once
    /// every sender is gone and the inbox is empty.
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
        w.live.clear();
        w
    }
}
