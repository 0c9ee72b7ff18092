//! `helix-hub login` as a real process: the Codex (ChatGPT) sign-in against a local
//! authorization server, its failures, the callback reached over IPv6 loopback (the redirect
//! URI says `localhost`, which browsers may resolve to ::1 first), and the hint printed when
//! stdin carries no secret, for the flow that was asked for.

use std::{os::unix::fs::PermissionsExt, path::Path, process::Stdio};

use helix_hub::{credentials::CredentialStore, oauth::CodexLogin};
use helix_mesh::proto_ext::now_ms;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{
    TEST_TIMEOUT,
    bins::{hub_cli, run_helix},
    mock_oauth::{self, Authorize, MockOAuth},
};

/// `helix-hub --data-dir DIR …` pointed at the local authorization server.
pub(crate) fn hub_cmd(dir: &Path, oauth: &MockOAuth) -> tokio::process::Command {
    let mut cmd = hub_cli(dir);
    cmd.env("HELIX_OPENAI_ISSUER", oauth.issuer())
        .env_remove("HELIX_CODEX_BASE_URL")
        .env("HELIX_LOG", "warn");
    cmd
}

/// A running `helix-hub login openai-codex --no-browser` and the URL it printed.
pub(crate) struct Login {
    child: tokio::process::Child,
    pub(crate) url: String,
}

pub(crate) async fn start_login(cmd: &mut tokio::process::Command, args: &[&str]) -> Login {
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
    pub(crate) async fn end(self) -> (Option<i32>, String) {
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
pub(crate) async fn browse(url: &str) -> (u16, String) {
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

/// A file's permission bits.
pub(crate) fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn an_idle_or_stalled_connection_to_the_callback_port_does_not_keep_the_login_waiting() {
    let oauth = MockOAuth::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hub");
    let login = start_login(&mut hub_cmd(&dir, &oauth), &["--port", "0"]).await;
    let port = login
        .url
        .split("localhost%3A")
        .nth(1)
        .and_then(|rest| rest.split("%2F").next())
        .and_then(|port| port.parse::<u16>().ok())
        .expect("the redirect URI names the callback port");
    // A browser's spare keep-alive connection (or anything else) that never sends a request,
    // and one that stopped half-way through its request's headers.
    let idle = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut stalled = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut stalled,
        b"GET /auth/callback HTTP/1.1\r\nHost: x\r\n",
    )
    .await
    .unwrap();
    let (status, page) = browse(&login.url).await;
    assert_eq!(status, 200, "{page}");
    let started = std::time::Instant::now();
    let (code, stderr) = login.end().await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "the login waited {:?} for the idle connection",
        started.elapsed()
    );
    drop((idle, stalled));
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
    // says "expiring within 24 h" (exit 3; 2 is a usage error).
    let status = run_helix(
        {
            let mut c = hub_cmd(&dir, &oauth);
            c.args(["auth", "status", "--check", "openai-codex"]);
            c
        },
        None,
    )
    .await;
    assert_eq!(status.code, Some(3), "{}", status.stderr);
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

/// Whether this machine has an IPv6 loopback to test with.
fn has_ipv6_loopback() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

#[tokio::test]
async fn the_sign_in_callback_is_answered_over_ipv6_loopback() {
    if !has_ipv6_loopback() {
        eprintln!("no IPv6 loopback on this machine: the ::1 callback cannot be tested here");
        return;
    }
    let oauth = MockOAuth::start().await;
    let login = CodexLogin::start(&oauth.issuer(), 0).await.unwrap();
    let url = login.authorize_url().to_owned();
    let finish = tokio::spawn(login.finish(TEST_TIMEOUT));

    // The browser: the authorize page redirects to http://localhost:PORT/auth/callback, and
    // this browser resolves localhost to ::1.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let answer = http.get(&url).send().await.unwrap();
    assert_eq!(answer.status(), 303);
    let location = answer.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("http://localhost:"), "{location}");
    let callback = location.replacen("http://localhost:", "http://[::1]:", 1);
    let page = http.get(&callback).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Signed in"));

    let tokens = finish.await.unwrap().unwrap();
    assert_eq!(tokens.access.expose(), mock_oauth::access_token(1));
    assert_eq!(tokens.account_id.as_deref(), Some(mock_oauth::ACCOUNT_ID));
    assert!(oauth.problems().is_empty(), "{:?}", oauth.problems());
}

#[tokio::test]
async fn an_empty_stdin_gets_the_hint_of_its_own_flow() {
    let tmp = tempfile::tempdir().unwrap();
    let login = |args: &[&str]| {
        let mut cmd = hub_cli(tmp.path());
        cmd.arg("login").args(args).env("HELIX_LOG", "warn");
        cmd
    };

    // A setup-token: what to pipe, or let helix-hub run `claude setup-token`; no API key talk.
    let out = run_helix(login(&["anthropic", "--setup-token"]), Some("")).await;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "no setup-token on stdin; pipe it in, e.g. printf %s \"$CLAUDE_SETUP_TOKEN\" | helix-hub login anthropic --setup-token"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("helix-hub login anthropic --run-claude"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("--api-key"), "{}", out.stderr);

    // An API key: the command names the provider being logged in.
    let out = run_helix(login(&["google-gemini", "--api-key"]), Some("")).await;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "no API key on stdin; pipe it in, e.g. printf %s \"$KEY\" | helix-hub login google-gemini --api-key"
        ),
        "{}",
        out.stderr
    );
    assert!(
        !tmp.path().join("auth-profiles.json").exists(),
        "nothing stored"
    );
}
