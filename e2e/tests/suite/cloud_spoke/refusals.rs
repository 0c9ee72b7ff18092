//! What a device refuses of the rows. The cloud (any session of the account, or whoever runs
//! the database) can copy, move, delete and write rows; it cannot seal under a content key as
//! the hub. Each refusal names the seq, exits 1, and prints nothing of that event or after it.

use helix_mesh::{
    cloud_payload::{EventKind, EventPayload},
    envelope_v2::{ContentKey, ContentKind, SealRandom, seal_content, wrap_content_key},
};
use iroh::SecretKey;

use super::hub::{Device, PlayedHub, accepted};
use crate::support::{bins::Finished, cloud::TestCloud};

/// A finished command whose output is `<tag>1 <tag>2 <tag>3 `: seq 1 started, 2–4 the
/// outputs, 5 finished. Its id and content key.
async fn finished(hub: &PlayedHub, device: &Device, tag: &str) -> (String, ContentKey) {
    let id = uuid::Uuid::new_v4().to_string();
    let key = hub
        .publish(
            &accepted(&id, tag, &device.key),
            &device.key,
            &[&device.key],
        )
        .await;
    let texts: Vec<String> = (1..=3).map(|i| format!("{tag}{i} ")).collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    hub.stream(&key, &id, 0, &texts).await;
    hub.complete(&id, "completed", None).await;
    (id, key)
}

/// A command that has streamed seq 1 (started) and 2 (`<tag>1 `) and is still running.
async fn running(hub: &PlayedHub, device: &Device, tag: &str) -> (String, ContentKey) {
    let id = uuid::Uuid::new_v4().to_string();
    let key = hub
        .publish(
            &accepted(&id, tag, &device.key),
            &device.key,
            &[&device.key],
        )
        .await;
    let first = EventKind::Output {
        text: format!("{tag}1 "),
    };
    hub.append(
        &id,
        &[
            (1, hub.event(&key, &id, 1, EventKind::started(1))),
            (2, hub.event(&key, &id, 2, first)),
        ],
    )
    .await
    .unwrap();
    (id, key)
}

/// `helix attach --via cloud ID` was refused at `seq` for `why`, having printed `printed`.
fn refused(done: &Finished, id: &str, seq: u64, why: &str, printed: &str) {
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (Some(1), printed),
        "{}",
        done.stderr
    );
    let message = format!(
        "helix: error: cloud route: refused event {seq} of {id}: {why} (nothing of it was printed, nor anything after it)"
    );
    assert!(
        done.stderr.contains(&message),
        "{}\nnot in:\n{}",
        message,
        done.stderr
    );
}

#[tokio::test]
async fn events_spliced_moved_or_missing_are_refused_by_seq_and_nothing_foreign_is_printed() {
    let cloud = TestCloud::start().await;
    let hub = PlayedHub::register(&cloud).await;
    let device = Device::new(&cloud, &hub).await;
    let (a, _) = finished(&hub, &device, "alpha").await;
    let db = &cloud.db;
    let sql = |q: String| async move { db.admin(&q).await };

    // Spliced: command A's event 3, copied over command B's event 3.
    let (b, _) = finished(&hub, &device, "bravo").await;
    sql(format!(
        "update cloud_command_events set envelope = \
           (select envelope from cloud_command_events where command_id = '{a}' and seq = 3) \
         where command_id = '{b}' and seq = 3"
    ))
    .await;
    let done = device.attach(&b).await;
    refused(
        &done,
        &b,
        3,
        &format!("spliced envelope: it belongs to command {a}, not {b}"),
        "bravo1 ",
    );
    assert!(!done.stdout.contains("alpha") && !done.stderr.contains("alpha2"));

    // Reordered: events 3 and 4 swapped.
    let (c, _) = finished(&hub, &device, "charlie").await;
    sql(format!(
        "update cloud_command_events e set envelope = o.envelope from cloud_command_events o \
         where e.command_id = '{c}' and o.command_id = '{c}' and e.seq in (3, 4) and o.seq = 7 - e.seq"
    ))
    .await;
    refused(
        &device.attach(&c).await,
        &c,
        3,
        "spliced envelope: it carries seq 4 where seq 3 belongs",
        "charlie1 ",
    );

    // Missing in the middle: event 3 deleted.
    let (d, _) = finished(&hub, &device, "delta").await;
    sql(format!(
        "delete from cloud_command_events where command_id = '{d}' and seq = 3"
    ))
    .await;
    refused(
        &device.attach(&d).await,
        &d,
        3,
        "it is missing from the cloud (the next event stored is 4)",
        "delta1 ",
    );

    // Truncated: the last output and `finished` deleted; the row still ends at 5.
    let (e, _) = finished(&hub, &device, "echo").await;
    sql(format!(
        "delete from cloud_command_events where command_id = '{e}' and seq >= 4"
    ))
    .await;
    refused(
        &device.attach(&e).await,
        &e,
        4,
        "it is missing from the cloud (the command's row ends at event 5)",
        "echo1 echo2 ",
    );
    // … and with the row's last_seq lowered to match: completed without `finished`.
    sql(format!(
        "update cloud_commands set last_seq = 3 where command_id = '{e}'"
    ))
    .await;
    refused(
        &device.attach(&e).await,
        &e,
        4,
        "it is missing from the cloud (the command completed, but its events end before it)",
        "echo1 echo2 ",
    );

    // The untouched command still reads in full.
    let done = device.attach(&a).await;
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (Some(0), "alpha1 alpha2 alpha3 ")
    );
}

