//! Pairing through the cloud: a device inserts its request sealed to the hub; only the hub
//! (its claim token) lists and answers it, once; nobody else sees or answers it.

use super::{DEVICE_1, DEVICE_2, HUB, TOKEN, WRONG, refused, register, uuid};
use crate::support::pg::{ALICE, BOB, TestDb};

fn request_sql(id: &str, hub: &str, device: &str, request: &str, expires: &str) -> String {
    format!(
        "insert into cloud_pairings (pairing_id, hub_id, device_id, request, expires_at) \
         values ('{id}', '{hub}', '{device}', {request}, {expires}) returning status"
    )
}

fn answer_sql(token: &str, id: &str, answer: &str) -> String {
    format!(
        "select status || '|' || answer from answer_cloud_pairing('{HUB}', '{token}', '{id}', '{answer}')"
    )
}

fn pending_sql(token: &str) -> String {
    format!(
        "select pairing_id || '|' || device_id || '|' || request from pending_cloud_pairings('{HUB}', '{token}')"
    )
}

#[tokio::test]
async fn the_hub_lists_and_answers_a_devices_pairing_request_once() {
    let db = TestDb::create().await;
    register(&db, ALICE, HUB, TOKEN).await.unwrap();
    let soon = "now() + interval '5 minutes'";
    let id = uuid();
    let status = db
        .as_user(
            Some(ALICE),
            &request_sql(&id, HUB, DEVICE_1, "'sealed-request'", soon),
        )
        .await
        .unwrap();
    assert_eq!(status, "pending");
    let created = db
        .admin(&format!("select created_at between now() - interval '1 minute' and now() from cloud_pairings where pairing_id = '{id}'"))
        .await;
    assert_eq!(created, "t");
    // Refused requests: an expiry over 10 minutes (23514), a request over 8192 bytes in 4097
    // characters (23514), an unregistered hub (23503), a bad device id (23514).
    for (sql, code) in [
        (
            request_sql(
                &uuid(),
                HUB,
                DEVICE_2,
                "'r'",
                "now() + interval '11 minutes'",
            ),
            "23514",
        ),
        (
            request_sql(&uuid(), HUB, DEVICE_2, "repeat('é', 4097)", soon),
            "23514",
        ),
        (
            request_sql(&uuid(), &"c".repeat(64), DEVICE_2, "'r'", soon),
            "23503",
        ),
        (request_sql(&uuid(), HUB, "device", "'r'", soon), "23514"),
        (request_sql(&id, HUB, DEVICE_2, "'again'", soon), "23505"),
    ] {
        assert_eq!(refused(db.as_user(Some(ALICE), &sql).await), code, "{sql}");
    }
    db.as_user(
        Some(ALICE),
        &request_sql(&uuid(), HUB, DEVICE_2, "repeat('é', 4096)", soon),
    )
    .await
    .unwrap();
    // An expired request is not listed.
    let expired = uuid();
    db.as_user(
        Some(ALICE),
        &request_sql(&expired, HUB, DEVICE_2, "'old'", soon),
    )
    .await
    .unwrap();
    db.admin(&format!(
        "update cloud_pairings set created_at = now() - interval '20 minutes', \
         expires_at = now() - interval '15 minutes' where pairing_id = '{expired}'"
    ))
    .await;

    // Only the hub lists them, oldest first.
    assert_eq!(
        refused(db.as_user(Some(ALICE), &pending_sql(WRONG)).await),
        "42501"
    );
    let listed = db.as_user(Some(ALICE), &pending_sql(TOKEN)).await.unwrap();
    let listed: Vec<&str> = listed.lines().collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0], format!("{id}|{DEVICE_1}|sealed-request"));

    // Only the hub answers, once; the same answer again changes nothing.
    assert_eq!(
        refused(
            db.as_user(Some(ALICE), &answer_sql(WRONG, &id, "forged"))
                .await
        ),
        "42501"
    );
    let answered = db
        .as_user(Some(ALICE), &answer_sql(TOKEN, &id, "signed-yes"))
        .await
        .unwrap();
    assert_eq!(answered, "answered|signed-yes");
    let at = db
        .admin(&format!(
            "select answered_at from cloud_pairings where pairing_id = '{id}'"
        ))
        .await;
    let again = db
        .as_user(Some(ALICE), &answer_sql(TOKEN, &id, "signed-yes"))
        .await
        .unwrap();
    assert_eq!(again, "answered|signed-yes");
    let at_again = db
        .admin(&format!(
            "select answered_at from cloud_pairings where pairing_id = '{id}'"
        ))
        .await;
    assert_eq!(at, at_again);
    assert_eq!(
        refused(
            db.as_user(Some(ALICE), &answer_sql(TOKEN, &id, "signed-no"))
                .await
        ),
        "23505"
    );
    let over = format!(
        "select answer_cloud_pairing('{HUB}', '{TOKEN}', '{}', repeat('é', 4097))",
        uuid()
    );
    assert_eq!(
        refused(db.as_user(Some(ALICE), &over).await),
        "P0002",
        "no such request"
    );
    let listed = db.as_user(Some(ALICE), &pending_sql(TOKEN)).await.unwrap();
    assert_eq!(listed.lines().count(), 1, "answered ones are not listed");
    let first = listed.split('|').next().unwrap().to_owned();
    let over =
        format!("select answer_cloud_pairing('{HUB}', '{TOKEN}', '{first}', repeat('é', 4097))");
    assert_eq!(refused(db.as_user(Some(ALICE), &over).await), "23514");
    // The device reads the answer.
    let read = db
        .as_user(Some(ALICE), &format!(
            "select status || '|' || answer || '|' || (answered_at is not null) from cloud_pairings where pairing_id = '{id}'"
        ))
        .await
        .unwrap();
    assert_eq!(read, "answered|signed-yes|true");

    // Bob sees none of it, and cannot answer it even as his own registration of the hub id.
    let n = db
        .as_user(Some(BOB), "select count(*) from cloud_pairings")
        .await
        .unwrap();
    assert_eq!(n, "0");
    let bob_token = "b".repeat(64);
    assert_eq!(
        refused(db.as_user(Some(BOB), &pending_sql(TOKEN)).await),
        "42501"
    );
    register(&db, BOB, HUB, &bob_token).await.unwrap();
    let listed = db
        .as_user(Some(BOB), &pending_sql(&bob_token))
        .await
        .unwrap();
    assert_eq!(listed, "");
    assert_eq!(
        refused(
            db.as_user(Some(BOB), &answer_sql(&bob_token, &first, "forged"))
                .await
        ),
        "P0002"
    );
    let still = db
        .admin(&format!(
            "select status from cloud_pairings where pairing_id = '{first}'"
        ))
        .await;
    assert_eq!(still, "pending");
    // Bob's requests to that hub id are his own, never listed for Alice's hub.
    db.as_user(
        Some(BOB),
        &request_sql(&uuid(), HUB, DEVICE_1, "'bobs'", soon),
    )
    .await
    .unwrap();
    let listed = db.as_user(Some(ALICE), &pending_sql(TOKEN)).await.unwrap();
    assert_eq!(listed, format!("{first}|{DEVICE_2}|{}", "é".repeat(4096)));
}

