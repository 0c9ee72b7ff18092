//! The providers behind stored credentials, end to end through a hub: OpenAI Codex (with its
//! OAuth refresh), Google Gemini (API key) and Claude Code (a setup token), each against a
//! local server speaking the provider's documented streaming format.

use std::path::Path;

use helix_hub::credentials::{CredentialStore, Secret};
use helix_mesh::{
    pb::{CommandStatus, Provider, command_event::Kind},
    proto_ext::now_ms,
};

use super::credentials::stored_access;
use crate::support::{
    TestHub, config_for, finished,
    mock_anthropic::{MockAnthropic, Reply},
    mock_codex::MockCodex,
    mock_gemini::MockGemini,
    mock_oauth::{self, MockOAuth, store_codex},
    output, outputs, request, run,
};

/// The codex provider refreshes an expiring token before use, and a refused one once.
#[tokio::test]
async fn codex_commands_stream_and_refresh_their_token() {
    let oauth = MockOAuth::start().await;
    oauth.accept_refresh(1);
    let codex = MockCodex::start(&["Hel", "lo ", "Codex"]).await;
    let anthropic = MockAnthropic::start(Reply::text(&["unused"])).await;
    let mut config = config_for(&anthropic);
    config.providers.openai_codex.base_url = codex.base_url();
    config.providers.openai_codex.issuer = oauth.issuer();
    let hub = TestHub::start_without_credentials(config).await;
    // Expires within the 5-minute margin: refreshed before the request.
    store_codex(hub.path(), 1, now_ms() + 60_000);
    let mut client = hub.client().await;

    let mut req = request("write a haiku");
    req.provider = Provider::OpenaiCodex as i32;
    let events = run(&mut client, req.clone()).await;
    let texts = outputs(&events);
    assert_eq!(texts, ["Hel", "lo ", "Codex"]);
    assert_eq!(finished(&events).status, CommandStatus::Completed as i32);
    assert_eq!(oauth.refresh_requests(), 1);
    let seen = codex.seen();
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(format!("Bearer {}", mock_oauth::access_token(2)).as_str())
    );
    assert_eq!(seen[0].account_id.as_deref(), Some(mock_oauth::ACCOUNT_ID));
    let body = &seen[0].body;
    assert_eq!(body["model"], "gpt-5-codex");
    assert_eq!(body["stream"], true);
    assert_eq!(body["store"], false);
    assert!(body["instructions"].is_string());
    assert_eq!(
        body["input"],
        serde_json::json!([{"type":"message","role":"user","content":[{"type":"input_text","text":"write a haiku"}]}])
    );

    // The backend refuses the (unexpired) token: one refresh, then it works.
    codex.refuse(&mock_oauth::access_token(2));
    req.command_id = uuid::Uuid::new_v4().to_string();
    let events = run(&mut client, req).await;
    assert_eq!(output(&events), "Hello Codex");
    assert_eq!(finished(&events).status, CommandStatus::Completed as i32);
    assert!(events.iter().any(
        |e| matches!(&e.kind, Some(Kind::Retrying(r)) if r.reason.contains("refreshing the token"))
    ));
    assert_eq!(oauth.refresh_requests(), 2);
    assert_eq!(stored_access(hub.path()), mock_oauth::access_token(3));
    hub.shutdown().await;
}

#[tokio::test]
async fn gemini_commands_stream_with_the_api_key() {
    let gemini = MockGemini::start(&["Bonjour", " le ", "monde"]).await;
    let anthropic = MockAnthropic::start(Reply::text(&["unused"])).await;
    let hub = crate::support::gemini_hub(&gemini, &anthropic).await;
    let mut client = hub.client().await;
    let mut req = request("say hello in French");
    req.provider = Provider::GoogleGemini as i32;
    let events = run(&mut client, req).await;
    assert_eq!(output(&events), "Bonjour le monde");
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e.kind, Some(Kind::Output(_))))
            .count(),
        3
    );
    assert_eq!(finished(&events).status, CommandStatus::Completed as i32);
    let seen = gemini.seen();
    assert_eq!(
        seen[0].api_key.as_deref(),
        Some(crate::support::GEMINI_TEST_KEY)
    );
    assert_eq!(
        seen[0].model_action,
        "gemini-2.5-flash:streamGenerateContent"
    );
    assert_eq!(seen[0].alt.as_deref(), Some("sse"));
    assert_eq!(
        seen[0].body["contents"][0]["parts"][0]["text"],
        "say hello in French"
    );
    hub.shutdown().await;
}

/// The Claude Code CLI (installed by scripts/test), run for a setup-token.
pub(crate) fn claude_binary() -> String {
    match std::env::var("HELIX_TEST_CLAUDE_BIN") {
        Ok(path) if Path::new(&path).exists() => path,
        other => panic!(
            "HELIX_TEST_CLAUDE_BIN must name the Claude Code CLI binary (scripts/test installs @anthropic-ai/claude-code into .cache and sets it); got {other:?}"
        ),
    }
}

