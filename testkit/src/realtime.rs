//! A local stand-in for Supabase Realtime: a websocket server on 127.0.0.1 speaking Phoenix v1
//! JSON frames. It answers joins (with a scripted status), heartbeats (unless told not to) and
//! `access_token` pushes, reports everything it sees as [`Seen`] events, and can push a
//! `postgres_changes` INSERT or UPDATE or drop the newest connection on request.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::mpsc};
use tokio_util::sync::CancellationToken;
use tokio_websockets::{Message, ServerBuilder};

/// Longest wait for the next thing the server sees.
const WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Room for everything a test may leave unread (heartbeats pile up at 50 ms).
const EVENTS_CAPACITY: usize = 1024;
/// Commands to one connection are one at a time from a test.
const COMMANDS_CAPACITY: usize = 8;

/// What the server saw, in order.
#[derive(Debug, Clone)]
pub enum Seen {
    /// A websocket upgrade on `path?query`.
    Connected { conn: usize, uri: String },
    /// A text frame from the client.
    Frame { conn: usize, frame: Value },
    /// The connection ended; `close_frame` when the client sent a websocket close.
    Closed { conn: usize, close_frame: bool },
}

#[derive(Debug)]
enum Command {
    Push(Value),
    Drop,
}

#[derive(Debug, Default)]
struct Script {
    /// Statuses for the next joins; "ok" once empty.
    join_statuses: Mutex<VecDeque<String>>,
    silent_heartbeats: AtomicBool,
    /// Per connection: its command sender and the topic it joined.
    conns: Mutex<Vec<(mpsc::Sender<Command>, Option<String>)>>,
}

#[derive(Debug)]
pub struct MockRealtime {
    pub addr: std::net::SocketAddr,
    seen: mpsc::Receiver<Seen>,
    script: Arc<Script>,
    stop: CancellationToken,
}

impl Drop for MockRealtime {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl MockRealtime {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (seen_tx, seen) = mpsc::channel(EVENTS_CAPACITY);
        let script = Arc::new(Script::default());
        let stop = CancellationToken::new();
        let (s, c) = (script.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    () = c.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => return,
                    },
                };
                let (tx, rx) = mpsc::channel(COMMANDS_CAPACITY);
                let conn = {
                    let mut conns = s.conns.lock().unwrap();
                    conns.push((tx, None));
                    conns.len() - 1
                };
                tokio::spawn(serve(
                    conn,
                    stream,
                    rx,
                    seen_tx.clone(),
                    s.clone(),
                    c.clone(),
                ));
            }
        });
        Self {
            addr,
            seen,
            script,
            stop,
        }
    }

    /// The Supabase project URL whose Realtime endpoint this is.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next joins are answered with these statuses (then "ok").
    pub fn script_joins(&self, statuses: &[&str]) {
        let mut joins = self.script.join_statuses.lock().unwrap();
        joins.extend(statuses.iter().map(|s| s.to_string()));
    }

    /// Stop (or resume) answering heartbeats.
    pub fn answer_heartbeats(&self, answer: bool) {
        self.script
            .silent_heartbeats
            .store(!answer, Ordering::SeqCst);
    }

    fn newest(&self) -> (mpsc::Sender<Command>, Option<String>) {
        self.script.conns.lock().unwrap().last().cloned().unwrap()
    }

    /// Pushes a `postgres_changes` INSERT of a `cloud_commands` row on the newest connection's
    /// channel.
    pub async fn push_insert(&self, hub_id: &str) {
        self.push_change(
            "cloud_commands",
            "INSERT",
            json!({"command_id": "8d6f0a8e-0000-4000-8000-000000000001", "hub_id": hub_id}),
        )
        .await;
    }

    /// Pushes a `postgres_changes` UPDATE of the `cloud_commands` row of `command_id` on the
    /// newest connection's channel.
    pub async fn push_update(&self, command_id: &str) {
        self.push_change(
            "cloud_commands",
            "UPDATE",
            json!({"command_id": command_id, "status": "executing"}),
        )
        .await;
    }

    /// Pushes a `postgres_changes` change (`kind` INSERT or UPDATE) of a row of `table` on the
    /// newest connection's channel.
    pub async fn push_change(&self, table: &str, kind: &str, record: Value) {
        let (tx, topic) = self.newest();
        let columns: Vec<Value> = record
            .as_object()
            .map(|o| {
                o.keys()
                    .map(|k| json!({"name": k, "type": "text"}))
                    .collect()
            })
            .unwrap_or_default();
        let frame = json!({
            "topic": topic.expect("the newest connection has joined"),
            "event": "postgres_changes",
            "payload": {
                "ids": [1],
                "data": {
                    "schema": "public", "table": table, "type": kind,
                    "commit_timestamp": "2025-01-01T00:00:00Z", "errors": null,
                    "columns": columns,
                    "record": record,
                },
            },
            "ref": null,
        });
        tx.send(Command::Push(frame)).await.unwrap();
    }

    /// Drops the newest connection without a close frame.
    pub async fn drop_newest(&self) {
        self.newest().0.send(Command::Drop).await.unwrap();
    }

    /// The next thing the server saw.
    pub async fn next(&mut self) -> Seen {
        tokio::time::timeout(WAIT, self.seen.recv())
            .await
            .expect("the realtime mock saw nothing in time")
            .expect("the realtime mock stopped")
    }

    /// Skips events until one matches.
    pub async fn until<T>(&mut self, mut pick: impl FnMut(&Seen) -> Option<T>) -> T {
        loop {
            let seen = self.next().await;
            if let Some(found) = pick(&seen) {
                return found;
            }
        }
    }

    /// Skips events until a client frame with this event; returns (connection, frame).
    pub async fn frame(&mut self, event: &str) -> (usize, Value) {
        self.until(|s| match s {
            Seen::Frame { conn, frame } if frame["event"] == event => Some((*conn, frame.clone())),
            _ => None,
        })
        .await
    }
}

