//! A real `helix-hub` process killed with SIGKILL mid-stream, then restarted.

use helix_mesh::pb::{CommandStatus, command_event::Kind};
use rusqlite::Connection;

use crate::support::{
    attach_all,
    bins::{HubProcess, write_hub_config},
    finished, is_output, kinds,
    mock_anthropic::{MockAnthropic, Reply},
    output, read_until, request, store_api_key,
};

#[tokio::test]
async fn sigkill_mid_stream_then_restart_keeps_the_journal_and_runs_pending_work() {
    let mock = MockAnthropic::start(Reply::text(&["pending ", "ran"])).await;
    mock.script([Reply::hang_after(&["first ", "words "])]);
    let dir = tempfile::tempdir().unwrap();
    write_hub_config(dir.path(), &mock.base_url(), 1);
    store_api_key(dir.path());

    let mut hub = HubProcess::spawn(dir.path()).await;
    let token_before = std::fs::read_to_string(dir.path().join("hub-token")).unwrap();
    let mut client = helix_spoke::client::connect_local(dir.path())
        .await
        .unwrap()
        .client;
    let running = request("interrupted");
    let running_id = running.command_id.clone();
    let mut stream = client.execute(running).await.unwrap().into_inner();
    let before = read_until(&mut stream, |e| output(std::slice::from_ref(e)) == "words ").await;
    let mut pending_ids = Vec::new();
    for i in 0..2 {
        let req = request(&format!("queued {i}"));
        pending_ids.push(req.command_id.clone());
        let mut s = client.execute(req).await.unwrap().into_inner();
        let first = read_until(&mut s, |_| true).await;
        assert_eq!(kinds(&first), ["queued"]);
    }

    hub.kill9().await;
    let status = tokio::process::Command::new(crate::support::bins::bin("helix-hub"))
        .arg("--data-dir")
        .arg(dir.path())
        .arg("status")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("not running (stale hub.json"), "{text}");
    assert!(
        !matches!(stream.message().await, Ok(Some(_))),
        "the stream ends with the hub"
    );
    stale_hub_json_is_not_dialed(dir.path(), hub.info.grpc_addr).await;
    mock.release();

    let restarted = HubProcess::spawn(dir.path()).await;
    let token_after = std::fs::read_to_string(dir.path().join("hub-token")).unwrap();
    assert_ne!(
        token_before, token_after,
        "a new bearer token at every start"
    );
    assert_eq!(
        restarted.info.hub_id, hub.info.hub_id,
        "same hub id after restart"
    );
    let mut client = helix_spoke::client::connect_local(dir.path())
        .await
        .unwrap()
        .client;

    // The interrupted command: its stored events intact, then finished as failed.
    let events = attach_all(&mut client, &running_id, 0).await;
    assert_eq!(
        events[..before.len()],
        before[..],
        "journal intact and in order"
    );
    assert_eq!(
        kinds(&events),
        ["queued", "started", "output", "output", "finished"]
    );
    let f = finished(&events);
    assert_eq!(f.status, CommandStatus::Failed as i32);
    assert_eq!(f.error, "hub restarted during execution");
    assert_eq!(output(&events), "first words ");

    // The pending ones run now, once each.
    for id in &pending_ids {
        let events = attach_all(&mut client, id, 0).await;
        assert_eq!(output(&events), "pending ran");
        assert_eq!(finished(&events).status, CommandStatus::Completed as i32);
        assert!(matches!(events[0].kind, Some(Kind::Queued(_))));
        assert!(events.iter().filter(|e| is_output(e)).count() == 2);
    }
    assert_eq!(mock.requests(), 3, "the interrupted command was not re-run");

    // The journal on disk agrees: contiguous seqs per command, nothing duplicated.
    drop(client);
    let mut restarted = restarted;
    restarted.signal(libc::SIGTERM);
    assert!(
        restarted.wait().await.success(),
        "graceful exit: {}",
        restarted.stderr()
    );
    assert!(
        !dir.path().join("hub.json").exists(),
        "hub.json removed on graceful exit"
    );
    let db = Connection::open(dir.path().join("journal.sqlite")).unwrap();
    let gaps: i64 = db
        .query_row(
            "SELECT count(*) FROM (SELECT command, count(*) AS n, max(seq) AS m FROM events GROUP BY command) WHERE n != m",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(gaps, 0);
    let statuses: Vec<String> = db
        .prepare("SELECT status FROM commands ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(statuses, ["failed", "completed", "completed"]);
}

#[tokio::test]
async fn a_second_hub_on_the_same_data_dir_is_refused_clearly() {
    let mock = MockAnthropic::start(Reply::text(&["x"])).await;
    let dir = tempfile::tempdir().unwrap();
    write_hub_config(dir.path(), &mock.base_url(), 1);
    let mut first = HubProcess::spawn(dir.path()).await;
    let out = tokio::process::Command::new(crate::support::bins::bin("helix-hub"))
        .arg("--data-dir")
        .arg(dir.path())
        .arg("serve")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("another helix-hub is already running"),
        "{stderr}"
    );
    first.signal(libc::SIGINT);
    assert!(first.wait().await.success());
}

#[tokio::test]
async fn a_corrupt_journal_is_reported_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("journal.sqlite"),
        b"this is not a database, it is text",
    )
    .unwrap();
    let out = tokio::process::Command::new(crate::support::bins::bin("helix-hub"))
        .arg("--data-dir")
        .arg(dir.path())
        .arg("serve")
        .arg("--grpc-addr")
        .arg("127.0.0.1:0")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("journal.sqlite"), "{stderr}");
    assert_eq!(
        std::fs::read(dir.path().join("journal.sqlite")).unwrap(),
        b"this is not a database, it is text",
        "left untouched"
    );
}

/// Another program bound the port the crashed hub's `hub.json` names: `helix` and `helix-hub
/// pair` say the hub is not running and never connect to it (the token is not offered).
async fn stale_hub_json_is_not_dialed(dir: &std::path::Path, port: std::net::SocketAddr) {
    let squatter = tokio::net::TcpListener::bind(port).await.unwrap();
    let mut helix = tokio::process::Command::new(crate::support::bins::bin("helix"));
    helix
        .arg("--hub-dir")
        .arg(dir)
        .args(["--config-dir"])
        .arg(dir.join("spoke"))
        .args(["run", "hello?"]);
    let mut pair = tokio::process::Command::new(crate::support::bins::bin("helix-hub"));
    pair.arg("--data-dir").arg(dir).arg("pair");
    for (what, mut cmd) in [("helix run", helix), ("helix-hub pair", pair)] {
        let out = cmd
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: {stderr}");
        assert!(
            stderr.contains("did not exit cleanly") && stderr.contains("helix-hub serve"),
            "{what}: {stderr}"
        );
    }
    let accepted =
        tokio::time::timeout(std::time::Duration::from_millis(200), squatter.accept()).await;
    assert!(accepted.is_err(), "something dialed the stale port");
}
