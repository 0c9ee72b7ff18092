//! The cloud route v2 migration (`migrations/20261203000000_cloud_route_v2.sql`) on real
//! PostgreSQL, in ordinary user sessions the way PostgREST runs them:
//!
//! - here: a command's whole life as SQL (register, send, claim, publish, append, complete) and
//!   what another device of the same user reads of it.
//! - `attacks`: a session of the same user without the hub's claim token (M4) is refused every
//!   write a hub makes, and every direct write the tables keep to the functions.
//! - `isolation`: another user sees and touches nothing of Alice's, even registering her hub id.
//! - `claims`: concurrent claims, expiry at claim time, caps under concurrent inserts.
//! - `bounds`: byte bounds (multi-byte text), array bounds, per-call and per-user caps (M3).
//! - `retention`: `prune_cloud` deletes only old finished rows, with their keys and events.
//! - `pairing`: pairing requests and answers.
//! - `http`: the main refusals and the flow through postrust with a user JWT.

mod attacks;
mod bounds;
mod claims;
mod http;
mod isolation;
mod pairing;
mod retention;

use sha2::{Digest, Sha256};

use crate::support::pg::{ALICE, TestDb};

/// Alice's hub (its iroh key, hex).
pub(crate) const HUB: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
/// Another hub of the same user.
pub(crate) const HUB2: &str = "a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2";
/// The claim token only Alice's hub holds.
pub(crate) const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// A well-formed token that is not the hub's.
pub(crate) const WRONG: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
/// Two devices paired with the hub (both sign in as the same user).
pub(crate) const DEVICE_1: &str =
    "d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1";
pub(crate) const DEVICE_2: &str =
    "d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2";

pub(crate) fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The SQLSTATE of a refused request (psql runs with `VERBOSITY=verbose`: `ERROR:  42501: …`).
#[track_caller]
pub(crate) fn refused(result: Result<String, String>) -> String {
    let err = match result {
        Ok(out) => panic!("expected a refusal, got {out:?}"),
        Err(err) => err,
    };
    let at = err
        .find("ERROR:  ")
        .unwrap_or_else(|| panic!("no ERROR in {err}"));
    err[at + 8..at + 13].to_owned()
}

/// `user` registers `hub` with `token`.
pub(crate) async fn register(
    db: &TestDb,
    user: &str,
    hub: &str,
    token: &str,
) -> Result<String, String> {
    db.as_user(
        Some(user),
        &format!("select register_cloud_hub('{hub}', '{token}')"),
    )
    .await
}

/// SQL a device runs to send a command `id` to `hub` through the cloud, expiring in an hour.
pub(crate) fn send_sql(id: &str, hub: &str) -> String {
    format!(
        "insert into cloud_commands (command_id, hub_id, source_device_id, envelope, expires_at) \
         values ('{id}', '{hub}', '{DEVICE_1}', 'sealed-to-the-hub', now() + interval '1 hour') \
         returning status"
    )
}

/// `user`'s device sends a command to `hub`; its id.
pub(crate) async fn send(db: &TestDb, user: &str, hub: &str) -> String {
    let id = uuid();
    let status = db.as_user(Some(user), &send_sql(&id, hub)).await.unwrap();
    assert_eq!(status, "pending");
    id
}

/// `user`'s hub claims with `token`: the claimed ids, one a line.
pub(crate) async fn claim(
    db: &TestDb,
    user: &str,
    hub: &str,
    token: &str,
) -> Result<String, String> {
    db.as_user(
        Some(user),
        &format!("select command_id from claim_cloud_commands('{hub}', '{token}', 100)"),
    )
    .await
}

/// The hub's `publish_cloud_command` of `id` with `prompt` and `keys` (a JSON array).
pub(crate) fn publish_sql(hub: &str, token: &str, id: &str, prompt: &str, keys: &str) -> String {
    format!(
        "select origin || '|' || status || '|' || prompt from publish_cloud_command('{hub}', \
         '{token}', '{id}', '{DEVICE_1}', '{prompt}', '{keys}')"
    )
}

