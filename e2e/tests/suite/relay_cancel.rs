//! A device cancels a relayed command in the cloud, the way a spoke can (its row completed
//! `cancelled` through `cancel_cloud_command`): the live hub notices, whether the command
//! is silent or the hub's next append is refused, cancels it in its executor (the provider's
//! stream is aborted), and the command ends `cancelled` in the hub's journal while the row
//! keeps the device's reason. A spoke following the row exits 4, as for any cancelled command.
//!
//! The CLI cancels that way too: `helix cancel` when the hub has no iroh route, and Ctrl-C
//! during a relayed `helix run` (which then exits 130).

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
    relay::{hub_config, paired_spoke, send_detached, wait_row, wait_status},
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
            "cancel_cloud_command",
            &json!({"p_command_id": id, "p_reason": "cancelled from the phone"}),
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
    assert_cancelled_with(hub, mock, cloud, spoke_dir, id, "cancelled from the phone").await;
}

/// [`assert_cancelled_everywhere`] with the row's `reason`.
async fn assert_cancelled_with(
    hub: &TestHub,
    mock: &MockAnthropic,
    cloud: &TestCloud,
    spoke_dir: &tempfile::TempDir,
    id: &str,
    reason: &str,
) {
    mock.wait_until("the provider's stream is aborted", |m| m.in_flight() == 0)
        .await;
    let mut client = hub.client().await;
    let events = attach_all(&mut client, id, 0).await;
    let f = finished(&events);
    assert_eq!(
        (f.status, f.error.as_str()),
        (
            CommandStatus::Cancelled as i32,
            "cancelled in the cloud (its row is cancelled)"
        ),
        "the journal says who cancelled it"
    );
    assert_eq!(output(&events), "thinking hard ");
    assert_eq!(mock.requests(), 1, "not retried");
    assert_eq!(
        wait_status(cloud, id, "cancelled").await,
        format!("cancelled|{reason}")
    );
    let mut cmd = spoke(spoke_dir.path());
    cmd.args(["attach", "--hub", "desk", "--via", "cloud", id]);
    let done = run_helix(cmd, None).await;
    assert!(
        done.stderr
            .contains(&format!("command cancelled: {reason}")),
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
                "select last_seq from cloud_commands where command_id = '{id}'"
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
        "/rpc/append_cloud_events",
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
                "select last_seq from cloud_commands where command_id = '{id}'"
            ))
            .await,
        "0",
        "nothing was appended after the cancel"
    );
    hub.shutdown().await;
}

/// Waits until the command's two chunks are in the cloud (queued, started, two outputs).
async fn wait_until_said(cloud: &TestCloud, id: &str) {
    wait_row(
        cloud,
        &format!("select status || '|' || last_seq from cloud_commands where command_id = '{id}'"),
        "executing|4",
    )
    .await;
}

/// Runs `helix ARGS` (a cancel) from `spoke_dir`, checks it printed `cancelled` and exited 0;
/// its stderr.
async fn helix_cancel(spoke_dir: &tempfile::TempDir, args: &[&str]) -> String {
    let mut cmd = spoke(spoke_dir.path());
    cmd.args(args);
    let done = run_helix(cmd, None).await;
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (Some(0), "cancelled\n"),
        "{}",
        done.stderr
    );
    done.stderr
}

