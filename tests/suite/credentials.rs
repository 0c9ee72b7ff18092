//! Credentials and OAuth: the Codex sign-in as a real `helix-hub login` process against a
//! local authorization server, refresh races between processes, the store's safety, the
//! Codex, Gemini and Claude Code providers, and secrets kept out of logs.

use std::{os::unix::fs::PermissionsExt, path::Path, process::Stdio};

use helix_hub::credentials::{CredentialStore, Secret};
use helix_mesh::{
    pb::{CommandStatus, Provider, command_event::Kind},
    proto_ext::now_ms,
};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{
    TEST_TIMEOUT, TestHub,
    bins::{HubProcess, hub_cli, run_helix},
    config_for, finished,
    mock_anthropic::{MockAnthropic, Reply},
    mock_codex::MockCodex,
    mock_gemini::MockGemini,
    mock_oauth::{self, Authorize, MockOAuth, store_codex},
    output, request, run,
};

/// `helix-hub --data-dir DIR …` pointed at the local authorization server.
fn hub_cmd(dir: &Path, oauth: &MockOAuth) -> tokio::process::Command {
    let mut cmd = hub_cli(dir);
    cmd.env("HELIX_OPENAI_ISSUER", oauth.issuer())
        .env_remove("HELIX_CODEX_BASE_URL")
        .env("HELIX_LOG", "warn");
    cmd
}

/// A running `helix-hub login openai-codex --no-browser` and the URL it printed.
struct Login {
    child: tokio::process::Child,
    url: String,
}

