//! M4: a session of the hub's own user that does not hold the hub's claim token (a stolen
//! device session, a leaked JWT) cannot write anything only the hub writes, and the tables take
//! no direct write the functions are there to make.

use super::{
    DEVICE_1, HUB, TOKEN, WRONG, append_sql, claim, complete_sql, events, key, publish_sql,
    refused, register, send, send_sql, uuid,
};
use crate::support::pg::{ALICE, TestDb};

/// Alice's hub registered, and one command of hers claimed by it (`executing`).
async fn claimed(db: &TestDb) -> String {
    register(db, ALICE, HUB, TOKEN).await.unwrap();
    let id = send(db, ALICE, HUB).await;
    assert_eq!(claim(db, ALICE, HUB, TOKEN).await.unwrap(), id);
    id
}

#[tokio::test]
async fn without_the_claim_token_no_hub_write_goes_through() {
    let db = TestDb::create().await;
    let id = claimed(&db).await;
    let pending = send(&db, ALICE, HUB).await;
    let alice = |sql: String| {
        let db = &db;
        async move { db.as_user(Some(ALICE), &sql).await }
    };

    // The wrong token: 42501 for every hub function. A malformed one: 22023.
    for token in [WRONG, "not-a-token"] {
        let code = if token == WRONG { "42501" } else { "22023" };
        let calls = [
            format!("select command_id from claim_cloud_commands('{HUB}', '{token}', 8)"),
            append_sql(HUB, token, &id, &events(1, 1)),
            complete_sql(HUB, token, &id, "completed"),
            complete_sql(HUB, token, &pending, "failed"),
            publish_sql(
                HUB,
                token,
                &id,
                "forged",
                &format!("[{}]", key(DEVICE_1, "forged")),
            ),
            publish_sql(HUB, token, &uuid(), "forged", "[]"),
            format!(
                "select announce_cloud_hub('{HUB}', '{token}', 'evil', 'https://evil', '{{}}', '{{}}', '')"
            ),
            format!("select withdraw_cloud_hub('{HUB}', '{token}')"),
            format!("select count(*) from pending_cloud_pairings('{HUB}', '{token}')"),
            format!(
                "select answer_cloud_pairing('{HUB}', '{token}', '{}', 'forged')",
                uuid()
            ),
            format!("select prune_cloud('{HUB}', '{token}', 1)"),
        ];
        for sql in calls {
            assert_eq!(refused(alice(sql.clone()).await), code, "{sql}");
        }
    }
    // Registering the hub again with another token does not replace its token.
    assert_eq!(refused(register(&db, ALICE, HUB, WRONG).await), "42501");
    let err = register(&db, ALICE, HUB, WRONG).await.unwrap_err();
    assert!(
        err.contains("already registered with another claim token"),
        "{err}"
    );

    // Nothing changed: the claimed row has no events, prompt or keys; the pending one is still
    // pending; there is no presence; and the real token still works.
    let rows = db
        .admin(&format!(
            "select status || '|' || last_seq || '|' || coalesce(prompt, '-') from cloud_commands \
             where command_id in ('{id}', '{pending}') order by status"
        ))
        .await;
    assert_eq!(rows, "executing|0|-\npending|0|-");
    for table in [
        "cloud_command_keys",
        "cloud_command_events",
        "cloud_presence",
    ] {
        let n = db.admin(&format!("select count(*) from {table}")).await;
        assert_eq!(n, "0", "{table}");
    }
    let last = alice(append_sql(HUB, TOKEN, &id, &events(1, 1)))
        .await
        .unwrap();
    assert_eq!(last, "1");

    // No session at all: the functions are not even callable.
    let anon = db
        .as_user(
            None,
            &format!("select register_cloud_hub('{HUB}', '{TOKEN}')"),
        )
        .await;
    assert_eq!(refused(anon), "42501");
    let anon = db
        .as_user(
            None,
            &format!("select command_id from claim_cloud_commands('{HUB}', '{TOKEN}', 8)"),
        )
        .await;
    assert_eq!(refused(anon), "42501");
    for table in [
        "cloud_hubs",
        "cloud_presence",
        "cloud_commands",
        "cloud_command_keys",
        "cloud_command_events",
        "cloud_pairings",
    ] {
        let anon = db
            .as_user(None, &format!("select count(*) from {table}"))
            .await;
        assert_eq!(refused(anon), "42501", "{table}");
    }
}