#[tokio::test]
async fn setup_token_commands_run_through_claude_code() {
    let claude = claude_binary();
    let token = "sk-ant-oat01-test-setup-token-c0ffee";
    let chunks = ["Hel", "lo ", "from ", "Claude"];
    let anthropic = MockAnthropic::start(Reply::text(&chunks)).await;
    let mut config = config_for(&anthropic);
    config.providers.anthropic.claude_binary = claude;
    // The real CLI takes the policy's flags and the working directory.
    let workdir = tempfile::tempdir().unwrap();
    config.providers.anthropic.workdir = Some(workdir.path().to_owned());
    config.providers.anthropic.allowed_tools = vec!["Read".into(), "Grep".into()];
    config.providers.anthropic.permission_mode = Some(helix_hub::config::PermissionMode::Default);
    let hub = TestHub::start_without_credentials(config).await;
    CredentialStore::in_dir(hub.path())
        .set_token(Provider::Anthropic, Secret::new(token), None)
        .unwrap();
    let mut client = hub.client().await;
    let events = run(&mut client, request("--help me say hello")).await;
    let f = finished(&events);
    assert_eq!(f.status, CommandStatus::Completed as i32, "{}", f.error);
    let texts = outputs(&events);
    assert_eq!(texts, chunks, "streamed token by token");
    let seen = anthropic.seen();
    assert!(!seen.is_empty());
    for s in &seen {
        assert_eq!(
            s.authorization.as_deref(),
            Some(format!("Bearer {token}").as_str())
        );
        assert_eq!(s.api_key, None);
    }
    let prompt = serde_json::to_string(&seen.last().unwrap().body["messages"]).unwrap();
    assert!(prompt.contains("--help me say hello"), "{prompt}");

    // A prompt far past the 128 KiB argv limit reaches the API whole (it travels on stdin).
    let long: String = (0..50_000).map(|i| format!("w{i} ")).collect();
    assert!(long.len() > 300 * 1024);
    let events = run(&mut client, request(&long)).await;
    assert_eq!(
        finished(&events).status,
        CommandStatus::Completed as i32,
        "{events:?}"
    );
    let sent = serde_json::to_string(&anthropic.seen().last().unwrap().body["messages"]).unwrap();
    assert!(
        sent.contains("w29999"),
        "the end of the long prompt arrived"
    );

    // The API refuses the token: a clear, non-retried failure.
    anthropic.set_default(Reply::status(401));
    let events = run(&mut client, request("again")).await;
    let f = finished(&events);
    assert_eq!(f.status, CommandStatus::Failed as i32);
    assert!(
        f.error.starts_with("anthropic (claude code):"),
        "{}",
        f.error
    );
    assert!(!f.error.contains(token));
    hub.shutdown().await;
}

/// A stand-in for the Claude Code CLI that records what it was started with (argv, working
/// directory, environment) in `record`, then answers as the real one does on stdout.
fn recording_claude(dir: &Path, record: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("claude");
    std::fs::write(
        &script,
        format!(
            r#"#!/bin/sh
cat >/dev/null
{{ printf 'argv:'; for a in "$@"; do printf ' [%s]' "$a"; done; printf '\n'; printf 'cwd: %s\n' "$(pwd)"; env; }} > '{}'
echo '{{"type":"stream_event","event":{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":"recorded"}}}},"parent_tool_use_id":null}}'
echo '{{"type":"result","subtype":"success","is_error":false,"result":"recorded"}}'
"#,
            record.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

#[tokio::test]
async fn claude_code_gets_an_allow_listed_environment_its_workdir_and_its_tool_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let record = tmp.path().join("record.txt");
    let claude = recording_claude(tmp.path(), &record);
    let workdir = tmp.path().join("work");
    std::fs::create_dir(&workdir).unwrap();
    let anthropic = MockAnthropic::start(Reply::text(&["unused"])).await;
    let mut config = config_for(&anthropic);
    config.providers.anthropic.claude_binary = claude.display().to_string();
    config.providers.anthropic.workdir = Some(workdir.clone());
    config.providers.anthropic.allowed_tools = vec!["Read".into(), "Bash(git status)".into()];
    config.providers.anthropic.permission_mode = Some(helix_hub::config::PermissionMode::Plan);
    let hub = TestHub::start_without_credentials(config).await;
    let token = "sk-ant-oat01-recorded-token";
    CredentialStore::in_dir(hub.path())
        .set_token(Provider::Anthropic, Secret::new(token), None)
        .unwrap();
    let mut client = hub.client().await;
    let events = run(&mut client, request("what do you see?")).await;
    let f = finished(&events);
    assert_eq!(f.status, CommandStatus::Completed as i32, "{}", f.error);
    assert_eq!(outputs(&events), ["recorded"]);

    let seen = std::fs::read_to_string(&record).unwrap();
    assert!(
        seen.contains("[--allowedTools] [Read,Bash(git status)]"),
        "{seen}"
    );
    assert!(seen.contains("[--permission-mode] [plan]"), "{seen}");
    assert!(
        seen.contains(&format!("cwd: {}\n", workdir.display())),
        "{seen}"
    );
    let env: Vec<&str> = seen.lines().filter(|l| l.contains('=')).collect();
    let has = |name: &str| env.iter().any(|l| l.starts_with(&format!("{name}=")));
    assert!(has("PATH") && has("HOME"), "{seen}");
    assert!(
        has("CLAUDE_CODE_OAUTH_TOKEN") && has("ANTHROPIC_BASE_URL"),
        "{seen}"
    );
    // What cargo put in this process's environment (and anything else not on the list,
    // such as other programs' keys) does not reach the agent.
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    assert!(!has("CARGO_MANIFEST_DIR"), "{seen}");
    assert!(!has("CARGO_PKG_NAME"), "{seen}");
    assert!(
        !seen.contains(hub.path().to_str().unwrap()),
        "the hub's data dir stays unnamed"
    );
    hub.shutdown().await;
}
