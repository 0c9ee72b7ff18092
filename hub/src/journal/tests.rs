//! Where the journal applies an operation: on the caller's thread when the writer is free and
//! nothing is queued, else in the writer thread's order. These journals start without their
//! writer thread, so a queued operation stays queued until a test starts one.

use std::time::Duration;

use tokio::time::timeout;

use super::*;

fn output(text: &str) -> EventKind {
    EventKind::Output { text: text.into() }
}

fn texts(events: &[StoredEvent]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Output { text } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

/// The next `n` events published for a subscribed command (5 s for each).
async fn next_events(live: &mut crate::bus::CommandSubscription, n: usize) -> Vec<StoredEvent> {
    let mut seen = Vec::new();
    for _ in 0..n {
        let event = timeout(Duration::from_secs(5), live.recv())
            .await
            .unwrap()
            .unwrap();
        seen.push(event.as_ref().clone());
    }
    seen
}

/// A journal with a started command and no writer thread.
async fn journal_with_command() -> (
    tempfile::TempDir,
    Journal,
    Bus,
    mpsc::Receiver<Request>,
    Uuid,
) {
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::new();
    let (journal, _, inbox) = Journal::open_without_writer_thread(dir.path(), bus.clone()).unwrap();
    let id = Uuid::new_v4();
    // Awaited, with no writer thread: it can only finish by being applied right here.
    let submitted = timeout(
        Duration::from_secs(5),
        journal.submit(NewCommand::for_test(id), 0, true),
    )
    .await
    .expect("a submit with the writer free is applied by its caller")
    .unwrap();
    assert!(matches!(submitted, SubmitOutcome::Created(_)));
    (dir, journal, bus, inbox, id)
}

#[tokio::test]
async fn an_append_here_with_the_writer_free_is_stored_and_published_before_it_returns() {
    let (_dir, journal, bus, _inbox, id) = journal_with_command().await;
    let mut live = bus.subscribe_command(id);
    journal
        .append_here_if_free(id, output("first"))
        .await
        .unwrap();

    let published = timeout(Duration::ZERO, live.recv()).await;
    let event = published
        .expect("published before append_here_if_free returned")
        .unwrap();
    assert_eq!(event.kind, output("first"));
    assert_eq!(event.seq, 3, "after queued and started");
    let stored = journal.events_after(id, 0, 10).await.unwrap();
    assert_eq!(texts(&stored), ["first"]);
}

#[tokio::test]
async fn an_append_here_behind_queued_ones_waits_its_turn() {
    let (_dir, journal, bus, inbox, id) = journal_with_command().await;
    let mut live = bus.subscribe_command(id);
    journal.append_queued(id, output("1")).await.unwrap();
    journal.append_queued(id, output("2")).await.unwrap();
    journal.append_here_if_free(id, output("3")).await.unwrap();
    assert!(
        timeout(Duration::ZERO, live.recv()).await.is_err(),
        "nothing may be stored ahead of what is queued"
    );

    let shared = journal.inner.writer.clone();
    let writer = std::thread::spawn(move || shared.run(inbox));
    let seen = next_events(&mut live, 3).await;
    assert_eq!(texts(&seen), ["1", "2", "3"]);
    assert_eq!(seen.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4, 5]);
    drop(journal);
    writer.join().unwrap();
}

#[tokio::test]
async fn an_append_here_never_waits_for_a_busy_writer() {
    let (_dir, journal, bus, inbox, id) = journal_with_command().await;
    let mut live = bus.subscribe_command(id);
    let held = journal.inner.writer.clone();
    let guard = held.hold();
    // Blocking on the writer's lock would block this thread, not just this task: the call
    // runs on a thread of its own, and must come back while the writer is still held.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let caller = journal.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let result = rt.block_on(caller.append_here_if_free(id, output("late")));
        let _ = done_tx.send(result.is_ok());
    });
    let returned = done_rx.recv_timeout(Duration::from_secs(5));
    assert_eq!(
        returned,
        Ok(true),
        "append_here_if_free waited for a busy writer"
    );
    drop(guard);

    let shared = journal.inner.writer.clone();
    let writer = std::thread::spawn(move || shared.run(inbox));
    let event = timeout(Duration::from_secs(5), live.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.kind, output("late"));
    drop(journal);
    writer.join().unwrap();
}

