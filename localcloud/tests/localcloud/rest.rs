//! `/rest/v1` through the proxy: the migrations' tables and functions as the signed-in user, the
//! API key, CORS; and helix-discovery's REST client (presence) against it.

use helix_discovery::{
    presence::{self, Presence},
    rest::{Rest, SupabaseConfig},
};
use reqwest::Method;
use serde_json::json;

use crate::support::{
    ALICE, BOB, access_token, cloud, hex32, http, insert_command, register_hub, rest, sign_in,
};

#[tokio::test]
async fn rows_and_functions_as_the_user() {
    let cloud = cloud(None).await;
    let alice = access_token(&sign_in(&cloud, ALICE).await);
    let bob = access_token(&sign_in(&cloud, BOB).await);

    let (status, online) = rest(
        &cloud,
        &alice,
        Method::POST,
        "rpc/online_cloud_hubs",
        Some(json!({"p_within_seconds": 300})),
    )
    .await;
    assert_eq!((status, online), (200, json!([])));

    let hub = hex32();
    register_hub(&cloud, &alice, &hub).await;
    let command = insert_command(&cloud, &alice, &hub).await;
    let query = format!("cloud_commands?command_id=eq.{command}&select=command_id,hub_id,status");
    let (status, rows) = rest(&cloud, &alice, Method::GET, &query, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        rows,
        json!([{"command_id": command, "hub_id": hub, "status": "pending"}])
    );
    // Row-level security: Bob sees none of Alice's rows.
    let (status, rows) = rest(&cloud, &bob, Method::GET, &query, None).await;
    assert_eq!((status, rows), (200, json!([])));
    // The anon key is no session: the functions are not granted to it.
    let (_, refused) = rest(
        &cloud,
        cloud.anon_key(),
        Method::POST,
        "rpc/online_cloud_hubs",
        Some(json!({})),
    )
    .await;
    assert_eq!(refused["code"], "42501", "{refused}");

    // No API key: the gateway's 401, with CORS.
    let bare = http()
        .get(format!("{}/rest/v1/cloud_commands", cloud.url()))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status().as_u16(), 401);
    assert_eq!(bare.headers()["access-control-allow-origin"], "*");

    // A preflight as a browser sends it.
    let preflight = http()
        .request(
            Method::OPTIONS,
            format!("{}/rest/v1/cloud_commands", cloud.url()),
        )
        .header("origin", "http://localhost:5173")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "apikey,authorization,content-type,prefer,x-client-info",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    let allowed = h["access-control-allow-headers"].to_str().unwrap();
    for header in [
        "apikey",
        "authorization",
        "x-client-info",
        "content-type",
        "prefer",
        "accept-profile",
        "content-profile",
        "x-supabase-api-version",
    ] {
        assert!(allowed.contains(header), "{header} in {allowed}");
    }
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("PATCH")
    );
    cloud.shutdown().await;
}

#[tokio::test]
async fn discovery_presence_through_the_proxy() {
    let cloud = cloud(None).await;
    let token = access_token(&sign_in(&cloud, ALICE).await);
    let config = SupabaseConfig {
        url: cloud.url(),
        anon_key: cloud.anon_key().to_owned(),
        rest_url: None,
    };
    let rest = Rest::new(&config, token).unwrap();
    let hub = hex32();
    let claim = hex32();
    rest.rpc::<serde_json::Value>(
        "register_cloud_hub",
        &json!({"p_hub_id": hub, "p_token": claim}),
    )
    .await
    .unwrap();
    let mine = Presence {
        hub_id: hub.clone(),
        hub_name: "desk".into(),
        relay_url: None,
        direct_addrs: vec!["127.0.0.1:4000".into()],
        providers: vec!["anthropic".into()],
        version: "0.1.0".into(),
        last_seen: None,
    };
    presence::announce(&rest, &claim, &mine).await.unwrap();
    let online = presence::online(&rest).await.unwrap();
    assert_eq!(online.len(), 1);
    assert_eq!(
        (online[0].hub_id.as_str(), online[0].hub_name.as_str()),
        (hub.as_str(), "desk")
    );
    let err = presence::announce(&rest, &hex32(), &mine)
        .await
        .unwrap_err();
    assert!(err.is_permission_denied(), "{err}");
    assert!(presence::withdraw(&rest, &hub, &claim).await.unwrap());
    assert!(presence::online(&rest).await.unwrap().is_empty());
    cloud.shutdown().await;
}