async fn start_login(cmd: &mut tokio::process::Command, args: &[&str]) -> Login {
    let mut child = cmd
        .args(["login", "openai-codex", "--no-browser"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(TEST_TIMEOUT, lines.next_line())
        .await
        .expect("no authorize URL in time")
        .unwrap()
        .expect("login printed no URL");
    Login { child, url }
}

impl Login {
    /// Waits for the process; returns (exit code, stderr).
    async fn end(self) -> (Option<i32>, String) {
        let out = tokio::time::timeout(TEST_TIMEOUT, self.child.wait_with_output())
            .await
            .expect("login did not end in time")
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// Acts as the browser: opens the authorize URL, follows its redirect to the callback.
/// Returns the callback page's status and text.
async fn browse(url: &str) -> (u16, String) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let answer = http.get(url).send().await.unwrap();
    assert_eq!(answer.status(), 303, "authorize should redirect");
    let location = answer.headers()["location"].to_str().unwrap().to_owned();
    // The redirect URI says localhost; the callback server listens on 127.0.0.1.
    let callback = location.replacen("http://localhost:", "http://127.0.0.1:", 1);
    let page = http.get(&callback).send().await.unwrap();
    (page.status().as_u16(), page.text().await.unwrap())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn codex_login_signs_in_and_stores_the_profile_privately() {
    let oauth = MockOAuth::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hub");
    let login = start_login(&mut hub_cmd(&dir, &oauth), &["--port", "0"]).await;
    assert!(
        login
            .url
            .starts_with(&format!("{}/oauth/authorize?", oauth.issuer())),
        "{}",
        login.url
    );
    assert!(login.url.contains("redirect_uri=http%3A%2F%2Flocalhost%3A"));
    let (status, page) = browse(&login.url).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Signed in"), "{page}");
    let (code, stderr) = login.end().await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("signed in as person@example.com"),
        "{stderr}"
    );
    assert!(oauth.problems().is_empty(), "{:?}", oauth.problems());

    let store = CredentialStore::in_dir(&dir);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.path()).unwrap()).unwrap();
    let p = &json["profiles"]["openai-codex:default"];
    assert_eq!(p["type"], "oauth");
    assert_eq!(p["provider"], "openai-codex");
    assert_eq!(p["access"], mock_oauth::access_token(1));
    assert_eq!(p["refresh"], mock_oauth::refresh_token(1));
    assert_eq!(p["accountId"], mock_oauth::ACCOUNT_ID);
    assert_eq!(p["email"], mock_oauth::EMAIL);
    let expires = p["expires"].as_i64().unwrap();
    assert!((now_ms() + 3_500_000..=now_ms() + 3_600_000).contains(&expires));
    assert_eq!(mode(store.path()), 0o600);
    assert_eq!(mode(&dir), 0o700);

    // auth status shows it, without the secrets; the access token lasts an hour, so --check
    // says "expiring within 24 h" (exit 2).
    let status = run_helix(
        {
            let mut c = hub_cmd(&dir, &oauth);
            c.args(["auth", "status", "--check", "openai-codex"]);
            c
        },
        None,
    )
    .await;
    assert_eq!(status.code, Some(2), "{}", status.stderr);
    assert!(status.stdout.contains("oauth"), "{}", status.stdout);
    assert!(
        status.stdout.contains("expiring within 24 h"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains(mock_oauth::EMAIL),
        "{}",
        status.stdout
    );
    assert!(!status.stdout.contains("tok-"), "{}", status.stdout);
}

#[tokio::test]
async fn failed_sign_ins_end_clearly_and_store_nothing() {
    let oauth = MockOAuth::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hub");
    let store_path = CredentialStore::in_dir(&dir).path().to_owned();

    // A redirect whose state is not this login's.
    oauth.set_authorize(Authorize::WrongState);
    let login = start_login(&mut hub_cmd(&dir, &oauth), &["--port", "0"]).await;
    let (status, page) = browse(&login.url).await;
    assert_eq!(status, 400);
    assert!(page.contains("state did not match"), "{page}");
    let (code, stderr) = login.end().await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("state did not match"), "{stderr}");
    assert!(!store_path.exists());

    // The person (or the server) refused.
    oauth.set_authorize(Authorize::Deny);
    let login = start_login(&mut hub_cmd(&dir, &oauth), &["--port", "0"]).await;
    let (status, page) = browse(&login.url).await;
    assert_eq!(status, 400);
    assert!(page.contains("access_denied"), "{page}");
    let (code, stderr) = login.end().await;
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("sign-in was refused: access_denied (The user denied access)"),
        "{stderr}"
    );
    assert!(!store_path.exists());

    // Nobody signs in.
    let login = start_login(
        &mut hub_cmd(&dir, &oauth),
        &["--port", "0", "--timeout", "300ms"],
    )
    .await;
    let (code, stderr) = login.end().await;
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("no sign-in arrived within 300ms; nothing was stored"),
        "{stderr}"
    );
    assert!(!store_path.exists());

    // The port is taken.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port().to_string();
    let out = run_helix(
        {
            let mut c = hub_cmd(&dir, &oauth);
            c.args(["login", "openai-codex", "--no-browser", "--port", &port]);
            c
        },
        None,
    )
    .await;
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr
            .contains(&format!("port {port} on 127.0.0.1 is taken")),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "no URL when the port is taken");
    assert!(!store_path.exists());
    assert!(oauth.problems().is_empty(), "{:?}", oauth.problems());
}

fn stored_access(dir: &Path) -> String {
    let (_, p) = CredentialStore::in_dir(dir)
        .profile_for(Provider::OpenaiCodex)
        .unwrap()
        .unwrap();
    p.access.unwrap().expose().to_owned()
}

