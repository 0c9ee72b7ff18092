//! What the spoke accepts from the cloud route's rows. Events spliced into a command's rows are
//! refused (any session of the account can write a command row and copy event rows, and an
//! event the hub sealed to this device for one command must never be printed as another
//! command's, nor at another seq): the refusal names the event and the command it belongs to,
//! exits 1, and prints nothing of the foreign text. A long answer is read in pages, complete
//! and in order.

use crate::support::{
    TestHub,
    bins::{Finished, run_helix, spoke},
    cloud::TestCloud,
    mock_anthropic::{MockAnthropic, Reply},
    relay::{hub_config, paired_spoke},
};

/// Runs `helix attach --via cloud <id>` from the paired spoke.
async fn attach(spoke_dir: &std::path::Path, id: &str) -> Finished {
    let mut cmd = spoke(spoke_dir);
    cmd.args(["attach", "--hub", "desk", "--via", "cloud", id]);
    run_helix(cmd, None).await
}

#[tokio::test]
async fn a_spoke_refuses_events_spliced_from_another_command_or_seq() {
    let cloud = TestCloud::start().await;
    let mock = MockAnthropic::start(Reply::text(&["the ", "answer ", "for ", "A"])).await;
    let hub = TestHub::start_in(cloud.hub_dir().await, hub_config(&mock)).await;
    let spoke_dir = paired_spoke(&hub, &cloud).await;

    // Command A runs through the cloud and completes.
    let mut cmd = spoke(spoke_dir.path());
    cmd.args(["run", "--hub", "desk", "--via", "cloud", "--detach", "A"]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    let a = done.stdout.lines().last().unwrap().to_owned();
    let done = attach(spoke_dir.path(), &a).await;
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (Some(0), "the answer for A"),
        "{}",
        done.stderr
    );

    // Another session of the account writes a command B and copies A's events into it.
    let b = uuid::Uuid::new_v4().to_string();
    cloud
        .db
        .admin(&format!(
            "insert into remote_commands (command_id, user_id, source_device_id, target_hub_id, envelope, status, expires_at, last_seq) \
             select '{b}', user_id, source_device_id, target_hub_id, envelope, 'completed', expires_at, last_seq \
               from remote_commands where command_id = '{a}'; \
             insert into remote_command_events (command_id, seq, user_id, envelope) \
             select '{b}', seq, user_id, envelope from remote_command_events where command_id = '{a}'"
        ))
        .await;
    let done = attach(spoke_dir.path(), &b).await;
    assert_eq!(done.code, Some(1), "{}", done.stderr);
    assert!(
        done.stderr.contains(&format!(
            "cloud route: refused event 1 of {b}: it belongs to command {a} (spliced into this command's rows in the cloud; nothing of it was printed)"
        )),
        "{}",
        done.stderr
    );
    assert_eq!(done.stdout, "", "nothing of A's answer is printed as B's");

    // Within one command: event 2's envelope stored again as event 1.
    cloud
        .db
        .admin(&format!(
            "update remote_command_events set envelope = \
               (select envelope from remote_command_events where command_id = '{a}' and seq = 2) \
             where command_id = '{a}' and seq = 1"
        ))
        .await;
    let done = attach(spoke_dir.path(), &a).await;
    assert_eq!(done.code, Some(1), "{}", done.stderr);
    assert!(
        done.stderr.contains(&format!(
            "refused event 1 of {a}: it is event 2 of this command"
        )),
        "{}",
        done.stderr
    );
    assert_eq!(done.stdout, "");
    hub.shutdown().await;
}

#[tokio::test]
async fn a_long_answer_is_read_in_pages_complete_and_in_order() {
    let cloud = TestCloud::start().await;
    let words: Vec<String> = (0..100).map(|i| format!("w{i} ")).collect();
    let chunks: Vec<&str> = words.iter().map(String::as_str).collect();
    let mock = MockAnthropic::start(Reply::text(&chunks)).await;
    let hub = TestHub::start_in(cloud.hub_dir().await, hub_config(&mock)).await;
    let spoke_dir = paired_spoke(&hub, &cloud).await;
    let mut cmd = spoke(spoke_dir.path());
    cmd.args(["run", "--hub", "desk", "--via", "cloud", "--detach", "long"]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    let id = done.stdout.lines().last().unwrap().to_owned();
    let done = attach(spoke_dir.path(), &id).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert_eq!(
        done.stdout,
        words.concat(),
        "more events than one page (32)"
    );
    hub.shutdown().await;
}
