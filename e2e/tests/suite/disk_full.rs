//! A full disk mid-stream (the hub's data dir on a small tmpfs that the test fills): the
//! command ends `failed` saying the journal could not be written, instead of `completed`
//! with text missing, and its stream ends. Needs root to mount; without it the test says why
//! and passes.

use std::{path::Path, process::Command, time::Duration};

use helix_mesh::pb::{CommandStatus, command_event::Kind};

use crate::support::{
    TEST_TIMEOUT, TestHub, config_for,
    mock_anthropic::{MockAnthropic, Reply},
    request, store_api_key,
};

/// Unmounts the tmpfs on drop (lazily: nothing may keep it busy).
struct Mounted<'a>(&'a Path);

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0).status();
    }
}

/// Writes zeros into `path` until the file system is full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 64 * 1024];
    while file.write_all(&block).is_ok() {}
    let _ = file.sync_all();
}

#[tokio::test]
#[allow(clippy::print_stderr)] // a skipped test says why on the test's output
async fn a_full_disk_mid_stream_fails_the_command_and_says_why() {
    if let Err(why) = helix_netlab::require_root() {
        eprintln!("skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(mounted.success(), "mounting a tmpfs for the data dir");
    let path = dir.path().to_owned();
    let _mounted = Mounted(&path);
    store_api_key(&path);

    let chunks: Vec<String> = (0..300).map(|i| format!("w{i} ")).collect();
    let texts: Vec<&str> = chunks.iter().map(String::as_str).collect();
    let mock = MockAnthropic::start(Reply::slow(&texts, Duration::from_millis(10))).await;
    let hub = TestHub::start_in(dir, config_for(&mock)).await;
    let mut client = hub.client().await;
    let mut stream = client
        .execute(request("fill the disk while I talk"))
        .await
        .unwrap()
        .into_inner();

    let mut seqs = Vec::new();
    let mut text = String::new();
    let mut filled = false;
    let end = tokio::time::timeout(TEST_TIMEOUT, async {
        loop {
            let Some(event) = stream.message().await.unwrap() else {
                panic!("the stream ended without a finished event");
            };
            seqs.push(event.seq);
            match event.kind {
                Some(Kind::Output(o)) => {
                    text.push_str(&o.text);
                    if !filled && text.len() > 40 {
                        filled = true;
                        fill(&path.join("filler"));
                        // Several outputs meet the full disk; then it has room again.
                        tokio::time::sleep(Duration::from_millis(400)).await;
                        std::fs::remove_file(path.join("filler")).unwrap();
                    }
                }
                Some(Kind::Finished(f)) => return f,
                _ => {}
            }
        }
    })
    .await
    .expect("the command ended");
    assert!(filled, "the disk was filled mid-stream");
    assert_eq!(end.status, CommandStatus::Failed as i32, "{end:?}");
    assert!(
        end.error.starts_with("the journal could not be written:"),
        "{}",
        end.error
    );
    assert!(text.len() < chunks.concat().len(), "it stopped early");
    // What the follower saw has no gap and no repeat: lost events were never published.
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");

    // The journal agrees, and a new command runs once there is room.
    let id = {
        let mut s = client.execute(request("again")).await.unwrap().into_inner();
        let mut last = None;
        while let Some(event) = s.message().await.unwrap() {
            last = Some(event);
        }
        last.unwrap()
    };
    match id.kind {
        Some(Kind::Finished(f)) => assert_eq!(f.status, CommandStatus::Completed as i32, "{f:?}"),
        other => panic!("{other:?}"),
    }
    let dir = hub.stop_keeping_dir().await;
    drop(_mounted);
    drop(dir);
}
