//! How a command ends for the device that follows it when the row ends first: cancelled or
//! expired before the hub claimed it, refused by the hub (its reason printed without what
//! would act on a terminal), cancelled with Ctrl-C; and what sending says when the hub never
//! registered under the account, or the command would wait longer than the cloud keeps it.

use std::time::{Duration, Instant};

use helix_mesh::cloud_payload::EventKind;

use super::{
    Live,
    hub::{Device, PlayedHub},
};
use crate::support::{cloud::TestCloud, json_lines};

/// `status|reason` of a row.
async fn row(cloud: &TestCloud, id: &str) -> String {
    cloud
        .db
        .admin(&format!(
            "select status || '|' || coalesce(reason, '') from cloud_commands where command_id = '{id}'"
        ))
        .await
}

/// Sends `prompt` with `--detach` (and `extra` flags); the id.
async fn detached(device: &Device, extra: &[&str], prompt: &str) -> String {
    let mut args = vec!["run", "--via", "cloud", "--detach"];
    args.extend_from_slice(extra);
    args.push(prompt);
    let done = device.run(&args).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    done.stdout.lines().last().unwrap().to_owned()
}

#[tokio::test]
async fn rows_that_end_before_the_hub_publishes_print_their_reason() {
    let cloud = TestCloud::start().await;
    let hub = PlayedHub::register(&cloud).await;
    let device = Device::new(&cloud, &hub).await;

    // Cancelled before the hub claimed it.
    let id = detached(&device, &[], "never mind").await;
    let done = device.run(&["cancel", "--via", "cloud", &id]).await;
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (Some(0), "cancelled\n"),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.contains(&format!(
            "cancelled {id} in the cloud before the hub claimed it"
        )),
        "{}",
        done.stderr
    );
    assert_eq!(
        row(&cloud, &id).await,
        "cancelled|cancelled with `helix cancel`"
    );
    let done = device.attach(&id).await;
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (Some(4), ""),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr
            .contains("helix: command cancelled: cancelled with `helix cancel`"),
        "{}",
        done.stderr
    );

    // Expired before the hub claimed it: the hub's next claim round says so.
    let id = detached(&device, &["--ttl", "1s"], "too late").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while cloud
        .db
        .admin(&format!(
            "select expires_at <= now() from cloud_commands where command_id = '{id}'"
        ))
        .await
        != "t"
    {
        assert!(Instant::now() < deadline, "the row never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(hub.claim().await.is_empty());
    assert_eq!(
        row(&cloud, &id).await,
        "expired|expired before the hub claimed it"
    );
    let done = device.attach(&id).await;
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (Some(5), ""),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr
            .contains("helix: command expired: expired before the hub claimed it"),
        "{}",
        done.stderr
    );

    // Refused by the hub while the device follows it; the reason is cloud text.
    let live = Live::spawn(device.helix(&["run", "--via", "cloud", "not for you"]));
    let claimed = hub.claim_one().await;
    let id = claimed["command_id"].as_str().unwrap().to_owned();
    hub.complete(
        &id,
        "failed",
        Some("envelope sender abc is not a paired device\u{1b}]0;owned\u{7}\u{1b}[2J"),
    )
    .await;
    let done = live.finish().await;
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (Some(1), ""),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.contains(
            "helix: command failed: envelope sender abc is not a paired device]0;owned[2J\n"
        ),
        "{:?}",
        done.stderr
    );
    assert!(!done.stderr.contains('\u{1b}'), "{:?}", done.stderr);
    let shown = device.run(&["show", "--via", "cloud", "--json", &id]).await;
    assert_eq!(shown.code, Some(0), "{}", shown.stderr);
    let command = &json_lines(&shown.stdout)[0];
    assert_eq!(
        (command["status"].as_str(), command["error"].as_str()),
        (
            Some("failed"),
            Some("envelope sender abc is not a paired device]0;owned[2J")
        )
    );
}

#[tokio::test]
async fn ctrl_c_cancels_through_cancel_cloud_command_and_exits_130() {
    let cloud = TestCloud::start().await;
    let hub = PlayedHub::register(&cloud).await;
    let device = Device::new(&cloud, &hub).await;

    let mut live = Live::spawn(device.helix(&["run", "--via", "cloud", "a long job"]));
    let claimed = hub.claim_one().await;
    let id = claimed["command_id"].as_str().unwrap().to_owned();
    let payload = hub.open_command(&claimed);
    let key = hub.publish(&payload, &device.key, &[&device.key]).await;
    let thinking = EventKind::Output {
        text: "thinking ".into(),
    };
    hub.append(
        &id,
        &[
            (1, hub.event(&key, &id, 1, EventKind::started(1))),
            (2, hub.event(&key, &id, 2, thinking)),
        ],
    )
    .await
    .unwrap();
    live.until("thinking ").await;

    live.interrupt();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !row(&cloud, &id).await.starts_with("cancelled|") {
        assert!(Instant::now() < deadline, "the row was never cancelled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        row(&cloud, &id).await,
        "cancelled|cancelled with Ctrl-C on the device"
    );
    // The hub notices at its next append.
    let late = hub.event(
        &key,
        &id,
        3,
        EventKind::Output {
            text: "more".into(),
        },
    );
    let refused = hub.append(&id, &[(3, late)]).await.unwrap_err();
    assert_eq!(refused.code(), Some("P0002"), "{refused}");

    let done = live.finish().await;
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (Some(130), "thinking "),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr
            .contains(&format!("cancelling command {id} through the cloud")),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr
            .contains("helix: command cancelled: cancelled with Ctrl-C on the device"),
        "{}",
        done.stderr
    );
}

#[tokio::test]
async fn sending_to_a_hub_that_never_registered_says_what_to_do_and_stores_nothing() {
    let cloud = TestCloud::start().await;
    let hub = PlayedHub::unregistered(&cloud).await;
    let device = Device::new(&cloud, &hub).await;
    let done = device.run(&["run", "--via", "cloud", "hello?"]).await;
    assert_eq!(done.code, Some(6), "{}", done.stderr);
    assert!(
        done.stderr.contains(&format!(
            "helix: error: hub {} has not connected to the cloud under this account: on the hub run `helix-hub cloud login` with the same account, then restart it",
            hub.key.public().fmt_short()
        )),
        "{}",
        done.stderr
    );

    // Longer than the cloud keeps a command: refused before anything is sent.
    let registered = PlayedHub::register(&cloud).await;
    let device = Device::new(&cloud, &registered).await;
    let done = device
        .run(&["run", "--via", "cloud", "--ttl", "25h", "hello?"])
        .await;
    assert_eq!(done.code, Some(2), "{}", done.stderr);
    assert!(
        done.stderr.contains(
            "helix: error: the cloud route keeps a command at most 24h, not 1day 1h: pass --ttl 24h or less"
        ),
        "{}",
        done.stderr
    );
    assert_eq!(
        cloud.db.admin("select count(*) from cloud_commands").await,
        "0"
    );
}