#[tokio::test]
async fn eight_processes_racing_on_an_expired_token_refresh_once() {
    let oauth = MockOAuth::start().await;
    oauth.accept_refresh(1);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hub");
    store_codex(&dir, 1, now_ms() - 1000);

    let mut children = Vec::new();
    for _ in 0..8 {
        let mut cmd = hub_cmd(&dir, &oauth);
        cmd.args(["auth", "refresh", "openai-codex"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        children.push(cmd.spawn().unwrap());
    }
    let mut refreshed = 0;
    for child in children {
        let out = tokio::time::timeout(TEST_TIMEOUT, child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if stdout.contains("openai-codex: refreshed") {
            refreshed += 1;
        } else {
            assert!(stdout.contains("still fresh"), "{stdout}");
        }
    }
    assert_eq!(oauth.refresh_requests(), 1, "exactly one refresh request");
    assert_eq!(refreshed, 1);
    assert_eq!(stored_access(&dir), mock_oauth::access_token(2));
    assert_eq!(mode(CredentialStore::in_dir(&dir).path()), 0o600);

    // A fresh token is not refreshed again.
    let out = run_helix(
        {
            let mut c = hub_cmd(&dir, &oauth);
            c.args(["auth", "refresh", "openai-codex"]);
            c
        },
        None,
    )
    .await;
    assert_eq!(out.code, Some(0));
    assert_eq!(oauth.refresh_requests(), 1);

    // A refresh token the server no longer accepts: sign in again.
    store_codex(&dir, 1, now_ms() - 1000);
    let out = run_helix(
        {
            let mut c = hub_cmd(&dir, &oauth);
            c.args(["auth", "refresh", "openai-codex"]);
            c
        },
        None,
    )
    .await;
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr
            .contains("invalid_grant (refresh token already used); sign in again: helix-hub login openai-codex"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("tok-"), "{}", out.stderr);
}

#[tokio::test]
async fn a_corrupt_store_is_reported_and_left_byte_identical() {
    let oauth = MockOAuth::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hub");
    std::fs::create_dir_all(&dir).unwrap();
    let path = CredentialStore::in_dir(&dir).path().to_owned();
    let garbage = b"{\"version\":1,\"profiles\":{\"openai-codex:default\":{\"type\":";
    std::fs::write(&path, garbage).unwrap();

    let runs: [(&[&str], Option<&str>); 4] = [
        (&["auth", "status"], None),
        (
            &["login", "google-gemini", "--api-key"],
            Some("AIza-secret"),
        ),
        (
            &["login", "openai-codex", "--no-browser", "--port", "0"],
            None,
        ),
        (&["auth", "refresh", "openai-codex"], None),
    ];
    for (args, stdin) in runs {
        let mut cmd = hub_cmd(&dir, &oauth);
        cmd.args(args);
        let out = run_helix(cmd, stdin).await;
        assert_eq!(out.code, Some(1), "{args:?}");
        assert!(
            out.stderr.contains(&path.display().to_string()) && out.stderr.contains("corrupt"),
            "{args:?}: {}",
            out.stderr
        );
        assert_eq!(std::fs::read(&path).unwrap(), garbage, "{args:?}");
    }
}

#[tokio::test]
async fn openclaw_profiles_are_imported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hub");
    let openclaw = tmp.path().join("openclaw.json");
    std::fs::write(
        &openclaw,
        r#"{"version":1,"profiles":{"google-gemini:work":{"type":"api_key","provider":"google-gemini","key":"AIza-imported"},
            "openai-codex:default":{"type":"oauth","provider":"openai-codex","access":"a","refresh":"r","expires":1,"accountId":"acc"}}}"#,
    )
    .unwrap();
    let mut cmd = hub_cli(&dir);
    cmd.args(["auth", "import-openclaw"]).arg(&openclaw);
    let out = run_helix(cmd, None).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr.contains("imported 2 profile(s)"),
        "{}",
        out.stderr
    );
    let store = CredentialStore::in_dir(&dir);
    assert_eq!(
        store.credential_for(Provider::GoogleGemini).unwrap(),
        Some(helix_hub::credentials::Credential::ApiKey(Secret::new(
            "AIza-imported"
        )))
    );
    assert_eq!(mode(store.path()), 0o600);
}

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
    let texts: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::Output(o)) => Some(o.text.as_str()),
            _ => None,
        })
        .collect();
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
    let mut config = config_for(&anthropic);
    config.providers.google_gemini.base_url = gemini.base_url();
    let hub = TestHub::start_without_credentials(config).await;
    CredentialStore::in_dir(hub.path())
        .set_api_key(Provider::GoogleGemini, Secret::new("AIza-test-key-77"))
        .unwrap();
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
    assert_eq!(seen[0].api_key.as_deref(), Some("AIza-test-key-77"));
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
fn claude_binary() -> String {
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
    let hub = TestHub::start_without_credentials(config).await;
    CredentialStore::in_dir(hub.path())
        .set_token(Provider::Anthropic, Secret::new(token), None)
        .unwrap();
    let mut client = hub.client().await;
    let events = run(&mut client, request("--help me say hello")).await;
    let f = finished(&events);
    assert_eq!(f.status, CommandStatus::Completed as i32, "{}", f.error);
    let texts: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::Output(o)) => Some(o.text.as_str()),
            _ => None,
        })
        .collect();
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

