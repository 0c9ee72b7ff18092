//! Every paired device reads every command of its hub through the cloud: the one that sent it,
//! another one, and commands the hub mirrored from iroh; a device the hub sealed no key to is
//! told why.

use helix_mesh::proto_ext::now_ms;

use super::{
    Live,
    hub::{Device, PlayedHub, accepted},
};
use crate::support::{cloud::TestCloud, json_lines, json_seqs};

/// Output chunks as a provider streams them: not lines, not ASCII only.
const CHUNKS: [&str; 4] = ["Hello, ", "wörld ✓\n", "\tline two", " ends here\n"];

fn output() -> String {
    CHUNKS.concat()
}

#[tokio::test]
async fn a_command_sent_through_the_cloud_prints_exactly_its_output_on_every_paired_device() {
    let cloud = TestCloud::start().await;
    let hub = PlayedHub::register(&cloud).await;
    let one = Device::new(&cloud, &hub).await;
    let two = Device::new(&cloud, &hub).await;

    let run = Live::spawn(one.helix(&[
        "run",
        "--via",
        "cloud",
        "--session",
        "s1",
        "--model",
        "m1",
        "a secret prompt",
    ]));
    let row = hub.claim_one().await;
    let id = row["command_id"].as_str().unwrap().to_owned();
    assert_eq!(
        (row["hub_id"].as_str(), row["source_device_id"].as_str()),
        (Some(hub.id().as_str()), Some(one.key.to_string().as_str()))
    );
    let sent = hub.open_command(&row);
    assert_eq!(
        (
            sent.content.as_str(),
            sent.agent_id.as_deref(),
            sent.session_id.as_deref(),
            sent.model.as_deref(),
            sent.provider.as_deref()
        ),
        (
            "a secret prompt",
            Some("main"),
            Some("s1"),
            Some("m1"),
            None
        )
    );
    let created = sent.created_at_ms.unwrap();
    assert!(created.abs_diff(u64::try_from(now_ms()).unwrap()) < 60_000);
    assert_eq!(sent.expires_at_ms, Some(created + 3_600_000), "--ttl 1h");

    let mut as_run = sent.clone();
    as_run.provider = Some("anthropic".into());
    as_run.source_device_id = Some(one.key.to_string());
    let key = hub.publish(&as_run, &one.key, &[&one.key, &two.key]).await;
    hub.stream(&key, &id, 0, &CHUNKS).await;
    hub.complete(&id, "completed", None).await;
    let done = run.finish().await;
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (Some(0), output().as_str()),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.contains("sent through the cloud (route cloud)"),
        "{}",
        done.stderr
    );

    // The other device: the same bytes, and the same events by seq.
    let seen = two.attach(&id).await;
    assert_eq!(
        (seen.code, seen.stdout.as_str()),
        (Some(0), done.stdout.as_str()),
        "{}",
        seen.stderr
    );
    let records = two
        .run(&[
            "attach",
            "--via",
            "cloud",
            "--json",
            "--after-seq",
            "2",
            &id,
        ])
        .await;
    assert_eq!(records.code, Some(0), "{}", records.stderr);
    assert_eq!(json_seqs(&records.stdout), vec![3, 4, 5, 6]);
    assert!(
        json_lines(&records.stdout)
            .iter()
            .all(|r| r["command_id"] == id.as_str() && r["route"] == "cloud")
    );
    // Past its last event (`finished`, seq 6): nothing to print, the command's own exit code.
    let past = two
        .run(&["attach", "--via", "cloud", "--after-seq", "6", &id])
        .await;
    assert_eq!(
        (past.code, past.stdout.as_str()),
        (Some(0), ""),
        "{}",
        past.stderr
    );

    // `helix show --via cloud` on the other device: the prompt, decrypted, and the output.
    let shown = two.run(&["show", "--via", "cloud", "--json", &id]).await;
    assert_eq!(shown.code, Some(0), "{}", shown.stderr);
    let command = &json_lines(&shown.stdout)[0];
    assert_eq!(
        (
            command["content"].as_str(),
            command["status"].as_str(),
            command["output"].as_str(),
            command["source_device_id"].as_str(),
            command["session_id"].as_str(),
            command["last_seq"].as_u64(),
        ),
        (
            Some("a secret prompt"),
            Some("completed"),
            Some(output().as_str()),
            Some(one.key.to_string().as_str()),
            Some("s1"),
            Some(6)
        )
    );

    let stored = cloud
        .db
        .admin(
            "select string_agg(t, '') from (select coalesce(envelope, '') || coalesce(prompt, '') as t \
             from cloud_commands union all select envelope from cloud_command_events \
             union all select envelope from cloud_command_keys) e",
        )
        .await;
    for plaintext in ["a secret prompt", "secret", "Hello", "line two"] {
        assert!(
            !stored.contains(plaintext),
            "{plaintext:?} is stored in clear"
        );
    }
}