#[tokio::test]
async fn helix_cancel_goes_through_the_cloud_when_the_hub_has_no_iroh_route() {
    let cloud = TestCloud::start().await;
    let mock = silent_provider().await;
    let hub = TestHub::start_in(cloud.hub_dir().await, hub_config(&mock)).await;
    let spoke_dir = paired_spoke(&hub, &cloud).await;
    // The hub comes back without iroh: the spoke's known address leads nowhere now.
    let dir = hub.stop_keeping_dir().await;
    let mut config = hub_config(&mock);
    config.iroh.enabled = false;
    let hub = TestHub::start_in(dir, config).await;
    let id = send_detached(&spoke_dir, "a long job").await;
    mock.wait_until("the provider streams", |m| m.in_flight() == 1)
        .await;
    wait_until_said(&cloud, &id).await;

    let stderr = helix_cancel(&spoke_dir, &["cancel", "--hub", "desk", &id]).await;
    assert!(
        stderr.contains("no iroh route to the hub within 3s; cancelling through the cloud"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "cancelled {id} in the cloud; the hub stops it when it notices"
        )),
        "{stderr}"
    );
    assert_cancelled_with(
        &hub,
        &mock,
        &cloud,
        &spoke_dir,
        &id,
        "cancelled with `helix cancel`",
    )
    .await;

    // Again, straight to the cloud: the row is cancelled already.
    helix_cancel(&spoke_dir, &["cancel", "--via", "cloud", &id]).await;
    // A command the cloud does not have is refused (exit 6).
    let mut cmd = spoke(spoke_dir.path());
    cmd.args([
        "cancel",
        "--via",
        "cloud",
        &uuid::Uuid::new_v4().to_string(),
    ]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(6), "{}", done.stderr);
    assert!(done.stderr.contains("in the cloud"), "{}", done.stderr);
    hub.shutdown().await;
}

#[tokio::test]
async fn helix_cancel_reaches_the_hub_and_cancels_in_the_cloud_what_the_hub_never_claimed() {
    let cloud = TestCloud::start().await;
    let mock = silent_provider().await;
    // The hub is reachable over iroh but does not look at the table for 10 minutes.
    let mut config = hub_config(&mock);
    config.cloud.poll_interval = Duration::from_secs(600);
    let hub = TestHub::start_in(cloud.hub_dir().await, config).await;
    let spoke_dir = paired_spoke(&hub, &cloud).await;
    let id = send_detached(&spoke_dir, "waits in the table").await;

    let stderr = helix_cancel(&spoke_dir, &["cancel", "--hub", "desk", &id]).await;
    assert!(
        !stderr.contains("no iroh route"),
        "the hub was reached: {stderr}"
    );
    assert!(
        stderr.contains("the hub does not have it; cancelling it in the cloud"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "cancelled {id} in the cloud before the hub claimed it"
        )),
        "{stderr}"
    );
    wait_status(&cloud, &id, "cancelled").await;
    assert_eq!(mock.requests(), 0, "the command never ran");
    hub.shutdown().await;
}

#[tokio::test]
async fn ctrl_c_during_a_relayed_run_cancels_it_in_the_cloud_and_exits_130() {
    let cloud = TestCloud::start().await;
    let mock = silent_provider().await;
    let hub = TestHub::start_in(cloud.hub_dir().await, hub_config(&mock)).await;
    let spoke_dir = paired_spoke(&hub, &cloud).await;

    let mut cmd = spoke(spoke_dir.path());
    cmd.args(["run", "--hub", "desk", "--via", "cloud", "a long job"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    mock.wait_until("the provider streams", |m| m.in_flight() == 1)
        .await;
    let id = cloud
        .db
        .admin("select command_id from cloud_commands")
        .await;
    wait_until_said(&cloud, &id).await;

    // SAFETY: kill(2) on the child this test started.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(child.id().unwrap() as i32, libc::SIGINT);
    }
    let done = tokio::time::timeout(crate::support::TEST_TIMEOUT, child.wait_with_output())
        .await
        .expect("helix did not finish in time")
        .unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(130), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&done.stdout), "thinking hard ");
    assert!(
        stderr.contains(&format!("cancelling command {id} through the cloud")),
        "{stderr}"
    );
    assert!(
        stderr.contains("command cancelled: cancelled with Ctrl-C on the device"),
        "{stderr}"
    );
    assert_cancelled_with(
        &hub,
        &mock,
        &cloud,
        &spoke_dir,
        &id,
        "cancelled with Ctrl-C on the device",
    )
    .await;
    hub.shutdown().await;
}
