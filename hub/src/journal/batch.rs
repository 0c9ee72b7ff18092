//! A batch: operations applied in one transaction of the write connection, each in its own
//! savepoint unless it is alone, and published and answered only after the commit. A batch
//! that does not commit is seen by nobody, and every caller that waits is told so.

use std::sync::Arc;

use rusqlite::Connection;

use super::{
    JournalError,
    checkpoint::{forget_wal_size, take_wal_size},
    op::{Applied, Op, apply_op},
    sql::Isolation,
    writer::Writer,
};
use crate::bus::Bus;

impl Writer {
    /// Applies `batch` in one transaction, then publishes what it stored and answers the
    /// callers; after a failed commit, answers each with the error instead.
    pub(super) fn apply_batch(&mut self, batch: Vec<Op>, bus: &Bus) {
        let started = std::time::Instant::now();
        let ops = batch.len();
        let mut applied = Vec::with_capacity(batch.len());
        forget_wal_size();
        let isolation = if ops == 1 {
            Isolation::Alone
        } else {
            Isolation::Savepoint
        };
        let commit = (|| -> Result<(), rusqlite::Error> {
            let tx = Batch::begin(&self.conn)?;
            for op in batch {
                applied.push(apply_op(tx.conn, &mut self.live, op, isolation));
            }
            if isolation == Isolation::Alone && matches!(applied[..], [Applied::Failed { .. }]) {
                // Its only operation failed: dropping the batch rolls it back, and the caller
                // gets that operation's error.
                return Ok(());
            }
            tx.commit()
        })();
        if let Some(pages) = take_wal_size() {
            self.wal_pages = pages;
        }
        if let Err(e) = commit {
            // Nothing of this batch is stored: nobody may see it, and the cached counters may
            // be ahead of the database.
            self.live.clear();
            tracing::error!(error = %e, "journal commit failed");
            let text = e.to_string();
            for a in &applied {
                if let Some(command_id) = a.unanswered_append() {
                    self.lost.record(command_id, &text);
                }
            }
            let e = Arc::new(e);
            for a in applied {
                a.into_reply().send_err(JournalError::Commit(e.clone()));
            }
            return;
        }
        tracing::trace!(
            ops,
            micros = started.elapsed().as_micros() as u64,
            "journal batch committed"
        );
        for a in applied {
            if let Applied::Failed { error, .. } = &a
                && let Some(command_id) = a.unanswered_append()
            {
                self.lost.record(command_id, &error.to_string());
            }
            a.publish_and_reply(bus);
        }
    }
}

/// A transaction of the write connection (each batch's, and recovery's), begun and committed
/// with cached statements: rusqlite's `Connection::transaction` parses `BEGIN` and `COMMIT`
/// again each time, work every commit would repeat for nothing. Rolled back when dropped
/// uncommitted: after an error, or a panic mid-batch (the writer's lock is then recovered by
/// `SharedWriter::unpoisoned`).
pub(super) struct Batch<'c> {
    pub(super) conn: &'c Connection,
}

impl<'c> Batch<'c> {
    pub(super) fn begin(conn: &'c Connection) -> rusqlite::Result<Self> {
        conn.prepare_cached("BEGIN")?.execute([])?;
        Ok(Self { conn })
    }

    pub(super) fn commit(self) -> rusqlite::Result<()> {
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

#[cfg(test)]
mod tests {
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
