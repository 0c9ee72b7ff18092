//! The Supabase table relay end to end: a paired, signed-in spoke sends through the table, the
//! hub claims, verifies, runs and streams back sealed events; refusals are recorded with a
//! reason; nothing in the tables is plaintext; a hub that was offline picks work up when it
//! starts; a spoke without an iroh route falls back to the table.

use std::time::{Duration, Instant};

use helix_discovery::{
    auth::SessionStore,
    rest::{Rest, SupabaseConfig},
};
use helix_mesh::{pb, proto_ext::now_ms};
use iroh::SecretKey;
use serde_json::json;

use crate::support::{
    TestHub,
    bins::{run_helix, spoke},
    cloud::TestCloud,
    config_for, json_lines, json_seqs,
    mock_anthropic::{MockAnthropic, Reply},
    pg::TestDb,
    postrust::PostRust,
    relay::{device_key, hub_config, paired_spoke, sealed_row, wait_row, wait_status},
};

#[tokio::test]
async fn a_command_streams_through_the_table_and_nothing_is_plaintext() {
    let cloud = TestCloud::start().await;
    let mock = MockAnthropic::start(Reply::text(&["over ", "the ", "table"])).await;
    let hub = TestHub::start_in(cloud.hub_dir().await, hub_config(&mock)).await;
    let spoke_dir = paired_spoke(&hub, &cloud).await;

    let mut cmd = spoke(spoke_dir.path());
    cmd.args([
        "run",
        "--hub",
        "desk",
        "--via",
        "cloud",
        "--json",
        "a secret prompt",
    ]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    let records = json_lines(&done.stdout);
    assert!(records.iter().all(|r| r["route"] == "cloud"), "{records:?}");
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "complete and in order"
    );
    let text: String = records.iter().filter_map(|r| r["text"].as_str()).collect();
    assert_eq!(text, "over the table");
    assert_eq!(
        mock.seen()[0].body["messages"][0]["content"],
        "a secret prompt"
    );

    let stored = cloud.db.admin("select string_agg(coalesce(envelope, '') || coalesce(prompt, ''), '') from cloud_commands union all select string_agg(envelope, '') from cloud_command_events union all select string_agg(envelope, '') from cloud_command_keys").await;
    for plaintext in ["a secret prompt", "secret", "over the table", "table"] {
        assert!(
            !stored.contains(plaintext),
            "{plaintext:?} is stored in clear"
        );
    }
    // Detach, then read it back from the table (the cursor makes it resumable).
    let mut cmd = spoke(spoke_dir.path());
    cmd.args([
        "run", "--hub", "desk", "--via", "cloud", "--detach", "again",
    ]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    let detached = done.stdout.lines().last().unwrap().to_owned();
    let mut cmd = spoke(spoke_dir.path());
    cmd.args(["attach", "--hub", "desk", "--via", "cloud", &detached]);
    let done = run_helix(cmd, None).await;
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (Some(0), "over the table"),
        "{}",
        done.stderr
    );
    let mut cmd = spoke(spoke_dir.path());
    cmd.args([
        "attach",
        "--hub",
        "desk",
        "--via",
        "cloud",
        "--json",
        "--after-seq",
        "3",
        &detached,
    ]);
    let done = run_helix(cmd, None).await;
    let seqs_after = json_seqs(&done.stdout);
    assert_eq!(seqs_after.first(), Some(&4), "{}", done.stdout);
    let mut cmd = spoke(spoke_dir.path());
    cmd.args([
        "attach",
        "--hub",
        "desk",
        "--via",
        "cloud",
        &uuid::Uuid::new_v4().to_string(),
    ]);
    assert_eq!(run_helix(cmd, None).await.code, Some(6));

    let row = cloud
        .db
        .admin(&format!(
            "select status || '|' || last_seq from cloud_commands where command_id <> '{detached}'"
        ))
        .await;
    assert_eq!(row, format!("completed|{}", seqs.len()));
    hub.shutdown().await;
}

