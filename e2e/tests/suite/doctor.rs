//! `helix-hub doctor`: a healthy hub is all ok (exit 0); a missing credential, a damaged
//! journal and a cloud whose clock disagrees with this machine's each fail with their next
//! step (exit 1); warnings alone exit 3.

use std::time::{Duration, SystemTime};

use axum::{Router, http::header, response::IntoResponse, routing::get};
use serde_json::Value;

use crate::support::{
    TestHub,
    bins::{Finished, hub_cli, run_helix},
    cloud::TestCloud,
    config_for,
    mock_anthropic::{MockAnthropic, Reply},
};

async fn doctor(dir: &std::path::Path) -> (Finished, Value) {
    let mut cmd = hub_cli(dir);
    cmd.args(["doctor", "--json"]);
    let done = run_helix(cmd, None).await;
    let report = serde_json::from_str(done.stdout.trim())
        .unwrap_or_else(|e| panic!("doctor --json printed no JSON ({e}): {}", done.stdout));
    (done, report)
}

/// The check named `name`, which must be there.
fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {report}"))
}

fn not_ok(report: &Value) -> Vec<&Value> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] != "ok")
        .collect()
}

#[tokio::test]
async fn a_healthy_hub_passes_every_check_and_a_stopped_one_warns() {
    let mock = MockAnthropic::start(Reply::text(&["ok"])).await;
    let hub = TestHub::start(config_for(&mock)).await;
    let device = iroh::SecretKey::from_bytes(&[7u8; 32]);
    hub.hub().devices().add(device.public(), "phone").unwrap();

    let (done, report) = doctor(hub.path()).await;
    assert_eq!(done.code, Some(0), "{report}");
    assert!(not_ok(&report).is_empty(), "{report}");
    assert_eq!(report["status"], "ok");
    assert!(
        check(&report, "hub")["detail"]
            .as_str()
            .unwrap()
            .starts_with("running (pid ")
    );
    assert_eq!(check(&report, "credential anthropic")["status"], "ok");
    assert_eq!(check(&report, "paired devices")["detail"], "1");

    // Stopped: the journal is checked now, and "not running" is only a warning.
    let dir = hub.stop_keeping_dir().await;
    let (done, report) = doctor(dir.path()).await;
    assert_eq!(done.code, Some(3), "{report}");
    let hub_check = check(&report, "hub");
    assert_eq!(hub_check["status"], "warn");
    assert!(
        hub_check["next"]
            .as_str()
            .unwrap()
            .contains("helix-hub serve")
    );
    assert!(
        check(&report, "journal")["detail"]
            .as_str()
            .unwrap()
            .ends_with("quick_check ok"),
        "{report}"
    );

    // The text form says the same, one line per check and the next step under it.
    let mut cmd = hub_cli(dir.path());
    cmd.arg("doctor");
    let text = run_helix(cmd, None).await;
    assert_eq!(text.code, Some(3));
    assert!(text.stdout.contains("warn  hub"), "{}", text.stdout);
    assert!(text.stdout.contains("→ start it"), "{}", text.stdout);
}

