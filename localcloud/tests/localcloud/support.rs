//! Helpers: a local cloud with Alice and Bob, sign-in and REST calls over HTTP, and a Phoenix
//! websocket client speaking either serializer version.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use helix_localcloud::{LocalCloud, Options, UserSpec};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_websockets::{ClientBuilder, MaybeTlsStream, Message, WebSocketStream};

pub const ALICE: (&str, &str) = ("alice@example.com", "alice-password-1");
pub const BOB: (&str, &str) = ("bob@example.com", "bob-password-1");

/// How long a test waits for one frame or one answer.
pub const WAIT: Duration = Duration::from_secs(15);

/// A local cloud with Alice and Bob, serving `web_dir` if given.
pub async fn cloud(web_dir: Option<std::path::PathBuf>) -> LocalCloud {
    let users = [ALICE, BOB]
        .iter()
        .map(|(email, password)| UserSpec {
            email: (*email).into(),
            password: (*password).into(),
        })
        .collect();
    LocalCloud::start(Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        web_dir,
        users,
        ..Options::default()
    })
    .await
    .unwrap_or_else(|e| panic!("the local cloud did not start: {e}"))
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// POSTs JSON to `/auth/v1/<path>` with the anon key; (status, body).
pub async fn auth_post(cloud: &LocalCloud, path: &str, body: Value) -> (u16, Value) {
    let response = http()
        .post(format!("{}/auth/v1/{path}", cloud.url()))
        .header("apikey", cloud.anon_key())
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A password session of `user`.
pub async fn sign_in(cloud: &LocalCloud, user: (&str, &str)) -> Value {
    let (status, session) = auth_post(
        cloud,
        "token?grant_type=password",
        json!({"email": user.0, "password": user.1}),
    )
    .await;
    assert_eq!(status, 200, "{session}");
    session
}

pub fn access_token(session: &Value) -> String {
    session["access_token"].as_str().unwrap().to_owned()
}

/// One PostgREST request as `token`'s user; (status, body).
pub async fn rest(
    cloud: &LocalCloud,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http()
        .request(method, format!("{}/rest/v1/{path}", cloud.url()))
        .header("apikey", cloud.anon_key())
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub fn hex32() -> String {
    let bytes: [u8; 32] = rand::random();
    data_encoding::HEXLOWER.encode(&bytes)
}

/// Registers `hub` under `token`'s user.
pub async fn register_hub(cloud: &LocalCloud, token: &str, hub: &str) {
    let (status, body) = rest(
        cloud,
        token,
        reqwest::Method::POST,
        "rpc/register_cloud_hub",
        Some(json!({"p_hub_id": hub, "p_token": hex32()})),
    )
    .await;
    assert!(status < 300, "register_cloud_hub: {status} {body}");
}

/// Inserts a command for `hub` as a device of `token`'s user; its id.
pub async fn insert_command(cloud: &LocalCloud, token: &str, hub: &str) -> String {
    insert_command_with(cloud, token, hub, "sealed").await
}

pub async fn insert_command_with(
    cloud: &LocalCloud,
    token: &str,
    hub: &str,
    envelope: &str,
) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    let expires =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() + Duration::from_secs(3600))
            .to_string();
    let row = json!({"command_id": id, "hub_id": hub, "source_device_id": hex32(),
                     "envelope": envelope, "expires_at": expires});
    let (status, body) = rest(
        cloud,
        token,
        reqwest::Method::POST,
        "cloud_commands",
        Some(row),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    id
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A Phoenix client, frames normalized to `{join_ref, ref, topic, event, payload}`.
pub struct Phx {
    ws: Socket,
    v2: bool,
    refs: u64,
}

impl Phx {
    pub async fn connect(cloud: &LocalCloud, vsn: &str) -> Self {
        Self::try_connect(cloud, vsn, cloud.anon_key())
            .await
            .unwrap()
    }

    pub async fn try_connect(
        cloud: &LocalCloud,
        vsn: &str,
        apikey: &str,
    ) -> Result<Self, tokio_websockets::Error> {
        let url = format!(
            "ws://{}/realtime/v1/websocket?apikey={apikey}&vsn={vsn}",
            cloud.local_addr()
        );
        let (ws, _) = ClientBuilder::new().uri(&url).unwrap().connect().await?;
        Ok(Self {
            ws,
            v2: vsn == "2.0.0",
            refs: 0,
        })
    }

    /// Sends a frame; its ref.
    pub async fn send(
        &mut self,
        join_ref: Option<&str>,
        topic: &str,
        event: &str,
        payload: Value,
    ) -> String {
        self.refs += 1;
        let r = self.refs.to_string();
        let frame = if self.v2 {
            json!([join_ref, r, topic, event, payload])
        } else {
            json!({"topic": topic, "event": event, "payload": payload, "ref": r})
        };
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .unwrap();
        r
    }

    /// The next text frame, or `None` once the server closed the socket.
    pub async fn recv(&mut self) -> Option<Value> {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("no frame from Realtime in time")?
                .ok()?;
            if message.is_close() {
                return None;
            }
            let Some(text) = message.as_text() else {
                continue;
            };
            let v: Value = serde_json::from_str(text).unwrap();
            return Some(if self.v2 {
                assert!(v.is_array(), "a vsn 2.0.0 frame is an array: {v}");
                json!({"join_ref": v[0], "ref": v[1], "topic": v[2], "event": v[3], "payload": v[4]})
            } else {
                assert!(v.is_object(), "a vsn 1.0.0 frame is an object: {v}");
                v
            });
        }
    }

    /// The close code the server closes with, skipping other frames; `None` for a reset.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("no close from Realtime in time")?
                .ok()?;
            if let Some((code, _)) = message.as_close() {
                return Some(code.into());
            }
        }
    }

    /// The next frame with this event.
    pub async fn next_event(&mut self, event: &str) -> Value {
        loop {
            let frame = self.recv().await.expect("the socket closed");
            if frame["event"] == event {
                return frame;
            }
        }
    }

    /// Joins `topic` with these `postgres_changes` subscriptions; the join's reply.
    pub async fn join(&mut self, topic: &str, token: &str, changes: Value) -> Value {
        self.refs += 1;
        let join_ref = (self.refs + 1).to_string();
        let payload = json!({"config": {"broadcast": {"self": false}, "presence": {"key": ""},
                             "postgres_changes": changes}, "access_token": token});
        let r = self.send(Some(&join_ref), topic, "phx_join", payload).await;
        loop {
            let frame = self.recv().await.expect("the socket closed");
            if frame["event"] == "phx_reply" && frame["ref"] == r.as_str() {
                return frame;
            }
        }
    }

    /// Sends a close frame and waits for the server's.
    pub async fn close(mut self) {
        let _ = self.ws.close().await;
    }
}
