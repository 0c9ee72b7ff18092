//! The `helix` binary against a real hub: stdout carries exactly the output, stderr the
//! progress, exit codes mean what the help says.

use std::{process::Stdio, time::Duration};

use helix_mesh::pb::CommandStatus;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::support::{
    TEST_API_KEY, TestHub,
    bins::{helix, run_helix},
    config_for, json_lines, json_seqs,
    mock_anthropic::{MockAnthropic, Reply},
    status_of,
};

#[tokio::test]
async fn run_streams_exact_output_to_stdout_and_progress_to_stderr() {
    let mock = MockAnthropic::start(Reply::text(&["Hello", ", ", "world", "!\nsecond line"])).await;
    let hub = TestHub::start(config_for(&mock)).await;

    let mut cmd = helix(hub.path());
    cmd.args(["run", "say hello"]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert_eq!(
        done.stdout, "Hello, world!\nsecond line",
        "byte-identical output on a pipe"
    );
    assert!(
        done.stderr.contains("queued #1 on the hub"),
        "{}",
        done.stderr
    );
    assert!(!done.stderr.contains(TEST_API_KEY));

    // The prompt from stdin, with agent, session and model passed through.
    let mut cmd = helix(hub.path());
    cmd.args([
        "--quiet",
        "run",
        "--session",
        "s-1",
        "--model",
        "claude-test",
        "-",
    ]);
    let done = run_helix(cmd, Some("prompt from\nstdin")).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert_eq!(done.stderr, "", "--quiet prints no progress");
    let seen = mock.seen();
    assert_eq!(seen[1].body["messages"][0]["content"], "prompt from\nstdin");
    assert_eq!(seen[1].body["model"], "claude-test");

    // --json: one object per event, the route named.
    let mut cmd = helix(hub.path());
    cmd.args(["run", "--json", "hi"]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(0));
    let records = json_lines(&done.stdout);
    let types: Vec<&str> = records
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "queued", "started", "output", "output", "output", "output", "finished"
        ]
    );
    assert!(records.iter().all(|r| r["route"] == "local"));
    assert_eq!(records.last().unwrap()["status"], "completed");
    hub.shutdown().await;
}

#[tokio::test]
async fn failures_and_refusals_have_distinct_exit_codes() {
    let mock = MockAnthropic::start(Reply::status(400)).await;
    let hub = TestHub::start(config_for(&mock)).await;

    let mut cmd = helix(hub.path());
    cmd.args(["run", "fails"]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(1));
    assert!(
        done.stderr.contains("command failed: anthropic: HTTP 400"),
        "{}",
        done.stderr
    );
    assert_eq!(done.stdout, "");

    let mut cmd = helix(hub.path());
    cmd.args(["run", "--ttl", "0s", "expires"]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(5), "{}", done.stderr);
    assert!(done.stderr.contains("expired"), "{}", done.stderr);

    let mut cmd = helix(hub.path());
    cmd.args(["show", &uuid::Uuid::new_v4().to_string()]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(6));
    assert!(done.stderr.contains("no command"), "{}", done.stderr);

    let mut cmd = helix(hub.path());
    cmd.args(["run", "-"]);
    let done = run_helix(cmd, Some("  \n")).await;
    assert_eq!(done.code, Some(2));
    assert!(
        done.stderr.contains("the prompt is empty"),
        "{}",
        done.stderr
    );

    let nowhere = tempfile::tempdir().unwrap();
    let mut cmd = helix(nowhere.path());
    cmd.args(["run", "hello?"]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(3));
    assert!(done.stderr.contains("helix-hub serve"), "{}", done.stderr);
    hub.shutdown().await;
}

