//! Sessions in the journal: each ended command's turn, the history a later command of the
//! session reads, and a journal of schema version 1 brought up to date.

use helix_mesh::pb::CommandStatus;
use rusqlite::params;

use super::*;
use crate::{
    command::FinalStatus,
    history::{HistoryBudget, Turn},
};

const ROOMY: HistoryBudget = HistoryBudget {
    max_turns: 100,
    max_bytes: 1 << 20,
};

fn ended(status: FinalStatus) -> EventKind {
    EventKind::Finished {
        status,
        error: String::new(),
        attempts: 1,
        executed_at_ms: None,
    }
}

fn turn(prompt: &str, answer: &str) -> Turn {
    Turn {
        prompt: prompt.into(),
        answer: answer.into(),
    }
}

/// Runs one command of `session` to its end: `prompt`, then `outputs` as output events, then
/// `status`, with `answer` handed to the journal as the executor would (or not).
async fn one_turn(
    journal: &Journal,
    session: &str,
    prompt: &str,
    outputs: &[&str],
    status: FinalStatus,
    turn: TurnEnd,
) -> Uuid {
    let id = Uuid::new_v4();
    let mut cmd = NewCommand::for_test(id);
    cmd.session_id = session.into();
    cmd.content = prompt.into();
    journal.submit(cmd, 1, true).await.unwrap();
    for text in outputs {
        journal
            .append(
                id,
                EventKind::Output {
                    text: (*text).into(),
                },
            )
            .await
            .unwrap();
    }
    journal.finish(id, ended(status), turn).await.unwrap();
    id
}

fn answered(answer: &str) -> TurnEnd {
    TurnEnd {
        answer: Some(answer.into()),
        ..TurnEnd::default()
    }
}

#[tokio::test]
async fn a_session_gives_back_its_completed_turns_in_the_order_they_ended() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = Journal::open(dir.path(), Bus::new()).unwrap();
    one_turn(
        &journal,
        "s",
        "my name is Ada",
        &["Hello ", "Ada"],
        FinalStatus::Completed,
        answered("Hello Ada"),
    )
    .await;
    // Failed, cancelled and expired turns stay in the session but are not given back.
    for status in [
        FinalStatus::Failed,
        FinalStatus::Cancelled,
        FinalStatus::Expired,
    ] {
        one_turn(
            &journal,
            "s",
            "broken",
            &["half"],
            status,
            TurnEnd::default(),
        )
        .await;
    }
    // A completed turn whose answer the executor did not hand over is read from its events.
    one_turn(
        &journal,
        "s",
        "I like tea",
        &["Not", "ed"],
        FinalStatus::Completed,
        TurnEnd::default(),
    )
    .await;
    // Another session, and a turn with an empty answer, are not part of it.
    one_turn(
        &journal,
        "other",
        "x",
        &["y"],
        FinalStatus::Completed,
        answered("y"),
    )
    .await;
    one_turn(
        &journal,
        "s",
        "say nothing",
        &[],
        FinalStatus::Completed,
        answered(" "),
    )
    .await;

    let history = journal.session_history("s".into(), ROOMY).await.unwrap();
    assert_eq!(
        history.turns,
        [
            turn("my name is Ada", "Hello Ada"),
            turn("I like tea", "Noted")
        ]
    );
    assert_eq!((history.dropped, history.completed), (0, 3));
    let turns: i64 = reader(&journal)
        .query_row(
            "SELECT count(*) FROM turns WHERE session_id = 's'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(turns, 6, "every ended command is a turn of its session");
    let none = journal
        .session_history("nobody".into(), ROOMY)
        .await
        .unwrap();
    assert_eq!(none, SessionHistory::default());
}

fn reader(journal: &Journal) -> rusqlite::Connection {
    schema::open_reader(journal.path()).unwrap()
}

#[tokio::test]
async fn the_budget_leaves_out_the_oldest_turns_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = Journal::open(dir.path(), Bus::new()).unwrap();
    // Each turn is 2 + 8 = 10 bytes.
    for n in 1..=4 {
        let answer = format!("answer-{n}");
        one_turn(
            &journal,
            "s",
            &format!("q{n}"),
            &[&answer],
            FinalStatus::Completed,
            answered(&answer),
        )
        .await;
    }
    let by_turns = journal
        .session_history(
            "s".into(),
            HistoryBudget {
                max_turns: 2,
                max_bytes: 1000,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        by_turns.turns,
        [turn("q3", "answer-3"), turn("q4", "answer-4")]
    );
    assert_eq!(by_turns.dropped, 2);
    let by_bytes = journal
        .session_history(
            "s".into(),
            HistoryBudget {
                max_turns: 100,
                max_bytes: 35,
            },
        )
        .await
        .unwrap();
    assert_eq!(by_bytes.turns.len(), 3);
    assert_eq!(by_bytes.turns[0], turn("q2", "answer-2"));
    assert_eq!(by_bytes.dropped, 1);
}