#[tokio::test]
async fn the_tables_take_no_direct_write_of_what_the_functions_manage() {
    let db = TestDb::create().await;
    let id = claimed(&db).await;
    let pairing = uuid();
    db.as_user(
        Some(ALICE),
        &format!(
            "insert into cloud_pairings (pairing_id, hub_id, device_id, request, expires_at) \
         values ('{pairing}', '{HUB}', '{DEVICE_1}', 'req', now() + interval '5 minutes')"
        ),
    )
    .await
    .unwrap();
    let writes = [
        format!(
            "insert into cloud_hubs (hub_id) values ('{}')",
            "b".repeat(64)
        ),
        format!("delete from cloud_hubs where hub_id = '{HUB}'"),
        format!("update cloud_hubs set registered_at = now() where hub_id = '{HUB}'"),
        format!("insert into cloud_presence (user_id, hub_id) values ('{ALICE}', '{HUB}')"),
        "update cloud_presence set relay_url = 'https://evil'".into(),
        "delete from cloud_presence".into(),
        format!("update cloud_commands set status = 'completed' where command_id = '{id}'"),
        format!("update cloud_commands set last_seq = 9 where command_id = '{id}'"),
        format!("update cloud_commands set prompt = 'forged' where command_id = '{id}'"),
        format!("delete from cloud_commands where command_id = '{id}'"),
        format!(
            "insert into cloud_command_keys (command_id, device_id, user_id, envelope) \
             values ('{id}', '{DEVICE_1}', '{ALICE}', 'forged')"
        ),
        "update cloud_command_keys set envelope = 'forged'".into(),
        format!(
            "insert into cloud_command_events (command_id, seq, user_id, envelope) \
             values ('{id}', 1, '{ALICE}', 'forged')"
        ),
        "delete from cloud_command_events".into(),
        format!(
            "update cloud_pairings set answer = 'forged', status = 'answered' where pairing_id = '{pairing}'"
        ),
        format!("delete from cloud_pairings where pairing_id = '{pairing}'"),
        "select count(*) from helix_private.hub_tokens".into(),
        format!("select helix_private.hub_caller('{HUB}', '{TOKEN}')"),
        // A device's insert names only the columns a device sends.
        format!(
            "insert into cloud_commands (command_id, hub_id, source_device_id, envelope, expires_at, status) \
             values ('{}', '{HUB}', '{DEVICE_1}', 'x', now() + interval '1 hour', 'executing')",
            uuid()
        ),
        format!(
            "insert into cloud_commands (command_id, hub_id, source_device_id, envelope, expires_at, origin) \
             values ('{}', '{HUB}', '{DEVICE_1}', 'x', now() + interval '1 hour', 'hub')",
            uuid()
        ),
        format!(
            "insert into cloud_commands (command_id, hub_id, source_device_id, envelope, expires_at, prompt) \
             values ('{}', '{HUB}', '{DEVICE_1}', 'x', now() + interval '1 hour', 'forged')",
            uuid()
        ),
        format!(
            "insert into cloud_commands (command_id, hub_id, source_device_id, envelope, expires_at, created_at) \
             values ('{}', '{HUB}', '{DEVICE_1}', 'x', now() + interval '1 hour', '1970-01-01')",
            uuid()
        ),
        format!(
            "insert into cloud_pairings (pairing_id, hub_id, device_id, request, expires_at, status, answer) \
             values ('{}', '{HUB}', '{DEVICE_1}', 'req', now() + interval '5 minutes', 'answered', 'forged')",
            uuid()
        ),
    ];
    for sql in &writes {
        let result = db.as_user(Some(ALICE), sql).await;
        assert_eq!(refused(result.clone()), "42501", "{sql}");
        assert!(result.unwrap_err().contains("permission denied"), "{sql}");
    }
    let state = db
        .admin(&format!(
            "select (select status || '|' || last_seq || '|' || coalesce(prompt, '-') from cloud_commands where command_id = '{id}') \
             || '|' || (select count(*) from cloud_commands) || '|' || (select count(*) from cloud_hubs) \
             || '|' || (select status || coalesce(answer, '-') from cloud_pairings)"
        ))
        .await;
    assert_eq!(state, "executing|0|-|1|1|pending-", "nothing changed");
}

#[tokio::test]
async fn a_device_gets_the_servers_clock_and_a_bounded_expiry() {
    let db = TestDb::create().await;
    register(&db, ALICE, HUB, TOKEN).await.unwrap();
    // The server sets created_at: to the transaction's time, whatever a writer that may name
    // the column (the service role) sends.
    let id = uuid();
    let row = db
        .as_user(
            Some(ALICE),
            &format!(
                "{}, created_at = now(), origin, user_id = auth.uid()",
                send_sql(&id, HUB)
            ),
        )
        .await
        .unwrap();
    assert_eq!(row, "pending|t|cloud|t");
    let forged = db
        .as_service(&format!(
            "insert into cloud_commands (command_id, user_id, hub_id, source_device_id, envelope, created_at, expires_at) \
             values ('{}', '{ALICE}', '{HUB}', '{DEVICE_1}', 'x', '1970-01-01', now() + interval '1 hour') \
             returning created_at = now()",
            uuid()
        ))
        .await
        .unwrap();
    assert_eq!(forged, "t");

    // expires_at: after now, at most 24 hours ahead (23514); an envelope is required (23514);
    // a hub not registered under this user is refused (23503).
    let insert = |hub: &str, envelope: &str, expires: &str| {
        format!(
            "insert into cloud_commands (command_id, hub_id, source_device_id, envelope, expires_at) \
             values ('{}', '{hub}', '{DEVICE_1}', {envelope}, {expires})",
            uuid()
        )
    };
    for (sql, code) in [
        (insert(HUB, "'x'", "'infinity'"), "23514"),
        (
            insert(HUB, "'x'", "now() + interval '24 hours 1 second'"),
            "23514",
        ),
        (insert(HUB, "'x'", "now() - interval '1 second'"), "23514"),
        (insert(HUB, "'x'", "now()"), "23514"),
        (insert(HUB, "null", "now() + interval '1 hour'"), "23514"),
        (
            insert(&"c".repeat(64), "'x'", "now() + interval '1 hour'"),
            "23503",
        ),
        (
            insert("not-a-hub", "'x'", "now() + interval '1 hour'"),
            "23503",
        ),
    ] {
        assert_eq!(refused(db.as_user(Some(ALICE), &sql).await), code, "{sql}");
    }
    let ok = insert(HUB, "'x'", "now() + interval '24 hours'");
    db.as_user(Some(ALICE), &ok).await.unwrap();
    // A bad source device id is refused by its check.
    let bad_source = format!(
        "insert into cloud_commands (command_id, hub_id, source_device_id, envelope, expires_at) \
         values ('{}', '{HUB}', 'DEVICE', 'x', now() + interval '1 hour')",
        uuid()
    );
    assert_eq!(refused(db.as_user(Some(ALICE), &bad_source).await), "23514");
    let n = db.admin("select count(*) from cloud_commands").await;
    assert_eq!(n, "3");
}
