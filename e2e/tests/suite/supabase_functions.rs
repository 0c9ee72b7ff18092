//! The Supabase migrations' functions as the only way to change relay state: a user cannot
//! touch the server-managed columns of her own command or its events directly, and an event
//! sent again must match the one stored. Real PostgreSQL, as in `supabase_sql.rs`.

use super::supabase_sql::{HUB_A, insert_command, uuid};
use crate::support::pg::{ALICE, BOB, TestDb};

/// Alice's command `id`, claimed by her hub (status `executing`).
async fn claimed_command(db: &TestDb) -> String {
    let id = uuid();
    db.as_user(
        Some(ALICE),
        &insert_command(&id, HUB_A, "now() + interval '1 hour'"),
    )
    .await
    .unwrap();
    let claimed = db
        .as_user(
            Some(ALICE),
            &format!("select command_id from claim_remote_commands('{HUB_A}')"),
        )
        .await
        .unwrap();
    assert_eq!(claimed, id);
    id
}

#[tokio::test]
async fn users_change_relay_state_only_through_the_functions() {
    let db = TestDb::create().await;
    let id = claimed_command(&db).await;
    // Every server-managed column of her own command, and the events, are out of reach.
    for set in [
        "status = 'completed'",
        "last_seq = 7",
        "reason = 'forged'",
        "claimed_at = null",
        "finished_at = now()",
        "envelope = 'x'",
        "expires_at = now() + interval '1 day'",
    ] {
        let err = db
            .as_user(
                Some(ALICE),
                &format!("update remote_commands set {set} where command_id = '{id}'"),
            )
            .await
            .unwrap_err();
        assert!(
            err.contains("42501") && err.contains("permission denied"),
            "{set}: {err}"
        );
    }
    let err = db
        .as_user(
            Some(ALICE),
            &format!("insert into remote_command_events (command_id, seq, envelope) values ('{id}', 1, 'forged')"),
        )
        .await
        .unwrap_err();
    assert!(err.contains("42501"), "{err}");
    let row = db
        .admin(&format!(
            "select status || '|' || last_seq || '|' || coalesce(reason, '-') from remote_commands where command_id = '{id}'"
        ))
        .await;
    assert_eq!(row, "executing|0|-", "nothing changed");

    // The functions still do what they are for.
    let last = db
        .as_user(
            Some(ALICE),
            &format!(
                "select append_remote_command_events('{id}', '[{{\"seq\":1,\"envelope\":\"e1\"}}]')"
            ),
        )
        .await
        .unwrap();
    assert_eq!(last, "1");
    let done = db
        .as_user(
            Some(ALICE),
            &format!(
                "select status || '|' || last_seq from complete_remote_command('{id}', 'cancelled', 'stopped by the user')"
            ),
        )
        .await
        .unwrap();
    assert_eq!(done, "cancelled|1");
    // Bob still reaches none of Alice's rows through them.
    let bob = db
        .as_user(
            Some(BOB),
            &format!("select complete_remote_command('{id}', 'cancelled')"),
        )
        .await
        .unwrap_err();
    assert!(bob.contains("P0002"), "{bob}");
    // The service key reaches every user's rows, as it did before.
    let other = claimed_command(&db).await;
    let served = db
        .as_service(&format!(
            "select status from complete_remote_command('{other}', 'failed', 'by the operator')"
        ))
        .await
        .unwrap();
    assert_eq!(served, "failed");
}

#[tokio::test]
async fn a_resent_event_must_match_the_stored_one() {
    let db = TestDb::create().await;
    let id = claimed_command(&db).await;
    let append = |events: &str| format!("select append_remote_command_events('{id}', '{events}')");
    let last = db
        .as_user(
            Some(ALICE),
            &append(r#"[{"seq":1,"envelope":"e1"},{"seq":2,"envelope":"e2"}]"#),
        )
        .await
        .unwrap();
    assert_eq!(last, "2");

    // The same seq with other contents is refused with its own SQLSTATE.
    let conflict = db
        .as_user(
            Some(ALICE),
            &append(r#"[{"seq":1,"envelope":"e1"},{"seq":2,"envelope":"other"}]"#),
        )
        .await
        .unwrap_err();
    assert!(
        conflict.contains(&format!(
            "23505: event 2 of command {id} is already stored with a different envelope"
        )),
        "{conflict}"
    );
    // A batch that overlaps the stored events and goes on is accepted when the overlap matches…
    let last = db
        .as_user(
            Some(ALICE),
            &append(r#"[{"seq":2,"envelope":"e2"},{"seq":3,"envelope":"e3"}]"#),
        )
        .await
        .unwrap();
    assert_eq!(last, "3");
    // …and refused as a whole when it does not: the new event is not stored either.
    let conflict = db
        .as_user(
            Some(ALICE),
            &append(r#"[{"seq":3,"envelope":"changed"},{"seq":4,"envelope":"e4"}]"#),
        )
        .await
        .unwrap_err();
    assert!(conflict.contains("23505: event 3 of command"), "{conflict}");
    let stored = db
        .admin(&format!(
            "select string_agg(seq || '=' || envelope, ',' order by seq) || '|' || (select last_seq from remote_commands where command_id = '{id}') from remote_command_events where command_id = '{id}'"
        ))
        .await;
    assert_eq!(stored, "1=e1,2=e2,3=e3|3");
    // Numbering is still checked across the overlap.
    let jumbled = db
        .as_user(
            Some(ALICE),
            &append(r#"[{"seq":3,"envelope":"e3"},{"seq":5,"envelope":"e5"}]"#),
        )
        .await
        .unwrap_err();
    assert!(jumbled.contains("not numbered consecutively"), "{jumbled}");
}