#[tokio::test]
async fn the_newest_completed_turn_names_its_claude_code_session() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = Journal::open(dir.path(), Bus::new()).unwrap();
    let in_cli = |cli: &str| TurnEnd {
        answer: Some("a".into()),
        cli_session: Some(cli.into()),
        cli_turns: 1,
    };
    one_turn(
        &journal,
        "s",
        "1",
        &["a"],
        FinalStatus::Completed,
        in_cli("cli-1"),
    )
    .await;
    one_turn(
        &journal,
        "s",
        "2",
        &["a"],
        FinalStatus::Failed,
        TurnEnd {
            answer: None,
            cli_session: Some("cli-failed".into()),
            cli_turns: 2,
        },
    )
    .await;
    let history = journal.session_history("s".into(), ROOMY).await.unwrap();
    assert_eq!(history.cli_session, Some(("cli-1".to_owned(), 1)));
    one_turn(
        &journal,
        "s",
        "3",
        &["a"],
        FinalStatus::Completed,
        answered("a"),
    )
    .await;
    let history = journal.session_history("s".into(), ROOMY).await.unwrap();
    assert_eq!(history.cli_session, None, "the newest turn ran without it");
}

#[tokio::test]
async fn sessions_survive_a_restart_and_a_command_interrupted_by_it_is_a_failed_turn() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (journal, _) = Journal::open(dir.path(), Bus::new()).unwrap();
        one_turn(
            &journal,
            "s",
            "1",
            &["one"],
            FinalStatus::Completed,
            answered("one"),
        )
        .await;
        let mut cmd = NewCommand::for_test(Uuid::new_v4());
        cmd.session_id = "s".into();
        journal.submit(cmd, 1, true).await.unwrap();
    }
    let (journal, recovery) = Journal::open(dir.path(), Bus::new()).unwrap();
    assert_eq!(recovery.interrupted.len(), 1);
    let history = journal.session_history("s".into(), ROOMY).await.unwrap();
    assert_eq!(history.turns, [turn("1", "one")]);
    let failed: String = reader(&journal)
        .query_row(
            "SELECT status FROM turns WHERE session_id = 's' ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(failed, "failed");
}

/// A journal as a hub of schema version 1 left it: one session with a completed turn (its
/// answer only in its output events), a failed one, and a pending command.
fn version_1_journal(dir: &std::path::Path) -> Uuid {
    let conn = schema::open_writer(&dir.join(FILE_NAME)).unwrap();
    conn.execute_batch(schema::OLD_SCHEMA_V1).unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    let pending = Uuid::new_v4();
    let insert = |id: i64, command_id: Uuid, content: &str, status: &str, finished: Option<i64>| {
        conn.execute(
            "INSERT INTO commands (id, command_id, source_device_id, source_user_id, agent_id,
                provider, content, session_id, created_at_ms, expires_at_ms, received_at_ms,
                status, finished_at_ms, last_seq)
             VALUES (?1, ?2, 'd', '', 'main', 'anthropic', ?3, 's', 1, ?4, 1, ?5, ?6, 0)",
            params![
                id,
                command_id.to_string(),
                content,
                i64::MAX,
                status,
                finished
            ],
        )
        .unwrap();
    };
    insert(1, Uuid::new_v4(), "my name is Ada", "completed", Some(10));
    insert(2, Uuid::new_v4(), "oops", "failed", Some(20));
    insert(3, pending, "what is my name?", "pending", None);
    for (seq, text) in [(2, "Hello "), (3, "Ada")] {
        conn.execute(
            "INSERT INTO events (command, seq, at_ms, kind, body) VALUES (1, ?1, 5, 'output', ?2)",
            params![
                seq,
                serde_json::to_string(&EventKind::Output { text: text.into() }).unwrap()
            ],
        )
        .unwrap();
    }
    pending
}

#[tokio::test]
async fn a_version_1_journal_is_upgraded_with_the_turns_it_already_held() {
    let dir = tempfile::tempdir().unwrap();
    let pending = version_1_journal(dir.path());
    let (journal, recovery) = Journal::open(dir.path(), Bus::new()).unwrap();
    assert_eq!(recovery.pending.len(), 1);
    assert_eq!(recovery.pending[0].command_id, pending);
    assert_eq!(recovery.pending[0].session_id, "s");
    let version: i64 = reader(&journal)
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    assert_eq!(SCHEMA_VERSION, 2);
    let history = journal.session_history("s".into(), ROOMY).await.unwrap();
    assert_eq!(history.turns, [turn("my name is Ada", "Hello Ada")]);
    assert_eq!(history.completed, 1);
    let statuses: Vec<String> = reader(&journal)
        .prepare("SELECT status FROM turns ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(statuses, ["completed", "failed"]);
    let bytes: Vec<i64> = reader(&journal)
        .prepare("SELECT bytes FROM turns ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        bytes,
        ["my name is Ada".len() as i64 + 9, 4],
        "prompt and answer"
    );
    // The pending command ends as the session's next turn.
    journal
        .finish(pending, ended(FinalStatus::Completed), answered("Ada"))
        .await
        .unwrap();
    drop(journal);
    // Opening it again changes nothing.
    let (journal, _) = Journal::open(dir.path(), Bus::new()).unwrap();
    let history = journal.session_history("s".into(), ROOMY).await.unwrap();
    assert_eq!(
        history.turns,
        [
            turn("my name is Ada", "Hello Ada"),
            turn("what is my name?", "Ada")
        ]
    );
    let record = journal.command(pending).await.unwrap().unwrap();
    assert_eq!(record.status, CommandStatus::Completed);
}

#[test]
fn a_journal_newer_than_this_hub_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let conn = schema::open_writer(&path).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    let err = Journal::open(dir.path(), Bus::new()).unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "has schema version {}, newer than this hub understands",
            SCHEMA_VERSION + 1
        )),
        "{err}"
    );
    let conn = schema::open_writer(&path).unwrap();
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tables, 0);
}
