//! A device following a command listens on Realtime for UPDATEs of that command's row: while
//! the channel is joined it reads the rows only every few seconds (the safety poll), and an
//! UPDATE makes it read at once.

use std::time::{Duration, Instant};

use helix_spoke::cloud_route::SAFETY_POLL;
use helix_testkit::realtime::MockRealtime;
use serde_json::json;

use super::{
    Live,
    hub::{Device, PlayedHub},
};
use crate::support::{cloud::TestCloud, fault_proxy::FaultProxy};

/// Points the device's cloud settings at Realtime on `realtime` and REST through `rest_url`.
fn use_realtime(device: &Device, cloud: &TestCloud, realtime: &MockRealtime, rest_url: &str) {
    std::fs::write(
        device.dir.path().join("cloud.json"),
        json!({"url": realtime.url(), "anon_key": cloud.config.anon_key, "rest_url": rest_url})
            .to_string(),
    )
    .unwrap();
}

/// Waits until `proxy` has received no request for `quiet`; how many it received.
async fn settled(proxy: &FaultProxy, quiet: Duration) -> usize {
    let mut seen = proxy.received();
    loop {
        tokio::time::sleep(quiet).await;
        let now = proxy.received();
        if now == seen {
            return now;
        }
        seen = now;
    }
}

#[tokio::test]
async fn a_following_device_reads_the_rows_when_realtime_says_its_row_changed() {
    let cloud = TestCloud::start().await;
    let mut realtime = MockRealtime::start().await;
    let hub = PlayedHub::register(&cloud).await;
    let device = Device::new(&cloud, &hub).await;
    let proxy = FaultProxy::start(&cloud.server.url, "/nothing-fails", &[]).await;
    use_realtime(&device, &cloud, &realtime, &proxy.url());

    let run = Live::spawn(device.helix(&["run", "--via", "cloud", "wake me"]));
    let (_, join) = realtime.frame("phx_join").await;
    let row = hub.claim_one().await;
    let id = row["command_id"].as_str().unwrap().to_owned();
    // One subscription: UPDATEs of this command's row, as the device's user.
    let changes = join["payload"]["config"]["postgres_changes"].clone();
    assert_eq!(
        changes,
        json!([{"event": "UPDATE", "schema": "public", "table": "cloud_commands",
                "filter": format!("command_id=eq.{id}")}])
    );
    assert!(
        join["topic"]
            .as_str()
            .unwrap()
            .starts_with("realtime:helix-command-")
    );
    assert!(!join["payload"]["access_token"].as_str().unwrap().is_empty());

    // Joined, the device looks when it joins and then only every SAFETY_POLL.
    let before = settled(&proxy, Duration::from_millis(500)).await;
    let quiet_from = Instant::now();
    let sent = hub.open_command(&row);
    let key = hub.publish(&sent, &device.key, &[&device.key]).await;
    hub.stream(&key, &id, 0, &["woken ", "up"]).await;
    hub.complete(&id, "completed", None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        proxy.received(),
        before,
        "the device read the rows while Realtime was joined and said nothing"
    );

    realtime.push_update(&id).await;
    let done = run.finish().await;
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (Some(0), "woken up"),
        "{}",
        done.stderr
    );
    // Sooner than the safety poll could have found it: the last look was at least the settling
    // time before `quiet_from`, the next one is SAFETY_POLL after it.
    assert!(
        quiet_from.elapsed() < SAFETY_POLL - Duration::from_secs(1),
        "the output came after {:?}: the safety poll found it, not the wake-up",
        quiet_from.elapsed()
    );
}
