//! The Supabase Realtime wake-up client against a local Phoenix websocket server: join with
//! the hub's filter and token, wake on INSERT, heartbeats, reconnects, refused joins, token
//! refresh, and cancellation.

use helix_discovery::{
    realtime::{self, RealtimeConfig, Timing},
    rest::SupabaseConfig,
};
use serde_json::json;
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

use crate::support::{
    TEST_TIMEOUT,
    mock_realtime::{MockRealtime, Seen},
};

const ANON_KEY: &str = "anon-key";
const TOKEN: &str = "user-jwt-1";

fn hub_id() -> String {
    "c0ffee".repeat(10) + "abcd"
}

struct Client {
    wake: mpsc::Receiver<()>,
    token: watch::Sender<String>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Client {
    fn start(mock: &MockRealtime) -> Self {
        let supabase = SupabaseConfig {
            url: mock.url(),
            anon_key: ANON_KEY.into(),
            rest_url: None,
        };
        // Capacity 1: one pending wake-up covers any number of inserts.
        let (wake_tx, wake) = mpsc::channel(1);
        let watches = vec![realtime::Watch::hub_commands(&hub_id(), wake_tx)];
        let mut config = RealtimeConfig::for_hub(&supabase, &hub_id(), watches).unwrap();
        config.timing = Timing::fast();
        let (token, token_rx) = watch::channel(TOKEN.to_owned());
        let cancel = CancellationToken::new();
        let task = realtime::spawn(config, token_rx, cancel.clone());
        Self {
            wake,
            token,
            cancel,
            task,
        }
    }

    async fn woken(&mut self) {
        tokio::time::timeout(TEST_TIMEOUT, self.wake.recv())
            .await
            .expect("no wake-up in time")
            .expect("the client stopped");
    }
}

fn topic() -> String {
    format!("realtime:helix-hub-{}", &hub_id()[..16])
}

#[tokio::test]
async fn joins_with_the_hub_filter_and_token_and_wakes_on_insert() {
    let mut mock = MockRealtime::start().await;
    let mut client = Client::start(&mock);

    let uri = mock
        .until(|s| match s {
            Seen::Connected { uri, .. } => Some(uri.clone()),
            _ => None,
        })
        .await;
    assert_eq!(
        uri,
        format!("/realtime/v1/websocket?apikey={ANON_KEY}&vsn=1.0.0")
    );
    let (_, join) = mock.frame("phx_join").await;
    assert_eq!(join["topic"], topic());
    assert!(join["ref"].is_string(), "{join}");
    assert_eq!(
        join["payload"],
        json!({
            "config": {
                "broadcast": {"self": false},
                "presence": {"key": ""},
                "postgres_changes": [{
                    "event": "INSERT", "schema": "public", "table": "cloud_commands",
                    "filter": format!("hub_id=eq.{}", hub_id()),
                }],
            },
            "access_token": TOKEN,
        })
    );
    assert!(
        client.wake.try_recv().is_err(),
        "no wake-up before an insert"
    );

    mock.push_insert(&hub_id()).await;
    client.woken().await;
    // Several inserts while nobody reads collapse into one pending wake-up, never an error.
    for _ in 0..3 {
        mock.push_insert(&hub_id()).await;
    }
    client.woken().await;
    client.cancel.cancel();
    client.task.await.unwrap();
}

#[tokio::test]
async fn heartbeats_are_sent_and_an_unanswered_one_reconnects() {
    let mut mock = MockRealtime::start().await;
    let mut client = Client::start(&mock);
    mock.frame("phx_join").await;
    for _ in 0..3 {
        let (conn, beat) = mock.frame("heartbeat").await;
        assert_eq!(conn, 0, "answered heartbeats keep the first connection");
        assert_eq!(beat["topic"], "phoenix");
        assert_eq!(beat["payload"], json!({}));
    }

    mock.answer_heartbeats(false);
    mock.until(|s| matches!(s, Seen::Closed { conn: 0, .. }).then_some(()))
        .await;
    mock.answer_heartbeats(true);
    let (conn, _) = mock.frame("phx_join").await;
    assert_eq!(conn, 1);
    mock.push_insert(&hub_id()).await;
    client.woken().await;
    client.cancel.cancel();
    client.task.await.unwrap();
}

#[tokio::test]
async fn a_dropped_socket_reconnects_rejoins_and_still_wakes() {
    let mut mock = MockRealtime::start().await;
    let mut client = Client::start(&mock);
    mock.frame("phx_join").await;
    mock.drop_newest().await;

    let (conn, join) = mock.frame("phx_join").await;
    assert_eq!(conn, 1);
    assert_eq!(join["topic"], topic());
    mock.push_insert(&hub_id()).await;
    client.woken().await;
    client.cancel.cancel();
    client.task.await.unwrap();
}

#[tokio::test]
async fn a_refused_join_is_retried() {
    let mut mock = MockRealtime::start().await;
    mock.script_joins(&["error", "error"]);
    let mut client = Client::start(&mock);
    for expected in 0..3 {
        let (conn, join) = mock.frame("phx_join").await;
        assert_eq!(conn, expected);
        assert_eq!(join["topic"], topic());
    }
    // The third join was accepted: the client listens.
    mock.push_insert(&hub_id()).await;
    client.woken().await;
    assert!(!client.task.is_finished());
    client.cancel.cancel();
    client.task.await.unwrap();
}

#[tokio::test]
async fn a_new_access_token_is_sent_on_the_channel_and_used_for_rejoins() {
    let mut mock = MockRealtime::start().await;
    let client = Client::start(&mock);
    mock.frame("phx_join").await;
    client.token.send("user-jwt-2".to_owned()).unwrap();
    let (_, update) = mock.frame("access_token").await;
    assert_eq!(update["topic"], topic());
    assert_eq!(update["payload"], json!({"access_token": "user-jwt-2"}));

    mock.drop_newest().await;
    let (_, rejoin) = mock.frame("phx_join").await;
    assert_eq!(rejoin["payload"]["access_token"], "user-jwt-2");
    client.cancel.cancel();
    client.task.await.unwrap();
}

#[tokio::test]
async fn cancel_ends_the_task_and_closes_the_socket() {
    let mut mock = MockRealtime::start().await;
    let client = Client::start(&mock);
    mock.frame("phx_join").await;
    client.cancel.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(2), client.task)
        .await
        .expect("the task ends promptly")
        .unwrap();
    let close_frame = mock
        .until(|s| match s {
            Seen::Closed {
                conn: 0,
                close_frame,
            } => Some(*close_frame),
            _ => None,
        })
        .await;
    assert!(close_frame, "the client said goodbye with a close frame");
}

#[tokio::test]
async fn dropping_the_wake_receiver_stops_the_client() {
    let mut mock = MockRealtime::start().await;
    let client = Client::start(&mock);
    mock.frame("phx_join").await;
    drop(client.wake);
    tokio::time::timeout(TEST_TIMEOUT, client.task)
        .await
        .expect("the task ends once nobody listens")
        .unwrap();
    let close_frame = mock
        .until(|s| match s {
            Seen::Closed {
                conn: 0,
                close_frame,
            } => Some(*close_frame),
            _ => None,
        })
        .await;
    assert!(close_frame);
}