#[tokio::test]
async fn a_missing_credential_and_a_damaged_journal_fail_with_what_to_do() {
    let mock = MockAnthropic::start(Reply::text(&["ok"])).await;
    let hub = TestHub::start_without_credentials(config_for(&mock)).await;
    let (done, report) = doctor(hub.path()).await;
    assert_eq!(done.code, Some(1), "{report}");
    let credentials = check(&report, "credentials");
    assert_eq!(credentials["status"], "fail");
    assert!(
        credentials["next"]
            .as_str()
            .unwrap()
            .contains("helix-hub login anthropic")
    );

    // The hub stops; its journal's schema page is scribbled on past the 100-byte file header.
    let dir = hub.stop_keeping_dir().await;
    let path = dir.path().join("journal.sqlite");
    // The journal's last connection may close a moment after the hub stopped, and closing
    // checkpoints the WAL back into the file (and removes the WAL): wait for that first.
    let wal = dir.path().join("journal.sqlite-wal");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while wal.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !wal.exists(),
        "the stopped hub's journal kept its WAL open for 20 s"
    );
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() >= 4096, "journal of {} bytes", bytes.len());
    for b in &mut bytes[100..] {
        *b = 0x5a;
    }
    std::fs::write(&path, bytes).unwrap();
    let (done, report) = doctor(dir.path()).await;
    assert_eq!(done.code, Some(1), "{report}");
    let journal = check(&report, "journal");
    assert_eq!(journal["status"], "fail", "{report}");
    assert!(
        journal["detail"].as_str().unwrap().contains("is damaged"),
        "{journal}"
    );
    assert!(
        journal["next"].as_str().unwrap().contains("move"),
        "{journal}"
    );
}

/// A REST endpoint that answers like PostgREST, with a `Date` an hour behind.
async fn skewed_rest() -> String {
    let app = Router::new().route(
        "/cloud_presence",
        get(|| async {
            let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
            (
                [
                    (header::DATE, httpdate::fmt_http_date(an_hour_ago)),
                    (header::CONTENT_TYPE, "application/json".to_owned()),
                ],
                "[]",
            )
                .into_response()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_cloud_whose_clock_is_an_hour_off_fails_the_clock_check() {
    let cloud = TestCloud::start().await;
    // The real cloud's session, and REST through a server whose clock is an hour behind.
    let dir = cloud.signed_in_dir(&skewed_rest().await).await;
    crate::support::store_api_key(dir.path());
    let (done, report) = doctor(dir.path()).await;
    assert_eq!(done.code, Some(1), "{report}");
    assert_eq!(check(&report, "cloud session")["status"], "ok", "{report}");
    assert_eq!(check(&report, "cloud rest")["status"], "ok", "{report}");
    let clock = check(&report, "clock");
    assert_eq!(clock["status"], "fail", "{report}");
    assert!(
        clock["detail"]
            .as_str()
            .unwrap()
            .contains("ahead of the cloud's"),
        "{clock}"
    );
    assert!(clock["next"].as_str().unwrap().contains("NTP"), "{clock}");

    // The real local cloud (no skew): the same checks pass.
    let dir = cloud.hub_dir().await;
    let (_, report) = doctor(dir.path()).await;
    assert_eq!(check(&report, "cloud rest")["status"], "ok", "{report}");
    assert_eq!(check(&report, "clock")["status"], "ok", "{report}");
}

#[tokio::test]
async fn against_the_local_cloud_every_cloud_check_passes_realtime_included() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(crate::support::bins::bin("helix-local-cloud"))
        .args([
            "--port",
            "0",
            "--web-dir",
            std::env::temp_dir().to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut values = std::collections::HashMap::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line == "ready" {
                break;
            }
            if let Some((k, v)) = line.split_once('=') {
                values.insert(k.to_owned(), v.to_owned());
            }
        }
    })
    .await
    .expect("helix-local-cloud did not get ready");
    let dir = tempfile::tempdir().unwrap();
    crate::support::store_api_key(dir.path());
    let mut cmd = hub_cli(dir.path());
    cmd.args([
        "cloud",
        "login",
        "--url",
        &values["HELIX_SUPABASE_URL"],
        "--anon-key",
        &values["HELIX_SUPABASE_ANON_KEY"],
        "--email",
        &values["HELIX_TEST_EMAIL"],
    ]);
    let done = run_helix(cmd, Some(&values["HELIX_TEST_PASSWORD"])).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);

    let (_, report) = doctor(dir.path()).await;
    for name in ["cloud session", "cloud rest", "clock", "cloud realtime"] {
        assert_eq!(check(&report, name)["status"], "ok", "{name}: {report}");
    }
    // SIGINT: the local cloud drops its database.
    let pid = child.id().unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
    let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
}
