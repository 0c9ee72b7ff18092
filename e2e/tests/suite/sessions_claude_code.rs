//! Conversations through the real Claude Code CLI (a setup-token): the hub gives each turn
//! its own CLI session that resumes a copy of the previous completed turn's
//! (`--resume … --fork-session`), so turn 2's request to the Messages server carries turn 1;
//! a session whose files are gone starts afresh and the `started` event says so.

use helix_hub::credentials::{CredentialStore, Secret};
use helix_mesh::pb::{CommandStatus, Provider};
use serde_json::Value;

use super::provider_streams::claude_binary;
use crate::support::{
    TestHub, config_for, finished,
    mock_anthropic::{MockAnthropic, Reply},
    output, request_in, run, started,
};

/// The conversation of a Messages request, as (role, text) pairs; Claude Code sends content
/// as blocks and adds reminders of its own to the first user message.
fn conversation(body: &Value) -> Vec<(String, String)> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let text = match &m["content"] {
                Value::String(s) => s.clone(),
                Value::Array(blocks) => blocks
                    .iter()
                    .filter_map(|b| b["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
                _ => String::new(),
            };
            (m["role"].as_str().unwrap_or("").to_owned(), text)
        })
        .collect()
}

/// The request of the turn whose prompt is `prompt` (the last user message holds it).
fn request_of<'a>(seen: &'a [crate::support::mock_anthropic::Seen], prompt: &str) -> &'a Value {
    &seen
        .iter()
        .rev()
        .find(|s| {
            conversation(&s.body)
                .last()
                .is_some_and(|(role, text)| role == "user" && text.contains(prompt))
        })
        .unwrap_or_else(|| panic!("no request ends with {prompt:?}"))
        .body
}

#[tokio::test]
async fn claude_code_resumes_the_sessions_conversation_and_says_when_it_was_lost() {
    let mock = MockAnthropic::start(Reply::text(&["unused"])).await;
    mock.script([
        Reply::text(&["Hello ", "Ada"]),
        Reply::status(400),
        Reply::text(&["Your name is Ada"]),
        Reply::text(&["I do not know"]),
    ]);
    let mut config = config_for(&mock);
    config.providers.anthropic.claude_binary = claude_binary();
    let hub = TestHub::start_without_credentials(config).await;
    CredentialStore::in_dir(hub.path())
        .set_token(
            Provider::Anthropic,
            Secret::new("sk-ant-oat01-test-session-token"),
            None,
        )
        .unwrap();
    let mut client = hub.client().await;

    let first = run(&mut client, request_in("s1", "my name is Ada")).await;
    let f = finished(&first);
    assert_eq!(f.status, CommandStatus::Completed as i32, "{}", f.error);
    assert_eq!(output(&first), "Hello Ada");
    assert_eq!(started(&first).history_turns, 0);
    // A failed turn in between is not part of the conversation Claude Code continues.
    let failed = run(&mut client, request_in("s1", "this one fails")).await;
    assert_eq!(finished(&failed).status, CommandStatus::Failed as i32);

    let second = run(&mut client, request_in("s1", "what is my name?")).await;
    let f = finished(&second);
    assert_eq!(f.status, CommandStatus::Completed as i32, "{}", f.error);
    let s = started(&second);
    assert_eq!((s.history_turns, s.note.as_str()), (1, ""));
    let seen = mock.seen();
    let turns = conversation(request_of(&seen, "what is my name?"));
    let roles: Vec<&str> = turns.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(roles, ["user", "assistant", "user"], "{turns:?}");
    assert!(turns[0].1.contains("my name is Ada"), "{turns:?}");
    assert_eq!(turns[1].1, "Hello Ada");
    assert!(!turns.iter().any(|(_, t)| t.contains("this one fails")));

    // Only the newest completed turn's CLI session is kept: the failed attempt's and the one
    // turn 2 continued a copy of are removed.
    let kept = session_files(&hub.path().join("claude-code").join("sessions"));
    assert_eq!(kept.len(), 1, "{kept:?}");

    // The session's files are gone (a cleaned-up disk): a fresh CLI session, and a note.
    std::fs::remove_dir_all(hub.path().join("claude-code").join("sessions")).unwrap();
    let third = run(&mut client, request_in("s1", "do you remember me?")).await;
    let f = finished(&third);
    assert_eq!(f.status, CommandStatus::Completed as i32, "{}", f.error);
    let s = started(&third);
    assert_eq!(s.history_turns, 0);
    assert!(
        s.note.starts_with("the Claude Code session of this conversation (")
            && s.note
                .ends_with("is gone (its files were removed): this turn starts a new one, without the 2 earlier turns"),
        "{}",
        s.note
    );
    let seen = mock.seen();
    let turns = conversation(request_of(&seen, "do you remember me?"));
    assert_eq!(turns.len(), 1, "{turns:?}");
    hub.shutdown().await;
}

/// Every Claude Code session file under `dir`.
fn session_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "jsonl")
                && path.components().any(|c| c.as_os_str() == "projects")
            {
                found.push(path);
            }
        }
    }
    found
}
