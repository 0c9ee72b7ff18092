//! Who reads which command through the cloud, with the real hub: every device paired when the
//! hub publishes the command, whichever route the command took (a command sent over iroh is
//! mirrored, and another device reads it byte for byte), and nobody else. A device paired after
//! a command started cannot read it (and is told why, exit 6) but reads the commands after; a
//! revoked device gets no key for new commands, and its own new commands fail, refused by the
//! hub.

use crate::support::{
    TestHub,
    bins::{Finished, hub_cli, run_helix, spoke},
    cloud::TestCloud,
    mock_anthropic::{MockAnthropic, Reply},
    relay::{device_key, hub_config, paired_spoke, send_detached, wait_status},
};

/// `helix attach --via cloud <id>` from the spoke on `dir`.
async fn attach(dir: &std::path::Path, id: &str) -> Finished {
    let mut cmd = spoke(dir);
    cmd.args(["attach", "--hub", "desk", "--via", "cloud", id]);
    run_helix(cmd, None).await
}

/// The devices holding a content key of `command_id`.
async fn key_holders(cloud: &TestCloud, command_id: &str) -> String {
    cloud
        .db
        .admin(&format!(
            "select coalesce(string_agg(device_id, ',' order by device_id), '') \
             from cloud_command_keys where command_id = '{command_id}'"
        ))
        .await
}

fn no_key_for(done: &Finished, command_id: &str) {
    assert_eq!(done.code, Some(6), "{}", done.stderr);
    assert!(
        done.stderr.contains(&format!(
            "this device has no key for command {command_id}: it was paired after the command started, or it is revoked"
        )),
        "{}",
        done.stderr
    );
    assert_eq!(done.stdout, "", "nothing of the command is printed");
}

#[tokio::test]
async fn a_command_sent_over_iroh_is_read_byte_for_byte_by_another_device_through_the_cloud() {
    let cloud = TestCloud::start().await;
    let mock = MockAnthropic::start(Reply::text(&["über ", "iroh\n", "\tand back"])).await;
    let hub = TestHub::start_in(cloud.hub_dir().await, hub_config(&mock)).await;
    let laptop = paired_spoke(&hub, &cloud).await;
    let phone = paired_spoke(&hub, &cloud).await;

    let mut cmd = spoke(laptop.path());
    cmd.args([
        "run",
        "--hub",
        "desk",
        "--via",
        "iroh",
        "--detach",
        "sent over iroh",
    ]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    let id = done.stdout.lines().last().unwrap().to_owned();
    let mut cmd = spoke(laptop.path());
    cmd.args(["attach", "--hub", "desk", "--via", "iroh", &id]);
    let over_iroh = run_helix(cmd, None).await;
    assert_eq!(over_iroh.code, Some(0), "{}", over_iroh.stderr);
    assert_eq!(over_iroh.stdout, "über iroh\n\tand back");

    // The hub mirrored it: the phone reads the same bytes from the cloud, and lists it.
    let row = wait_status(&cloud, &id, "completed").await;
    assert_eq!(row, "completed|");
    let origin = cloud
        .db
        .admin(&format!(
            "select origin from cloud_commands where command_id = '{id}'"
        ))
        .await;
    assert_eq!(origin, "hub");
    let through_cloud = attach(phone.path(), &id).await;
    assert_eq!(
        (through_cloud.code, through_cloud.stdout.as_str()),
        (Some(0), over_iroh.stdout.as_str()),
        "{}",
        through_cloud.stderr
    );
    let mut cmd = spoke(phone.path());
    cmd.args(["ls", "--hub", "desk", "--via", "cloud", "--json"]);
    let listed = run_helix(cmd, None).await;
    assert_eq!(listed.code, Some(0), "{}", listed.stderr);
    let rows = crate::support::json_lines(&listed.stdout);
    let mine = rows
        .iter()
        .find(|r| r["command_id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not listed: {}", listed.stdout));
    assert_eq!(mine["content"], "sent over iroh", "{mine}");
    hub.shutdown().await;
}

#[tokio::test]
async fn a_device_paired_after_a_command_started_cannot_read_it_but_reads_the_next() {
    let cloud = TestCloud::start().await;
    let mock = MockAnthropic::start(Reply::text(&["for the ", "first device"])).await;
    let hub = TestHub::start_in(cloud.hub_dir().await, hub_config(&mock)).await;
    let laptop = paired_spoke(&hub, &cloud).await;
    let early = send_detached(&laptop, "before the phone").await;
    wait_status(&cloud, &early, "completed").await;

    let phone = paired_spoke(&hub, &cloud).await;
    let phone_id = device_key(&phone).public().to_string();
    assert!(!key_holders(&cloud, &early).await.contains(&phone_id));
    no_key_for(&attach(phone.path(), &early).await, &early);

    // Every command published after the pairing carries a key for the phone too.
    let late = send_detached(&laptop, "after the phone").await;
    wait_status(&cloud, &late, "completed").await;
    assert!(key_holders(&cloud, &late).await.contains(&phone_id));
    let done = attach(phone.path(), &late).await;
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (Some(0), "for the first device"),
        "{}",
        done.stderr
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn a_revoked_device_gets_no_key_for_new_commands_and_cannot_send() {
    let cloud = TestCloud::start().await;
    let mock = MockAnthropic::start(Reply::text(&["shared ", "answer"])).await;
    let hub = TestHub::start_in(cloud.hub_dir().await, hub_config(&mock)).await;
    let laptop = paired_spoke(&hub, &cloud).await;
    let phone = paired_spoke(&hub, &cloud).await;
    let phone_id = device_key(&phone).public().to_string();
    let before = send_detached(&laptop, "before the revocation").await;
    wait_status(&cloud, &before, "completed").await;
    assert!(key_holders(&cloud, &before).await.contains(&phone_id));

    let mut revoke = hub_cli(hub.path());
    revoke.args(["devices", "revoke", &phone_id]);
    let done = run_helix(revoke, None).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert!(
        done.stderr.contains(&format!("revoked {phone_id}")),
        "{}",
        done.stderr
    );

    let after = send_detached(&laptop, "after the revocation").await;
    wait_status(&cloud, &after, "completed").await;
    let holders = key_holders(&cloud, &after).await;
    assert_eq!(holders, device_key(&laptop).public().to_string());
    no_key_for(&attach(phone.path(), &after).await, &after);

    // The phone's own command is refused by the hub: it is not paired any more.
    let refused = send_detached(&phone, "from the revoked phone").await;
    let row = wait_status(&cloud, &refused, "failed").await;
    assert!(row.contains("paired"), "{row}");
    assert_eq!(key_holders(&cloud, &refused).await, "");
    hub.shutdown().await;
}
