//! Supabase auth sessions against a local GoTrue stand-in, and the session's token used
//! against the PostgREST-compatible server.

use std::os::unix::fs::PermissionsExt;

use helix_discovery::{
    auth::{Auth, AuthError, SessionStore},
    presence::{self, Presence},
    rest::{Rest, SupabaseConfig},
};

use crate::support::{
    mock_gotrue::{EMAIL, MockGoTrue, OTP, PASSWORD},
    pg::TestDb,
    postrust::PostRust,
};

fn config(gotrue: &MockGoTrue, rest: Option<String>) -> SupabaseConfig {
    SupabaseConfig {
        url: gotrue.url(),
        anon_key: "anon-key".into(),
        rest_url: rest,
    }
}

#[tokio::test]
async fn password_and_email_code_sign_in_store_a_private_session() {
    let gotrue = MockGoTrue::start().await;
    let auth = Auth::new(&config(&gotrue, None)).unwrap();
    let err = auth
        .sign_in_password(EMAIL, "wrong")
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "signing in to Supabase failed: Invalid login credentials (invalid_grant)"
    );

    let dir = tempfile::tempdir().unwrap();
    let store = SessionStore::new(dir.path().join("cloud/session.json"));
    let session = auth.sign_in_password(EMAIL, PASSWORD).await.unwrap();
    store.save(&session).unwrap();
    let mode = std::fs::metadata(store.path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(store.load().unwrap().unwrap(), session);
    assert!(!format!("{session:?}").contains(&session.refresh_token));

    auth.send_otp(EMAIL).await.unwrap();
    let err = auth
        .verify_otp(EMAIL, "000000")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Token has expired or is invalid"), "{err}");
    let by_code = auth.verify_otp(EMAIL, OTP).await.unwrap();
    assert_eq!(by_code.email.as_deref(), Some(EMAIL));
    assert!(store.clear().unwrap());
    assert_eq!(store.load().unwrap(), None);
}

#[tokio::test]
async fn an_expiring_session_is_refreshed_once_and_saved_before_use() {
    let gotrue = MockGoTrue::start().await;
    let auth = Auth::new(&config(&gotrue, None)).unwrap();
    gotrue.set_expires_in(30); // inside the refresh margin: every use refreshes
    let dir = tempfile::tempdir().unwrap();
    let store = SessionStore::new(dir.path().join("session.json"));
    let first = auth.sign_in_password(EMAIL, PASSWORD).await.unwrap();
    store.save(&first).unwrap();

    gotrue.set_expires_in(3600);
    // Eight users of one session at once: exactly one refresh, and all see the new session.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (store, auth) = (store.clone(), auth.clone());
            tokio::spawn(async move { store.fresh(&auth).await })
        })
        .collect();
    let mut sessions = Vec::new();
    for t in tasks {
        sessions.push(t.await.unwrap().unwrap().unwrap());
    }
    assert_eq!(gotrue.refreshes(), 1);
    assert!(
        sessions
            .iter()
            .all(|s| s.refresh_token == sessions[0].refresh_token)
    );
    assert_ne!(sessions[0].refresh_token, first.refresh_token, "rotated");
    assert_eq!(store.load().unwrap().unwrap(), sessions[0], "saved");

    // The old refresh token is spent: a session still holding it must sign in again.
    let mut stale = first.clone();
    stale.expires_at = 0;
    store.save(&stale).unwrap();
    let err = store.fresh(&auth).await.unwrap_err();
    assert!(matches!(err, AuthError::Expired(_)), "{err}");
    assert!(err.to_string().contains("Already Used"), "{err}");
}

