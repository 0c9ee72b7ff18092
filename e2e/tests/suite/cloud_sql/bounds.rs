//! M3: every text is bounded in bytes, not characters (`é` is 2 bytes, `€` 3), arrays in
//! count and element bytes, appends per call, and what one account may store.

use super::{
    DEVICE_1, HUB, TOKEN, append_sql, claim, events, key, publish_sql, refused, register, send,
    uuid,
};
use crate::support::pg::{ALICE, BOB, TestDb};

/// `announce_cloud_hub` with SQL expressions for its name, relay, addresses, providers, version.
fn announce(name: &str, relay: &str, addrs: &str, providers: &str, version: &str) -> String {
    format!(
        "select announce_cloud_hub('{HUB}', '{TOKEN}', {name}, {relay}, {addrs}, {providers}, {version})"
    )
}

/// The largest envelope, prompt or event a row holds, in bytes.
const MAX_ENVELOPE: usize = 1_489_576;

#[tokio::test]
async fn presence_is_bounded_in_bytes_and_elements() {
    let db = TestDb::create().await;
    register(&db, ALICE, HUB, TOKEN).await.unwrap();
    let (n, r, a, p, v) = ("'desk'", "'https://relay'", "'{}'", "'{}'", "'1.0'");
    let over = [
        // 65 characters, 130 bytes.
        announce("repeat('é', 65)", r, a, p, v),
        announce(n, "repeat('é', 257)", a, p, v),
        announce(n, r, a, p, "repeat('é', 33)"),
        announce(n, r, "array_fill('192.0.2.1:1'::text, array[33])", p, v),
        announce(n, r, "array[repeat('é', 33)]", p, v),
        announce(n, r, a, "array_fill('anthropic'::text, array[17])", v),
        announce(n, r, a, "array[repeat('é', 17)]", v),
    ];
    for sql in over {
        assert_eq!(
            refused(db.as_user(Some(ALICE), &sql).await),
            "23514",
            "{sql}"
        );
    }
    let n_present = db.admin("select count(*) from cloud_presence").await;
    assert_eq!(n_present, "0");
    // Exactly at every bound is fine.
    let at = announce(
        "repeat('é', 64)",
        "repeat('é', 256)",
        "array_fill(repeat('é', 32), array[32])",
        "array_fill(repeat('é', 16), array[16])",
        "repeat('é', 32)",
    );
    db.as_user(Some(ALICE), &at).await.unwrap();
    let stored = db
        .as_user(Some(ALICE), "select octet_length(hub_name) || '|' || octet_length(relay_url) || '|' || \
             cardinality(direct_addrs) || '|' || cardinality(providers) || '|' || octet_length(version) \
             from online_cloud_hubs(300)")
        .await
        .unwrap();
    assert_eq!(stored, "128|512|32|16|64");

    // One user has at most 16 hubs (so at most 16 presence rows); another user is not limited
    // by her count.
    for i in 2..=16 {
        let hub = format!("{i:064x}");
        register(&db, ALICE, &hub, TOKEN).await.unwrap();
    }
    let one_more = format!("{:064x}", 17);
    assert_eq!(
        refused(register(&db, ALICE, &one_more, TOKEN).await),
        "54000"
    );
    register(&db, ALICE, HUB, TOKEN).await.unwrap();
    register(&db, BOB, &one_more, TOKEN).await.unwrap();
    let count = db
        .admin(&format!(
            "select count(*) from cloud_hubs where user_id = '{ALICE}'"
        ))
        .await;
    assert_eq!(count, "16");
}

