//! WAL checkpoints, kept off runtime threads. SQLite's automatic checkpoint is off on the
//! write connection: a WAL hook notes the WAL's size after each commit, and the writer thread
//! checkpoints once it reaches [`CHECKPOINT_PAGES`], after its own batch or when a commit on a
//! caller's thread asks it to.

use std::cell::Cell;

use super::writer::Writer;

/// WAL size, in pages, from which the journal checkpoints: SQLite's own default threshold.
/// The write connection's automatic checkpoint is off (a checkpoint copies pages into the
/// database file and fsyncs twice, far longer than a commit: too long for a runtime thread,
/// where commits may run); the writer thread checkpoints instead, after its own batch or when
/// a caller's commit asks it to.
pub(super) const CHECKPOINT_PAGES: i32 = 1000;

thread_local! {
    /// The WAL's size in pages after the commit that just ran on this thread, if it wrote
    /// anything (set by [`note_wal_size`]).
    static WAL_PAGES: Cell<Option<i32>> = const { Cell::new(None) };
}

/// SQLite's WAL hook: runs inside each commit, on the committing thread. Installing it also
/// turns SQLite's automatic checkpoint off (that is a WAL hook too).
pub(super) fn note_wal_size(
    _wal: &rusqlite::hooks::Wal,
    pages: std::ffi::c_int,
) -> rusqlite::Result<()> {
    WAL_PAGES.with(|p| p.set(Some(pages)));
    Ok(())
}

/// Forgets what an earlier commit on this thread noted: called before a batch, so that
/// [`take_wal_size`] afterwards reports that batch's commit only.
pub(super) fn forget_wal_size() {
    WAL_PAGES.with(|p| p.set(None));
}

/// The WAL's size in pages after the commit that just ran on this thread, if it wrote
/// anything.
pub(super) fn take_wal_size() -> Option<i32> {
    WAL_PAGES.with(Cell::take)
}

impl Writer {
    /// Whether the WAL has grown enough for a checkpoint.
    pub(super) fn checkpoint_due(&self) -> bool {
        self.wal_pages >= CHECKPOINT_PAGES
    }

    /// Copies what the WAL holds into the database file (PASSIVE: never waits for readers).
    pub(super) fn checkpoint(&mut self) {
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