/// 16 KiB: five pages of the WAL per output event.
fn big_text() -> String {
    "x".repeat(16 * 1024)
}

/// More events of [`big_text`] than the WAL holds before a checkpoint is due.
const PAST_THE_CHECKPOINT: usize = checkpoint::CHECKPOINT_PAGES as usize / 4;

async fn wait_for_growth(what: impl Fn() -> u64, from: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while what() == from {
        assert!(std::time::Instant::now() < deadline, "no checkpoint");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn commits_on_callers_threads_leave_checkpoints_to_the_writer_thread() {
    let (_dir, journal, _bus, inbox, id) = journal_with_command().await;
    let db_len = || std::fs::metadata(journal.path()).unwrap().len();
    let before = db_len();
    let text = big_text();
    let mut appended = 0;
    // A commit that checkpointed would grow the database file.
    while inbox.is_empty() {
        assert!(
            appended < PAST_THE_CHECKPOINT,
            "no checkpoint asked for after {appended} big events"
        );
        journal
            .append_here_if_free(id, output(&text))
            .await
            .unwrap();
        appended += 1;
        assert_eq!(db_len(), before, "a caller's commit checkpointed");
    }
    assert!(
        appended > 1,
        "the first commit cannot have filled the WAL: the threshold is not being applied"
    );

    // The writer thread has nothing to commit, only the checkpoint to run.
    let shared = journal.inner.writer.clone();
    let writer = std::thread::spawn(move || shared.run(inbox));
    wait_for_growth(db_len, before).await;
    let stored = journal.events_after(id, 0, 1000).await.unwrap();
    assert_eq!(texts(&stored).len(), appended);
    drop(journal);
    writer.join().unwrap();
}

#[tokio::test]
async fn the_writer_thread_checkpoints_its_own_batches_when_the_wal_is_full() {
    let (_dir, journal, bus, inbox, id) = journal_with_command().await;
    let db_len = || std::fs::metadata(journal.path()).unwrap().len();
    let before = db_len();
    let mut live = bus.subscribe_command(id);
    let shared = journal.inner.writer.clone();
    let writer = std::thread::spawn(move || shared.run(inbox));
    // Queued, so only the writer thread commits them; nobody asks it for a checkpoint.
    let text = big_text();
    for _ in 0..PAST_THE_CHECKPOINT {
        journal.append_queued(id, output(&text)).await.unwrap();
    }
    for _ in 0..PAST_THE_CHECKPOINT {
        timeout(Duration::from_secs(10), live.recv())
            .await
            .unwrap()
            .unwrap();
    }
    wait_for_growth(db_len, before).await;
    drop(journal);
    writer.join().unwrap();
}

#[tokio::test]
async fn a_panic_while_holding_the_writer_leaves_it_usable() {
    let (_dir, journal, bus, _inbox, id) = journal_with_command().await;
    let shared = journal.inner.writer.clone();
    let panicked = std::thread::spawn(move || {
        let _writer = shared.hold();
        panic!("a bug mid-batch");
    })
    .join();
    assert!(panicked.is_err());
    assert!(journal.inner.writer.is_poisoned());

    let mut live = bus.subscribe_command(id);
    journal
        .append_here_if_free(id, output("after"))
        .await
        .unwrap();
    let event = timeout(Duration::ZERO, live.recv()).await.unwrap().unwrap();
    assert_eq!((event.seq, &event.kind), (3, &output("after")));
    assert!(
        !journal.inner.writer.is_poisoned(),
        "recovered once, not at every lock"
    );
}

#[tokio::test]
async fn the_wal_index_lives_in_memory_and_readers_see_each_commit() {
    let (dir, journal, _bus, _inbox, id) = journal_with_command().await;
    journal
        .append_here_if_free(id, output("one"))
        .await
        .unwrap();
    // A pooled reader (a connection of its own) sees the caller's commit.
    let events = journal.events_after(id, 0, 100).await.unwrap();
    assert_eq!(texts(&events), ["one"]);
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3], "queued and started stored by the submit");
    assert!(dir.path().join("journal.sqlite-wal").exists());
    assert!(
        !dir.path().join("journal.sqlite-shm").exists(),
        "unix-excl keeps the WAL index in the process's memory"
    );
}