#[tokio::test]
async fn commands_keys_and_reasons_are_bounded_in_bytes() {
    let db = TestDb::create().await;
    register(&db, ALICE, HUB, TOKEN).await.unwrap();
    let insert = |envelope: &str| {
        format!(
            "insert into cloud_commands (command_id, hub_id, source_device_id, envelope, expires_at) \
             values ('{}', '{HUB}', '{DEVICE_1}', {envelope}, now() + interval '1 hour')",
            uuid()
        )
    };
    // Fewer characters than the bound, more bytes.
    let over = insert(&format!("repeat('é', {})", MAX_ENVELOPE / 2 + 1));
    assert_eq!(refused(db.as_user(Some(ALICE), &over).await), "23514");
    db.as_user(
        Some(ALICE),
        &insert(&format!("repeat('x', {MAX_ENVELOPE})")),
    )
    .await
    .unwrap();

    let id = send(&db, ALICE, HUB).await;
    let claimed = claim(&db, ALICE, HUB, TOKEN).await.unwrap();
    assert_eq!(claimed.lines().count(), 2);
    // A key envelope over 2048 bytes (1025 characters), a bad device id, too many keys.
    let big_key = format!("[{}]", key(DEVICE_1, &"é".repeat(1025)));
    let bad_device = format!("[{}]", key("D1", "k"));
    let devices: Vec<String> = (0..65).map(|i| key(&format!("{i:064x}"), "k")).collect();
    let too_many = format!("[{}]", devices.join(","));
    for (keys, code) in [
        (big_key, "23514"),
        (bad_device, "23514"),
        (too_many, "54000"),
    ] {
        let sql = publish_sql(HUB, TOKEN, &id, "p", &keys);
        assert_eq!(
            refused(db.as_user(Some(ALICE), &sql).await),
            code,
            "{keys:.80}"
        );
    }
    let prompt_over = format!(
        "select publish_cloud_command('{HUB}', '{TOKEN}', '{id}', '{DEVICE_1}', repeat('é', {}), '[]')",
        MAX_ENVELOPE / 2 + 1
    );
    assert_eq!(
        refused(db.as_user(Some(ALICE), &prompt_over).await),
        "23514"
    );
    let keys = format!("[{}]", devices[..64].join(","));
    db.as_user(Some(ALICE), &publish_sql(HUB, TOKEN, &id, "p", &keys))
        .await
        .unwrap();
    let n = db
        .admin(&format!(
            "select count(*) from cloud_command_keys where command_id = '{id}'"
        ))
        .await;
    assert_eq!(n, "64", "nothing of a refused call was kept");

    // A reason is cut to 1024 bytes on a character boundary: 400 × '€' (3 bytes) → 341.
    let ended = db
        .as_user(
            Some(ALICE),
            &format!(
                "select octet_length(reason) || '|' || char_length(reason) from \
             complete_cloud_command('{HUB}', '{TOKEN}', '{id}', 'failed', repeat('€', 400))"
            ),
        )
        .await
        .unwrap();
    assert_eq!(ended, "1023|341");
    let cancelled = send(&db, ALICE, HUB).await;
    let row = db
        .as_user(Some(ALICE), &format!(
            "select octet_length(reason) from cancel_cloud_command('{cancelled}', repeat('é', 2000))"
        ))
        .await
        .unwrap();
    assert_eq!(row, "1024");
}

#[tokio::test]
async fn appends_are_bounded_per_call_and_per_command() {
    let db = TestDb::create().await;
    register(&db, ALICE, HUB, TOKEN).await.unwrap();
    let id = send(&db, ALICE, HUB).await;
    claim(&db, ALICE, HUB, TOKEN).await.unwrap();
    let append = |events: &str| append_sql(HUB, TOKEN, &id, events);
    // 65 events in one call: 54000; 64: fine.
    assert_eq!(
        refused(db.as_user(Some(ALICE), &append(&events(1, 65))).await),
        "54000"
    );
    let last = db
        .as_user(Some(ALICE), &append(&events(1, 64)))
        .await
        .unwrap();
    assert_eq!(last, "64");
    // Over 4 MiB of envelopes in one call: 54000 (three of the largest); two are fine.
    let big = |seqs: std::ops::RangeInclusive<u32>| {
        let list: Vec<String> = seqs
            .map(|s| {
                format!("jsonb_build_object('seq', {s}, 'envelope', repeat('x', {MAX_ENVELOPE}))")
            })
            .collect();
        format!(
            "select append_cloud_events('{HUB}', '{TOKEN}', '{id}', jsonb_build_array({}))",
            list.join(", ")
        )
    };
    assert_eq!(
        refused(db.as_user(Some(ALICE), &big(65..=67)).await),
        "54000"
    );
    let last = db.as_user(Some(ALICE), &big(65..=66)).await.unwrap();
    assert_eq!(last, "66");
    // One event over its own byte bound, in fewer characters.
    let one = format!(
        "select append_cloud_events('{HUB}', '{TOKEN}', '{id}', jsonb_build_array(\
         jsonb_build_object('seq', 67, 'envelope', repeat('é', {}))))",
        MAX_ENVELOPE / 2 + 1
    );
    assert_eq!(refused(db.as_user(Some(ALICE), &one).await), "23514");
    // Badly formed batches: 22023.
    for bad in [
        r#"{"seq":67,"envelope":"e"}"#.to_owned(),
        r#"[{"seq":67,"envelope":"e"},{"seq":69,"envelope":"e"}]"#.into(),
        r#"[{"seq":67}]"#.into(),
        r#"[{"seq":0,"envelope":"e"}]"#.into(),
        events(68, 68),
    ] {
        assert_eq!(
            refused(db.as_user(Some(ALICE), &append(&bad)).await),
            "22023",
            "{bad}"
        );
    }
    let empty = db.as_user(Some(ALICE), &append("[]")).await.unwrap();
    assert_eq!(empty, "66");

    // At most 65536 events per command.
    db.admin(&format!(
        "update cloud_commands set last_seq = 65500 where command_id = '{id}'"
    ))
    .await;
    let last = db
        .as_user(Some(ALICE), &append(&events(65501, 65536)))
        .await
        .unwrap();
    assert_eq!(last, "65536");
    assert_eq!(
        refused(
            db.as_user(Some(ALICE), &append(&events(65537, 65537)))
                .await
        ),
        "54000"
    );
    let row = db
        .admin(&format!(
            "select last_seq from cloud_commands where command_id = '{id}'"
        ))
        .await;
    assert_eq!(row, "65536");
}

