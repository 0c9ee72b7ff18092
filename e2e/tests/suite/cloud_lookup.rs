//! A spoke signed in to the cloud dials a hub by its key alone: the address comes from the
//! hub's presence row (through the PostgREST-compatible server).

use crate::support::{
    TestHub,
    bins::{pairing_ticket, run_helix, spoke},
    cloud::TestCloud,
    config_for, json_lines,
    mock_anthropic::{MockAnthropic, Reply},
    mock_gotrue::{EMAIL, PASSWORD},
};
use helix_discovery::{auth::Auth, presence, rest::Rest};

#[tokio::test]
async fn a_spoke_finds_its_hub_through_presence() {
    let cloud = TestCloud::start().await;
    let (gotrue, server, config) = (&cloud.gotrue, &cloud.server, &cloud.config);
    let dir = cloud.hub_dir().await;
    let session = Auth::new(config)
        .unwrap()
        .sign_in_password(EMAIL, PASSWORD)
        .await
        .unwrap();
    let mock = MockAnthropic::start(Reply::text(&["found ", "you"])).await;
    let hub = TestHub::start_in(dir, config_for(&mock)).await;
    let hub_id = hub.hub().hub_id().to_owned();
    let rest = Rest::new(config, session.access_token.clone()).unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !presence::online(&rest)
        .await
        .unwrap()
        .iter()
        .any(|p| p.hub_id == hub_id)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hub never announced itself"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // A spoke: paired, then made to forget the hub's address; signed in to the same cloud.
    let spoke_dir = tempfile::tempdir().unwrap();
    let ticket = pairing_ticket(hub.path(), &[]).await;
    let mut cmd = spoke(spoke_dir.path());
    cmd.args(["pair", &ticket]);
    assert_eq!(run_helix(cmd, None).await.code, Some(0));
    std::fs::remove_file(spoke_dir.path().join("hubs.json")).unwrap();
    let mut cmd = spoke(spoke_dir.path());
    cmd.env("HELIX_SUPABASE_REST_URL", &server.url).args([
        "cloud",
        "login",
        "--url",
        &gotrue.url(),
        "--anon-key",
        "anon-key",
        "--email",
        EMAIL,
    ]);
    let done = run_helix(cmd, Some(&format!("{PASSWORD}\n"))).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);

    // `helix hubs` shows the hub as seen online through the cloud.
    let mut cmd = spoke(spoke_dir.path());
    cmd.args(["hubs", "--json"]);
    let done = run_helix(cmd, None).await;
    let rows = json_lines(&done.stdout);
    assert_eq!(rows.len(), 1, "{}", done.stdout);
    assert_eq!(
        (
            rows[0]["hub_id"].as_str(),
            rows[0]["cloud_online"].as_bool()
        ),
        (Some(hub_id.as_str()), Some(true))
    );

    // By key alone.
    let mut cmd = spoke(spoke_dir.path());
    cmd.args(["run", "--hub", &hub_id, "hello"]);
    let done = run_helix(cmd, None).await;
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (Some(0), "found you"),
        "{}",
        done.stderr
    );
    assert!(done.stderr.contains("(route direct)"), "{}", done.stderr);

    // Without the cloud session the key alone is not enough (no other discovery on loopback).
    let mut cmd = spoke(spoke_dir.path());
    cmd.args(["cloud", "logout"]);
    run_helix(cmd, None).await;
    let mut cmd = spoke(spoke_dir.path());
    cmd.args(["--connect-timeout", "2s", "run", "--hub", &hub_id, "hello"]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(3), "{}", done.stderr);
    hub.shutdown().await;
}
