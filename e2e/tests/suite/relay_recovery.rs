//! Relayed commands whose hub went away before it ended their rows: when the hub starts again
//! it finds its rows still `executing` and ends them from its journal, so a spoke following
//! one gets a clear end instead of waiting for an hour; and a spoke that hears nothing at all
//! stops following after `--cloud-silence`, leaving the command in the table.

use std::time::{Duration, Instant};

use super::table_relay::cloud_status;
use crate::support::{
    TestHub,
    bins::{HubProcess, run_helix, spoke, write_hub_config},
    cloud::TestCloud,
    fault_proxy::{Fault, FaultProxy},
    mock_anthropic::{MockAnthropic, Reply},
    relay::{hub_config, paired_spoke, paired_spoke_with, send_detached, wait_row, wait_status},
};

#[tokio::test]
async fn a_hub_killed_mid_command_fails_the_relayed_row_when_it_restarts() {
    let cloud = TestCloud::start().await;
    // Streams two chunks, then nothing until the hub goes away.
    let mock = MockAnthropic::start(Reply::hang_after(&["half ", "done "])).await;
    let dir = cloud.hub_dir().await;
    write_hub_config(dir.path(), &mock.base_url(), 2);
    let config = dir.path().join("config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("[cloud]\npoll_interval = \"100ms\"\n");
    std::fs::write(&config, text).unwrap();
    let mut hub = HubProcess::spawn(dir.path()).await;
    let spoke_dir = paired_spoke_with(dir.path(), &cloud).await;

    // A spoke follows the command through the table.
    let mut cmd = spoke(spoke_dir.path());
    cmd.args(["run", "--hub", "desk", "--via", "cloud", "a long job"]);
    let following = tokio::spawn(run_helix(cmd, None));
    mock.wait_until("the provider streams", |m| m.in_flight() == 1)
        .await;
    // queued, started and both outputs are in the cloud.
    wait_row(
        &cloud,
        "select status || '|' || last_seq from cloud_commands",
        "executing|4",
    )
    .await;
    let id = cloud
        .db
        .admin("select command_id from cloud_commands")
        .await;

    hub.kill9().await;
    let restarted = HubProcess::spawn(dir.path()).await;

    assert_eq!(
        wait_status(&cloud, &id, "failed").await,
        "failed|hub restarted during execution"
    );
    let done = following.await.unwrap();
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (Some(1), "half done "),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr
            .contains("command failed: hub restarted during execution"),
        "{}",
        done.stderr
    );
    // Only the `finished` event was added: the four sent before the kill were not re-sealed
    // (the cloud would refuse them as a conflict).
    assert_eq!(
        cloud
            .db
            .admin(&format!(
                "select last_seq || '|' || count(*) from cloud_commands c join cloud_command_events e using (command_id) where c.command_id = '{id}' group by last_seq"
            ))
            .await,
        "5|5"
    );
    assert_eq!(mock.requests(), 1, "not run again");
    drop(restarted);
}

#[tokio::test]
async fn a_row_the_hub_could_not_complete_before_it_stopped_is_completed_at_its_next_start() {
    let cloud = TestCloud::start().await;
    // Every completion fails until the test heals the cloud.
    let proxy = FaultProxy::start(
        &cloud.server.url,
        "/rpc/complete_cloud_command",
        &[Fault::Refuse; 1000],
    )
    .await;
    let mock = MockAnthropic::start(Reply::text(&["all ", "of it"])).await;
    let hub = TestHub::start_in(cloud.hub_dir_via(&proxy.url()).await, hub_config(&mock)).await;
    let spoke_dir = paired_spoke(&hub, &cloud).await;
    let id = send_detached(&spoke_dir, "finish me").await;
    // The command ran and its events are in the cloud; completing the row keeps failing.
    let deadline = Instant::now() + Duration::from_secs(20);
    while proxy.failed() == 0 {
        assert!(Instant::now() < deadline, "the hub never tried to complete");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dir = hub.stop_keeping_dir().await;
    let sent = cloud
        .db
        .admin(&format!(
            "select status || '|' || last_seq from cloud_commands where command_id = '{id}'"
        ))
        .await;
    assert!(sent.starts_with("executing|"), "{sent}");

    proxy.heal();
    let hub = TestHub::start_in(dir, hub_config(&mock)).await;
    assert_eq!(wait_status(&cloud, &id, "completed").await, "completed|");
    assert_eq!(
        cloud
            .db
            .admin(&format!(
                "select 'executing|' || last_seq from cloud_commands where command_id = '{id}'"
            ))
            .await,
        sent,
        "no event added"
    );
    let mut cmd = spoke(spoke_dir.path());
    cmd.args(["attach", "--hub", "desk", "--via", "cloud", &id]);
    let done = run_helix(cmd, None).await;
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (Some(0), "all of it"),
        "{}",
        done.stderr
    );
    assert_eq!(mock.requests(), 1);
    hub.shutdown().await;
}

#[tokio::test]
async fn a_relayed_command_with_no_news_from_the_hub_is_left_after_the_silence_limit() {
    let cloud = TestCloud::start().await;
    let mock = MockAnthropic::start(Reply::text(&["never"])).await;
    let hub = TestHub::start_in(cloud.hub_dir().await, hub_config(&mock)).await;
    let spoke_dir = paired_spoke(&hub, &cloud).await;
    // Nobody claims the row: the spoke waits for news, then gives up without losing it.
    hub.shutdown().await;

    let started = Instant::now();
    let mut cmd = spoke(spoke_dir.path());
    cmd.args([
        "run",
        "--hub",
        "desk",
        "--via",
        "cloud",
        // The old name, a hidden alias of --cloud-silence: still accepted.
        "--relay-silence",
        "1s",
        "anyone there?",
    ]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(3), "unreachable: {}", done.stderr);
    assert!(
        done.stderr
            .contains("cloud route: nothing from the hub for 1s (--cloud-silence)"),
        "{}",
        done.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let id = done
        .stderr
        .split("helix attach --via cloud ")
        .nth(1)
        .and_then(|rest| rest.get(..36))
        .unwrap_or_else(|| panic!("no attach hint: {}", done.stderr));
    assert_eq!(
        cloud_status(&cloud.db, id).await,
        "pending|",
        "the command is kept"
    );
    assert_eq!(mock.requests(), 0);
}