#[tokio::test]
async fn an_account_holds_at_most_64_unexpired_pending_commands() {
    let db = TestDb::create().await;
    register(&db, ALICE, HUB, TOKEN).await.unwrap();
    let many = |n: u32| {
        format!(
            "insert into cloud_commands (command_id, hub_id, source_device_id, envelope, expires_at) \
             select gen_random_uuid(), '{HUB}', '{DEVICE_1}', 'x', now() + interval '1 hour' \
             from generate_series(1, {n}) returning 1"
        )
    };
    // 65 at once is refused as a whole; 64 fit; one more does not.
    assert_eq!(refused(db.as_user(Some(ALICE), &many(65)).await), "54000");
    let inserted = db.as_user(Some(ALICE), &many(64)).await.unwrap();
    assert_eq!(inserted.lines().count(), 64);
    let err = db.as_user(Some(ALICE), &many(1)).await;
    assert_eq!(refused(err.clone()), "54000");
    assert!(err.unwrap_err().contains("64 commands waiting"));
    // Bob's account is not affected.
    register(&db, BOB, HUB, TOKEN).await.unwrap();
    send(&db, BOB, HUB).await;
    // A command the hub takes, or the device cancels, frees its place.
    let taken = db
        .as_user(
            Some(ALICE),
            &format!("select count(*) from claim_cloud_commands('{HUB}', '{TOKEN}', 2)"),
        )
        .await
        .unwrap();
    assert_eq!(taken, "2");
    let inserted = db.as_user(Some(ALICE), &many(2)).await.unwrap();
    assert_eq!(inserted.lines().count(), 2);
    assert_eq!(refused(db.as_user(Some(ALICE), &many(1)).await), "54000");
    let one = db
        .as_user(
            Some(ALICE),
            "select command_id from cloud_commands where status = 'pending' limit 1",
        )
        .await
        .unwrap();
    db.as_user(
        Some(ALICE),
        &format!("select cancel_cloud_command('{one}', 'x')"),
    )
    .await
    .unwrap();
    send(&db, ALICE, HUB).await;
    let pending = db
        .admin(&format!(
            "select count(*) from cloud_commands where user_id = '{ALICE}' and status = 'pending'"
        ))
        .await;
    assert_eq!(pending, "64");
    // A command that expired while it waited (its hub was away) holds no place: the device
    // may send again before the hub comes back and marks it expired.
    db.admin(&format!(
        "update cloud_commands set created_at = now() - interval '2 hours', expires_at = now() - interval '1 second' \
         where command_id = (select command_id from cloud_commands where user_id = '{ALICE}' and status = 'pending' limit 1)"
    ))
    .await;
    send(&db, ALICE, HUB).await;
    assert_eq!(refused(db.as_user(Some(ALICE), &many(1)).await), "54000");
    // Mirrored commands (created executing by the hub) are not held to the pending cap.
    let mirrored = db
        .as_user(Some(ALICE), &publish_sql(HUB, TOKEN, &uuid(), "p", "[]"))
        .await
        .unwrap();
    assert_eq!(mirrored, "hub|executing|p");
}