#[tokio::test]
async fn both_devices_read_a_command_the_hub_mirrored_from_iroh_byte_for_byte() {
    let cloud = TestCloud::start().await;
    let hub = PlayedHub::register(&cloud).await;
    let one = Device::new(&cloud, &hub).await;
    let two = Device::new(&cloud, &hub).await;

    // Device one ran it over iroh; the hub mirrors it: a row of origin `hub`, no envelope.
    let id = uuid::Uuid::new_v4().to_string();
    let key = hub
        .publish(
            &accepted(&id, "over iroh", &one.key),
            &one.key,
            &[&one.key, &two.key],
        )
        .await;
    assert_eq!(
        cloud
            .db
            .admin(&format!(
                "select origin || '|' || status || '|' || (envelope is null) from cloud_commands where command_id = '{id}'"
            ))
            .await,
        "hub|executing|true"
    );

    // Device two follows it live: the first chunk, then the rest as the hub streams it.
    let mut live = Live::spawn(two.helix(&["attach", "--via", "cloud", &id]));
    let started = helix_mesh::cloud_payload::EventKind::started(1);
    let first = helix_mesh::cloud_payload::EventKind::Output {
        text: CHUNKS[0].into(),
    };
    hub.append(
        &id,
        &[
            (1, hub.event(&key, &id, 1, started)),
            (2, hub.event(&key, &id, 2, first)),
        ],
    )
    .await
    .unwrap();
    live.until(CHUNKS[0]).await;
    let rest: Vec<&str> = CHUNKS[1..].to_vec();
    hub.stream(&key, &id, 2, &rest).await;
    hub.complete(&id, "completed", None).await;
    let followed = live.finish().await;
    assert_eq!(
        (followed.code, followed.stdout.as_str()),
        (Some(0), output().as_str()),
        "{}",
        followed.stderr
    );

    let again = one.attach(&id).await;
    assert_eq!(
        (again.code, again.stdout.as_str()),
        (Some(0), followed.stdout.as_str()),
        "{}",
        again.stderr
    );
}

