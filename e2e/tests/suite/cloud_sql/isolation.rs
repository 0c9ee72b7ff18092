//! Another user (Bob) sees none of Alice's rows and cannot act on them, with her token or with
//! his own registration of her hub id (L2: that makes Bob's own row and leaves hers alone).

use super::{
    DEVICE_1, HUB, TOKEN, append_sql, claim, complete_sql, events, key, publish_sql, refused,
    register, send,
};
use crate::support::pg::{ALICE, BOB, TestDb};

const BOB_TOKEN: &str = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0";

const TABLES: [&str; 6] = [
    "cloud_hubs",
    "cloud_presence",
    "cloud_commands",
    "cloud_command_keys",
    "cloud_command_events",
    "cloud_pairings",
];

fn announce_sql(token: &str, relay: &str) -> String {
    format!(
        "select announce_cloud_hub('{HUB}', '{token}', 'desk', '{relay}', '{{192.0.2.1:7777}}', '{{anthropic}}', '1.0')"
    )
}

/// `user`'s view of the presence of `HUB`: `relay_url` of each row online.
async fn online(db: &TestDb, user: &str) -> String {
    db.as_user(
        Some(user),
        "select user_id || '|' || relay_url from online_cloud_hubs(300)",
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn bob_sees_and_touches_nothing_of_alices() {
    let db = TestDb::create().await;
    register(&db, ALICE, HUB, TOKEN).await.unwrap();
    db.as_user(Some(ALICE), &announce_sql(TOKEN, "https://alice"))
        .await
        .unwrap();
    let id = send(&db, ALICE, HUB).await;
    let pending = send(&db, ALICE, HUB).await;
    db.admin(&format!(
        "update cloud_commands set created_at = created_at - interval '1 minute', \
         expires_at = expires_at - interval '1 minute' where command_id = '{id}'"
    ))
    .await;
    let claimed = db
        .as_user(
            Some(ALICE),
            &format!("select command_id from claim_cloud_commands('{HUB}', '{TOKEN}', 1)"),
        )
        .await
        .unwrap();
    assert_eq!(claimed, id, "the oldest first, p_limit of them");
    let keys = format!("[{}]", key(DEVICE_1, "k"));
    db.as_user(Some(ALICE), &publish_sql(HUB, TOKEN, &id, "p", &keys))
        .await
        .unwrap();
    db.as_user(Some(ALICE), &append_sql(HUB, TOKEN, &id, &events(1, 2)))
        .await
        .unwrap();
    let pairing = super::uuid();
    db.as_user(
        Some(ALICE),
        &format!(
            "insert into cloud_pairings (pairing_id, hub_id, device_id, request, expires_at) \
         values ('{pairing}', '{HUB}', '{DEVICE_1}', 'req', now() + interval '5 minutes')"
        ),
    )
    .await
    .unwrap();
    for table in TABLES {
        let n = db
            .as_user(Some(ALICE), &format!("select count(*) from {table}"))
            .await
            .unwrap();
        assert_ne!(n, "0", "Alice has rows in {table}");
        let n = db
            .as_user(Some(BOB), &format!("select count(*) from {table}"))
            .await
            .unwrap();
        assert_eq!(n, "0", "Bob sees nothing in {table}");
    }
    assert_eq!(online(&db, BOB).await, "");

    // Bob with Alice's own token: the hub is not registered under Bob.
    let bob = |sql: String| {
        let db = &db;
        async move { db.as_user(Some(BOB), &sql).await }
    };
    assert_eq!(refused(claim(&db, BOB, HUB, TOKEN).await), "42501");
    assert_eq!(
        refused(bob(append_sql(HUB, TOKEN, &id, &events(3, 3))).await),
        "42501"
    );
    assert_eq!(
        refused(bob(complete_sql(HUB, TOKEN, &id, "failed")).await),
        "42501"
    );
    assert_eq!(
        refused(bob(announce_sql(TOKEN, "https://evil")).await),
        "42501"
    );

    // Bob registers Alice's hub id with his own token: his own row, beside hers.
    register(&db, BOB, HUB, BOB_TOKEN).await.unwrap();
    let hubs = db
        .admin("select user_id || '|' || hub_id from cloud_hubs order by user_id")
        .await;
    assert_eq!(hubs, format!("{ALICE}|{HUB}\n{BOB}|{HUB}"));
    assert_eq!(
        claim(&db, BOB, HUB, BOB_TOKEN).await.unwrap(),
        "",
        "nothing of Alice's"
    );
    let calls = [
        (append_sql(HUB, BOB_TOKEN, &id, &events(3, 3)), "P0002"),
        (complete_sql(HUB, BOB_TOKEN, &id, "failed"), "P0002"),
        (complete_sql(HUB, BOB_TOKEN, &pending, "failed"), "P0002"),
        // Her command id is taken: Bob cannot publish under it (nor see anything of it).
        (publish_sql(HUB, BOB_TOKEN, &id, "forged", &keys), "23505"),
        (
            format!("select cancel_cloud_command('{id}', 'bob')"),
            "P0002",
        ),
        (
            format!("select cancel_cloud_command('{pending}', 'bob')"),
            "P0002",
        ),
        (
            format!("select answer_cloud_pairing('{HUB}', '{BOB_TOKEN}', '{pairing}', 'forged')"),
            "P0002",
        ),
    ];
    for (sql, code) in calls {
        assert_eq!(refused(bob(sql.clone()).await), code, "{sql}");
    }
    let listed = bob(format!(
        "select count(*) from pending_cloud_pairings('{HUB}', '{BOB_TOKEN}')"
    ))
    .await
    .unwrap();
    assert_eq!(listed, "0");
    // Bob's prune of "his" hub leaves Alice's rows, even old finished ones.
    db.admin(&format!(
        "update cloud_commands set status = 'completed', finished_at = now() - interval '400 days' \
         where command_id = '{id}'"
    ))
    .await;
    let pruned = bob(format!("select prune_cloud('{HUB}', '{BOB_TOKEN}', 1)"))
        .await
        .unwrap();
    assert_eq!(pruned, "0");
    let state = db
        .admin(&format!(
            "select (select count(*) from cloud_commands where user_id = '{ALICE}') || '|' || \
             (select status from cloud_commands where command_id = '{pending}') || '|' || \
             (select count(*) from cloud_command_events) || '|' || (select count(*) from cloud_command_keys) \
             || '|' || (select status from cloud_pairings)"
        ))
        .await;
    assert_eq!(state, "2|pending|2|1|pending");

    // L2: Bob's presence for the same hub id is his own row; Alice's heartbeat goes on.
    bob(announce_sql(BOB_TOKEN, "https://evil")).await.unwrap();
    db.as_user(Some(ALICE), &announce_sql(TOKEN, "https://alice-2"))
        .await
        .unwrap();
    assert_eq!(online(&db, ALICE).await, format!("{ALICE}|https://alice-2"));
    assert_eq!(online(&db, BOB).await, format!("{BOB}|https://evil"));
    let withdrawn = bob(format!("select withdraw_cloud_hub('{HUB}', '{BOB_TOKEN}')"))
        .await
        .unwrap();
    assert_eq!(withdrawn, "t");
    assert_eq!(online(&db, ALICE).await, format!("{ALICE}|https://alice-2"));

    // Bob's own command to that hub id goes to his hub registration, never to Alice's claims.
    let bobs = send(&db, BOB, HUB).await;
    assert_eq!(
        claim(&db, ALICE, HUB, TOKEN).await.unwrap(),
        pending,
        "only her own"
    );
    assert_eq!(claim(&db, BOB, HUB, BOB_TOKEN).await.unwrap(), bobs);
}