#[tokio::test]
async fn forged_misaddressed_expired_and_replayed_envelopes_are_refused_with_a_reason() {
    let cloud = TestCloud::start().await;
    let mock = MockAnthropic::start(Reply::text(&["ran"])).await;
    let hub = TestHub::start_in(cloud.hub_dir().await, hub_config(&mock)).await;
    let spoke_dir = paired_spoke(&hub, &cloud).await;
    let device = device_key(&spoke_dir);
    let hub_key: iroh::PublicKey = hub.hub().hub_id().parse().unwrap();
    let rest = cloud.rest().await;
    let insert = |row: serde_json::Value| {
        let rest = rest.clone();
        async move {
            let _: Vec<serde_json::Value> =
                rest.insert("cloud_commands", &[row], None).await.unwrap();
        }
    };

    let unpaired = uuid::Uuid::new_v4().to_string();
    let mut row = sealed_row(
        &SecretKey::generate(),
        &hub_key,
        &unpaired,
        now_ms() + 60_000,
    );
    row["source_device_id"] = json!(device.public().to_string()); // claims to be the paired device
    insert(row).await;
    let other_hub = uuid::Uuid::new_v4().to_string();
    let mut row = sealed_row(
        &device,
        &SecretKey::generate().public(),
        &other_hub,
        now_ms() + 60_000,
    );
    row["hub_id"] = json!(hub_key.to_string());
    insert(row).await;
    let expired = uuid::Uuid::new_v4().to_string();
    insert(sealed_row(&device, &hub_key, &expired, now_ms() - 1000)).await;
    // Replay: a command id the hub already ran (here over its own listener).
    let replayed = uuid::Uuid::new_v4().to_string();
    let mut client = hub.client().await;
    crate::support::collect(
        client
            .execute(pb::ExecuteRequest {
                command_id: replayed.clone(),
                content: "first".into(),
                provider: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    // The hub mirrored it to the cloud, so the cloud itself refuses the id again...
    wait_row(
        &cloud,
        &format!(
            "select origin || '|' || status from cloud_commands where command_id = '{replayed}'"
        ),
        "hub|completed",
    )
    .await;
    let again = rest
        .insert::<serde_json::Value>(
            "cloud_commands",
            &[sealed_row(&device, &hub_key, &replayed, now_ms() + 60_000)],
            None,
        )
        .await
        .unwrap_err();
    assert!(again.to_string().contains("23505"), "{again}");
    // ... and where the cloud lost that row, the hub's journal refuses the replay.
    cloud
        .db
        .admin(&format!(
            "delete from cloud_commands where command_id = '{replayed}'"
        ))
        .await;
    insert(sealed_row(&device, &hub_key, &replayed, now_ms() + 60_000)).await;
    hub.hub().wake_cloud_route();

    assert!(
        wait_status(&cloud, &unpaired, "failed")
            .await
            .contains("not a paired device")
    );
    assert!(
        wait_status(&cloud, &other_hub, "failed")
            .await
            .contains("addressed to another recipient")
    );
    assert!(
        wait_status(&cloud, &expired, "failed")
            .await
            .contains("expired envelope")
    );
    assert!(
        wait_status(&cloud, &replayed, "failed")
            .await
            .contains("replayed envelope")
    );
    assert_eq!(mock.requests(), 1, "only the direct command ran");
    hub.shutdown().await;
}

#[tokio::test]
async fn a_command_sent_while_the_hub_was_offline_runs_when_it_starts() {
    let cloud = TestCloud::start().await;
    let mock = MockAnthropic::start(Reply::text(&["late ", "but done"])).await;
    let hub = TestHub::start_in(cloud.hub_dir().await, hub_config(&mock)).await;
    let spoke_dir = paired_spoke(&hub, &cloud).await;
    let device = device_key(&spoke_dir);
    let hub_key: iroh::PublicKey = hub.hub().hub_id().parse().unwrap();
    let hub_dir = hub.dir.path().to_owned();
    // The hub goes away; the command is queued in the table meanwhile.
    let dir = hub.stop_keeping_dir().await;
    let id = uuid::Uuid::new_v4().to_string();
    let _: Vec<serde_json::Value> = cloud
        .rest()
        .await
        .insert(
            "cloud_commands",
            &[sealed_row(&device, &hub_key, &id, now_ms() + 600_000)],
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        cloud
            .db
            .admin(&format!(
                "select status from cloud_commands where command_id = '{id}'"
            ))
            .await,
        "pending"
    );
    let hub = TestHub::start_in(dir, hub_config(&mock)).await;
    assert_eq!(hub.path(), hub_dir);
    wait_status(&cloud, &id, "completed").await;
    assert_eq!(mock.requests(), 1);
    hub.shutdown().await;
}

#[tokio::test]
async fn without_an_iroh_route_the_spoke_falls_back_to_the_table_within_3s() {
    let cloud = TestCloud::start().await;
    let mock = MockAnthropic::start(Reply::text(&["via ", "the cloud"])).await;
    let hub = TestHub::start_in(cloud.hub_dir().await, hub_config(&mock)).await;
    let spoke_dir = paired_spoke(&hub, &cloud).await;
    // Restart the hub without iroh: the spoke's known address leads nowhere now.
    let dir = hub.stop_keeping_dir().await;
    let mut config = hub_config(&mock);
    config.iroh.enabled = false;
    let hub = TestHub::start_in(dir, config).await;

    let started = Instant::now();
    let mut cmd = spoke(spoke_dir.path());
    cmd.args(["run", "--hub", "desk", "fall back please"]);
    let done = run_helix(cmd, None).await;
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (Some(0), "via the cloud"),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr
            .contains("no iroh route to the hub within 3s; using the cloud route"),
        "{}",
        done.stderr
    );
    assert!(done.stderr.contains("route cloud"), "{}", done.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn a_realtime_insert_wakes_the_hub_long_before_its_safety_poll() {
    use crate::support::mock_realtime::{MockRealtime, Seen};
    let db = TestDb::create().await;
    let server = PostRust::start(&db).await;
    let mut realtime = MockRealtime::start().await;
    // The project URL serves Realtime; the session is a bare access token (no auth server).
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cloud.json"),
        json!({"url": realtime.url(), "anon_key": "anon-key", "rest_url": server.url}).to_string(),
    )
    .unwrap();
    let token = crate::support::postrust::jwt_for(crate::support::pg::ALICE);
    SessionStore::new(dir.path().join("cloud-session.json"))
        .save(&helix_discovery::auth::session_from_access_token(&token).unwrap())
        .unwrap();
    crate::support::store_api_key(dir.path());
    let mock = MockAnthropic::start(Reply::text(&["woken"])).await;
    let mut config = config_for(&mock);
    config.cloud.poll_interval = Duration::from_secs(600);
    let hub = TestHub::start_in(dir, config).await;
    let hub_id = hub.hub().hub_id().to_owned();
    let hub_key: iroh::PublicKey = hub_id.parse().unwrap();

    // The hub joins its channel with its filter and token.
    let join = realtime
        .until(|seen| match seen {
            Seen::Frame { frame, .. } if frame["event"] == "phx_join" => Some(frame.clone()),
            _ => None,
        })
        .await;
    let filter = join["payload"]["config"]["postgres_changes"][0]["filter"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(filter, format!("hub_id=eq.{hub_id}"));
    // ... and for the pairing requests sealed to it.
    let pairings = &join["payload"]["config"]["postgres_changes"][1];
    assert_eq!(
        (
            pairings["event"].as_str(),
            pairings["table"].as_str(),
            pairings["filter"].as_str()
        ),
        (
            Some("INSERT"),
            Some("cloud_pairings"),
            Some(format!("hub_id=eq.{hub_id}").as_str())
        )
    );
    assert_eq!(join["payload"]["access_token"], token.as_str());

    // The hub registers itself (a command for an unregistered hub is refused by the cloud).
    crate::support::relay::wait_registered(&db, &hub_id).await;
    // A command lands in the table, from a device this hub does not know (so it is refused:
    // the point is how soon the hub looks), and Realtime says so.
    let device = SecretKey::generate();
    let id = uuid::Uuid::new_v4().to_string();
    let rest = Rest::new(
        &SupabaseConfig {
            url: realtime.url(),
            anon_key: "anon-key".into(),
            rest_url: Some(server.url.clone()),
        },
        token.clone(),
    )
    .unwrap();
    let _: Vec<serde_json::Value> = rest
        .insert(
            "cloud_commands",
            &[sealed_row(&device, &hub_key, &id, now_ms() + 600_000)],
            None,
        )
        .await
        .unwrap();
    realtime.push_insert(&hub_id).await;
    // The safety poll is 10 minutes: a row handled before this deadline was found because of
    // the wake-up. (The deadline only keeps a broken wake-up from hanging the test.)
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let status = cloud_status(&db, &id).await;
        // Claimed rows are `executing` until the hub has checked and refused them.
        if !status.starts_with("pending") && !status.starts_with("executing") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the wake-up did not reach the hub ({status})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        status.starts_with("failed|") && status.contains("not a paired device"),
        "{status}"
    );
    hub.shutdown().await;
}

/// A relayed command's `status|reason` in the cloud.
pub(crate) async fn cloud_status(db: &TestDb, id: &str) -> String {
    db.admin(&format!(
        "select status || '|' || coalesce(reason, '') from cloud_commands where command_id = '{id}'"
    ))
    .await
}
