//! The cloud route v2 over HTTP, through postrust with an ordinary user JWT: the hub's writes
//! without its claim token are refused with the HTTP status and SQLSTATE a client sees, the
//! direct table writes too, and the normal flow works end to end.

use helix_discovery::rest::{Rest, RestError, SupabaseConfig};
use serde_json::{Value, json};

use super::{DEVICE_1, DEVICE_2, HUB, TOKEN, WRONG, uuid};
use crate::support::{
    pg::{ALICE, TestDb},
    postrust::{PostRust, jwt_for},
};

fn client(server: &PostRust, user: &str) -> Rest {
    let config = SupabaseConfig {
        url: "http://unused.invalid".into(),
        anon_key: "anon-key".into(),
        rest_url: Some(server.url.clone()),
    };
    Rest::new(&config, jwt_for(user)).unwrap()
}

/// The HTTP status and SQLSTATE of a refused request. postrust answers 42501 with 401 whether
/// or not the request was signed in (PostgREST proper says 403 for a signed-in one), 22023 and
/// 23514 with 400, 23503 and 23505 with 409, P0002 with 500.
#[track_caller]
fn refused<T: std::fmt::Debug>(result: Result<T, RestError>) -> (u16, String) {
    match result {
        Err(RestError::Api { status, code, .. }) => (status, code.unwrap_or_default()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// A raw request (methods the REST client does not offer): the status and the body's `code`.
async fn raw(server: &PostRust, method: reqwest::Method, path: &str, body: Value) -> (u16, String) {
    let response = reqwest::Client::new()
        .request(method, format!("{}/{path}", server.url))
        .header("apikey", "anon-key")
        .header("prefer", "return=representation")
        .bearer_auth(jwt_for(ALICE))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn over_http_only_the_hub_writes_and_the_flow_works() {
    let db = TestDb::create().await;
    let server = PostRust::start(&db).await;
    let alice = client(&server, ALICE);
    let hub = |token: &str| json!({"p_hub_id": HUB, "p_token": token});
    let _: Value = alice.rpc("register_cloud_hub", &hub(TOKEN)).await.unwrap();
    let err = alice.rpc::<Value>("register_cloud_hub", &hub(WRONG)).await;
    assert_eq!(refused(err), (401, "42501".into()), "no re-registration");

    // A device sends a command (the server's clock, a bounded expiry, a registered hub).
    let id = uuid();
    let row = |hub_id: &str, expires: &str| {
        json!([{
            "command_id": uuid(), "hub_id": hub_id, "source_device_id": DEVICE_1,
            "envelope": "sealed", "expires_at": expires,
        }])
    };
    let soon = (std::time::SystemTime::now() + std::time::Duration::from_secs(3600))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let soon = db.admin(&format!("select to_timestamp({soon})")).await;
    let mut first = row(HUB, &soon);
    first[0]["command_id"] = json!(id);
    let stored: Vec<Value> = alice.insert("cloud_commands", &first, None).await.unwrap();
    assert_eq!(stored[0]["status"], "pending");
    assert_eq!(stored[0]["origin"], "cloud");
    for (body, expected) in [
        (row(HUB, "infinity"), (400, "23514")),
        (row(HUB, "2999-01-01T00:00:00Z"), (400, "23514")),
        (row(&"c".repeat(64), &soon), (409, "23503")),
    ] {
        let err = alice.insert::<Value>("cloud_commands", &body, None).await;
        assert_eq!(refused(err), (expected.0, expected.1.into()), "{body}");
    }
    let mut forged = row(HUB, &soon);
    forged[0]["created_at"] = json!("1970-01-01T00:00:00Z");
    let err = alice.insert::<Value>("cloud_commands", &forged, None).await;
    assert_eq!(refused(err), (401, "42501".into()));

    // Without the hub's token: claim, publish, append, complete, announce are refused.
    let with = |token: &str, extra: Value| {
        let mut args = hub(token);
        args.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        args
    };
    let keys = json!([{"device": DEVICE_2, "envelope": "k-d2"}]);
    let calls = |token: &str| {
        [
            ("claim_cloud_commands", with(token, json!({"p_limit": 8}))),
            (
                "publish_cloud_command",
                with(
                    token,
                    json!({
                        "p_command_id": id, "p_source_device_id": DEVICE_1, "p_prompt": "p", "p_keys": keys,
                    }),
                ),
            ),
            (
                "append_cloud_events",
                with(
                    token,
                    json!({
                        "p_command_id": id, "p_events": [{"seq": 1, "envelope": "forged"}],
                    }),
                ),
            ),
            (
                "complete_cloud_command",
                with(
                    token,
                    json!({
                        "p_command_id": id, "p_status": "completed", "p_reason": "done",
                    }),
                ),
            ),
            (
                "announce_cloud_hub",
                with(
                    token,
                    json!({
                        "p_hub_name": "desk", "p_relay_url": "https://relay", "p_direct_addrs": [],
                        "p_providers": [], "p_version": "",
                    }),
                ),
            ),
        ]
    };
    for (function, args) in calls(WRONG) {
        let err = alice.rpc::<Value>(function, &args).await;
        assert_eq!(refused(err), (401, "42501".into()), "{function}");
    }
    for (function, args) in calls("not-hex") {
        let err = alice.rpc::<Value>(function, &args).await;
        assert_eq!(refused(err), (400, "22023".into()), "{function}");
    }
    // Nor directly on the tables.
    use reqwest::Method;
    let events = json!({"command_id": id, "seq": 1, "user_id": ALICE, "envelope": "forged"});
    for (method, path, body) in [
        (
            Method::PATCH,
            format!("cloud_commands?command_id=eq.{id}"),
            json!({"status": "completed"}),
        ),
        (
            Method::DELETE,
            format!("cloud_commands?command_id=eq.{id}"),
            Value::Null,
        ),
        (Method::POST, "cloud_command_events".into(), events),
        (
            Method::POST,
            "cloud_presence".into(),
            json!({"user_id": ALICE, "hub_id": HUB}),
        ),
        (
            Method::POST,
            "cloud_hubs".into(),
            json!({"hub_id": "b".repeat(64)}),
        ),
    ] {
        let got = raw(&server, method.clone(), &path, body).await;
        assert_eq!(got, (401, "42501".into()), "{method} {path}");
    }

    let untouched: Vec<Value> = alice
        .select(
            "cloud_commands",
            &format!("command_id=eq.{id}&select=status,last_seq,prompt"),
        )
        .await
        .unwrap();
    assert_eq!(
        untouched,
        [json!({"status": "pending", "last_seq": 0, "prompt": null})]
    );

    // The hub with its token: the whole flow.
    let claimed: Vec<Value> = alice
        .rpc("claim_cloud_commands", &with(TOKEN, json!({"p_limit": 8})))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0]["command_id"], json!(id));
    assert_eq!(claimed[0]["status"], "executing");
    let (_, publish) = &calls(TOKEN)[1];
    let published: Value = alice.rpc("publish_cloud_command", publish).await.unwrap();
    assert_eq!(published["prompt"], "p");
    let append = |events: Value| with(TOKEN, json!({"p_command_id": id, "p_events": events}));
    let last: Value = alice
        .rpc(
            "append_cloud_events",
            &append(json!([{"seq": 1, "envelope": "e1"}, {"seq": 2, "envelope": "e2"}])),
        )
        .await
        .unwrap();
    assert_eq!(last, 2);
    let err = alice
        .rpc::<Value>(
            "append_cloud_events",
            &append(json!([{"seq": 2, "envelope": "other"}])),
        )
        .await;
    assert_eq!(refused(err), (409, "23505".into()));
    let (_, complete) = &calls(TOKEN)[3];
    let done: Value = alice.rpc("complete_cloud_command", complete).await.unwrap();
    assert_eq!(done["status"], "completed");
    let err = alice
        .rpc::<Value>(
            "append_cloud_events",
            &append(json!([{"seq": 3, "envelope": "e3"}])),
        )
        .await;
    assert_eq!(refused(err), (500, "P0002".into()), "the command ended");
    let (_, announce) = &calls(TOKEN)[4];
    let _: Value = alice.rpc("announce_cloud_hub", announce).await.unwrap();
    let online: Vec<Value> = alice
        .rpc("online_cloud_hubs", &json!({"p_within_seconds": 300}))
        .await
        .unwrap();
    assert_eq!(online.len(), 1);
    assert_eq!(online[0]["relay_url"], "https://relay");

    // Another device reads what the hub wrote.
    let read: Vec<Value> = alice
        .select(
            "cloud_commands",
            &format!("command_id=eq.{id}&select=status,reason,last_seq,prompt,origin"),
        )
        .await
        .unwrap();
    assert_eq!(
        read,
        [
            json!({"status": "completed", "reason": "done", "last_seq": 2, "prompt": "p", "origin": "cloud"})
        ]
    );
    let key: Vec<Value> = alice
        .select(
            "cloud_command_keys",
            &format!("command_id=eq.{id}&device_id=eq.{DEVICE_2}&select=envelope"),
        )
        .await
        .unwrap();
    assert_eq!(key, [json!({"envelope": "k-d2"})]);
    let events: Vec<Value> = alice
        .select(
            "cloud_command_events",
            &format!("command_id=eq.{id}&seq=gt.0&order=seq.asc&select=seq,envelope&limit=32"),
        )
        .await
        .unwrap();
    assert_eq!(
        events,
        [
            json!({"seq": 1, "envelope": "e1"}),
            json!({"seq": 2, "envelope": "e2"})
        ]
    );
    // The device cancels a pending command of its own.
    let other = row(HUB, &soon);
    let cancel_id = other[0]["command_id"].as_str().unwrap().to_owned();
    let _: Vec<Value> = alice.insert("cloud_commands", &other, None).await.unwrap();
    let cancelled: Value = alice
        .rpc(
            "cancel_cloud_command",
            &json!({"p_command_id": cancel_id, "p_reason": "stop"}),
        )
        .await
        .unwrap();
    assert_eq!(cancelled["status"], "cancelled");
}
