//! The route `helix` reports while a command streams over iroh. A spoke that knows only the
//! hub's id and relay starts on the relay, then iroh hole-punches a direct path on loopback:
//! the CLI says so on stderr as it happens (`route iroh-relay → direct after N s`), the events
//! after it name the new route, and the `finished` record's `route_history` tells the whole
//! story. Everything stays on loopback (a local relay, UDP on 127.0.0.1).

use std::{process::Stdio, time::Duration};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::support::{
    LocalRelay, TEST_TIMEOUT, TestHub,
    bins::{run_helix, spoke},
    config_for, json_lines,
    mock_anthropic::{MockAnthropic, Reply},
};

#[tokio::test]
async fn a_relayed_start_that_turns_direct_is_reported_as_it_happens_and_at_the_end() {
    let relay = LocalRelay::start().await;
    // The answer waits after its first chunk until the test has seen the route change.
    let mock = MockAnthropic::start(Reply::hang_after(&["relayed, "])).await;
    let mut config = config_for(&mock);
    config.iroh = helix_hub::config::IrohConfig::loopback(&relay.url);
    let hub = TestHub::start(config).await;
    let spoke_dir = tempfile::tempdir().unwrap();
    let relay_args = ["--relay-url", relay.url.as_str()];
    let ticket = crate::support::bins::pairing_ticket(hub.path(), &[]).await;
    let mut cmd = spoke(spoke_dir.path());
    cmd.args(relay_args)
        .args(["pair", &ticket, "--name", "desk"]);
    let paired = run_helix(cmd, None).await;
    assert_eq!(paired.code, Some(0), "{}", paired.stderr);

    // The hub's id and its relay, no direct address: the first path can only be the relay's.
    let relayed = iroh::EndpointAddr::new(hub.hub().endpoint_addr().unwrap().id)
        .with_relay_url(relay.url.parse().unwrap());
    let relayed = helix_mesh::ticket::Ticket::Hub(relayed).encode();
    let mut cmd = spoke(spoke_dir.path());
    cmd.args(relay_args)
        .args(["run", "--hub", &relayed, "--json", "hello"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let records = tokio::spawn(async move {
        let mut text = String::new();
        stdout.read_to_string(&mut text).await.unwrap();
        text
    });
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let change = loop {
        let line = tokio::time::timeout(TEST_TIMEOUT, stderr.next_line())
            .await
            .unwrap_or_else(|_| panic!("no route change within {TEST_TIMEOUT:?}: {seen:#?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("helix ended without a route change: {seen:#?}"));
        if line.starts_with("helix: route ") {
            break line;
        }
        seen.push(line);
    };
    assert!(
        seen.iter()
            .any(|l| l.starts_with("helix: connected to hub ") && l.ends_with("(route iroh-relay)")),
        "{seen:#?}"
    );
    let after = change
        .strip_prefix("helix: route iroh-relay → direct after ")
        .and_then(|rest| rest.strip_suffix(" s"))
        .unwrap_or_else(|| panic!("{change:?}"));
    let (whole, tenths) = after.split_once('.').unwrap();
    assert!(
        whole.parse::<u64>().is_ok() && tenths.len() == 1 && tenths.parse::<u8>().is_ok(),
        "one decimal: {change:?}"
    );

    // The rest of the answer comes now, on the direct path.
    mock.release();
    let mut rest = String::new();
    while let Some(line) = stderr.next_line().await.unwrap() {
        rest.push_str(&line);
        rest.push('\n');
    }
    let status = tokio::time::timeout(TEST_TIMEOUT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0), "{seen:#?}\n{rest}");
    assert!(!rest.contains("helix: route "), "one change only: {rest}");
    let records = json_lines(&records.await.unwrap());
    // Each record names the route it came by: the relay's until the change, direct after it.
    let routes: Vec<&str> = records
        .iter()
        .map(|r| r["route"].as_str().unwrap())
        .collect();
    let relayed = routes.iter().take_while(|r| **r == "iroh-relay").count();
    assert!(
        relayed < routes.len() && routes[relayed..].iter().all(|r| *r == "direct"),
        "{routes:?}"
    );
    let finished = records.last().unwrap();
    assert_eq!(
        (finished["type"].as_str(), finished["status"].as_str()),
        (Some("finished"), Some("completed"))
    );
    let history = &finished["route_history"];
    assert_eq!(
        (history["at_start"].as_str(), history["at_end"].as_str()),
        (Some("iroh-relay"), Some("direct")),
        "{history}"
    );
    let changes = history["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{history}");
    assert_eq!(
        (changes[0]["from"].as_str(), changes[0]["to"].as_str()),
        (Some("iroh-relay"), Some("direct"))
    );
    // The line and the record tell the same time: the line rounds it to a tenth.
    let after_ms = changes[0]["after_ms"].as_u64().unwrap();
    let line_ms = (after.parse::<f64>().unwrap() * 1000.0).round() as u64;
    assert!(
        after_ms.abs_diff(line_ms) <= 50,
        "{after_ms} ms vs {change:?}"
    );
    let text: String = records.iter().filter_map(|r| r["text"].as_str()).collect();
    assert_eq!(text, "relayed, ");

    // `helix hubs` names the path selected as it prints: the saved addresses go direct.
    let mut cmd = spoke(spoke_dir.path());
    cmd.args(relay_args).args(["hubs", "--json"]);
    let hubs = json_lines(&run_helix(cmd, None).await.stdout);
    assert_eq!(
        (
            hubs.len(),
            hubs[0]["reachable"].as_bool(),
            hubs[0]["route"].as_str()
        ),
        (1, Some(true), history["at_end"].as_str())
    );
    hub.shutdown().await;
}

/// Without a relay there is nothing to move from: no route line, and a history without changes.
#[tokio::test]
async fn a_direct_command_reports_no_change() {
    let mock =
        MockAnthropic::start(Reply::slow(&["a ", "b ", "c"], Duration::from_millis(20))).await;
    let hub = TestHub::start(config_for(&mock)).await;
    let spoke_dir = tempfile::tempdir().unwrap();
    let ticket = crate::support::bins::pairing_ticket(hub.path(), &[]).await;
    let mut cmd = spoke(spoke_dir.path());
    cmd.args(["pair", &ticket, "--name", "desk"]);
    assert_eq!(run_helix(cmd, None).await.code, Some(0));

    let mut cmd = spoke(spoke_dir.path());
    cmd.args(["run", "--hub", "desk", "--json", "hello"]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert!(
        done.stderr.contains("connected to hub desk (route direct)"),
        "{}",
        done.stderr
    );
    assert!(!done.stderr.contains("helix: route "), "{}", done.stderr);
    let records = json_lines(&done.stdout);
    let finished = records.last().unwrap();
    assert_eq!(finished["type"], "finished");
    assert_eq!(
        finished["route_history"],
        serde_json::json!({"at_start": "direct", "at_end": "direct", "changes": []})
    );
    hub.shutdown().await;
}
