//! Conversations: a command that names a session is given the session's earlier completed
//! turns, in each provider's shape (Messages `messages`, Responses `input`, Gemini
//! `contents`); a session's commands run one at a time, in submission order, while other
//! sessions run beside them; the agent's history budget leaves the oldest turns out and the
//! `started` event says so; a restarted hub keeps every session.

use helix_hub::config::AgentConfig;
use helix_mesh::{
    pb::{self, CommandEvent, CommandStatus, Provider, command_event::Kind},
    proto_ext::now_ms,
};
use serde_json::{Value, json};

use crate::support::{
    TestHub, assistant, config_for, finished, gemini_hub, kinds,
    mock_anthropic::{MockAnthropic, Reply},
    mock_codex::MockCodex,
    mock_gemini::MockGemini,
    mock_oauth::store_codex,
    output, read_until, request_in, run, started, status_of, user,
};

/// Runs a command and checks that it completed.
async fn completed_turn(
    client: &mut helix_spoke::client::HubClient,
    req: pb::ExecuteRequest,
) -> Vec<CommandEvent> {
    let events = run(client, req).await;
    let f = finished(&events);
    assert_eq!(f.status, CommandStatus::Completed as i32, "{}", f.error);
    events
}

#[tokio::test]
async fn the_second_turn_carries_the_first_as_messages() {
    let mock = MockAnthropic::start(Reply::text(&["unused"])).await;
    mock.script([Reply::text(&["Hello ", "Ada"]), Reply::text(&["Ada"])]);
    let hub = TestHub::start(config_for(&mock)).await;
    let mut client = hub.client().await;

    let first = completed_turn(&mut client, request_in("s1", "my name is Ada")).await;
    let s = started(&first);
    assert_eq!(
        (s.history_turns, s.history_dropped, s.note.as_str()),
        (0, 0, "")
    );
    let second = completed_turn(&mut client, request_in("s1", "what is my name?")).await;
    assert_eq!(output(&second), "Ada");
    let s = started(&second);
    assert_eq!(
        (s.history_turns, s.history_dropped, s.note.as_str()),
        (1, 0, "")
    );

    let seen = mock.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].body["messages"], json!([user("my name is Ada")]));
    assert_eq!(
        seen[1].body["messages"],
        json!([
            user("my name is Ada"),
            assistant("Hello Ada"),
            user("what is my name?")
        ])
    );
    // A command of another session, or of none, starts from nothing.
    completed_turn(&mut client, request_in("s2", "who am I?")).await;
    completed_turn(&mut client, crate::support::request("who am I?")).await;
    let seen = mock.seen();
    assert_eq!(seen[2].body["messages"], json!([user("who am I?")]));
    assert_eq!(seen[3].body["messages"], json!([user("who am I?")]));
    hub.shutdown().await;
}

#[tokio::test]
async fn the_second_turn_carries_the_first_as_responses_input() {
    let codex = MockCodex::start(&["Hello ", "Ada"]).await;
    let anthropic = MockAnthropic::start(Reply::text(&["unused"])).await;
    let mut config = config_for(&anthropic);
    config.providers.openai_codex.base_url = codex.base_url();
    let hub = TestHub::start_without_credentials(config).await;
    store_codex(hub.path(), 1, now_ms() + 3_600_000);
    let mut client = hub.client().await;
    for prompt in ["my name is Ada", "what is my name?"] {
        let mut req = request_in("s1", prompt);
        req.provider = Provider::OpenaiCodex as i32;
        completed_turn(&mut client, req).await;
    }
    let seen = codex.seen();
    assert_eq!(seen.len(), 2);
    let message = |role: &str, kind: &str, text: &str| json!({"type": "message", "role": role, "content": [{"type": kind, "text": text}]});
    assert_eq!(
        seen[1].body["input"],
        json!([
            message("user", "input_text", "my name is Ada"),
            message("assistant", "output_text", "Hello Ada"),
            message("user", "input_text", "what is my name?"),
        ])
    );
    assert_eq!(seen[1].body["store"], false);
    hub.shutdown().await;
}