#[tokio::test]
async fn a_device_without_a_key_for_the_command_is_told_why_and_sees_nothing() {
    let cloud = TestCloud::start().await;
    let hub = PlayedHub::register(&cloud).await;
    let one = Device::new(&cloud, &hub).await;
    let id = uuid::Uuid::new_v4().to_string();
    let key = hub
        .publish(
            &accepted(&id, "before you came", &one.key),
            &one.key,
            &[&one.key],
        )
        .await;
    hub.stream(&key, &id, 0, &["only for ", "device one"]).await;
    hub.complete(&id, "completed", None).await;

    // Paired after the command started: the hub sealed it no key.
    let late = Device::new(&cloud, &hub).await;
    let message = format!(
        "helix: error: this device has no key for command {id}: it was paired after the command started, or it is revoked"
    );
    for args in [
        vec!["attach", "--via", "cloud", id.as_str()],
        vec!["show", "--via", "cloud", id.as_str()],
    ] {
        let done = late.run(&args).await;
        assert_eq!(
            (done.code, done.stdout.as_str()),
            (Some(6), ""),
            "{args:?}: {}",
            done.stderr
        );
        assert!(done.stderr.contains(&message), "{args:?}: {}", done.stderr);
    }
    let done = one.attach(&id).await;
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (Some(0), "only for device one")
    );
    // A command the cloud does not have, and an id that is not one.
    let done = late.attach(&uuid::Uuid::new_v4().to_string()).await;
    assert_eq!(done.code, Some(6), "{}", done.stderr);
    assert!(done.stderr.contains("in the cloud"), "{}", done.stderr);
    let done = late.attach("x&select=*").await;
    assert_eq!(done.code, Some(6), "{}", done.stderr);
    assert!(done.stderr.contains("is not a UUID"), "{}", done.stderr);
}

#[tokio::test]
async fn ls_via_cloud_lists_the_hubs_history_and_says_which_prompts_this_device_cannot_open() {
    let cloud = TestCloud::start().await;
    let hub = PlayedHub::register(&cloud).await;
    let one = Device::new(&cloud, &hub).await;
    let two = Device::new(&cloud, &hub).await;

    // Mirrored from iroh, readable by both; then one sealed to device one alone.
    let both = uuid::Uuid::new_v4().to_string();
    let key = hub
        .publish(
            &accepted(&both, "a prompt\nfor everyone", &one.key),
            &one.key,
            &[&one.key, &two.key],
        )
        .await;
    hub.stream(&key, &both, 0, &CHUNKS).await;
    hub.complete(&both, "completed", None).await;
    let only_one = uuid::Uuid::new_v4().to_string();
    hub.publish(
        &accepted(&only_one, "private", &one.key),
        &one.key,
        &[&one.key],
    )
    .await;
    // And one device two sent that the hub has not claimed yet.
    let waiting = Live::spawn(two.helix(&["run", "--via", "cloud", "--detach", "queued prompt"]));
    let waiting = waiting.finish().await;
    assert_eq!(waiting.code, Some(0), "{}", waiting.stderr);
    let waiting_id = waiting.stdout.trim().to_owned();

    let listed = two.run(&["ls", "--via", "cloud"]).await;
    assert_eq!(listed.code, Some(0), "{}", listed.stderr);
    let lines: Vec<&str> = listed.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        4,
        "a header and three commands:\n{}",
        listed.stdout
    );
    // Newest first.
    assert!(lines[1].starts_with(&waiting_id) && lines[1].contains("pending"));
    assert!(lines[1].ends_with("(not yet with the hub)"), "{}", lines[1]);
    assert!(lines[2].starts_with(&only_one) && lines[2].contains("executing"));
    assert!(
        lines[2].ends_with("(sealed: no key on this device)"),
        "{}",
        lines[2]
    );
    assert!(!listed.stdout.contains("private"));
    assert!(lines[3].starts_with(&both) && lines[3].contains("completed"));
    assert!(lines[3].ends_with("a prompt for everyone"), "{}", lines[3]);

    // Device one reads its private prompt; the JSON form and the filters work through the cloud.
    let mine = one
        .run(&["ls", "--via", "cloud", "--json", "--status", "executing"])
        .await;
    assert_eq!(mine.code, Some(0), "{}", mine.stderr);
    let rows = json_lines(&mine.stdout);
    assert_eq!(rows.len(), 1, "{}", mine.stdout);
    assert_eq!(rows[0]["command_id"], only_one.as_str());
    assert_eq!(rows[0]["content"], "private");
    let session = one
        .run(&["ls", "--via", "cloud", "--json", "--session", "s-cloud"])
        .await;
    assert_eq!(json_lines(&session.stdout).len(), 2, "{}", session.stdout);
}
