//! The iroh tunnel: pairing, gRPC over QUIC direct and through a local relay (also one with
//! a private CA), refusals,
//! revocation, resume after a dropped connection, the Watch broadcast across devices, and a
//! restarted hub that keeps its id and devices. Everything stays on loopback.

use std::{path::Path, process::Stdio, time::Duration};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::support::{
    LocalRelay, TestHub,
    bins::{Finished, hub_cli, run_helix, spoke, spoke_with_own_settings},
    config_for, json_lines,
    mock_anthropic::{MockAnthropic, Reply},
};

/// A pairing ticket from the running hub, valid for `ttl`.
async fn pairing_ticket(hub: &TestHub, ttl: &str) -> String {
    crate::support::bins::pairing_ticket(hub.path(), &["--ttl", ttl]).await
}

/// Pairs the spoke with config dir `config` as hub name `name`.
async fn pair(hub: &TestHub, config: &Path, name: &str, extra: &[&str]) -> Finished {
    let ticket = pairing_ticket(hub, "10m").await;
    let mut cmd = spoke(config);
    cmd.args(extra).args([
        "pair",
        &ticket,
        "--name",
        name,
        "--device-name",
        "test-spoke",
    ]);
    run_helix(cmd, None).await
}

async fn whoami(config: &Path) -> String {
    let mut cmd = spoke(config);
    cmd.arg("whoami");
    run_helix(cmd, None).await.stdout.trim().to_owned()
}