#[tokio::test]
async fn a_submit_that_starts_stores_the_row_its_two_events_would_leave() {
    // One command starts with its submit (one insert, no updates), the other is queued and
    // started by an append: both rows must read the same, and both go on at seq 3.
    let (_dir, journal, _bus, _inbox, started_at_once) = journal_with_command().await;
    let queued = Uuid::new_v4();
    journal
        .submit(NewCommand::for_test(queued), 1, false)
        .await
        .unwrap();
    let pending = journal.command(queued).await.unwrap().unwrap();
    assert_eq!(
        (
            pending.status,
            pending.attempts,
            pending.executed_at_ms,
            pending.last_seq
        ),
        (CommandStatus::Pending, 0, None, 1)
    );
    journal.append(queued, EventKind::started(1)).await.unwrap();
    for id in [started_at_once, queued] {
        let row = journal.command(id).await.unwrap().unwrap();
        assert_eq!(
            (row.status, row.attempts, row.last_seq),
            (CommandStatus::Executing, 1, 2),
            "{id}"
        );
        assert!(row.executed_at_ms.is_some(), "{id}");
        let next = journal.append(id, output("x")).await.unwrap();
        assert_eq!(next.seq, 3, "{id}");
        let events = journal.events_after(id, 0, 100).await.unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.name()).collect();
        assert_eq!(kinds, ["queued", "started", "output"], "{id}");
    }
}

/// Makes the journal refuse an output whose text holds `marker`, in the statement after the
/// event's insert (the command row's update): the failing operation has then written its
/// event row, and only a rollback takes it back. Created through a connection of its own, as
/// another part of the process could.
fn refuse_after_insert(journal: &Journal, marker: &str) {
    let conn = schema::open_writer(journal.path()).unwrap();
    conn.execute_batch(&format!(
        "CREATE TRIGGER refuse BEFORE UPDATE OF last_seq ON commands
         WHEN EXISTS (SELECT 1 FROM events
                      WHERE command = NEW.id AND seq = NEW.last_seq AND body LIKE '%{marker}%')
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;"
    ))
    .unwrap();
}

#[tokio::test]
async fn a_failing_operation_alone_in_its_batch_is_answered_and_rolled_back() {
    let (_dir, journal, _bus, _inbox, id) = journal_with_command().await;
    refuse_after_insert(&journal, "lost");
    let err = journal.append(id, output("lost")).await.unwrap_err();
    assert!(err.to_string().contains("refused by the test"), "{err}");
    let next = journal.append(id, output("kept")).await.unwrap();
    assert_eq!(next.seq, 3, "the failed event's row was rolled back");
    let stored = journal.events_after(id, 0, 10).await.unwrap();
    assert_eq!(texts(&stored), ["kept"]);
}

#[tokio::test]
async fn a_failing_operation_in_a_batch_leaves_the_others_stored() {
    let (_dir, journal, bus, inbox, id) = journal_with_command().await;
    refuse_after_insert(&journal, "lost");
    let mut live = bus.subscribe_command(id);
    journal.append_queued(id, output("1")).await.unwrap();
    let (reply, failed) = oneshot::channel();
    let op = Op::Append {
        command_id: id,
        kind: output("lost"),
        turn: None,
        reply: Some(reply),
    };
    journal.send(op, Apply::Queued).await.unwrap();
    journal.append_queued(id, output("3")).await.unwrap();

    let shared = journal.inner.writer.clone();
    let writer = std::thread::spawn(move || shared.run(inbox));
    let err = timeout(Duration::from_secs(5), failed)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("refused by the test"), "{err}");
    let seen = next_events(&mut live, 2).await;
    assert_eq!(texts(&seen), ["1", "3"]);
    assert_eq!(seen.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4]);
    drop(journal);
    writer.join().unwrap();
}
