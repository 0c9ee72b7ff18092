//! Credentials and OAuth: the Codex sign-in as a real `helix-hub login` process against a
//! local authorization server, refresh races between processes, the store's safety, imported
//! profiles, and secrets kept out of logs. The providers that use them: `provider_streams.rs`.

use std::{path::Path, process::Stdio};

use helix_hub::credentials::{CredentialStore, Secret};
use helix_mesh::{
    pb::{CommandStatus, Provider},
    proto_ext::now_ms,
};

use super::login::{browse, hub_cmd, mode, start_login};
use crate::support::{
    TEST_TIMEOUT,
    bins::{HubProcess, hub_cli, run_helix},
    finished,
    mock_codex::MockCodex,
    mock_gemini::MockGemini,
    mock_oauth::{self, MockOAuth, store_codex},
    request, run,
};

/// The Codex access token in `dir`'s credential store.
pub(crate) fn stored_access(dir: &Path) -> String {
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
