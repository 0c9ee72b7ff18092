//! The Supabase migrations on real PostgreSQL: they apply on a Supabase-like bootstrap that
//! grants nothing by default, row-level security keeps every row to its user, claims are
//! atomic under concurrency, event appends keep order, completion is idempotent, expired
//! commands stay unclaimed. What users may change only through the functions:
//! `supabase_functions.rs`. (Through the REST server: `supabase_rest.rs`.)

use std::collections::HashMap;

use crate::support::pg::{ALICE, BOB, TestDb};

pub(crate) const HUB_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
pub(crate) const DEVICE_A: &str =
    "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";

/// SQL inserting a command for `hub`, from device A, expiring at `expires`.
pub(crate) fn insert_command(id: &str, hub: &str, expires: &str) -> String {
    format!(
        "insert into remote_commands (command_id, source_device_id, target_hub_id, envelope, expires_at) \
         values ('{id}', '{DEVICE_A}', '{hub}', 'c2VhbGVkIGVudmVsb3Bl', {expires}) returning command_id"
    )
}

pub(crate) fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[tokio::test]
async fn rls_keeps_every_row_to_its_user() {
    let db = TestDb::create().await;
    // Alice's hub announces itself (the server sets last_seen, whatever the client sends).
    let seen = db
        .as_user(Some(ALICE), &format!(
            "insert into hub_presence (hub_id, hub_name, direct_addrs, last_seen) values ('{HUB_A}', 'desk', '{{127.0.0.1:1}}', '2000-01-01') returning extract(year from last_seen)"
        ))
        .await
        .unwrap();
    assert_ne!(seen, "2000");
    let id = uuid();
    db.as_user(
        Some(ALICE),
        &insert_command(&id, HUB_A, "now() + interval '1 hour'"),
    )
    .await
    .unwrap();

    // Bob sees nothing of Alice's.
    for table in ["hub_presence", "remote_commands", "remote_command_events"] {
        let n = db
            .as_user(Some(BOB), &format!("select count(*) from {table}"))
            .await
            .unwrap();
        assert_eq!(n, "0", "{table}");
    }
    // Bob cannot take over Alice's presence row, by update or by upsert.
    let updated = db
        .as_user(Some(BOB), &format!("update hub_presence set relay_url = 'http://evil' where hub_id = '{HUB_A}' returning 1"))
        .await
        .unwrap();
    assert_eq!(updated, "", "no rows visible to update");
    let upsert = db
        .as_user(Some(BOB), &format!(
            "insert into hub_presence (hub_id, relay_url) values ('{HUB_A}', 'http://evil') on conflict (hub_id) do update set relay_url = excluded.relay_url"
        ))
        .await
        .unwrap_err();
    assert!(upsert.contains("42501"), "{upsert}");
    // ... nor claim, append to, complete or delete Alice's command.
    let claimed = db
        .as_user(
            Some(BOB),
            &format!("select command_id from claim_remote_commands('{HUB_A}')"),
        )
        .await
        .unwrap();
    assert_eq!(claimed, "");
    let append = db
        .as_user(
            Some(BOB),
            &format!(
                "select append_remote_command_events('{id}', '[{{\"seq\":1,\"envelope\":\"x\"}}]')"
            ),
        )
        .await
        .unwrap_err();
    assert!(append.contains("not executing (or not yours)"), "{append}");
    let complete = db
        .as_user(
            Some(BOB),
            &format!("select complete_remote_command('{id}', 'failed')"),
        )
        .await
        .unwrap_err();
    assert!(complete.contains("or not yours"), "{complete}");
    let delete = db
        .as_user(
            Some(BOB),
            &format!("delete from remote_commands where command_id = '{id}'"),
        )
        .await
        .unwrap_err();
    assert!(delete.contains("42501"), "{delete}");
    // Bob cannot insert a command in Alice's name, nor one that is already claimed.
    let forged = db
        .as_user(Some(BOB), &format!(
            "insert into remote_commands (command_id, user_id, source_device_id, target_hub_id, envelope, expires_at) values ('{}', '{ALICE}', '{DEVICE_A}', '{HUB_A}', 'x', now() + interval '1 hour')",
            uuid()
        ))
        .await
        .unwrap_err();
    assert!(forged.contains("42501"), "{forged}");
    let preclaimed = db
        .as_user(Some(BOB), &format!(
            "insert into remote_commands (command_id, source_device_id, target_hub_id, envelope, expires_at, status) values ('{}', '{DEVICE_A}', '{HUB_A}', 'x', now() + interval '1 hour', 'executing')",
            uuid()
        ))
        .await
        .unwrap_err();
    assert!(preclaimed.contains("42501"), "{preclaimed}");
    // Anonymous requests get nothing at all.
    let anon = db
        .as_user(None, "select count(*) from remote_commands")
        .await
        .unwrap_err();
    assert!(anon.contains("42501"), "{anon}");

    // Alice's own row is intact.
    let row = db
        .as_user(Some(ALICE), &format!("select status || '|' || (relay_url is null)::text from remote_commands, hub_presence where command_id = '{id}'"))
        .await
        .unwrap();
    assert_eq!(row, "pending|true");
}

