//! What the spoke accepts from the cloud route's rows. Events spliced into a command's rows are
//! refused (a session of the account, or the database, can copy rows: an event or a content key
//! the hub sealed for one command must never be read as another command's, nor an event at
//! another seq): the refusal names the event and the command it belongs to, exits 1, and
//! prints nothing of the foreign text. A long answer is read in pages, complete
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

/// Sends `prompt` detached through the cloud and waits until `helix attach` prints `answer`.
async fn run_to_the_end(spoke_dir: &std::path::Path, prompt: &str, answer: &str) -> String {
    let mut cmd = spoke(spoke_dir);
    cmd.args(["run", "--hub", "desk", "--via", "cloud", "--detach", prompt]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    let id = done.stdout.lines().last().unwrap().to_owned();
    let done = attach(spoke_dir, &id).await;
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (Some(0), answer),
        "{}",
        done.stderr
    );
    id
}

#[tokio::test]
async fn a_spoke_refuses_events_spliced_from_another_command_or_seq() {
    let cloud = TestCloud::start().await;
    let mock = MockAnthropic::start(Reply::text(&["the ", "answer"])).await;
    let hub = TestHub::start_in(cloud.hub_dir().await, hub_config(&mock)).await;
    let spoke_dir = paired_spoke(&hub, &cloud).await;
    // Two commands run through the real hub and complete.
    let a = run_to_the_end(spoke_dir.path(), "A", "the answer").await;
    let b = run_to_the_end(spoke_dir.path(), "B", "the answer").await;

    // Another writer stores A's first event as B's: it does not open under B's key.
    cloud
        .db
        .admin(&format!(
            "update cloud_command_events set envelope = \
               (select envelope from cloud_command_events where command_id = '{a}' and seq = 1) \
             where command_id = '{b}' and seq = 1"
        ))
        .await;
    let done = attach(spoke_dir.path(), &b).await;
    assert_eq!(done.code, Some(1), "{}", done.stderr);
    assert!(
        done.stderr.contains(&format!(
            "cloud route: refused event 1 of {b}: spliced envelope: it belongs to command {a}, not {b} (nothing of it was printed, nor anything after it)"
        )),
        "{}",
        done.stderr
    );
    assert_eq!(done.stdout, "", "nothing of A's answer is printed as B's");

    // A's key row copied over B's: the hub bound it to A.
    cloud
        .db
        .admin(&format!(
            "update cloud_command_keys k set envelope = a.envelope from cloud_command_keys a \
             where a.command_id = '{a}' and k.command_id = '{b}' and a.device_id = k.device_id"
        ))
        .await;
    let done = attach(spoke_dir.path(), &b).await;
    assert_eq!(done.code, Some(1), "{}", done.stderr);
    assert!(
        done.stderr
            .contains(&format!("cloud route: refused the content key of {b}: spliced envelope: it belongs to command {a}, not {b}")),
        "{}",
        done.stderr
    );
    assert_eq!(done.stdout, "");

    // Within one command: event 2's envelope stored again as event 1.
    cloud
        .db
        .admin(&format!(
            "update cloud_command_events set envelope = \
               (select envelope from cloud_command_events where command_id = '{a}' and seq = 2) \
             where command_id = '{a}' and seq = 1"
        ))
        .await;
    let done = attach(spoke_dir.path(), &a).await;
    assert_eq!(done.code, Some(1), "{}", done.stderr);
    assert!(
        done.stderr.contains(&format!(
            "refused event 1 of {a}: spliced envelope: it carries seq 2 where seq 1 belongs"
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