async fn serve(
    conn: usize,
    stream: tokio::net::TcpStream,
    mut commands: mpsc::Receiver<Command>,
    seen: mpsc::Sender<Seen>,
    script: Arc<Script>,
    stop: CancellationToken,
) {
    let Ok((request, mut ws)) = ServerBuilder::new().accept(stream).await else {
        return;
    };
    let _ = seen
        .send(Seen::Connected {
            conn,
            uri: request.uri().to_string(),
        })
        .await;
    let mut close_frame = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            command = commands.recv() => match command {
                Some(Command::Push(frame)) => {
                    if ws.send(Message::text(frame.to_string())).await.is_err() {
                        break;
                    }
                }
                // Dropping the stream resets the TCP connection: no close frame.
                Some(Command::Drop) | None => break,
            },
            message = ws.next() => {
                let message = match message {
                    Some(Ok(m)) => m,
                    _ => break,
                };
                if message.is_close() {
                    close_frame = true;
                    break;
                }
                let Some(frame) = message.as_text().and_then(|t| serde_json::from_str::<Value>(t).ok()) else {
                    continue;
                };
                let _ = seen.send(Seen::Frame { conn, frame: frame.clone() }).await;
                let status = match frame["event"].as_str() {
                    Some("phx_join") => {
                        script.conns.lock().unwrap()[conn].1 = frame["topic"].as_str().map(str::to_owned);
                        script.join_statuses.lock().unwrap().pop_front().unwrap_or_else(|| "ok".into())
                    }
                    Some("heartbeat") if script.silent_heartbeats.load(Ordering::SeqCst) => continue,
                    Some("heartbeat") | Some("access_token") => "ok".into(),
                    _ => continue,
                };
                let response = if status == "ok" { json!({}) } else { json!({"reason": "scripted refusal"}) };
                let reply = json!({
                    "topic": frame["topic"], "event": "phx_reply", "ref": frame["ref"],
                    "payload": {"status": status, "response": response},
                });
                if ws.send(Message::text(reply.to_string())).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = seen.send(Seen::Closed { conn, close_frame }).await;
}
