//! A device cancels a relayed command in the cloud, the way a spoke can (its row completed
//! `cancelled` through `complete_remote_command`): the live hub notices, whether the command
//! is silent or the hub's next append is refused, cancels it in its executor (the provider's
//! stream is aborted), and the command ends `cancelled` in the hub's journal while the row
//! keeps the device's reason. A spoke following the row exits 4, as for any cancelled command.

use std::time::{Duration, Instant};

use helix_mesh::pb::{self, CommandStatus};
use serde_json::json;

use crate::support::{
    TestHub, attach_all,
    bins::{run_helix, spoke},
    cloud::TestCloud,
    fault_proxy::{Fault, FaultProxy},
    finished,
    mock_anthropic::{MockAnthropic, Reply},
    output,
    relay::{hub_config, paired_spoke, send_detached, wait_status},
};

/// The provider streams two chunks, then goes silent until its client goes away.
async fn silent_provider() -> MockAnthropic {
    MockAnthropic::start(Reply::hang_after(&["thinking ", "hard "])).await
}

/// Completes the row `cancelled` as the signed-in user, as a spoke does.
async fn cancel_in_the_cloud(cloud: &TestCloud, id: &str) {
    let _: serde_json::Value = cloud
        .rest()
        .await
        .rpc(
            "complete_remote_command",
            &json!({"p_command_id": id, "p_status": "cancelled", "p_reason": "cancelled from the phone"}),
        )
        .await
        .unwrap();
}

/// The provider's stream is aborted, the hub's journal ends the command `cancelled` after the
/// output it had, the row keeps the device's cancel, and a spoke following it is told.
async fn assert_cancelled_everywhere(
    hub: &TestHub,
    mock: &MockAnthropic,
    cloud: &TestCloud,
    spoke_dir: &tempfile::TempDir,
    id: &str,
) {
    mock.wait_until("the provider's stream is aborted", |m| m.in_flight() == 0)
        .await;
    let mut client = hub.client().await;
    let events = attach_all(&mut client, id, 0).await;
    let f = finished(&events);
    assert_eq!(
        (f.status, f.error.as_str()),
        (CommandStatus::Cancelled as i32, "cancelled")
    );
    assert_eq!(output(&events), "thinking hard ");
    assert_eq!(mock.requests(), 1, "not retried");
    assert_eq!(
        wait_status(cloud, id, "cancelled").await,
        "cancelled|cancelled from the phone"
    );
    let mut cmd = spoke(spoke_dir.path());
    cmd.args(["attach", "--hub", "desk", "--via", "cloud", id]);
    let done = run_helix(cmd, None).await;
    assert!(
        done.stderr
            .contains("command cancelled: cancelled from the phone"),
        "{}",
        done.stderr
    );
    assert_eq!(done.code, Some(4), "exit 4: the command was cancelled");
}

#[tokio::test]
async fn a_cancel_in_the_cloud_stops_a_silent_command_on_the_hub() {
    let cloud = TestCloud::start().await;
    let mock = silent_provider().await;
    let hub = TestHub::start_in(cloud.hub_dir().await, hub_config(&mock)).await;
    let spoke_dir = paired_spoke(&hub, &cloud).await;
    let id = send_detached(&spoke_dir, "a long job").await;

    // Everything the command said is in the cloud; now it is silent.
    mock.wait_until("the provider streams", |m| m.in_flight() == 1)
        .await;
    let mut client = hub.client().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let command = client
            .get_command(pb::GetCommandRequest {
                command_id: id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let in_cloud = cloud
            .db
            .admin(&format!(
                "select last_seq from remote_commands where command_id = '{id}'"
            ))
            .await;
        let said = command.result.map(|r| r.output).unwrap_or_default();
        if said == "thinking hard " && in_cloud == command.last_seq.to_string() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the output never reached the cloud ({said:?}, last_seq {in_cloud})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    cancel_in_the_cloud(&cloud, &id).await;
    assert_cancelled_everywhere(&hub, &mock, &cloud, &spoke_dir, &id).await;
    hub.shutdown().await;
}

#[tokio::test]
async fn a_cancel_in_the_cloud_is_noticed_when_the_hubs_next_append_is_refused() {
    let cloud = TestCloud::start().await;
    // The cloud fails the hub's appends until the test heals it, so the hub is retrying its
    // first batch while the device cancels.
    let proxy = FaultProxy::start(
        &cloud.server.url,
        "/rpc/append_remote_command_events",
        &[Fault::Refuse; 1000],
    )
    .await;
    let mock = silent_provider().await;
    let hub = TestHub::start_in(cloud.hub_dir_via(&proxy.url()).await, hub_config(&mock)).await;
    let spoke_dir = paired_spoke(&hub, &cloud).await;
    let id = send_detached(&spoke_dir, "a long job").await;
    mock.wait_until("the provider streams", |m| m.in_flight() == 1)
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while proxy.failed() == 0 {
        assert!(Instant::now() < deadline, "the hub never tried to append");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    cancel_in_the_cloud(&cloud, &id).await;
    proxy.heal();
    assert_cancelled_everywhere(&hub, &mock, &cloud, &spoke_dir, &id).await;
    assert_eq!(
        cloud
            .db
            .admin(&format!(
                "select last_seq from remote_commands where command_id = '{id}'"
            ))
            .await,
        "0",
        "nothing was appended after the cancel"
    );
    hub.shutdown().await;
}
