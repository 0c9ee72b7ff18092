//! `helix pair` as a person uses it: the ticket pasted on stdin or read from a file (never in
//! argv), a "hub" that takes the connection and never answers, and a device that guesses
//! wrong secrets without stopping anyone else from pairing.

use std::time::{Duration, Instant};

use helix_mesh::{
    ticket::{PairingSecret, Ticket},
    transport::ALPN_PAIR,
};
use iroh::SecretKey;

use crate::support::{
    TestHub,
    bins::{pairing_ticket, run_helix, spoke},
    config_for, loopback_endpoint,
    mock_anthropic::{MockAnthropic, Reply},
};

/// A pairing ticket for `hub` whose secret is made up: every use is a wrong attempt.
fn wrong_ticket(hub: &TestHub, seed: u8) -> String {
    let Ok(Ticket::Hub(addr)) = Ticket::decode(&hub.address_ticket()) else {
        panic!("not an address ticket");
    };
    Ticket::Pair {
        addr,
        secret: PairingSecret([seed; 32]),
    }
    .encode()
}

#[tokio::test]
async fn a_ticket_pasted_on_stdin_or_read_from_a_file_pairs_and_the_hint_says_how() {
    let mock = MockAnthropic::start(Reply::text(&["x"])).await;
    let hub = TestHub::start(config_for(&mock)).await;

    // The hub's hint names the ways that keep the secret out of argv.
    let mut cmd = crate::support::bins::hub_cli(hub.path());
    cmd.args(["pair", "--ttl", "10m"]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert!(
        done.stderr.contains("helix pair < FILE") && done.stderr.contains("--ticket-file"),
        "{}",
        done.stderr
    );

    // Piped in, with the line ending and spaces a paste brings.
    let ticket = pairing_ticket(hub.path(), &[]).await;
    let piped = tempfile::tempdir().unwrap();
    let mut cmd = spoke(piped.path());
    cmd.args(["pair", "--name", "desk"]);
    let done = run_helix(cmd, Some(&format!("  {ticket}\n"))).await;
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (Some(0), "desk\n"),
        "{}",
        done.stderr
    );

    // `-` reads stdin as well.
    let ticket = pairing_ticket(hub.path(), &[]).await;
    let dashed = tempfile::tempdir().unwrap();
    let mut cmd = spoke(dashed.path());
    cmd.args(["pair", "-", "--name", "desk"]);
    let done = run_helix(cmd, Some(&ticket)).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);

    // From a file.
    let ticket = pairing_ticket(hub.path(), &[]).await;
    let filed = tempfile::tempdir().unwrap();
    let file = filed.path().join("ticket.txt");
    std::fs::write(&file, format!("{ticket}\n")).unwrap();
    let mut cmd = spoke(filed.path());
    cmd.args(["pair", "--ticket-file"])
        .arg(&file)
        .args(["--name", "desk"]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);

    // Each of the three is a paired device now.
    let mut cmd = crate::support::bins::hub_cli(hub.path());
    cmd.args(["devices", "list", "--json"]);
    let listed = run_helix(cmd, None).await;
    assert_eq!(listed.code, Some(0), "{}", listed.stderr);
    assert_eq!(listed.stdout.lines().count(), 3, "{}", listed.stdout);

    // Nothing on stdin, a missing file: usage errors that say what to do.
    let empty = tempfile::tempdir().unwrap();
    let mut cmd = spoke(empty.path());
    cmd.arg("pair");
    let done = run_helix(cmd, Some("")).await;
    assert_eq!(done.code, Some(2), "{}", done.stderr);
    assert!(
        done.stderr.contains("no pairing ticket on stdin") && done.stderr.contains("helix pair <"),
        "{}",
        done.stderr
    );
    let mut cmd = spoke(empty.path());
    cmd.args(["pair", "--ticket-file"])
        .arg(empty.path().join("nope.txt"));
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(2), "{}", done.stderr);
    assert!(
        done.stderr.contains("reading the pairing ticket from"),
        "{}",
        done.stderr
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn a_peer_that_takes_the_pairing_connection_and_never_answers_does_not_hang_helix() {
    // Accepts `helix/pair/1` and its stream, reads the request, and says nothing.
    let silent = loopback_endpoint(SecretKey::generate(), &[ALPN_PAIR]).await;
    let addr = silent.addr();
    let server = silent.clone();
    tokio::spawn(async move {
        let conn = server.accept().await.unwrap().await.unwrap();
        let (_send, mut recv) = conn.accept_bi().await.unwrap();
        let _ = recv.read_to_end(1 << 16).await;
        conn.closed().await;
    });
    let ticket = Ticket::Pair {
        addr,
        secret: PairingSecret([3; 32]),
    }
    .encode();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = spoke(dir.path());
    cmd.args(["--connect-timeout", "1s", "pair", "--via", "iroh"]);
    let started = Instant::now();
    let done = run_helix(cmd, Some(&ticket)).await;
    assert_eq!(done.code, Some(3), "{}", done.stderr);
    assert!(
        done.stderr
            .contains("the hub did not answer the pairing request within 1s"),
        "{}",
        done.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    silent.close().await;
}

#[tokio::test]
async fn wrong_secrets_from_one_device_do_not_stop_another_from_pairing() {
    let mock = MockAnthropic::start(Reply::text(&["x"])).await;
    let hub = TestHub::start(config_for(&mock)).await;
    let guesser = tempfile::tempdir().unwrap();
    // Six wrong guesses: the sixth is told to wait.
    let mut last = None;
    for seed in 0..6 {
        let mut cmd = spoke(guesser.path());
        cmd.args(["pair", "--via", "iroh"]);
        last = Some(run_helix(cmd, Some(&wrong_ticket(&hub, seed))).await);
    }
    let last = last.unwrap();
    assert_eq!(last.code, Some(6), "{}", last.stderr);
    assert!(
        last.stderr
            .contains("too many wrong pairing attempts from this device"),
        "{}",
        last.stderr
    );

    // Another device with the real ticket pairs at once; so does the guesser with one.
    let owner = tempfile::tempdir().unwrap();
    let mut cmd = spoke(owner.path());
    cmd.args(["pair", "--via", "iroh", "--name", "desk"]);
    let done = run_helix(cmd, Some(&pairing_ticket(hub.path(), &[]).await)).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    let mut cmd = spoke(guesser.path());
    cmd.args(["pair", "--via", "iroh", "--name", "desk"]);
    let done = run_helix(cmd, Some(&pairing_ticket(hub.path(), &[]).await)).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    hub.shutdown().await;
}