#[tokio::test]
async fn the_second_turn_carries_the_first_as_gemini_contents() {
    let gemini = MockGemini::start(&["Hello ", "Ada"]).await;
    let anthropic = MockAnthropic::start(Reply::text(&["unused"])).await;
    let hub = gemini_hub(&gemini, &anthropic).await;
    let mut client = hub.client().await;
    for prompt in ["my name is Ada", "what is my name?"] {
        let mut req = request_in("s1", prompt);
        req.provider = Provider::GoogleGemini as i32;
        completed_turn(&mut client, req).await;
    }
    let seen = gemini.seen();
    assert_eq!(seen.len(), 2);
    let content = |role: &str, text: &str| json!({"role": role, "parts": [{"text": text}]});
    assert_eq!(
        seen[1].body["contents"],
        json!([
            content("user", "my name is Ada"),
            content("model", "Hello Ada"),
            content("user", "what is my name?"),
        ])
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn failed_and_cancelled_turns_stay_in_the_session_but_are_not_sent() {
    let mock = MockAnthropic::start(Reply::text(&["unused"])).await;
    mock.script([
        Reply::text(&["Hello Ada"]),
        // Refused: not retried, no output.
        Reply::status(400),
        // Part of an answer, then an error: the part is not a turn.
        Reply::error_after(&["half an ans"], "invalid_request_error"),
        Reply::hang_after(&["never finished"]),
        Reply::text(&["Ada"]),
    ]);
    let hub = TestHub::start(config_for(&mock)).await;
    let mut client = hub.client().await;
    completed_turn(&mut client, request_in("s1", "my name is Ada")).await;
    for prompt in ["refused", "broken"] {
        let events = run(&mut client, request_in("s1", prompt)).await;
        assert_eq!(finished(&events).status, CommandStatus::Failed as i32);
    }
    let hanging = request_in("s1", "cancelled");
    let hanging_id = hanging.command_id.clone();
    let mut stream = client.execute(hanging).await.unwrap().into_inner();
    read_until(&mut stream, crate::support::is_output).await;
    client
        .cancel(pb::CancelRequest {
            command_id: hanging_id,
        })
        .await
        .unwrap();
    let events = crate::support::collect(stream).await;
    assert_eq!(finished(&events).status, CommandStatus::Cancelled as i32);

    let last = completed_turn(&mut client, request_in("s1", "what is my name?")).await;
    assert_eq!(started(&last).history_turns, 1);
    assert_eq!(
        mock.seen().last().unwrap().body["messages"],
        json!([
            user("my name is Ada"),
            assistant("Hello Ada"),
            user("what is my name?")
        ])
    );
    // Every turn is still in the session.
    let listed = client
        .list_commands(pb::ListCommandsRequest {
            session_id: "s1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let statuses: Vec<i32> = listed.commands.iter().map(|c| c.status).collect();
    assert_eq!(
        statuses,
        [
            CommandStatus::Completed as i32,
            CommandStatus::Cancelled as i32,
            CommandStatus::Failed as i32,
            CommandStatus::Failed as i32,
            CommandStatus::Completed as i32,
        ]
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn a_sessions_commands_run_one_after_another_while_other_sessions_run_beside_them() {
    let mock = MockAnthropic::start(Reply::hang_after(&["unused"])).await;
    mock.script([
        Reply::hang_after(&["first answer"]),
        Reply::hang_after(&["other session"]),
        Reply::text(&["second answer"]),
    ]);
    let hub = TestHub::start(config_for(&mock)).await;
    let mut client = hub.client().await;

    // The first turn of s1 starts and hangs; the next are submitted while it runs.
    let first = request_in("s1", "turn 1");
    let mut first_stream = client.execute(first.clone()).await.unwrap().into_inner();
    read_until(&mut first_stream, crate::support::is_output).await;
    let second = request_in("s1", "turn 2");
    let mut second_stream = client.execute(second.clone()).await.unwrap().into_inner();
    let queued = read_until(&mut second_stream, |e| {
        matches!(e.kind, Some(Kind::Queued(_)))
    })
    .await;
    assert_eq!(kinds(&queued), ["queued"]);
    // A third turn waits too; the second, cancelled while it waits, leaves it next in line.
    let third = request_in("s1", "turn 3");
    let mut third_stream = client.execute(third.clone()).await.unwrap().into_inner();
    read_until(&mut third_stream, |e| {
        matches!(e.kind, Some(Kind::Queued(_)))
    })
    .await;
    let cancelled = client
        .cancel(pb::CancelRequest {
            command_id: second.command_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(cancelled.was_queued);
    let second_events = crate::support::collect(second_stream).await;
    assert_eq!(
        kinds(&second_events),
        ["finished"],
        "after its queued event"
    );
    assert_eq!(
        finished(&second_events).error,
        "cancelled before it started"
    );
    let second = third;
    let second_stream = third_stream;
    // Another session is not held up: it reaches the provider while s1's first turn runs.
    let other = request_in("s2", "elsewhere");
    let mut other_stream = client.execute(other).await.unwrap().into_inner();
    read_until(&mut other_stream, crate::support::is_output).await;
    mock.wait_until("two sessions in flight", |m| m.in_flight() == 2)
        .await;
    assert_eq!(mock.requests(), 2, "s1's second turn waits for its first");
    assert_eq!(
        status_of(&mut client, &second.command_id).await,
        CommandStatus::Pending
    );

    mock.release();
    let first_events = crate::support::collect(first_stream).await;
    let second_events = crate::support::collect(second_stream).await;
    crate::support::collect(other_stream).await;
    let first_end = first_events.last().unwrap().time.unwrap();
    let second_start = second_events
        .iter()
        .find(|e| matches!(e.kind, Some(Kind::Started(_))))
        .unwrap()
        .time
        .unwrap();
    assert!(
        (second_start.seconds, second_start.nanos) >= (first_end.seconds, first_end.nanos),
        "the second turn started after the first ended"
    );
    assert_eq!(output(&second_events), "second answer");
    let seen = mock.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[1].body["messages"], json!([user("elsewhere")]));
    assert_eq!(
        seen[2].body["messages"],
        json!([user("turn 1"), assistant("first answer"), user("turn 3")])
    );
    assert_eq!(mock.max_in_flight(), 2);
    hub.shutdown().await;
}

#[tokio::test]
async fn the_budget_leaves_out_the_oldest_turns_and_the_started_event_says_so() {
    let mock = MockAnthropic::start(Reply::text(&["unused"])).await;
    mock.script((1..=3).map(|n| Reply::text(&[&format!("answer {n}")])));
    let mut config = config_for(&mock);
    config.agents.insert(
        "main".into(),
        AgentConfig {
            history_turns: Some(2),
            ..AgentConfig::default()
        },
    );
    // "turn 3" + "answer 3" is 14 bytes: only the newest turn fits.
    config.agents.insert(
        "tight".into(),
        AgentConfig {
            history_bytes: Some(14),
            ..AgentConfig::default()
        },
    );
    let hub = TestHub::start(config).await;
    let mut client = hub.client().await;
    for n in 1..=3 {
        completed_turn(&mut client, request_in("s1", &format!("turn {n}"))).await;
    }
    let fourth = completed_turn(&mut client, request_in("s1", "turn 4")).await;
    let s = started(&fourth);
    assert_eq!((s.history_turns, s.history_dropped), (2, 1));
    assert_eq!(
        s.note,
        "1 earlier turn of this session left out: the agent's history budget is 2 turns and 262144 bytes (history_turns, history_bytes)"
    );
    assert_eq!(
        mock.seen().last().unwrap().body["messages"],
        json!([
            user("turn 2"),
            assistant("answer 2"),
            user("turn 3"),
            assistant("answer 3"),
            user("turn 4")
        ])
    );

    let mut tight = request_in("s1", "turn 5");
    tight.agent_id = "tight".into();
    let fifth = completed_turn(&mut client, tight).await;
    let s = started(&fifth);
    // Turn 4's answer is the mock's default, "unused": 6 + 6 bytes fit, turn 3 does not.
    assert_eq!((s.history_turns, s.history_dropped), (1, 3));
    assert!(
        s.note
            .starts_with("3 earlier turns of this session left out"),
        "{}",
        s.note
    );
    assert_eq!(
        mock.seen().last().unwrap().body["messages"],
        json!([user("turn 4"), assistant("unused"), user("turn 5")])
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn a_restarted_hub_keeps_its_sessions() {
    let mock = MockAnthropic::start(Reply::text(&["unused"])).await;
    mock.script((1..=3).map(|n| Reply::text(&[&format!("answer {n}")])));
    let mut hub = TestHub::start(config_for(&mock)).await;
    let mut client = hub.client().await;
    for n in 1..=2 {
        completed_turn(&mut client, request_in("s1", &format!("turn {n}"))).await;
    }
    hub.restart().await;
    let mut client = hub.client().await;
    let third = completed_turn(&mut client, request_in("s1", "turn 3")).await;
    assert_eq!(started(&third).history_turns, 2);
    assert_eq!(
        mock.seen().last().unwrap().body["messages"],
        json!([
            user("turn 1"),
            assistant("answer 1"),
            user("turn 2"),
            assistant("answer 2"),
            user("turn 3")
        ])
    );
    hub.shutdown().await;
}

/// As a person would try it: two `helix run --session` invocations, and the second one knows
/// the first. A turn left out by the budget is said on stderr.
#[tokio::test]
async fn helix_run_with_a_session_continues_the_conversation() {
    use crate::support::bins::{helix, run_helix};
    let mock = MockAnthropic::start(Reply::text(&["unused"])).await;
    mock.script([Reply::text(&["Hello Ada"]), Reply::text(&["Ada"])]);
    let mut config = config_for(&mock);
    config.agents.insert(
        "main".into(),
        AgentConfig {
            history_turns: Some(1),
            ..AgentConfig::default()
        },
    );
    let hub = TestHub::start(config).await;
    for prompt in ["my name is Ada", "what is my name?"] {
        let mut cmd = helix(hub.path());
        cmd.args(["run", "--session", "s1", prompt]);
        let done = run_helix(cmd, None).await;
        assert_eq!(done.code, Some(0), "{}", done.stderr);
        assert!(!done.stderr.contains("left out"), "{}", done.stderr);
    }
    assert_eq!(
        mock.seen()[1].body["messages"],
        json!([
            user("my name is Ada"),
            assistant("Hello Ada"),
            user("what is my name?")
        ])
    );
    let mut cmd = helix(hub.path());
    cmd.args(["run", "--session", "s1", "--json", "and now?"]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert!(
        done.stderr.contains(
            "1 earlier turn of this session left out: the agent's history budget is 1 turn"
        ),
        "{}",
        done.stderr
    );
    let records = crate::support::json_lines(&done.stdout);
    let started = records.iter().find(|r| r["type"] == "started").unwrap();
    assert_eq!(
        (&started["history_turns"], &started["history_dropped"]),
        (&json!(1), &json!(1))
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn helix_sessions_lists_the_conversations_and_shows_one_turn_by_turn() {
    use crate::support::bins::{helix, run_helix};
    let mock = MockAnthropic::start(Reply::text(&["unused"])).await;
    mock.script([
        Reply::text(&["Hello Ada"]),
        Reply::text(&["a lone answer"]),
        Reply::text(&["You are Ada"]),
    ]);
    let hub = TestHub::start(config_for(&mock)).await;
    let run_in = |args: &'static [&'static str]| {
        let mut cmd = helix(hub.path());
        cmd.arg("run").args(args);
        run_helix(cmd, None)
    };
    for done in [
        run_in(&["--session", "trip", "my name is Ada\nand I like trains"]).await,
        run_in(&["a single turn"]).await,
        run_in(&["--session", "trip", "what is my name?"]).await,
    ] {
        assert_eq!(done.code, Some(0), "{}", done.stderr);
    }

    // The list: the named session only (a command's own session is one turn of nothing).
    let mut cmd = helix(hub.path());
    cmd.args(["sessions", "--json"]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    let listed = crate::support::json_lines(&done.stdout);
    assert_eq!(listed.len(), 1, "{}", done.stdout);
    assert_eq!(listed[0]["session_id"], "trip");
    assert_eq!(listed[0]["title"], "my name is Ada");
    assert_eq!(listed[0]["turns"], 2);
    assert_eq!(listed[0]["provider"], "anthropic");

    // One session, turn by turn, in both forms (and as `helix show --session`).
    let mut cmd = helix(hub.path());
    cmd.args(["sessions", "trip", "--json"]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    let session: Value = serde_json::from_str(done.stdout.trim()).unwrap();
    assert_eq!(session["total_turns"], 2);
    let turns = session["turns"].as_array().unwrap();
    assert_eq!(
        turns
            .iter()
            .map(|t| (t["prompt"].as_str().unwrap(), t["answer"].as_str().unwrap()))
            .collect::<Vec<_>>(),
        [
            ("my name is Ada\nand I like trains", "Hello Ada"),
            ("what is my name?", "You are Ada")
        ]
    );
    assert_eq!(turns[0]["status"], "completed");
    let mut cmd = helix(hub.path());
    cmd.args(["show", "--session", "trip"]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert!(
        done.stdout.starts_with("session trip: 2 turn(s)\n"),
        "{}",
        done.stdout
    );
    assert!(
        done.stdout.contains("> what is my name?\nYou are Ada\n"),
        "{}",
        done.stdout
    );

    // An unknown session is a clear NOT_FOUND.
    let mut cmd = helix(hub.path());
    cmd.args(["sessions", "nope"]);
    let done = run_helix(cmd, None).await;
    assert_ne!(done.code, Some(0));
    assert!(
        done.stderr.contains("no session \"nope\""),
        "{}",
        done.stderr
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn helix_run_continue_goes_on_from_this_devices_last_command() {
    use crate::support::bins::{helix, run_helix};
    let mock = MockAnthropic::start(Reply::text(&["unused"])).await;
    mock.script([Reply::text(&["Hi Ada"]), Reply::text(&["Ada, of course"])]);
    let hub = TestHub::start(config_for(&mock)).await;
    let config = tempfile::tempdir().unwrap();
    let run = |args: &'static [&'static str]| {
        let mut cmd = helix(hub.path());
        cmd.arg("--config-dir")
            .arg(config.path())
            .arg("run")
            .args(args);
        run_helix(cmd, None)
    };
    // Nothing to continue yet: said, and nothing is sent.
    let done = run(&["--continue", "what is my name?"]).await;
    assert_eq!(done.code, Some(2), "{}", done.stderr);
    assert!(
        done.stderr.contains("no session to continue"),
        "{}",
        done.stderr
    );
    assert!(mock.seen().is_empty());

    // A command without --session starts a session that --continue goes on from.
    let done = run(&["my name is Ada"]).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    let done = run(&["--continue", "what is my name?"]).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert_eq!(done.stdout, "Ada, of course");
    assert_eq!(
        mock.seen()[1].body["messages"],
        json!([
            user("my name is Ada"),
            assistant("Hi Ada"),
            user("what is my name?")
        ])
    );
    // --continue and --session together are a usage error.
    let done = run(&["--continue", "--session", "x", "hi"]).await;
    assert_eq!(done.code, Some(2), "{}", done.stderr);
    hub.shutdown().await;
}

#[tokio::test]
async fn a_session_goes_on_from_a_second_device_through_the_table_relay() {
    use crate::support::{
        bins::{helix, pairing_ticket, run_helix, spoke},
        cloud::TestCloud,
        relay::{hub_config, signed_in_spoke, wait_registered},
    };
    let cloud = TestCloud::start().await;
    let mock = MockAnthropic::start(Reply::text(&["unused"])).await;
    mock.script([Reply::text(&["Noted, Ada"]), Reply::text(&["Ada"])]);
    let hub = TestHub::start_in(cloud.hub_dir().await, hub_config(&mock)).await;
    wait_registered(&cloud.db, hub.hub().hub_id()).await;

    // A phone paired through the cloud (before the session starts: a device reads only the
    // commands that began after it was paired).
    let phone = signed_in_spoke(&cloud).await;
    let ticket = pairing_ticket(hub.path(), &[]).await;
    let mut cmd = spoke(phone.path());
    cmd.args(["pair", "--via", "cloud", &ticket, "--name", "desk"]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);

    // Turn 1 on the desktop itself (the hub's local listener); turn 2 from the phone, sent
    // through the table relay.
    let mut cmd = helix(hub.path());
    cmd.args(["run", "--session", "errand", "my name is Ada"]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    let mut cmd = spoke(phone.path());
    cmd.args([
        "run",
        "--hub",
        "desk",
        "--via",
        "cloud",
        "--session",
        "errand",
        "what is my name?",
    ]);
    let done = run_helix(cmd, None).await;
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (Some(0), "Ada"),
        "{}",
        done.stderr
    );
    assert_eq!(
        mock.seen()[1].body["messages"],
        json!([
            user("my name is Ada"),
            assistant("Noted, Ada"),
            user("what is my name?")
        ])
    );

    // One session, two devices: the desktop lists both turns.
    let mut cmd = helix(hub.path());
    cmd.args(["sessions", "errand", "--json"]);
    let done = run_helix(cmd, None).await;
    let session: Value = serde_json::from_str(done.stdout.trim()).unwrap();
    assert_eq!(session["total_turns"], 2, "{session}");
    let devices: Vec<&str> = session["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["source_device_id"].as_str().unwrap())
        .collect();
    assert_ne!(devices[0], devices[1], "two devices: {devices:?}");

    // The phone, through the cloud alone, sees the same session and both turns.
    let mut cmd = spoke(phone.path());
    cmd.args(["sessions", "--hub", "desk", "--via", "cloud", "--json"]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    let listed = crate::support::json_lines(&done.stdout);
    assert_eq!(listed.len(), 1, "{}", done.stdout);
    assert_eq!(
        (&listed[0]["session_id"], &listed[0]["turns"]),
        (&json!("errand"), &json!(2))
    );
    let mut cmd = spoke(phone.path());
    cmd.args([
        "sessions", "errand", "--hub", "desk", "--via", "cloud", "--json",
    ]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    let seen: Value = serde_json::from_str(done.stdout.trim()).unwrap();
    assert_eq!(
        seen["turns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["prompt"].as_str().unwrap(), t["answer"].as_str().unwrap()))
            .collect::<Vec<_>>(),
        [
            ("my name is Ada", "Noted, Ada"),
            ("what is my name?", "Ada")
        ]
    );
    let mut cmd = spoke(phone.path());
    cmd.args(["sessions", "nope", "--hub", "desk", "--via", "cloud"]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(6), "{}", done.stderr);
    assert!(
        done.stderr.contains("no session \"nope\""),
        "{}",
        done.stderr
    );
    hub.shutdown().await;
}
