//! The table relay when the cloud misbehaves, with a live hub: appends that fail are sent
//! again, with the same envelopes, until they go through; events that another writer already
//! stored under the hub's seqs fail the row with the conflict reason.

use helix_hub::cloud_route::CONFLICTING_EVENTS;
use helix_mesh::proto_ext::now_ms;

use crate::support::{
    TestHub,
    bins::{run_helix, spoke},
    cloud::TestCloud,
    fault_proxy::{Fault, FaultProxy},
    json_lines,
    mock_anthropic::{MockAnthropic, Reply},
    pg::ALICE,
    relay::{device_key, hub_config, paired_spoke, sealed_row, send_detached, wait_status},
};

#[tokio::test]
async fn failed_event_appends_are_sent_again_until_the_whole_output_is_through() {
    let cloud = TestCloud::start().await;
    // The first append never reaches the server, the second is stored but its answer is
    // lost (so the hub must resend the very envelopes it sealed), the third is refused again.
    let proxy = FaultProxy::start(
        &cloud.server.url,
        "/rpc/append_cloud_events",
        &[Fault::Refuse, Fault::LoseAnswer, Fault::Refuse],
    )
    .await;
    let mock = MockAnthropic::start(Reply::text(&["despite ", "the ", "outage"])).await;
    let hub = TestHub::start_in(cloud.hub_dir_via(&proxy.url()).await, hub_config(&mock)).await;
    let spoke_dir = paired_spoke(&hub, &cloud).await;

    let id = send_detached(&spoke_dir, "keep trying").await;
    wait_status(&cloud, &id, "completed").await;
    assert_eq!(proxy.failed(), 3, "every fault was injected");

    let mut cmd = spoke(spoke_dir.path());
    cmd.args(["attach", "--hub", "desk", "--via", "cloud", "--json", &id]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    let records = json_lines(&done.stdout);
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let text: String = records.iter().filter_map(|r| r["text"].as_str()).collect();
    assert_eq!(text, "despite the outage");
    assert_eq!(
        cloud
            .db
            .admin(&format!(
                "select status || '|' || last_seq from cloud_commands where command_id = '{id}'"
            ))
            .await,
        format!("completed|{}", seqs.len())
    );
    assert_eq!(mock.requests(), 1, "the command ran once");
    hub.shutdown().await;
}

#[tokio::test]
async fn events_already_in_the_cloud_under_the_hubs_seqs_fail_the_row_as_a_conflict() {
    let cloud = TestCloud::start().await;
    let mock = MockAnthropic::start(Reply::text(&["never ", "relayed"])).await;
    let hub = TestHub::start_in(cloud.hub_dir().await, hub_config(&mock)).await;
    let spoke_dir = paired_spoke(&hub, &cloud).await;
    let device = device_key(&spoke_dir);
    let hub_key: iroh::PublicKey = hub.hub().hub_id().parse().unwrap();

    // A valid command from the paired device, and another writer's event under seq 1, stored
    // in one transaction so the hub cannot claim the command in between.
    let id = uuid::Uuid::new_v4().to_string();
    let row = sealed_row(&device, &hub_key, &id, now_ms() + 600_000);
    let (source, envelope) = (
        row["source_device_id"].as_str().unwrap(),
        row["envelope"].as_str().unwrap(),
    );
    cloud
        .db
        .as_service(&format!(
            "insert into cloud_commands (command_id, user_id, source_device_id, hub_id, envelope, expires_at) \
             values ('{id}', '{ALICE}', '{source}', '{hub_key}', '{envelope}', now() + interval '10 minutes');
             insert into cloud_command_events (command_id, seq, user_id, envelope) \
             values ('{id}', 1, '{ALICE}', 'another writer''s event');
             update cloud_commands set last_seq = 1 where command_id = '{id}'"
        ))
        .await
        .unwrap();
    hub.hub().wake_cloud_route();

    assert_eq!(
        wait_status(&cloud, &id, "failed").await,
        format!("failed|{CONFLICTING_EVENTS}")
    );
    // The hub stored nothing over or after the other writer's event.
    assert_eq!(
        cloud
            .db
            .admin(&format!(
                "select (select last_seq from cloud_commands where command_id = '{id}') || '|' || \
                 string_agg(seq || ':' || envelope, ',') from cloud_command_events where command_id = '{id}'"
            ))
            .await,
        "1|1:another writer's event"
    );
    assert_eq!(mock.requests(), 1, "the hub ran the command");
    hub.shutdown().await;
}
