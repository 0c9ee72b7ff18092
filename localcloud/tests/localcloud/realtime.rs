//! The Realtime stand-in: real `postgres_changes` from real writes, in both serializer versions,
//! to the row's user only; joins with bad tokens refused; token pushes, expiry, leaving; and the
//! hub's own Realtime client (helix-discovery, vsn 1.0.0) against it.

use std::time::Duration;

use helix_discovery::{
    realtime::{RealtimeConfig, Timing, Watch, spawn_with_health},
    rest::SupabaseConfig,
};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::support::{
    ALICE, BOB, Phx, WAIT, access_token, cloud, hex32, insert_command, insert_command_with,
    register_hub, rest, sign_in,
};

fn subscription(event: &str, table: &str, filter: &str) -> Value {
    json!({"event": event, "schema": "public", "table": table, "filter": filter})
}

/// The ids the join's reply gave its bindings, checking the reply echoes them.
fn binding_ids(reply: &Value, asked: &Value) -> Vec<u64> {
    assert_eq!(reply["payload"]["status"], "ok", "{reply}");
    let echoed = reply["payload"]["response"]["postgres_changes"]
        .as_array()
        .unwrap();
    let asked = asked.as_array().unwrap();
    assert_eq!(echoed.len(), asked.len());
    echoed
        .iter()
        .zip(asked)
        .map(|(e, a)| {
            for field in ["event", "schema", "table", "filter"] {
                assert_eq!(e[field], a[field], "{field} echoed");
            }
            e["id"].as_u64().expect("a numeric id")
        })
        .collect()
}

