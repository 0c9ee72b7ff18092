//! `helix-hub login`: the ChatGPT sign-in callback reached over IPv6 loopback (the redirect
//! URI says `localhost`, which browsers may resolve to ::1 first), and the hint printed when
//! stdin carries no secret, for the flow that was asked for.

use helix_hub::oauth::CodexLogin;

use crate::support::{
    TEST_TIMEOUT,
    bins::{hub_cli, run_helix},
    mock_oauth::{self, MockOAuth},
};

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
