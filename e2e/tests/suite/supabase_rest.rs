//! Presence through a PostgREST-compatible server (the HTTP path Supabase serves), with the
//! discovery crate's REST client and JWTs signed with a test secret, and the client's bound on
//! answers. (The cloud route's tables over HTTP: `cloud_sql/http.rs`.)

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