#[tokio::test]
async fn eight_concurrent_claimers_claim_each_command_exactly_once() {
    let db = TestDb::create().await;
    let mut ids = Vec::new();
    for _ in 0..40 {
        let id = uuid();
        db.as_user(
            Some(ALICE),
            &insert_command(&id, HUB_A, "now() + interval '1 hour'"),
        )
        .await
        .unwrap();
        ids.push(id);
    }
    let claimers: Vec<_> = (0..8)
        .map(|_| {
            let db = &db;
            async move {
                let mut mine = Vec::new();
                loop {
                    let got = db
                        .as_user(
                            Some(ALICE),
                            &format!("select command_id from claim_remote_commands('{HUB_A}', 3)"),
                        )
                        .await
                        .unwrap();
                    if got.is_empty() {
                        return mine;
                    }
                    mine.extend(got.lines().map(str::to_owned));
                }
            }
        })
        .collect();
    let results = futures::future::join_all(claimers).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for id in results.iter().flatten() {
        *counts.entry(id.clone()).or_default() += 1;
    }
    assert_eq!(counts.len(), 40, "every command claimed");
    assert!(
        counts.values().all(|n| *n == 1),
        "none claimed twice: {counts:?}"
    );
    assert!(
        results.iter().filter(|r| !r.is_empty()).count() > 1,
        "the claimers really competed"
    );
    let executing = db
        .admin("select count(*) from remote_commands where status = 'executing'")
        .await;
    assert_eq!(executing, "40");
}

#[tokio::test]
async fn events_append_in_order_and_completion_is_idempotent() {
    let db = TestDb::create().await;
    let id = uuid();
    db.as_user(
        Some(ALICE),
        &insert_command(&id, HUB_A, "now() + interval '1 hour'"),
    )
    .await
    .unwrap();
    let append = |events: &str| format!("select append_remote_command_events('{id}', '{events}')");
    // Not claimed yet: nothing may be appended.
    assert!(
        db.as_user(Some(ALICE), &append(r#"[{"seq":1,"envelope":"e1"}]"#))
            .await
            .is_err()
    );
    db.as_user(
        Some(ALICE),
        &format!("select claim_remote_commands('{HUB_A}')"),
    )
    .await
    .unwrap();

    let last = db
        .as_user(
            Some(ALICE),
            &append(r#"[{"seq":1,"envelope":"e1"},{"seq":2,"envelope":"e2"}]"#),
        )
        .await
        .unwrap();
    assert_eq!(last, "2");
    // A retried batch is accepted and stores nothing twice.
    let last = db
        .as_user(
            Some(ALICE),
            &append(r#"[{"seq":1,"envelope":"e1"},{"seq":2,"envelope":"e2"}]"#),
        )
        .await
        .unwrap();
    assert_eq!(last, "2");
    // A gap is refused.
    let gap = db
        .as_user(Some(ALICE), &append(r#"[{"seq":4,"envelope":"e4"}]"#))
        .await
        .unwrap_err();
    assert!(gap.contains("must continue at seq 3"), "{gap}");
    let last = db
        .as_user(Some(ALICE), &append(r#"[{"seq":3,"envelope":"e3"}]"#))
        .await
        .unwrap();
    assert_eq!(last, "3");
    let stored = db
        .as_user(Some(ALICE), &format!("select string_agg(envelope, ',' order by seq) from remote_command_events where command_id = '{id}'"))
        .await
        .unwrap();
    assert_eq!(stored, "e1,e2,e3");

    let done = format!("select status from complete_remote_command('{id}', 'completed')");
    assert_eq!(db.as_user(Some(ALICE), &done).await.unwrap(), "completed");
    assert_eq!(
        db.as_user(Some(ALICE), &done).await.unwrap(),
        "completed",
        "idempotent"
    );
    let other = db
        .as_user(
            Some(ALICE),
            &format!("select complete_remote_command('{id}', 'failed')"),
        )
        .await
        .unwrap_err();
    assert!(other.contains("already ended completed"), "{other}");
    // After the end, no more events.
    assert!(
        db.as_user(Some(ALICE), &append(r#"[{"seq":4,"envelope":"e4"}]"#))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn expired_commands_are_never_claimed() {
    let db = TestDb::create().await;
    let id = uuid();
    db.as_user(Some(ALICE), &format!(
        "insert into remote_commands (command_id, source_device_id, target_hub_id, envelope, created_at, expires_at) \
         values ('{id}', '{DEVICE_A}', '{HUB_A}', 'x', now() - interval '2 hours', now() - interval '1 hour')"
    ))
    .await
    .unwrap();
    let claimed = db
        .as_user(
            Some(ALICE),
            &format!("select command_id from claim_remote_commands('{HUB_A}')"),
        )
        .await
        .unwrap();
    assert_eq!(claimed, "");
    let row = db
        .admin(&format!(
            "select status || '|' || reason from remote_commands where command_id = '{id}'"
        ))
        .await;
    assert_eq!(row, "expired|expired before the hub claimed it");
    // Only the command tables (v1 and v2) and v2's pairing requests are published to Realtime:
    // events and presence are not (every append or heartbeat would be a billed message).
    let published = db.admin("select string_agg(tablename, ',' order by tablename) from pg_publication_tables where pubname = 'supabase_realtime'").await;
    assert_eq!(published, "cloud_commands,cloud_pairings,remote_commands");
}