#[tokio::test]
async fn trace_logs_never_contain_secrets() {
    let oauth = MockOAuth::start().await;
    let codex = MockCodex::start(&["ok"]).await;
    let gemini = MockGemini::start(&["fine"]).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hub");

    // Sign in at trace level.
    let mut cmd = hub_cmd(&dir, &oauth);
    cmd.env("HELIX_LOG", "trace");
    let login = start_login(&mut cmd, &["--port", "0"]).await;
    let (status, _) = browse(&login.url).await;
    assert_eq!(status, 200);
    let (code, login_log) = login.end().await;
    assert_eq!(code, Some(0), "{login_log}");
    let gemini_key = "AIza-trace-secret-key-31337";
    let mut cmd = hub_cli(&dir);
    cmd.args(["login", "google-gemini", "--api-key"])
        .env("HELIX_LOG", "trace");
    let out = run_helix(cmd, Some(gemini_key)).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let key_log = out.stderr + &out.stdout;
    // The token expires soon, so the hub refreshes it before the command.
    let (_, mut p) = CredentialStore::in_dir(&dir)
        .profile_for(Provider::OpenaiCodex)
        .unwrap()
        .unwrap();
    p.expires = Some(now_ms() + 1000);
    CredentialStore::in_dir(&dir)
        .set_profile("openai-codex:default", p)
        .unwrap();

    crate::support::bins::write_hub_config(&dir, "http://127.0.0.1:9", 2);
    let mut config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    config.push_str(&format!(
        "[providers.openai_codex]\nbase_url = \"{}\"\nissuer = \"{}\"\n[providers.google_gemini]\nbase_url = \"{}\"\n",
        codex.base_url(),
        oauth.issuer(),
        gemini.base_url()
    ));
    std::fs::write(dir.join("config.toml"), config).unwrap();
    let mut hub = HubProcess::spawn_with_env(&dir, &[("HELIX_LOG", "trace")]).await;
    let mut client = helix_spoke::client::connect_local(&dir)
        .await
        .unwrap()
        .client;
    for provider in [Provider::OpenaiCodex, Provider::GoogleGemini] {
        let mut req = request("hello");
        req.provider = provider as i32;
        let events = run(&mut client, req).await;
        assert_eq!(
            finished(&events).status,
            CommandStatus::Completed as i32,
            "{provider:?}: {}",
            finished(&events).error
        );
    }
    assert_eq!(oauth.refresh_requests(), 1);
    hub.signal(libc::SIGTERM);
    hub.wait().await;
    let hub_log = hub.stderr();
    assert!(hub_log.contains("TRACE"), "trace logging was on");

    let secrets = [
        mock_oauth::access_token(1),
        mock_oauth::refresh_token(1),
        mock_oauth::access_token(2),
        mock_oauth::refresh_token(2),
        "mock-signature".to_owned(),
        gemini_key.to_owned(),
    ];
    for (name, log) in [
        ("login", &login_log),
        ("api key", &key_log),
        ("hub", &hub_log),
    ] {
        for secret in &secrets {
            assert!(
                !log.contains(secret.as_str()),
                "{name} log contains a secret"
            );
        }
        // The authorization code is a one-time secret too.
        assert!(
            !log.contains(mock_oauth::CODE_PREFIX),
            "{name} log contains the authorization code"
        );
    }
}