#[tokio::test]
async fn an_account_holds_at_most_8_waiting_pairing_requests() {
    let db = TestDb::create().await;
    register(&db, ALICE, HUB, TOKEN).await.unwrap();
    let soon = "now() + interval '5 minutes'";
    let mut ids = Vec::new();
    for _ in 0..8 {
        let id = uuid();
        db.as_user(Some(ALICE), &request_sql(&id, HUB, DEVICE_1, "'r'", soon))
            .await
            .unwrap();
        ids.push(id);
    }
    let ninth = request_sql(&uuid(), HUB, DEVICE_1, "'r'", soon);
    assert_eq!(refused(db.as_user(Some(ALICE), &ninth).await), "54000");
    // An answered or expired request no longer counts.
    db.as_user(Some(ALICE), &answer_sql(TOKEN, &ids[0], "a"))
        .await
        .unwrap();
    db.as_user(Some(ALICE), &ninth).await.unwrap();
    assert_eq!(
        refused(
            db.as_user(
                Some(ALICE),
                &request_sql(&uuid(), HUB, DEVICE_1, "'r'", soon)
            )
            .await
        ),
        "54000"
    );
    db.admin(&format!(
        "update cloud_pairings set created_at = now() - interval '20 minutes', \
         expires_at = now() - interval '15 minutes' where pairing_id = '{}'",
        ids[1]
    ))
    .await;
    db.as_user(
        Some(ALICE),
        &request_sql(&uuid(), HUB, DEVICE_1, "'r'", soon),
    )
    .await
    .unwrap();
    let n = db.admin("select count(*) from cloud_pairings").await;
    assert_eq!(n, "10");
    let listed = db.as_user(Some(ALICE), &pending_sql(TOKEN)).await.unwrap();
    assert_eq!(listed.lines().count(), 8);
}
