//! `helix chat` at a real (pseudo-)terminal: two turns of one session, a Ctrl-C that cancels
//! the running turn (and is not sent as history), `/new`, and Ctrl-D to leave.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    TestHub, assistant,
    bins::{Finished, bin, run_helix},
    config_for,
    mock_anthropic::{MockAnthropic, Reply},
    user,
};

/// Runs `helix --hub-dir HUB --config-dir CONFIG chat` in a pseudo-terminal through
/// `support/pty_driver.py`, following `steps`.
async fn chat_at_a_terminal(hub: &TestHub, config: &std::path::Path, steps: Value) -> Finished {
    let driver =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/pty_driver.py");
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg(driver)
        .arg(steps.to_string())
        .arg("--")
        .arg(bin("helix"))
        .arg("--hub-dir")
        .arg(hub.path())
        .arg("--config-dir")
        .arg(config)
        .arg("chat")
        .env("HELIX_LOG", "warn")
        .env("TERM", "xterm")
        .env_remove("HELIX_HUB_DIR")
        .kill_on_drop(true);
    run_helix(cmd, None).await
}

#[tokio::test]
async fn a_chat_has_turns_a_cancelled_turn_and_a_new_session() {
    let mock = MockAnthropic::start(Reply::text(&["unused"])).await;
    let slow: Vec<String> = (0..200).map(|i| format!("tick{i} ")).collect();
    let slow: Vec<&str> = slow.iter().map(String::as_str).collect();
    mock.script([
        Reply::text(&["Hi Ada"]),
        Reply::slow(&slow, Duration::from_millis(100)),
        Reply::text(&["You are Ada"]),
        Reply::text(&["A new face"]),
    ]);
    let hub = TestHub::start(config_for(&mock)).await;
    let config = tempfile::tempdir().unwrap();
    let steps = json!([
        {"expect": r"chatting in session chat-[0-9a-f]{12}"},
        {"expect": "> "},
        {"send": "my name is Ada\r"},
        {"expect": "Hi Ada"},
        {"expect": "> "},
        {"send": "count slowly\r"},
        {"expect": "tick2 "},
        {"interrupt": true},
        {"expect": "cancel"},
        {"expect": "> ", "timeout": 30},
        {"send": "what is my name?\r"},
        {"expect": "You are Ada"},
        {"expect": "> "},
        {"send": "/new\r"},
        {"expect": r"new session chat-[0-9a-f]{12}"},
        {"send": "who am I?\r"},
        {"expect": "A new face"},
        {"expect": "> "},
        {"send": "\u{4}"},
    ]);
    let done = chat_at_a_terminal(&hub, config.path(), steps).await;
    assert_eq!(done.code, Some(0), "{}\n{}", done.stdout, done.stderr);

    let seen = mock.seen();
    assert_eq!(seen.len(), 4, "{}", done.stdout);
    // The cancelled turn stays out of what the next turn is given.
    assert_eq!(
        seen[2].body["messages"],
        json!([
            user("my name is Ada"),
            assistant("Hi Ada"),
            user("what is my name?")
        ]),
        "{}",
        done.stdout
    );
    // /new: a session of its own.
    assert_eq!(seen[3].body["messages"], json!([user("who am I?")]));
    // The slow answer was cut short by the Ctrl-C.
    assert!(!done.stdout.contains("tick199"), "{}", done.stdout);
    hub.shutdown().await;
}
