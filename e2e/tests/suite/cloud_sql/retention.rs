//! `prune_cloud`: the hub deletes its commands that ended more than the retention period ago,
//! with their keys and events, and its pairing requests older than a day; nothing else.

use super::{
    DEVICE_1, HUB, HUB2, TOKEN, append_sql, complete_sql, events, key, publish_sql, refused,
    register, send, uuid,
};
use crate::support::pg::{ALICE, BOB, TestDb};

/// A command `user`'s `hub` mirrored, with one key and two events, ended `status` (or left
/// executing for `None`).
async fn command(db: &TestDb, user: &str, hub: &str, status: Option<&str>) -> String {
    let id = uuid();
    let keys = format!("[{}]", key(DEVICE_1, "k"));
    db.as_user(Some(user), &publish_sql(hub, TOKEN, &id, "p", &keys))
        .await
        .unwrap();
    db.as_user(Some(user), &append_sql(hub, TOKEN, &id, &events(1, 2)))
        .await
        .unwrap();
    if let Some(status) = status {
        db.as_user(Some(user), &complete_sql(hub, TOKEN, &id, status))
            .await
            .unwrap();
    }
    id
}

/// Moves the command `id` `days` into the past (created, expiring and ended then).
async fn age(db: &TestDb, id: &str, days: u32) {
    db.admin(&format!(
        "update cloud_commands set created_at = created_at - interval '{days} days', \
         expires_at = expires_at - interval '{days} days', \
         claimed_at = claimed_at - interval '{days} days', \
         finished_at = now() - interval '{days} days' where command_id = '{id}'"
    ))
    .await;
}

#[tokio::test]
async fn prune_deletes_only_old_finished_commands_with_their_keys_and_events() {
    let db = TestDb::create().await;
    for (user, hub) in [(ALICE, HUB), (ALICE, HUB2), (BOB, HUB)] {
        register(&db, user, hub, TOKEN).await.unwrap();
    }
    let mut gone = Vec::new();
    for status in ["completed", "failed", "cancelled", "expired"] {
        let id = command(&db, ALICE, HUB, Some(status)).await;
        age(&db, &id, 40).await;
        gone.push(id);
    }
    // A device's cancel of a pending command ends it too.
    let cancelled = send(&db, ALICE, HUB).await;
    db.as_user(
        Some(ALICE),
        &format!("select cancel_cloud_command('{cancelled}', 'x')"),
    )
    .await
    .unwrap();
    age(&db, &cancelled, 31).await;
    gone.push(cancelled);

    let recent = command(&db, ALICE, HUB, Some("completed")).await;
    age(&db, &recent, 29).await;
    // Rows that have not ended stay however old they are (an executing row's finished_at is
    // set here only to show the status decides).
    let executing = command(&db, ALICE, HUB, None).await;
    age(&db, &executing, 40).await;
    let pending = send(&db, ALICE, HUB).await;
    db.admin(&format!(
        "update cloud_commands set created_at = created_at - interval '40 days', \
         expires_at = expires_at - interval '40 days' where command_id = '{pending}'"
    ))
    .await;
    // Another hub's and another user's old rows are not this hub's to prune.
    let other_hub = command(&db, ALICE, HUB2, Some("completed")).await;
    age(&db, &other_hub, 40).await;
    let bobs = command(&db, BOB, HUB, Some("completed")).await;
    age(&db, &bobs, 40).await;

    let prune = |days: i32| format!("select prune_cloud('{HUB}', '{TOKEN}', {days})");
    for days in [0, 3651] {
        assert_eq!(
            refused(db.as_user(Some(ALICE), &prune(days)).await),
            "22023"
        );
    }
    assert_eq!(db.as_user(Some(ALICE), &prune(30)).await.unwrap(), "5");
    assert_eq!(db.as_user(Some(ALICE), &prune(30)).await.unwrap(), "0");

    let kept = [&recent, &executing, &pending, &other_hub, &bobs];
    let list = |ids: &[&String]| {
        ids.iter()
            .map(|id| format!("'{id}'"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let gone_refs: Vec<&String> = gone.iter().collect();
    for table in [
        "cloud_commands",
        "cloud_command_keys",
        "cloud_command_events",
    ] {
        let n = db
            .admin(&format!(
                "select count(*) from {table} where command_id in ({})",
                list(&gone_refs)
            ))
            .await;
        assert_eq!(n, "0", "{table}: the pruned commands' rows are gone");
    }
    let rows = db
        .admin(&format!(
            "select c.status || ':' || (select count(*) from cloud_command_keys k where k.command_id = c.command_id) \
             || ':' || (select count(*) from cloud_command_events e where e.command_id = c.command_id) \
             from cloud_commands c where c.command_id in ({}) order by c.status, c.hub_id, c.user_id",
            list(&kept)
        ))
        .await;
    assert_eq!(
        rows.lines().collect::<Vec<_>>(),
        [
            "completed:1:2",
            "completed:1:2",
            "completed:1:2",
            "executing:1:2",
            "pending:0:0"
        ]
    );
    let n = db.admin("select count(*) from cloud_commands").await;
    assert_eq!(n, "5");

    // A shorter retention takes the recent one too; the others still stay.
    assert_eq!(db.as_user(Some(ALICE), &prune(7)).await.unwrap(), "1");
    let n = db.admin("select count(*) from cloud_commands").await;
    assert_eq!(n, "4");
}

#[tokio::test]
async fn prune_deletes_pairing_requests_older_than_a_day() {
    let db = TestDb::create().await;
    register(&db, ALICE, HUB, TOKEN).await.unwrap();
    register(&db, ALICE, HUB2, TOKEN).await.unwrap();
    let request = |hub: &str| {
        let id = uuid();
        let sql = format!(
            "insert into cloud_pairings (pairing_id, hub_id, device_id, request, expires_at) \
             values ('{id}', '{hub}', '{DEVICE_1}', 'req', now() + interval '5 minutes')"
        );
        (id, sql)
    };
    let mut ids = Vec::new();
    for hub in [HUB, HUB, HUB, HUB2] {
        let (id, sql) = request(hub);
        db.as_user(Some(ALICE), &sql).await.unwrap();
        ids.push(id);
    }
    db.as_user(
        Some(ALICE),
        &format!(
            "select answer_cloud_pairing('{HUB}', '{TOKEN}', '{}', 'ok')",
            ids[1]
        ),
    )
    .await
    .unwrap();
    // Two of this hub's (one answered) and the other hub's are two days old.
    db.admin(&format!(
        "update cloud_pairings set created_at = created_at - interval '2 days', \
         expires_at = expires_at - interval '2 days' where pairing_id in ('{}', '{}', '{}')",
        ids[0], ids[1], ids[3]
    ))
    .await;
    let pruned = db
        .as_user(
            Some(ALICE),
            &format!("select prune_cloud('{HUB}', '{TOKEN}', 30)"),
        )
        .await
        .unwrap();
    assert_eq!(pruned, "0", "it counts commands");
    let left = db
        .admin("select pairing_id from cloud_pairings order by hub_id, pairing_id")
        .await;
    assert_eq!(
        left,
        format!("{}\n{}", ids[2], ids[3]),
        "the recent one, and other hubs'"
    );
}
