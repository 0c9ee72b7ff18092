//! Claims and caps under concurrency: two claimers never get the same command, expired
//! commands are ended instead of claimed, and a per-user cap holds while another request of
//! the same user is still in flight.

use std::time::Duration;

use super::{DEVICE_1, HUB, TOKEN, refused, register, send, send_sql, uuid};
use crate::support::pg::{ALICE, TestDb};

#[tokio::test]
async fn concurrent_claims_split_the_commands_and_expired_ones_are_ended() {
    let db = TestDb::create().await;
    register(&db, ALICE, HUB, TOKEN).await.unwrap();
    let mut sent = Vec::new();
    for _ in 0..20 {
        sent.push(send(&db, ALICE, HUB).await);
    }
    let claim = format!(
        "select command_id from claim_cloud_commands('{HUB}', '{TOKEN}', 8); select pg_sleep(0.2)"
    );
    let (a, b, c) = tokio::join!(
        db.as_user(Some(ALICE), &claim),
        db.as_user(Some(ALICE), &claim),
        db.as_user(Some(ALICE), &claim),
    );
    let mut claimed: Vec<String> = [a, b, c]
        .into_iter()
        .flat_map(|r| r.unwrap().lines().map(str::to_owned).collect::<Vec<_>>())
        .filter(|line| !line.is_empty())
        .collect();
    assert_eq!(claimed.len(), 20, "8 + 8 + 4, none twice: {claimed:?}");
    claimed.sort();
    sent.sort();
    assert_eq!(claimed, sent);
    // One expired before the next claim: it is ended, not claimed.
    let expired = send(&db, ALICE, HUB).await;
    db.admin(&format!(
        "update cloud_commands set created_at = now() - interval '2 hours', \
         expires_at = now() - interval '1 hour' where command_id = '{expired}'"
    ))
    .await;
    // p_limit is clamped to 1..=100.
    for _ in 0..3 {
        send(&db, ALICE, HUB).await;
    }
    let one = db
        .as_user(
            Some(ALICE),
            &format!("select count(*) from claim_cloud_commands('{HUB}', '{TOKEN}', 0)"),
        )
        .await
        .unwrap();
    assert_eq!(one, "1");
    let row = db
        .as_user(Some(ALICE), &format!(
            "select status || '|' || reason || '|' || (finished_at is not null) || '|' || (claimed_at is null) \
             from cloud_commands where command_id = '{expired}'"
        ))
        .await
        .unwrap();
    assert_eq!(row, "expired|expired before the hub claimed it|true|true");
    let rest = db
        .as_user(
            Some(ALICE),
            &format!("select count(*) from claim_cloud_commands('{HUB}', '{TOKEN}', 100000)"),
        )
        .await
        .unwrap();
    assert_eq!(rest, "2");
}

/// Runs `first` in a transaction held open for a second, and `second` while it is open: what
/// each returned.
async fn overlapping(db: &TestDb, first: &str, second: &str) -> [Result<String, String>; 2] {
    let held = format!("{first}; select pg_sleep(1)");
    let (a, b) = tokio::join!(db.as_user(Some(ALICE), &held), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        db.as_user(Some(ALICE), second).await
    });
    [a, b]
}

/// Exactly one of two results went through, and the other was refused with 54000.
fn one_refused(results: [Result<String, String>; 2]) {
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 1, "{results:?}");
    let err = results.into_iter().find(Result::is_err).unwrap();
    assert_eq!(refused(err), "54000");
}

#[tokio::test]
async fn the_pending_command_cap_holds_under_concurrent_inserts() {
    let db = TestDb::create().await;
    register(&db, ALICE, HUB, TOKEN).await.unwrap();
    db.as_user(Some(ALICE), &format!(
        "insert into cloud_commands (command_id, hub_id, source_device_id, envelope, expires_at) \
         select gen_random_uuid(), '{HUB}', '{DEVICE_1}', 'x', now() + interval '1 hour' \
         from generate_series(1, 63)"
    ))
    .await
    .unwrap();
    let results = overlapping(&db, &send_sql(&uuid(), HUB), &send_sql(&uuid(), HUB)).await;
    one_refused(results);
    let n = db
        .admin("select count(*) from cloud_commands where status = 'pending'")
        .await;
    assert_eq!(n, "64");
}

#[tokio::test]
async fn the_pairing_cap_holds_under_concurrent_inserts() {
    let db = TestDb::create().await;
    register(&db, ALICE, HUB, TOKEN).await.unwrap();
    let request = || {
        format!(
            "insert into cloud_pairings (pairing_id, hub_id, device_id, request, expires_at) \
             values ('{}', '{HUB}', '{DEVICE_1}', 'req', now() + interval '5 minutes')",
            uuid()
        )
    };
    for _ in 0..7 {
        db.as_user(Some(ALICE), &request()).await.unwrap();
    }
    one_refused(overlapping(&db, &request(), &request()).await);
    let n = db.admin("select count(*) from cloud_pairings").await;
    assert_eq!(n, "8");
}

#[tokio::test]
async fn only_a_claimed_cloud_command_is_published() {
    let db = TestDb::create().await;
    register(&db, ALICE, HUB, TOKEN).await.unwrap();
    let publish = |id: &str| {
        super::publish_sql(
            HUB,
            TOKEN,
            id,
            "p",
            &format!("[{}]", super::key(DEVICE_1, "k")),
        )
    };
    // Pending, cancelled before any claim, expired before any claim: never this hub's to run.
    let pending = send(&db, ALICE, HUB).await;
    let cancelled = send(&db, ALICE, HUB).await;
    db.as_user(
        Some(ALICE),
        &format!("select cancel_cloud_command('{cancelled}', 'x')"),
    )
    .await
    .unwrap();
    let expired = send(&db, ALICE, HUB).await;
    db.admin(&format!(
        "update cloud_commands set created_at = now() - interval '2 hours', \
         expires_at = now() - interval '1 hour' where command_id = '{expired}'"
    ))
    .await;
    let claimed = super::claim(&db, ALICE, HUB, TOKEN).await.unwrap();
    assert_eq!(claimed, pending);
    db.as_user(
        Some(ALICE),
        &format!("select cancel_cloud_command('{pending}', 'x')"),
    )
    .await
    .unwrap();
    for id in [&cancelled, &expired] {
        let err = db.as_user(Some(ALICE), &publish(id)).await;
        assert_eq!(refused(err), "P0002", "{id}");
    }
    let n = db.admin("select count(*) from cloud_command_keys").await;
    assert_eq!(n, "0");
    // One the hub claimed and the device then cancelled is still published (the hub's
    // publication may race the cancel).
    let row = db.as_user(Some(ALICE), &publish(&pending)).await.unwrap();
    assert_eq!(row, "cloud|cancelled|p");
}