/// The hub's `append_cloud_events` of `events` (a JSON array) to `id`: the new last seq.
pub(crate) fn append_sql(hub: &str, token: &str, id: &str, events: &str) -> String {
    format!("select append_cloud_events('{hub}', '{token}', '{id}', '{events}')")
}

/// The hub's `complete_cloud_command`: `status|reason`.
pub(crate) fn complete_sql(hub: &str, token: &str, id: &str, status: &str) -> String {
    format!(
        "select status || '|' || coalesce(reason, '-') from complete_cloud_command('{hub}', \
         '{token}', '{id}', '{status}', 'done')"
    )
}

/// One key for `device` in `publish_cloud_command`'s `p_keys`.
pub(crate) fn key(device: &str, envelope: &str) -> String {
    format!(r#"{{"device":"{device}","envelope":"{envelope}"}}"#)
}

/// Events `from..=to` with envelopes `e<seq>`.
pub(crate) fn events(from: u32, to: u32) -> String {
    let list: Vec<String> = (from..=to)
        .map(|seq| format!(r#"{{"seq":{seq},"envelope":"e{seq}"}}"#))
        .collect();
    format!("[{}]", list.join(","))
}

#[tokio::test]
async fn a_command_lives_through_the_functions_and_every_device_reads_it() {
    let db = TestDb::create().await;
    // The hub registers; the database keeps only the token's SHA-256, out of users' reach.
    assert_eq!(register(&db, ALICE, HUB, TOKEN).await.unwrap(), "");
    assert_eq!(
        register(&db, ALICE, HUB, TOKEN).await.unwrap(),
        "",
        "idempotent"
    );
    let stored = db
        .admin("select user_id || '|' || hub_id || '|' || encode(token_hash, 'hex') from helix_private.hub_tokens")
        .await;
    let hash = data_encoding::HEXLOWER.encode(&Sha256::digest(TOKEN.as_bytes()));
    assert_eq!(stored, format!("{ALICE}|{HUB}|{hash}"));
    let hubs = db
        .as_user(Some(ALICE), "select hub_id from cloud_hubs")
        .await
        .unwrap();
    assert_eq!(hubs, HUB);

    // Device 1 sends a command; the hub takes it only with its token.
    let id = send(&db, ALICE, HUB).await;
    assert_eq!(refused(claim(&db, ALICE, HUB, WRONG).await), "42501");
    // Publishing before the claim is refused: the row is not the hub's yet.
    let early = publish_sql(HUB, TOKEN, &id, "p", "[]");
    assert_eq!(refused(db.as_user(Some(ALICE), &early).await), "P0002");
    assert_eq!(claim(&db, ALICE, HUB, TOKEN).await.unwrap(), id);
    assert_eq!(
        claim(&db, ALICE, HUB, TOKEN).await.unwrap(),
        "",
        "claimed once"
    );

    // The hub publishes the prompt and the content key for each paired device (a retry with
    // the same arguments changes nothing), then streams the events in order and completes.
    let keys = format!("[{},{}]", key(DEVICE_1, "k-d1"), key(DEVICE_2, "k-d2"));
    let publish = publish_sql(HUB, TOKEN, &id, "sealed-prompt", &keys);
    for _ in 0..2 {
        let row = db.as_user(Some(ALICE), &publish).await.unwrap();
        assert_eq!(row, "cloud|executing|sealed-prompt");
    }
    let other_prompt = publish_sql(HUB, TOKEN, &id, "another-prompt", &keys);
    assert_eq!(
        refused(db.as_user(Some(ALICE), &other_prompt).await),
        "23505"
    );
    let other_key = publish_sql(
        HUB,
        TOKEN,
        &id,
        "sealed-prompt",
        &format!("[{}]", key(DEVICE_2, "forged")),
    );
    assert_eq!(refused(db.as_user(Some(ALICE), &other_key).await), "23505");
    for (batch, last) in [
        (events(1, 2), "2"),
        (events(3, 3), "3"),
        (events(1, 3), "3"),
    ] {
        let got = db
            .as_user(Some(ALICE), &append_sql(HUB, TOKEN, &id, &batch))
            .await
            .unwrap();
        assert_eq!(got, last, "{batch}");
    }
    let spliced = r#"[{"seq":2,"envelope":"other"}]"#;
    let conflict = db
        .as_user(Some(ALICE), &append_sql(HUB, TOKEN, &id, spliced))
        .await;
    assert_eq!(refused(conflict), "23505");
    let gap = db
        .as_user(Some(ALICE), &append_sql(HUB, TOKEN, &id, &events(5, 5)))
        .await;
    assert_eq!(refused(gap), "22023");
    let done = complete_sql(HUB, TOKEN, &id, "completed");
    for _ in 0..2 {
        assert_eq!(
            db.as_user(Some(ALICE), &done).await.unwrap(),
            "completed|done"
        );
    }
    let late = db
        .as_user(Some(ALICE), &append_sql(HUB, TOKEN, &id, &events(4, 4)))
        .await;
    assert_eq!(refused(late), "P0002", "no events after the end");
    let failed = complete_sql(HUB, TOKEN, &id, "failed");
    assert_eq!(refused(db.as_user(Some(ALICE), &failed).await), "55000");

    // Device 2 (another session of Alice) reads the row, its own key, and the events; the keys
    // are exactly the ones the hub wrote.
    let row = db
        .as_user(Some(ALICE), &format!(
            "select origin, status, reason, last_seq, hub_id, source_device_id, prompt, \
             claimed_at is not null, finished_at is not null from cloud_commands where command_id = '{id}'"
        ))
        .await
        .unwrap();
    assert_eq!(
        row,
        format!("cloud|completed|done|3|{HUB}|{DEVICE_1}|sealed-prompt|t|t")
    );
    let mine = db
        .as_user(Some(ALICE), &format!(
            "select envelope from cloud_command_keys where command_id = '{id}' and device_id = '{DEVICE_2}'"
        ))
        .await
        .unwrap();
    assert_eq!(mine, "k-d2");
    let all_keys = db
        .as_user(
            Some(ALICE),
            "select device_id || '=' || envelope from cloud_command_keys order by device_id",
        )
        .await
        .unwrap();
    assert_eq!(all_keys, format!("{DEVICE_1}=k-d1\n{DEVICE_2}=k-d2"));
    let read = db
        .as_user(Some(ALICE), &format!(
            "select seq || '=' || envelope from cloud_command_events where command_id = '{id}' and seq > 1 order by seq"
        ))
        .await
        .unwrap();
    assert_eq!(read, "2=e2\n3=e3");

    // A command the hub got another way (iroh) is mirrored: created `executing`, origin `hub`.
    let mirrored = uuid();
    let publish = publish_sql(
        HUB,
        TOKEN,
        &mirrored,
        "mirrored-prompt",
        &format!("[{}]", key(DEVICE_2, "k")),
    );
    let row = db.as_user(Some(ALICE), &publish).await.unwrap();
    assert_eq!(row, "hub|executing|mirrored-prompt");
    let row = db
        .as_user(
            Some(ALICE),
            &format!(
                "select envelope is null, source_device_id = '{DEVICE_1}', \
             expires_at between now() + interval '59 minutes' and now() + interval '61 minutes' \
             from cloud_commands where command_id = '{mirrored}'"
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        row, "t|t|t",
        "no envelope, the peer as source, an hour by default"
    );
    let last = db
        .as_user(
            Some(ALICE),
            &append_sql(HUB, TOKEN, &mirrored, &events(1, 1)),
        )
        .await
        .unwrap();
    assert_eq!(last, "1");

    // A device cancels; the hub then cannot complete it otherwise, and sees why.
    let cancelled = send(&db, ALICE, HUB).await;
    let row = db
        .as_user(
            Some(ALICE),
            &format!(
                "select status || '|' || reason from cancel_cloud_command('{cancelled}', 'stop')"
            ),
        )
        .await
        .unwrap();
    assert_eq!(row, "cancelled|stop");
    assert_eq!(
        claim(&db, ALICE, HUB, TOKEN).await.unwrap(),
        "",
        "a cancelled row is not claimed"
    );
    let done = complete_sql(HUB, TOKEN, &cancelled, "completed");
    assert_eq!(refused(db.as_user(Some(ALICE), &done).await), "55000");
}