#[tokio::test]
async fn detach_attach_show_ls_and_cancel() {
    let mock = MockAnthropic::start(Reply::text(&["detached ", "result"])).await;
    let hub = TestHub::start(config_for(&mock)).await;

    let mut cmd = helix(hub.path());
    cmd.args(["run", "--detach", "background job"]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    let id = done.stdout.lines().last().unwrap().to_owned();
    uuid::Uuid::parse_str(&id).expect("the last stdout line is the command id");

    let mut cmd = helix(hub.path());
    cmd.args(["attach", &id]);
    let done = run_helix(cmd, None).await;
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (Some(0), "detached result")
    );

    let mut cmd = helix(hub.path());
    cmd.args(["attach", &id, "--after-seq", "3", "--json"]);
    let done = run_helix(cmd, None).await;
    let seqs = json_seqs(&done.stdout);
    assert_eq!(seqs, [4, 5]);

    // Everything already seen: ends at once with the command's outcome (no re-attach loop).
    let mut cmd = helix(hub.path());
    cmd.args(["attach", &id, "--after-seq", "5"]);
    let done = run_helix(cmd, None).await;
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (Some(0), ""),
        "{}",
        done.stderr
    );

    let mut cmd = helix(hub.path());
    cmd.args(["show", &id]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(0));
    assert!(
        done.stdout
            .contains("status    completed after 1 attempt(s)"),
        "{}",
        done.stdout
    );
    assert!(
        done.stdout.ends_with("--- output ---\ndetached result\n"),
        "{}",
        done.stdout
    );

    let mut cmd = helix(hub.path());
    cmd.args(["show", "--json", &id]);
    let json: serde_json::Value = serde_json::from_str(&run_helix(cmd, None).await.stdout).unwrap();
    assert_eq!(
        (json["status"].as_str(), json["output"].as_str()),
        (Some("completed"), Some("detached result"))
    );

    let mut cmd = helix(hub.path());
    cmd.args(["ls"]);
    let done = run_helix(cmd, None).await;
    let lines: Vec<&str> = done.stdout.lines().collect();
    assert!(lines[0].starts_with("ID"), "{}", done.stdout);
    assert!(
        lines[1].starts_with(&id)
            && lines[1].contains("completed")
            && lines[1].contains("background job")
    );

    // Cancel a running command from another terminal: the follower exits 4.
    mock.set_default(Reply::hang_after(&["going"]));
    let mut cmd = helix(hub.path());
    cmd.args(["run", "--detach", "long"]);
    let long_id = run_helix(cmd, None).await.stdout.trim().to_owned();
    mock.wait_until("the long command to start", |m| m.in_flight() == 1)
        .await;
    let mut follower = helix(hub.path());
    follower
        .args(["attach", &long_id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let follower = follower.spawn().unwrap();
    let mut cmd = helix(hub.path());
    cmd.args(["cancel", &long_id]);
    let done = run_helix(cmd, None).await;
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (Some(0), "cancelled\n"),
        "{}",
        done.stderr
    );
    let out = tokio::time::timeout(Duration::from_secs(20), follower.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "going");
    hub.shutdown().await;
}

#[tokio::test]
async fn ctrl_c_cancels_the_command_on_the_hub() {
    let mock = MockAnthropic::start(Reply::hang_after(&["partial"])).await;
    let hub = TestHub::start(config_for(&mock)).await;
    let mut cmd = helix(hub.path());
    cmd.args(["run", "--json", "interrupt me"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut command_id = String::new();
    // Wait for the output event: by then the CLI is following the stream.
    while let Some(line) = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()
    {
        let record: serde_json::Value = serde_json::from_str(&line).unwrap();
        command_id = record["command_id"].as_str().unwrap().to_owned();
        if record["type"] == "output" {
            break;
        }
    }
    let pid = child.id().unwrap() as i32;
    #[allow(unsafe_code)]
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(pid, libc::SIGINT);
    }
    let mut rest = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        rest.push_str(&line);
    }
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("cancelling command"), "{stderr}");
    assert!(rest.contains("\"status\":\"cancelled\""), "{rest}");
    let mut client = hub.client().await;
    assert_eq!(
        status_of(&mut client, &command_id).await,
        CommandStatus::Cancelled
    );
    mock.wait_until("the provider stream to be aborted", |m| m.in_flight() == 0)
        .await;
    hub.shutdown().await;
}

#[tokio::test]
async fn watch_prints_status_changes_from_other_devices() {
    let mock = MockAnthropic::start(Reply::text(&["ok"])).await;
    let hub = TestHub::start(config_for(&mock)).await;
    let mut cmd = helix(hub.path());
    cmd.args(["watch", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut watcher = cmd.spawn().unwrap();
    // The watcher says it is watching once its stream is open.
    let mut err_lines = BufReader::new(watcher.stderr.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(20), err_lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert!(ready.unwrap_or_default().contains("watching"));

    let mut client = hub.client().await;
    let req = crate::support::request("from another device");
    let id = req.command_id.clone();
    crate::support::collect(client.execute(req).await.unwrap().into_inner()).await;

    let mut lines = BufReader::new(watcher.stdout.take().unwrap()).lines();
    let mut statuses = Vec::new();
    while statuses.len() < 3 {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let record: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(record["command_id"], id.as_str());
        assert_eq!(record["source_device_id"], "test-device");
        statuses.push(record["status"].as_str().unwrap().to_owned());
    }
    assert_eq!(statuses, ["pending", "executing", "completed"]);
    watcher.kill().await.unwrap();
    hub.shutdown().await;
}