#[tokio::test]
async fn paired_spoke_streams_directly_without_any_relay() {
    let mock = MockAnthropic::start(Reply::text(&["over ", "iroh"])).await;
    let hub = TestHub::start(config_for(&mock)).await;
    let config = tempfile::tempdir().unwrap();
    let done = pair(&hub, config.path(), "desk", &[]).await;
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (Some(0), "desk\n"),
        "{}",
        done.stderr
    );

    let mut cmd = spoke(config.path());
    cmd.args(["run", "--hub", "desk", "--json", "hello"]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert!(
        done.stderr.contains("connected to hub desk (route direct)"),
        "{}",
        done.stderr
    );
    let records = json_lines(&done.stdout);
    assert!(
        records.iter().all(|r| r["route"] == "direct"),
        "{records:?}"
    );
    let text: String = records.iter().filter_map(|r| r["text"].as_str()).collect();
    assert_eq!(text, "over iroh");

    // The hub knows the command came from this device's key.
    let device = whoami(config.path()).await;
    let id = records[0]["command_id"].as_str().unwrap().to_owned();
    let mut client = hub.client().await;
    let command = client
        .get_command(helix_mesh::pb::GetCommandRequest { command_id: id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(command.source_device_id, device);

    // `helix hubs` reaches it and names the route; `helix-hub devices` lists the device.
    let mut cmd = spoke(config.path());
    cmd.args(["hubs", "--json"]);
    let hubs = json_lines(&run_helix(cmd, None).await.stdout);
    assert_eq!(hubs.len(), 1);
    assert_eq!(
        (
            hubs[0]["name"].as_str(),
            hubs[0]["reachable"].as_bool(),
            hubs[0]["route"].as_str()
        ),
        (Some("desk"), Some(true), Some("direct"))
    );
    assert_eq!(hubs[0]["hub_id"], hub.hub().hub_id());
    let mut cmd = hub_cli(hub.path());
    cmd.args(["devices", "list", "--json"]);
    let devices = json_lines(&run_helix(cmd, None).await.stdout);
    assert_eq!(devices.len(), 1);
    assert_eq!(
        (
            devices[0]["device_id"].as_str(),
            devices[0]["name"].as_str()
        ),
        (Some(device.as_str()), Some("test-spoke"))
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn relay_only_spoke_streams_through_a_local_relay() {
    let relay = LocalRelay::start().await;
    let mock = MockAnthropic::start(Reply::text(&["via ", "relay"])).await;
    let mut config = config_for(&mock);
    config.iroh = helix_hub::config::IrohConfig::loopback(&relay.url);
    let hub = TestHub::start(config).await;
    let spoke_dir = tempfile::tempdir().unwrap();
    // The spoke has no UDP of its own: only the relay can carry it.
    let relay_args = ["--relay-url", relay.url.as_str(), "--relay-only"];
    let done = pair(&hub, spoke_dir.path(), "desk", &relay_args).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);

    let mut cmd = spoke(spoke_dir.path());
    cmd.args(relay_args)
        .args(["run", "--hub", "desk", "--json", "hello"]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert!(
        done.stderr.contains("(route iroh-relay)"),
        "{}",
        done.stderr
    );
    let records = json_lines(&done.stdout);
    assert!(
        records.iter().all(|r| r["route"] == "iroh-relay"),
        "{records:?}"
    );
    let text: String = records.iter().filter_map(|r| r["text"].as_str()).collect();
    assert_eq!(text, "via relay");
    hub.shutdown().await;
}

/// A self-hosted relay with its own CA: the hub trusts it through `[iroh] relay_ca`, a spoke
/// through `--relay-ca` or `relay_ca` in its `config.toml`; without the CA a relay-only spoke
/// cannot reach the hub, and says so.
#[tokio::test]
async fn a_relay_with_a_private_ca_carries_commands_once_its_ca_is_trusted() {
    let relay = helix_testkit::relay::TlsRelay::start().await;
    let mock = MockAnthropic::start(Reply::text(&["through ", "my own relay"])).await;
    let mut config = config_for(&mock);
    config.iroh = helix_hub::config::IrohConfig {
        relay_ca: Some(relay.ca_pem.clone()),
        ..helix_hub::config::IrohConfig::loopback(&relay.url)
    };
    let hub = TestHub::start(config).await;
    let spoke_dir = tempfile::tempdir().unwrap();
    let relay_only = [
        "--relay-url",
        relay.url.as_str(),
        "--relay-only",
        "--connect-timeout",
        "3s",
    ];

    // The relay's certificate is not trusted: nothing gets through.
    let done = pair(&hub, spoke_dir.path(), "desk", &relay_only).await;
    assert_eq!(done.code, Some(3), "{}", done.stderr);

    let ca = relay.ca_pem.display().to_string();
    let mut trusted = relay_only.to_vec();
    trusted.extend(["--relay-ca", ca.as_str()]);
    let done = pair(&hub, spoke_dir.path(), "desk", &trusted).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    let mut cmd = spoke(spoke_dir.path());
    cmd.args(&trusted).args(["run", "--hub", "desk", "hello"]);
    let done = run_helix(cmd, None).await;
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (Some(0), "through my own relay"),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.contains("(route iroh-relay)"),
        "{}",
        done.stderr
    );
    assert!(!done.stderr.contains("ERROR"), "{}", done.stderr);

    // The same from the spoke's config file (a relative relay_ca is next to it).
    std::fs::copy(&relay.ca_pem, spoke_dir.path().join("relay-ca.pem")).unwrap();
    std::fs::write(
        spoke_dir.path().join("config.toml"),
        format!(
            "[iroh]\nrelay = \"{}\"\nrelay_ca = \"relay-ca.pem\"\nn0_discovery = false\nmdns = false\n",
            relay.url
        ),
    )
    .unwrap();
    let mut cmd = spoke_with_own_settings(spoke_dir.path());
    cmd.args(["--relay-only", "run", "--hub", "desk", "again"]);
    let done = run_helix(cmd, None).await;
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (Some(0), "through my own relay"),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.contains("(route iroh-relay)"),
        "{}",
        done.stderr
    );
    assert!(!done.stderr.contains("ERROR"), "{}", done.stderr);

    // A CA file that is not PEM is refused before anything is dialed.
    let bogus = spoke_dir.path().join("bogus.pem");
    std::fs::write(&bogus, "not a certificate").unwrap();
    let mut cmd = spoke(spoke_dir.path());
    cmd.args([
        "--relay-ca",
        &bogus.display().to_string(),
        "run",
        "--hub",
        "desk",
        "x",
    ]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(2), "{}", done.stderr);
    assert!(
        done.stderr.contains(&format!(
            "reading the relay CA {}: no certificate in it: it must be a PEM file with one or more CERTIFICATE blocks",
            bogus.display()
        )),
        "{}",
        done.stderr
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn unpaired_keys_used_and_expired_tickets_are_refused_clearly() {
    let mock = MockAnthropic::start(Reply::text(&["x"])).await;
    let hub = TestHub::start(config_for(&mock)).await;
    let stranger = tempfile::tempdir().unwrap();

    // An unpaired key dialing the gRPC ALPN: refused at once, told how to pair.
    let mut cmd = spoke(stranger.path());
    cmd.args(["run", "--hub", &hub.address_ticket(), "hello?"]);
    let started = std::time::Instant::now();
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(6), "{}", done.stderr);
    assert!(
        done.stderr.contains("is not paired with the hub"),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.contains("helix pair <ticket>"),
        "{}",
        done.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refused, not hung"
    );
    assert_eq!(mock.requests(), 0);

    // A ticket works once.
    let ticket = pairing_ticket(&hub, "10m").await;
    let first = tempfile::tempdir().unwrap();
    let mut cmd = spoke(first.path());
    cmd.args(["pair", &ticket]);
    assert_eq!(run_helix(cmd, None).await.code, Some(0));
    let mut cmd = spoke(stranger.path());
    cmd.args(["pair", &ticket]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(6));
    assert!(
        done.stderr.contains("unknown or was already used"),
        "{}",
        done.stderr
    );

    // An expired ticket.
    let short = pairing_ticket(&hub, "1s").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut cmd = spoke(stranger.path());
    cmd.args(["pair", &short]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(6));
    assert!(done.stderr.contains("expired"), "{}", done.stderr);

    // An address ticket grants nothing; garbage is not a ticket.
    let mut cmd = spoke(stranger.path());
    cmd.args(["pair", &hub.address_ticket()]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(2));
    assert!(done.stderr.contains("address ticket"), "{}", done.stderr);
    let mut cmd = spoke(stranger.path());
    cmd.args(["pair", "helixpairnotbase32!"]);
    assert_eq!(run_helix(cmd, None).await.code, Some(2));
    hub.shutdown().await;
}

#[tokio::test]
async fn a_revoked_device_is_cut_off_mid_stream() {
    let mock = MockAnthropic::start(Reply::hang_after(&["started…"])).await;
    let hub = TestHub::start(config_for(&mock)).await;
    let config = tempfile::tempdir().unwrap();
    assert_eq!(pair(&hub, config.path(), "desk", &[]).await.code, Some(0));
    let device = whoami(config.path()).await;

    let mut cmd = spoke(config.path());
    cmd.args(["run", "--hub", "desk", "long job"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(20), stdout.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"started\xe2\x80\xa6");

    let mut cmd = hub_cli(hub.path());
    cmd.args(["devices", "revoke", &device]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert!(
        done.stderr.contains("closed 1 live connection"),
        "{}",
        done.stderr
    );

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
    assert_eq!(status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("revoked"), "{stderr}");

    // And it cannot come back.
    let mut cmd = spoke(config.path());
    cmd.args(["run", "--hub", "desk", "again"]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(6));
    assert!(done.stderr.contains("not paired"), "{}", done.stderr);
    mock.release();
    hub.shutdown().await;
}

#[tokio::test]
async fn a_dropped_connection_resumes_with_byte_identical_output() {
    let words: Vec<String> = (0..60).map(|i| format!("w{i} ")).collect();
    let refs: Vec<&str> = words.iter().map(String::as_str).collect();
    let mock = MockAnthropic::start(Reply::slow(&refs, Duration::from_millis(20))).await;
    let hub = TestHub::start(config_for(&mock)).await;
    let config = tempfile::tempdir().unwrap();
    assert_eq!(pair(&hub, config.path(), "desk", &[]).await.code, Some(0));

    let mut cmd = spoke(config.path());
    cmd.args(["run", "--hub", "desk", "stream a lot"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut printed = Vec::new();
    let mut buf = [0u8; 256];
    while printed.len() < 30 {
        let n = tokio::time::timeout(Duration::from_secs(20), stdout.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "output ended early");
        printed.extend_from_slice(&buf[..n]);
    }
    assert_eq!(
        hub.hub().drop_connections(),
        1,
        "one live connection to drop"
    );
    stdout.read_to_end(&mut printed).await.unwrap();
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
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("reconnecting"), "{stderr}");
    assert!(
        stderr.contains("reconnected; resuming after event"),
        "{stderr}"
    );
    assert_eq!(
        String::from_utf8(printed).unwrap(),
        words.concat(),
        "nothing lost or repeated"
    );
    assert_eq!(mock.requests(), 1, "the command ran once");
    hub.shutdown().await;
}

#[tokio::test]
async fn another_paired_device_watches_the_commands_of_the_first() {
    let mock = MockAnthropic::start(Reply::text(&["ok"])).await;
    let hub = TestHub::start(config_for(&mock)).await;
    let phone = tempfile::tempdir().unwrap();
    let laptop = tempfile::tempdir().unwrap();
    assert_eq!(pair(&hub, phone.path(), "desk", &[]).await.code, Some(0));
    assert_eq!(pair(&hub, laptop.path(), "desk", &[]).await.code, Some(0));
    let laptop_id = whoami(laptop.path()).await;

    let mut cmd = spoke(phone.path());
    cmd.args(["watch", "--json", "--hub", "desk"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut watcher = cmd.spawn().unwrap();
    let mut err_lines = BufReader::new(watcher.stderr.take().unwrap()).lines();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(20), err_lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if line.contains("watching") {
            break;
        }
    }

    let mut cmd = spoke(laptop.path());
    cmd.args(["run", "--hub", "desk", "from the laptop"]);
    let done = run_helix(cmd, None).await;
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (Some(0), "ok"),
        "{}",
        done.stderr
    );

    let mut lines = BufReader::new(watcher.stdout.take().unwrap()).lines();
    let mut statuses = Vec::new();
    while statuses.len() < 3 {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let record: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(record["source_device_id"], laptop_id.as_str());
        statuses.push(record["status"].as_str().unwrap().to_owned());
    }
    assert_eq!(statuses, ["pending", "executing", "completed"]);
    watcher.kill().await.unwrap();
    hub.shutdown().await;
}

#[tokio::test]
async fn a_restarted_hub_keeps_its_id_and_its_devices() {
    let mock = MockAnthropic::start(Reply::text(&["still ", "here"])).await;
    let mut hub = TestHub::start(config_for(&mock)).await;
    let config = tempfile::tempdir().unwrap();
    assert_eq!(pair(&hub, config.path(), "desk", &[]).await.code, Some(0));
    let id_before = hub.hub().hub_id().to_owned();

    hub.restart().await;
    assert_eq!(hub.hub().hub_id(), id_before);
    // Without discovery on loopback the spoke needs the new UDP port: a fresh address
    // ticket. Being recognised as paired is the hub's doing.
    let mut cmd = spoke(config.path());
    cmd.args(["run", "--hub", &hub.address_ticket(), "are you there?"]);
    let done = run_helix(cmd, None).await;
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (Some(0), "still here"),
        "{}",
        done.stderr
    );
    hub.shutdown().await;
}
