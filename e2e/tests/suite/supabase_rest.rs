//! Presence and the relay tables through a PostgREST-compatible server (the HTTP path Supabase
//! serves), with the discovery crate's REST client and JWTs signed with a test secret.

use helix_discovery::{
    presence::{self, Presence},
    rest::{Rest, SupabaseConfig},
};
use serde_json::{Value, json};

use crate::support::{
    pg::{ALICE, BOB, TestDb},
    postrust::{PostRust, jwt_for},
};

const HUB: &str = "abababababababababababababababababababababababababababababababab";
const DEVICE: &str = "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd";
/// The hub's claim token (v2 presence is written only by a registered hub).
const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn client(server: &PostRust, user: &str) -> Rest {
    let config = SupabaseConfig {
        url: "http://unused.invalid".into(),
        anon_key: "anon-key".into(),
        rest_url: Some(server.url.clone()),
    };
    Rest::new(&config, jwt_for(user)).unwrap()
}

fn presence() -> Presence {
    Presence {
        hub_id: HUB.into(),
        hub_name: "desk".into(),
        relay_url: Some("https://relay.example".into()),
        direct_addrs: vec!["192.0.2.1:7777".into()],
        providers: vec!["anthropic".into()],
        version: "0.1.0".into(),
        last_seen: None,
    }
}

#[tokio::test]
async fn presence_announce_list_protect_and_withdraw() {
    let db = TestDb::create().await;
    let server = PostRust::start(&db).await;
    let (alice, bob) = (client(&server, ALICE), client(&server, BOB));

    let rows = |rest: &Rest| {
        let rest = rest.clone();
        async move {
            rest.select::<Presence>("cloud_presence", &format!("hub_id=eq.{HUB}&select=*"))
                .await
                .unwrap()
        }
    };
    // Only a registered hub announces.
    let err = presence::announce(&alice, TOKEN, &presence())
        .await
        .unwrap_err();
    assert!(err.is_permission_denied(), "{err}");
    let _: Value = alice
        .rpc(
            "register_cloud_hub",
            &json!({"p_hub_id": HUB, "p_token": TOKEN}),
        )
        .await
        .unwrap();
    presence::announce(&alice, TOKEN, &presence())
        .await
        .unwrap();
    let stored = rows(&alice).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].hub_name, "desk");
    assert!(stored[0].last_seen.is_some(), "the server sets last_seen");
    // A second beat refreshes the same row.
    presence::announce(&alice, TOKEN, &presence())
        .await
        .unwrap();
    assert_eq!(rows(&alice).await.len(), 1);

    // Bob sees nothing and cannot write it, with or without the token; nor can Alice without
    // the hub's token.
    assert!(rows(&bob).await.is_empty());
    let hijack = Presence {
        relay_url: Some("https://evil.example".into()),
        ..presence()
    };
    let err = presence::announce(&bob, TOKEN, &hijack).await.unwrap_err();
    assert!(err.is_permission_denied(), "{err}");
    let err = presence::withdraw(&bob, HUB, TOKEN).await.unwrap_err();
    assert!(err.is_permission_denied(), "{err}");
    let wrong = "f".repeat(64);
    let err = presence::announce(&alice, &wrong, &hijack)
        .await
        .unwrap_err();
    assert!(err.is_permission_denied(), "{err}");
    assert_eq!(
        rows(&alice).await[0].relay_url.as_deref(),
        Some("https://relay.example")
    );

    // Gone after a graceful shutdown.
    assert!(presence::withdraw(&alice, HUB, TOKEN).await.unwrap());
    assert!(rows(&alice).await.is_empty());
    assert!(!presence::withdraw(&alice, HUB, TOKEN).await.unwrap());
}

#[tokio::test]
async fn another_user_cannot_touch_commands_over_http() {
    let db = TestDb::create().await;
    let server = PostRust::start(&db).await;
    let (alice, bob) = (client(&server, ALICE), client(&server, BOB));
    let id = uuid::Uuid::new_v4().to_string();
    let row = json!({
        "command_id": id, "source_device_id": DEVICE, "target_hub_id": HUB,
        "envelope": "b3BhcXVl", "expires_at": "2999-01-01T00:00:00Z",
    });
    let stored: Vec<Value> = alice.insert("remote_commands", &[row], None).await.unwrap();
    assert_eq!(stored[0]["status"], "pending");

    let seen: Vec<Value> = bob
        .select("remote_commands", "select=command_id")
        .await
        .unwrap();
    assert!(seen.is_empty());
    let claimed: Vec<Value> = bob
        .rpc("claim_remote_commands", &json!({"p_hub_id": HUB}))
        .await
        .unwrap();
    assert!(claimed.is_empty(), "Bob claims nothing of Alice's");
    let err = bob
        .rpc::<Value>(
            "complete_remote_command",
            &json!({"p_command_id": id, "p_status": "failed"}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("P0002"), "{err}");
    let err = bob
        .rpc::<Value>(
            "append_remote_command_events",
            &json!({"p_command_id": id, "p_events": [{"seq": 1, "envelope": "x"}]}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("P0002"), "{err}");
    let err = bob
        .delete::<Value>("remote_commands", &format!("command_id=eq.{id}"))
        .await
        .unwrap_err();
    assert!(err.is_permission_denied(), "{err}");
    // Forging a row in Alice's name is refused too.
    let forged = json!({
        "command_id": uuid::Uuid::new_v4().to_string(), "user_id": ALICE, "source_device_id": DEVICE,
        "target_hub_id": HUB, "envelope": "x", "expires_at": "2999-01-01T00:00:00Z",
    });
    let err = bob
        .insert::<Value>("remote_commands", &[forged], None)
        .await
        .unwrap_err();
    assert!(err.is_permission_denied(), "{err}");

    // Alice's hub claims it.
    let claimed: Vec<Value> = alice
        .rpc("claim_remote_commands", &json!({"p_hub_id": HUB}))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0]["status"], "executing");
}