#[tokio::test]
async fn a_signed_in_session_writes_presence_through_rest() {
    let gotrue = MockGoTrue::start().await;
    let db = TestDb::create().await;
    let server = PostRust::start(&db).await;
    let config = config(&gotrue, Some(server.url.clone()));
    let session = Auth::new(&config)
        .unwrap()
        .sign_in_password(EMAIL, PASSWORD)
        .await
        .unwrap();
    let rest = Rest::new(&config, session.access_token).unwrap();
    let hub = Presence {
        hub_id: "ef".repeat(32),
        hub_name: "desk".into(),
        relay_url: None,
        direct_addrs: vec![],
        providers: vec![],
        version: "0.1.0".into(),
        last_seen: None,
    };
    let token = "ab".repeat(32);
    let _: serde_json::Value = rest
        .rpc(
            "register_cloud_hub",
            &serde_json::json!({"p_hub_id": hub.hub_id, "p_token": token}),
        )
        .await
        .unwrap();
    presence::announce(&rest, &token, &hub).await.unwrap();
    let rows: Vec<Presence> = rest
        .select("cloud_presence", &format!("hub_id=eq.{}", hub.hub_id))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
}

#[tokio::test]
async fn helix_cloud_login_status_and_logout() {
    use crate::support::bins::{run_helix, spoke};
    let gotrue = MockGoTrue::start().await;
    let config_dir = tempfile::tempdir().unwrap();
    let login = |stdin: &'static str| {
        let mut cmd = spoke(config_dir.path());
        cmd.args([
            "cloud",
            "login",
            "--url",
            &gotrue.url(),
            "--anon-key",
            "anon-key",
            "--email",
            EMAIL,
        ]);
        (cmd, stdin)
    };
    let (cmd, stdin) = login("not it\n");
    let done = run_helix(cmd, Some(stdin)).await;
    assert_eq!(done.code, Some(1));
    assert!(
        done.stderr.contains("Invalid login credentials"),
        "{}",
        done.stderr
    );

    // The password has spaces: only the line ending is dropped.
    let (cmd, _) = login("");
    let done = run_helix(cmd, Some(&format!("{PASSWORD}\n"))).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert!(
        done.stdout.starts_with(&format!("signed in as {EMAIL}")),
        "{}",
        done.stdout
    );
    let session = std::fs::metadata(config_dir.path().join("cloud-session.json")).unwrap();
    assert_eq!(session.permissions().mode() & 0o777, 0o600);

    let mut cmd = spoke(config_dir.path());
    cmd.args(["cloud", "status", "--json"]);
    let status: serde_json::Value =
        serde_json::from_str(&run_helix(cmd, None).await.stdout).unwrap();
    assert_eq!(
        (status["signed_in"].as_bool(), status["email"].as_str()),
        (Some(true), Some(EMAIL))
    );

    let mut cmd = spoke(config_dir.path());
    cmd.args(["cloud", "logout"]);
    assert_eq!(run_helix(cmd, None).await.stdout, "signed out\n");
}

#[tokio::test]
async fn a_signed_in_hub_announces_its_presence_and_withdraws_it() {
    let cloud = crate::support::cloud::TestCloud::start().await;
    let config = cloud.config.clone();
    let dir = cloud.hub_dir().await;
    let session = Auth::new(&config)
        .unwrap()
        .sign_in_password(EMAIL, PASSWORD)
        .await
        .unwrap();
    let mock = crate::support::mock_anthropic::MockAnthropic::start(
        crate::support::mock_anthropic::Reply::text(&["x"]),
    )
    .await;
    let hub = crate::support::TestHub::start_in(dir, crate::support::config_for(&mock)).await;
    let hub_id = hub.hub().hub_id().to_owned();

    let rest = Rest::new(&config, session.access_token.clone()).unwrap();
    let query = format!("hub_id=eq.{hub_id}&select=*");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let row = loop {
        if let Some(row) = rest
            .select::<Presence>("cloud_presence", &query)
            .await
            .unwrap()
            .pop()
        {
            break row;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hub never announced itself"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(
        row.direct_addrs.iter().any(|a| a.starts_with("127.0.0.1:")),
        "{row:?}"
    );
    assert!(row.providers.contains(&"anthropic".to_owned()), "{row:?}");

    hub.shutdown().await;
    assert!(
        rest.select::<Presence>("cloud_presence", &query)
            .await
            .unwrap()
            .is_empty(),
        "withdrawn on shutdown"
    );
}