async fn cancel(cloud: &helix_localcloud::LocalCloud, token: &str, command: &str) {
    let (status, body) = rest(
        cloud,
        token,
        Method::POST,
        "rpc/cancel_cloud_command",
        Some(json!({"p_command_id": command, "p_reason": "test"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// Both versions: a write reaches its user's channels (all of them), never another user's.
async fn own_rows_only(vsn: &str) {
    let cloud = cloud(None).await;
    let alice = access_token(&sign_in(&cloud, ALICE).await);
    let bob = access_token(&sign_in(&cloud, BOB).await);
    let hub = hex32();
    register_hub(&cloud, &alice, &hub).await;
    register_hub(&cloud, &bob, &hub).await;
    let hub_filter = format!("hub_id=eq.{hub}");
    let topic = format!("realtime:helix-hub-{}", &hub[..16]);

    let mut a = Phx::connect(&cloud, vsn).await;
    let asked = json!([
        subscription("INSERT", "cloud_commands", &hub_filter),
        subscription("UPDATE", "cloud_commands", &hub_filter),
    ]);
    let reply = a.join(&topic, &alice, asked.clone()).await;
    let ids = binding_ids(&reply, &asked);
    assert_eq!(reply["topic"], topic.as_str());
    let system = a.next_event("system").await;
    assert_eq!(
        system["payload"],
        json!({"extension": "postgres_changes", "status": "ok",
               "message": "Subscribed to PostgreSQL", "channel": &topic["realtime:".len()..]})
    );
    let mut b = Phx::connect(&cloud, vsn).await;
    let bob_asked = json!([subscription("INSERT", "cloud_commands", &hub_filter)]);
    let bob_ids = binding_ids(&b.join(&topic, &bob, bob_asked.clone()).await, &bob_asked);
    b.next_event("system").await;

    // Alice's insert reaches Alice.
    let first = insert_command(&cloud, &alice, &hub).await;
    let change = a.next_event("postgres_changes").await;
    assert_eq!(change["topic"], topic.as_str());
    assert_eq!(change["ref"], Value::Null);
    assert_eq!(change["payload"]["ids"], json!([ids[0]]));
    let data = &change["payload"]["data"];
    assert_eq!(
        (&data["type"], &data["schema"], &data["table"]),
        (&json!("INSERT"), &json!("public"), &json!("cloud_commands"))
    );
    assert_eq!(data["record"]["command_id"], first.as_str());
    assert_eq!(data["record"]["hub_id"], hub.as_str());
    assert_eq!(data["record"]["status"], "pending");
    assert_eq!(data["record"]["envelope"], "sealed");
    assert_eq!(data["errors"], Value::Null);
    assert!(data["commit_timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(data.get("old_record").is_none());
    let columns = data["columns"].as_array().unwrap();
    assert!(columns.contains(&json!({"name": "command_id", "type": "uuid"})));
    assert!(columns.contains(&json!({"name": "last_seq", "type": "int4"})));

    // Bob's own insert reaches Bob, and is the first change he hears: Alice's, committed
    // before it, never came.
    let bobs = insert_command(&cloud, &bob, &hub).await;
    let heard = b.next_event("postgres_changes").await;
    assert_eq!(heard["payload"]["ids"], json!(bob_ids));
    assert_eq!(
        heard["payload"]["data"]["record"]["command_id"],
        bobs.as_str()
    );

    // A second channel on Alice's socket follows one command; an update reaches both.
    let command_topic = format!("realtime:helix-command-{}", &first[..16]);
    let follow = json!([subscription(
        "UPDATE",
        "cloud_commands",
        &format!("command_id=eq.{first}")
    )]);
    let follow_ids = binding_ids(
        &a.join(&command_topic, &alice, follow.clone()).await,
        &follow,
    );
    a.next_event("system").await;
    cancel(&cloud, &alice, &first).await;
    let mut got = Vec::new();
    for _ in 0..2 {
        // Bob's insert is not among them: the next two changes are both this update.
        let frame = a.next_event("postgres_changes").await;
        let data = &frame["payload"]["data"];
        assert_eq!(data["type"], "UPDATE", "{frame}");
        assert_eq!(data["record"]["status"], "cancelled");
        assert_eq!(data["old_record"], json!({"command_id": first}));
        got.push((
            frame["topic"].as_str().unwrap().to_owned(),
            frame["payload"]["ids"].to_string(),
        ));
    }
    got.sort();
    let mut want = vec![
        (topic.clone(), json!([ids[1]]).to_string()),
        (command_topic.clone(), json!(follow_ids).to_string()),
    ];
    want.sort();
    assert_eq!(got, want);

    // Heartbeats are answered on topic phoenix.
    let r = a.send(None, "phoenix", "heartbeat", json!({})).await;
    let beat = a.next_event("phx_reply").await;
    assert_eq!(
        (beat["topic"].as_str(), beat["ref"].as_str()),
        (Some("phoenix"), Some(r.as_str()))
    );
    assert_eq!(beat["payload"], json!({"status": "ok", "response": {}}));

    // Leaving: ok, then phx_close, then nothing more on that topic.
    let join_ref = reply["ref"].as_str().unwrap().to_owned();
    let r = a
        .send(Some(&join_ref), &topic, "phx_leave", json!({}))
        .await;
    let left = a.next_event("phx_reply").await;
    assert_eq!(
        (left["ref"].as_str(), &left["payload"]["status"]),
        (Some(r.as_str()), &json!("ok"))
    );
    let closed = a.next_event("phx_close").await;
    assert_eq!(closed["topic"], topic.as_str());
    let r = a
        .send(None, &topic, "access_token", json!({"access_token": alice}))
        .await;
    let unmatched = a.next_event("phx_reply").await;
    assert_eq!(unmatched["ref"], r.as_str());
    assert_eq!(
        unmatched["payload"],
        json!({"status": "error", "response": {"reason": "unmatched topic"}})
    );
    // The left channel hears nothing more: a command inserted now (its INSERT would match it)
    // comes before its own UPDATE, which a third channel hears first.
    let third = insert_command(&cloud, &alice, &hub).await;
    let third_topic = format!("realtime:helix-command-{}", &third[..16]);
    let follow = json!([subscription(
        "UPDATE",
        "cloud_commands",
        &format!("command_id=eq.{third}")
    )]);
    binding_ids(&a.join(&third_topic, &alice, follow.clone()).await, &follow);
    a.next_event("system").await;
    cancel(&cloud, &alice, &third).await;
    let next = a.next_event("postgres_changes").await;
    assert_eq!(
        next["topic"],
        third_topic.as_str(),
        "nothing came for the left channel: {next}"
    );
    assert_eq!(next["payload"]["data"]["type"], "UPDATE");

    a.close().await;
    b.close().await;
    cloud.shutdown().await;
}

#[tokio::test]
async fn vsn_1_delivers_a_users_own_rows_only() {
    own_rows_only("1.0.0").await;
}

#[tokio::test]
async fn vsn_2_delivers_a_users_own_rows_only() {
    own_rows_only("2.0.0").await;
}

#[tokio::test]
async fn bad_keys_and_tokens_are_refused_and_token_pushes_switch_the_user() {
    let cloud = cloud(None).await;
    assert!(
        Phx::try_connect(&cloud, "2.0.0", "not-the-anon-key")
            .await
            .is_err()
    );
    let alice = access_token(&sign_in(&cloud, ALICE).await);
    let bob = access_token(&sign_in(&cloud, BOB).await);
    let hub = hex32();
    register_hub(&cloud, &alice, &hub).await;
    register_hub(&cloud, &bob, &hub).await;
    let asked = json!([subscription(
        "INSERT",
        "cloud_commands",
        &format!("hub_id=eq.{hub}")
    )]);

    let mut s = Phx::connect(&cloud, "2.0.0").await;
    let forged = format!("{}x", &alice[..alice.len() - 1]);
    let refused = s.join("realtime:forged", &forged, asked.clone()).await;
    assert_eq!(refused["payload"]["status"], "error");
    let reason = refused["payload"]["response"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("InvalidJWTToken"), "{reason}");
    let refused = s.join("realtime:junk", "junk", asked.clone()).await;
    assert_eq!(refused["payload"]["status"], "error");

    // A table outside the publication: joined, but the subscription reports an error.
    let odd = json!([subscription("INSERT", "cloud_hubs", "")]);
    let reply = s.join("realtime:odd", &alice, odd).await;
    assert_eq!(reply["payload"]["status"], "ok");
    let system = s.next_event("system").await;
    assert_eq!(system["payload"]["status"], "error");
    assert!(
        system["payload"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Unable to subscribe")
    );

    // Joined as Alice, switched to Bob by an access_token push: Bob's rows, not Alice's.
    let topic = "realtime:switch";
    let reply = s.join(topic, &alice, asked.clone()).await;
    let ids = binding_ids(&reply, &asked);
    s.next_event("system").await;
    let join_ref = reply["ref"].as_str().unwrap().to_owned();
    let r = s
        .send(
            Some(&join_ref),
            topic,
            "access_token",
            json!({"access_token": bob}),
        )
        .await;
    let ok = s.next_event("phx_reply").await;
    assert_eq!(
        (ok["ref"].as_str(), &ok["payload"]["status"]),
        (Some(r.as_str()), &json!("ok"))
    );
    insert_command(&cloud, &alice, &hub).await;
    let bobs = insert_command(&cloud, &bob, &hub).await;
    let change = s.next_event("postgres_changes").await;
    assert_eq!(change["payload"]["ids"], json!(ids));
    assert_eq!(
        change["payload"]["data"]["record"]["command_id"],
        bobs.as_str()
    );

    // A bad token pushed ends the channel as Realtime does: a system error, then phx_close.
    s.send(
        Some(&join_ref),
        topic,
        "access_token",
        json!({"access_token": forged}),
    )
    .await;
    let system = s.next_event("system").await;
    assert_eq!(system["payload"]["status"], "error");
    assert_eq!(system["join_ref"], join_ref.as_str());
    let closed = s.next_event("phx_close").await;
    assert_eq!(closed["topic"], topic);
    s.close().await;
    cloud.shutdown().await;
}

#[tokio::test]
async fn an_expired_token_closes_its_channel_and_cannot_join() {
    let cloud = helix_localcloud::LocalCloud::start(helix_localcloud::Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        jwt_expiry: Duration::from_secs(2),
        ..Default::default()
    })
    .await
    .unwrap();
    let user = cloud.users()[0].clone();
    let token = access_token(&sign_in(&cloud, (&user.email, &user.password)).await);
    let mut s = Phx::connect(&cloud, "1.0.0").await;
    let asked = json!([{"event": "*", "schema": "public"}]);
    let reply = s.join("realtime:short", &token, asked.clone()).await;
    binding_ids(&reply, &asked);
    s.next_event("system").await;
    // Within the token's two seconds (and the next whole second) Realtime ends the channel.
    let system = s.next_event("system").await;
    assert_eq!(system["payload"]["status"], "error");
    assert!(
        system["payload"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Token has expired")
    );
    s.next_event("phx_close").await;
    let late = s.join("realtime:late", &token, asked).await;
    assert_eq!(late["payload"]["status"], "error");
    let reason = late["payload"]["response"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("Token has expired"), "{reason}");
    s.close().await;
    cloud.shutdown().await;
}

#[tokio::test]
async fn an_oversized_row_comes_with_its_small_columns_and_a_413() {
    let cloud = cloud(None).await;
    let alice = access_token(&sign_in(&cloud, ALICE).await);
    let hub = hex32();
    register_hub(&cloud, &alice, &hub).await;
    let mut s = Phx::connect(&cloud, "2.0.0").await;
    let asked = json!([subscription(
        "INSERT",
        "cloud_commands",
        &format!("hub_id=eq.{hub}")
    )]);
    binding_ids(&s.join("realtime:big", &alice, asked.clone()).await, &asked);
    s.next_event("system").await;
    let id = insert_command_with(&cloud, &alice, &hub, &"e".repeat(100_000)).await;
    let change = s.next_event("postgres_changes").await;
    let data = &change["payload"]["data"];
    assert_eq!(data["errors"], json!(["Error 413: Payload Too Large"]));
    assert_eq!(data["record"]["command_id"], id.as_str());
    assert_eq!(data["record"]["hub_id"], hub.as_str());
    assert!(data["record"].get("envelope").is_none());

    // Shutting down with the socket open closes it (a close frame, not a reset).
    assert_eq!(cloud.realtime_sockets(), 1);
    let (code, ()) = tokio::join!(s.close_code(), cloud.shutdown());
    assert_eq!(code, Some(1001), "going away");
}

#[tokio::test]
async fn the_hubs_realtime_client_wakes_on_its_inserts() {
    let cloud = cloud(None).await;
    let token = access_token(&sign_in(&cloud, ALICE).await);
    let hub = hex32();
    register_hub(&cloud, &token, &hub).await;
    let supabase = SupabaseConfig {
        url: cloud.url(),
        anon_key: cloud.anon_key().to_owned(),
        rest_url: None,
    };
    let (commands_tx, mut commands) = mpsc::channel(1);
    let (pairings_tx, mut pairings) = mpsc::channel(1);
    let watches = vec![
        Watch::hub_commands(&hub, commands_tx),
        Watch::hub_pairings(&hub, pairings_tx),
    ];
    let mut config = RealtimeConfig::for_hub(&supabase, &hub, watches).unwrap();
    config.timing = Timing::fast();
    let (_token_tx, token_rx) = watch::channel(token.clone());
    let stop = CancellationToken::new();
    let (task, mut joined) = spawn_with_health(config, token_rx, stop.clone());
    tokio::time::timeout(WAIT, joined.wait_for(|j| *j))
        .await
        .unwrap()
        .unwrap();

    insert_command(&cloud, &token, &hub).await;
    tokio::time::timeout(WAIT, commands.recv())
        .await
        .unwrap()
        .unwrap();
    let expires =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() + Duration::from_secs(300))
            .to_string();
    let pairing = json!({"pairing_id": uuid::Uuid::new_v4().to_string(), "hub_id": hub,
                         "device_id": hex32(), "request": "sealed", "expires_at": expires});
    let (status, body) = rest(
        &cloud,
        &token,
        Method::POST,
        "cloud_pairings",
        Some(pairing),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    tokio::time::timeout(WAIT, pairings.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        commands.try_recv().is_err(),
        "a pairing wakes only the pairing watch"
    );
    assert!(*joined.borrow(), "still joined after heartbeats");

    stop.cancel();
    task.await.unwrap();
    cloud.shutdown().await;
}