#[tokio::test]
async fn relay_state_changes_only_through_the_functions_over_http() {
    let db = TestDb::create().await;
    let server = PostRust::start(&db).await;
    let alice = client(&server, ALICE);
    let id = uuid::Uuid::new_v4().to_string();
    let row = json!({
        "command_id": id, "source_device_id": DEVICE, "target_hub_id": HUB,
        "envelope": "b3BhcXVl", "expires_at": "2999-01-01T00:00:00Z",
    });
    let _: Vec<Value> = alice.insert("remote_commands", &[row], None).await.unwrap();
    let claimed: Vec<Value> = alice
        .rpc("claim_remote_commands", &json!({"p_hub_id": HUB}))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);

    // A PATCH of her own command's status and last_seq is refused (the client has no update
    // call, which is the point: this is what any HTTP client could send).
    let patch = reqwest::Client::new()
        .patch(format!("{}/remote_commands?command_id=eq.{id}", server.url))
        .header("apikey", "anon-key")
        .bearer_auth(jwt_for(ALICE))
        .json(&json!({"status": "completed", "last_seq": 9}))
        .send()
        .await
        .unwrap();
    let status = patch.status();
    let body = patch.text().await.unwrap();
    assert!(
        status.is_client_error(),
        "the update went through: {status} {body}"
    );
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], "42501", "{body}");

    // Appending through the function works; re-sending seq 1 with other contents is refused
    // with the code the client maps to a conflict.
    let append = |envelope: &str| json!({"p_command_id": id, "p_events": [{"seq": 1, "envelope": envelope}]});
    let last: Value = alice
        .rpc("append_remote_command_events", &append("ZXZlbnQgMQ"))
        .await
        .unwrap();
    assert_eq!(last, 1);
    let same: Value = alice
        .rpc("append_remote_command_events", &append("ZXZlbnQgMQ"))
        .await
        .unwrap();
    assert_eq!(same, 1, "an identical retry is accepted");
    let err = alice
        .rpc::<Value>("append_remote_command_events", &append("b3RoZXI"))
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert!(
        err.to_string().contains(&format!(
            "event 1 of command {id} is already stored with a different envelope"
        )),
        "{err}"
    );
    let row: Vec<Value> = alice
        .select(
            "remote_commands",
            &format!("command_id=eq.{id}&select=status,last_seq"),
        )
        .await
        .unwrap();
    assert_eq!(row[0], json!({"status": "executing", "last_seq": 1}));
}

/// A server that answers with more than `MAX_RESPONSE_BYTES` is cut off with a clear error
/// (declared by `Content-Length` or not), and an answer under the cap still reads.
#[tokio::test]
async fn an_oversized_answer_is_refused_not_read_into_memory() {
    use axum::{Router, body::Body, routing::get};
    use helix_discovery::rest::{MAX_RESPONSE_BYTES, RestError};

    let big = || vec![b' '; MAX_RESPONSE_BYTES + 1];
    let app = Router::new()
        .route("/declared", get(move || async move { big() }))
        .route(
            "/streamed",
            get(move || async move {
                let chunks = (0..=MAX_RESPONSE_BYTES / (1 << 20))
                    .map(|_| Ok::<_, std::io::Error>(vec![b' '; 1 << 20]));
                Body::from_stream(futures::stream::iter(chunks))
            }),
        )
        .route("/small", get(|| async { "[1, 2]" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let config = SupabaseConfig {
        url: "http://unused.invalid".into(),
        anon_key: "anon-key".into(),
        rest_url: Some(url),
    };
    let rest = Rest::new(&config, "token".into()).unwrap();
    for path in ["declared", "streamed"] {
        let error = rest.select::<Value>(path, "").await.unwrap_err();
        assert!(
            matches!(error, RestError::TooLarge { .. }),
            "{path}: {error}"
        );
        assert_eq!(
            error.to_string(),
            format!("reading {path}: the answer is over 67108864 bytes; not read")
        );
    }
    let small: Vec<Value> = rest.select("small", "").await.unwrap();
    assert_eq!(small, vec![json!(1), json!(2)]);
    server.abort();
}