#[tokio::test]
async fn forged_events_events_of_the_wrong_kind_or_seq_and_forged_keys_are_refused() {
    let cloud = TestCloud::start().await;
    let hub = PlayedHub::register(&cloud).await;
    let device = Device::new(&cloud, &hub).await;
    let forger = SecretKey::generate();
    let payload = |seq: u64| {
        EventPayload {
            seq,
            time_ms: None,
            kind: EventKind::Output {
                text: "FOREIGN TEXT".into(),
            },
        }
        .to_json()
        .unwrap()
    };

    // Signed by another key, naming itself as the hub.
    let (f, key) = running(&hub, &device, "foxtrot").await;
    let forged = seal_content(&forger, &key, ContentKind::Event, &f, 3, &payload(3)).unwrap();
    hub.append(&f, &[(3, forged.clone())]).await.unwrap();
    let done = device.attach(&f).await;
    refused(
        &done,
        &f,
        3,
        "spliced envelope: it names another hub as its signer",
        "foxtrot1 ",
    );

    // Signed by another key, naming the hub: the signature does not hold.
    let (g, key) = running(&hub, &device, "golf").await;
    let forged = seal_content(&forger, &key, ContentKind::Event, &g, 3, &payload(3)).unwrap();
    let mut wire: serde_json::Value = serde_json::from_str(&forged).unwrap();
    wire["hub"] = hub.id().into();
    hub.append(&g, &[(3, wire.to_string())]).await.unwrap();
    refused(
        &device.attach(&g).await,
        &g,
        3,
        "forged envelope: the signature does not match its signer and contents",
        "golf1 ",
    );

    // The hub's own envelope of another kind (a prompt) where an event belongs.
    let (h, key) = running(&hub, &device, "hotel").await;
    let prompt = seal_content(&hub.key, &key, ContentKind::Prompt, &h, 3, &payload(3)).unwrap();
    hub.append(&h, &[(3, prompt)]).await.unwrap();
    refused(
        &device.attach(&h).await,
        &h,
        3,
        "spliced envelope: kind prompt where kind event belongs",
        "hotel1 ",
    );

    // Sealed by the hub for seq 3, but the event inside says 4.
    let (i, key) = running(&hub, &device, "india").await;
    let lying = seal_content(&hub.key, &key, ContentKind::Event, &i, 3, &payload(4)).unwrap();
    hub.append(&i, &[(3, lying)]).await.unwrap();
    refused(
        &device.attach(&i).await,
        &i,
        3,
        "the event inside says seq 4",
        "india1 ",
    );

    // A content key sealed to this device by another key.
    let (j, _) = running(&hub, &device, "juliett").await;
    let wrapped = wrap_content_key(
        &forger,
        &device.key,
        &j,
        &ContentKey::generate(),
        &SealRandom::fresh(),
    )
    .unwrap();
    cloud
        .db
        .admin(&format!(
            "update cloud_command_keys set envelope = $${wrapped}$$ where command_id = '{j}'"
        ))
        .await;
    let done = device.attach(&j).await;
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (Some(1), ""),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.contains(&format!(
            "helix: error: cloud route: refused the content key of {j}: envelope sender"
        )),
        "{}",
        done.stderr
    );
}
