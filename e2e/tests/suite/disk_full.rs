//! A full disk mid-stream (the hub's data dir on a small tmpfs that the test fills): the
//! command ends `failed` saying the journal could not be written, instead of `completed`
//! with text missing, and its stream ends, also when the disk stays full. Needs root to
//! mount; without it each test says why and passes.

use std::{process::Command, time::Duration};

use helix_mesh::pb::{self, CommandStatus, command_event::Kind};
use tempfile::TempDir;

use helix_spoke::client::HubClient;

use crate::support::{
    TEST_TIMEOUT, TestHub, config_for,
    mock_anthropic::{MockAnthropic, Reply},
    request, store_api_key,
};

/// A 16 MB tmpfs for the hub's data dir, unmounted (lazily) on drop.
struct SmallDisk {
    dir: Option<TempDir>,
    path: std::path::PathBuf,
}

impl SmallDisk {
    #[allow(clippy::print_stderr)] // a skipped test says why on the test's output
    fn mount() -> Option<SmallDisk> {
        if let Err(why) = helix_netlab::require_root() {
            eprintln!("skipped: {why}");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(mounted.success(), "mounting a tmpfs for the data dir");
        let path = dir.path().to_owned();
        Some(SmallDisk {
            dir: Some(dir),
            path,
        })
    }

    /// Writes zeros into a filler file until the disk is full.
    fn fill(&self) {
        use std::io::Write;
        let mut file = std::fs::File::create(self.path.join("filler")).unwrap();
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        let _ = file.sync_all();
    }

    fn free(&self) {
        std::fs::remove_file(self.path.join("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        drop(self.dir.take());
    }
}

/// What a follower of the command saw.
struct Followed {
    finished: pb::Finished,
    seqs: Vec<u64>,
    text: String,
    command_id: String,
}

/// A hub with its data dir on `disk`, and the provider it uses.
struct OnSmallDisk {
    hub: TestHub,
    client: HubClient,
    /// A Watch opened before the command.
    watch: tonic::Streaming<pb::StatusChange>,
    /// Kept for the commands after the one that met the full disk.
    _mock: MockAnthropic,
}

/// Runs a 300-word answer on a hub whose disk fills after its first words and stays full for
/// `hold`; follows it to its end.
async fn full_for(disk: &SmallDisk, hold: Duration) -> (OnSmallDisk, Followed) {
    let chunks: Vec<String> = (0..300).map(|i| format!("w{i} ")).collect();
    let texts: Vec<&str> = chunks.iter().map(String::as_str).collect();
    let mock = MockAnthropic::start(Reply::slow(&texts, Duration::from_millis(10))).await;
    let data = TempDir::new_in(&disk.path).unwrap();
    store_api_key(data.path());
    let hub = TestHub::start_in(data, config_for(&mock)).await;
    let mut client = hub.client().await;
    let watch = hub
        .client()
        .await
        .watch(pb::WatchRequest {})
        .await
        .unwrap()
        .into_inner();
    let req = request("fill the disk while I talk");
    let command_id = req.command_id.clone();
    let mut stream = client.execute(req).await.unwrap().into_inner();
    let (mut seqs, mut text, mut filled) = (Vec::new(), String::new(), false);
    let finished = tokio::time::timeout(TEST_TIMEOUT, async {
        loop {
            let event = stream
                .message()
                .await
                .unwrap()
                .expect("the stream ended without a finished event");
            seqs.push(event.seq);
            match event.kind {
                Some(Kind::Output(o)) => {
                    text.push_str(&o.text);
                    if !filled && text.len() > 40 {
                        filled = true;
                        disk.fill();
                        tokio::time::sleep(hold).await;
                        disk.free();
                    }
                }
                Some(Kind::Finished(f)) => return f,
                _ => {}
            }
        }
    })
    .await
    .expect("the command's stream ended");
    assert!(filled, "the disk was filled mid-stream");
    assert!(text.len() < chunks.concat().len(), "it stopped early");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    let on = OnSmallDisk {
        hub,
        client,
        watch,
        _mock: mock,
    };
    (
        on,
        Followed {
            finished,
            seqs,
            text,
            command_id,
        },
    )
}

fn assert_journal_failure(finished: &pb::Finished) {
    assert_eq!(
        finished.status,
        CommandStatus::Failed as i32,
        "{finished:?}"
    );
    assert!(
        finished
            .error
            .starts_with("the journal could not be written:"),
        "{}",
        finished.error
    );
}

#[tokio::test]
async fn a_full_disk_mid_stream_fails_the_command_and_says_why() {
    let Some(disk) = SmallDisk::mount() else {
        return;
    };
    // Several outputs meet the full disk; then it has room again.
    let (on, seen) = full_for(&disk, Duration::from_millis(400)).await;
    let OnSmallDisk {
        hub,
        mut client,
        _mock,
        ..
    } = on;
    assert_journal_failure(&seen.finished);
    assert!(!seen.text.is_empty() && !seen.seqs.is_empty());
    // Stored as it was shown, and a new command runs once there is room.
    let stored = client
        .get_command(pb::GetCommandRequest {
            command_id: seen.command_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.status, CommandStatus::Failed as i32, "{stored:?}");
    let mut again = client.execute(request("again")).await.unwrap().into_inner();
    let mut last = None;
    while let Some(event) = again.message().await.unwrap() {
        last = event.kind;
    }
    match last {
        Some(Kind::Finished(f)) => assert_eq!(f.status, CommandStatus::Completed as i32, "{f:?}"),
        other => panic!("{other:?}"),
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn a_disk_that_stays_full_still_ends_the_stream_and_a_restart_records_the_failure() {
    let Some(disk) = SmallDisk::mount() else {
        return;
    };
    // Longer than the hub tries to record the end (0.2 + 1 + 3 s).
    let (on, seen) = full_for(&disk, Duration::from_secs(6)).await;
    let (hub, mut watch) = (on.hub, on.watch);
    assert_journal_failure(&seen.finished);
    // Watchers are told as well.
    let change = tokio::time::timeout(TEST_TIMEOUT, async {
        loop {
            let change = watch.message().await.unwrap().expect("the watch ended");
            if change.command_id == seen.command_id && change.status == CommandStatus::Failed as i32
            {
                return change;
            }
        }
    })
    .await
    .expect("the watch saw the failure");
    assert!(
        change
            .error
            .starts_with("the journal could not be written:"),
        "{change:?}"
    );
    // Nothing could be stored: after a restart, recovery finishes the command failed.
    let dir = hub.stop_keeping_dir().await;
    let mock = MockAnthropic::start(Reply::text(&["x"])).await;
    let hub = TestHub::start_in(dir, config_for(&mock)).await;
    let mut client = hub.client().await;
    let stored = client
        .get_command(pb::GetCommandRequest {
            command_id: seen.command_id,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.status, CommandStatus::Failed as i32, "{stored:?}");
    hub.shutdown().await;
}
