//! `helix-hub login`: the ChatGPT sign-in callback reached over IPv6 loopback (the redirect
//! URI says `localhost`, which browsers may resolve to ::1 first), and the hints printed when
//! stdin carries no secret.

use helix_hub::oauth::CodexLogin;

use crate::support::{
    TEST_TIMEOUT,
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
