//! Helpers for the table relay tests: a hub config that polls fast, a spoke paired with the
//! hub and signed in to the cloud, sealed command rows, and waiting for a row's status.

use std::time::{Duration, Instant};

use helix_mesh::{
    cloud_payload::CommandPayload,
    envelope_v2::{self, SealedHeader, SealedKind},
    pb,
};
use iroh::SecretKey;
use serde_json::json;
use tempfile::TempDir;

use super::{
    TestHub,
    bins::{pairing_ticket, run_helix, spoke},
    cloud::TestCloud,
    config_for,
    mock_anthropic::MockAnthropic,
    mock_gotrue::{EMAIL, PASSWORD},
};

/// A hub config pointed at `mock` that polls the table every 100 ms.
pub fn hub_config(mock: &MockAnthropic) -> helix_hub::HubConfig {
    let mut config = config_for(mock);
    config.cloud.poll_interval = Duration::from_millis(100);
    config
}

/// A spoke paired with `hub` (as "desk") and signed in to `cloud`.
pub async fn paired_spoke(hub: &TestHub, cloud: &TestCloud) -> TempDir {
    paired_spoke_with(hub.path(), cloud).await
}

/// [`paired_spoke`] for the hub running (in or out of this process) on `hub_dir`.
pub async fn paired_spoke_with(hub_dir: &std::path::Path, cloud: &TestCloud) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ticket = pairing_ticket(hub_dir, &[]).await;
    let mut cmd = spoke(dir.path());
    cmd.args(["pair", &ticket, "--name", "desk"]);
    assert_eq!(run_helix(cmd, None).await.code, Some(0));
    sign_in(dir.path(), cloud).await;
    dir
}

/// A spoke signed in to `cloud`, paired with nothing.
pub async fn signed_in_spoke(cloud: &TestCloud) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    sign_in(dir.path(), cloud).await;
    dir
}

/// `helix cloud login` as the test user, for the spoke on `dir`.
pub async fn sign_in(dir: &std::path::Path, cloud: &TestCloud) {
    let mut cmd = spoke(dir);
    cmd.env("HELIX_SUPABASE_REST_URL", &cloud.server.url).args([
        "cloud",
        "login",
        "--url",
        &cloud.gotrue.url(),
        "--anon-key",
        "anon-key",
        "--email",
        EMAIL,
    ]);
    assert_eq!(
        run_helix(cmd, Some(&format!("{PASSWORD}\n"))).await.code,
        Some(0)
    );
}

/// Sends `prompt` to "desk" through the table with `--detach`; the command id.
pub async fn send_detached(spoke_dir: &TempDir, prompt: &str) -> String {
    let mut cmd = spoke(spoke_dir.path());
    cmd.args(["run", "--hub", "desk", "--via", "cloud", "--detach", prompt]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    done.stdout.lines().last().unwrap().to_owned()
}

/// The spoke's device key.
pub fn device_key(spoke_dir: &TempDir) -> SecretKey {
    helix_mesh::transport::load_or_create_secret_key(&spoke_dir.path().join("secret.key")).unwrap()
}

/// A `cloud_commands` row for `command_id`, sealed by `device` to `hub` (envelope v2, kind
/// `command`, the payload JSON of `cloud_payload`).
pub fn sealed_row(
    device: &SecretKey,
    hub: &iroh::PublicKey,
    command_id: &str,
    envelope_expiry_ms: i64,
) -> serde_json::Value {
    let request = pb::ExecuteRequest {
        command_id: command_id.into(),
        content: "sealed prompt".into(),
        provider: pb::Provider::Anthropic as i32,
        ..Default::default()
    };
    let header = SealedHeader {
        kind: SealedKind::Command,
        context: command_id.into(),
        seq: 0,
        expires_at_ms: u64::try_from(envelope_expiry_ms).unwrap(),
    };
    let payload = CommandPayload::from_request(&request).to_json().unwrap();
    let sealed = envelope_v2::seal(device, hub, &header, &payload).unwrap();
    // The row may live at most 24 h (the envelope's own expiry is what the hub checks).
    let expires =
        humantime::format_rfc3339(std::time::SystemTime::now() + Duration::from_secs(23 * 3600));
    json!({"command_id": command_id, "source_device_id": device.public().to_string(), "hub_id": hub.to_string(),
           "envelope": sealed, "expires_at": expires.to_string()})
}

/// Waits (up to 20 s) until the row's status starts with `want`; returns `status|reason`.
pub async fn wait_status(cloud: &TestCloud, command_id: &str, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let row = cloud.db.admin(&format!("select status || '|' || coalesce(reason, '') from cloud_commands where command_id = '{command_id}'")).await;
        if row.starts_with(want) {
            return row;
        }
        assert!(
            Instant::now() < deadline,
            "{command_id} never reached {want}: {row}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to 20 s) until hub `hub_id` has registered with the cloud on `db` (a command or
/// a pairing request for an unregistered hub is refused).
pub async fn wait_registered(db: &crate::support::pg::TestDb, hub_id: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while db
        .admin(&format!(
            "select count(*) from cloud_hubs where hub_id = '{hub_id}'"
        ))
        .await
        != "1"
    {
        assert!(Instant::now() < deadline, "hub {hub_id} never registered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (up to 20 s) until `select` on the admin connection answers `want`.
pub async fn wait_row(cloud: &TestCloud, select: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = cloud.db.admin(select).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{select}: {got:?}, not {want:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
