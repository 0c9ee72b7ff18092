//! One Realtime socket: Phoenix frames in, replies and pushes out. [`run`] owns the loop and
//! its `select!`; a [`Socket`] has one method per thing a client sends (a heartbeat, a join, an
//! `access_token`, a leave). It ends on a close frame, a silent client ([`IDLE_TIMEOUT`]), an
//! overflowing outbox, or the server's shutdown (a close frame `1001 going away`).

use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::{io::AsyncRead, io::AsyncWrite, sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;
use tokio_websockets::{CloseCode, Message, WebSocketStream};
use tracing::debug;

use super::{
    CLOSE_TIMEOUT, IDLE_TIMEOUT, Realtime,
    binding::Binding,
    phoenix::{Msg, Vsn},
    registry::{Channel, ConnId},
};
use crate::jwt::{Claims, JwtError, now_secs};

/// Why the loop ended.
enum End {
    /// The client closed, or the connection failed.
    Gone,
    /// Stop with this close frame.
    Close(CloseCode, &'static str),
}

struct Socket<S> {
    ws: WebSocketStream<S>,
    vsn: Vsn,
    conn: ConnId,
    realtime: Arc<Realtime>,
    /// The claims of the `apikey` (the anon key): a join without `access_token` uses them.
    apikey_claims: Claims,
}

/// Realtime's wording of a refused token.
fn token_error(e: &JwtError) -> String {
    match e {
        JwtError::Expired { ago } => format!("Token has expired {ago} seconds ago"),
        other => format!("InvalidJWTToken: {other}"),
    }
}

/// A channel's subtopic (the topic without `realtime:`), as `system` messages name it.
fn subtopic(topic: &str) -> &str {
    topic.strip_prefix("realtime:").unwrap_or(topic)
}

impl<S: AsyncRead + AsyncWrite + Unpin> Socket<S> {
    async fn send(&mut self, msg: &Msg) -> Result<(), End> {
        self.ws
            .send(Message::text(msg.encode(self.vsn)))
            .await
            .map_err(|_| End::Gone)
    }

    async fn reply(&mut self, to: &Msg, status: &str, response: Value) -> Result<(), End> {
        let join_ref = to.join_ref.clone();
        self.send(&Msg::reply(to, join_ref, status, response)).await
    }

    /// A `system` message and `phx_close`: how Realtime ends a channel whose token failed.
    async fn end_channel(
        &mut self,
        topic: &str,
        join_ref: Option<String>,
        message: String,
    ) -> Result<(), End> {
        let system = json!({"extension": "system", "status": "error", "message": message, "channel": subtopic(topic)});
        self.send(&Msg::push(join_ref.clone(), topic, "system", system))
            .await?;
        self.send(&Msg::push(join_ref, topic, "phx_close", json!({})))
            .await
    }

    async fn on_frame(&mut self, msg: Msg) -> Result<(), End> {
        if msg.topic == "phoenix" {
            return match msg.event.as_str() {
                "heartbeat" => self.reply(&msg, "ok", json!({})).await,
                _ => Ok(()),
            };
        }
        match msg.event.as_str() {
            "phx_join" => self.on_join(msg).await,
            _ => match self.realtime.registry.joined(self.conn, &msg.topic) {
                None => {
                    self.reply(&msg, "error", json!({"reason": "unmatched topic"}))
                        .await
                }
                Some(join_ref) => self.on_channel_event(msg, join_ref).await,
            },
        }
    }

    async fn on_join(&mut self, msg: Msg) -> Result<(), End> {
        if !msg.topic.starts_with("realtime:") {
            return self
                .reply(&msg, "error", json!({"reason": "unmatched topic"}))
                .await;
        }
        let join_ref = msg.join_ref.clone().or_else(|| msg.reference.clone());
        let claims = match msg.payload.get("access_token").and_then(Value::as_str) {
            Some(token) => match self.realtime.secret.verify(token) {
                Ok(claims) => claims,
                Err(e) => {
                    let reason = token_error(&e);
                    debug!(topic = %msg.topic, %reason, "join refused");
                    return self.reply(&msg, "error", json!({"reason": reason})).await;
                }
            },
            None => self.apikey_claims.clone(),
        };
        let specs: Vec<Value> = msg
            .payload
            .pointer("/config/postgres_changes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let registry = &self.realtime.registry;
        let mut echoed = Vec::with_capacity(specs.len());
        let mut bindings = Vec::with_capacity(specs.len());
        let mut problems = Vec::new();
        for spec in &specs {
            let id = registry.next_binding_id();
            let mut echo = spec.clone();
            if let Some(o) = echo.as_object_mut() {
                o.insert("id".into(), json!(id));
            }
            echoed.push(echo);
            match Binding::parse(id, spec, registry.tables()) {
                Ok(b) => bindings.push(b),
                Err(why) => problems.push(why),
            }
        }
        let channel = Channel {
            join_ref: join_ref.clone(),
            sub: claims.sub.clone(),
            exp: claims.exp,
            bindings,
        };
        match registry.join(self.conn, &msg.topic, channel) {
            Err(refused) => {
                return self
                    .reply(&msg, "error", json!({"reason": refused.to_string()}))
                    .await;
            }
            Ok(Some(old)) if old.join_ref != join_ref => {
                // Phoenix closes the channel a second join of the same topic replaces.
                self.send(&Msg::push(old.join_ref, &msg.topic, "phx_close", json!({})))
                    .await?;
            }
            Ok(_) => {}
        }
        debug!(topic = %msg.topic, user = ?claims.sub, bindings = specs.len(), "joined");
        let reply = Msg::reply(
            &msg,
            join_ref.clone(),
            "ok",
            json!({"postgres_changes": echoed}),
        );
        self.send(&reply).await?;
        if specs.is_empty() {
            return Ok(());
        }
        let system = if problems.is_empty() {
            json!({"extension": "postgres_changes", "status": "ok", "message": "Subscribed to PostgreSQL", "channel": subtopic(&msg.topic)})
        } else {
            json!({"extension": "postgres_changes", "status": "error", "message": problems.join("; "), "channel": subtopic(&msg.topic)})
        };
        self.send(&Msg::push(join_ref, &msg.topic, "system", system))
            .await
    }

    async fn on_channel_event(&mut self, msg: Msg, join_ref: Option<String>) -> Result<(), End> {
        match msg.event.as_str() {
            "phx_leave" => {
                self.realtime.registry.leave(self.conn, &msg.topic);
                self.reply(&msg, "ok", json!({})).await?;
                self.send(&Msg::push(join_ref, &msg.topic, "phx_close", json!({})))
                    .await
            }
            "access_token" => {
                let token = msg.payload.get("access_token").and_then(Value::as_str);
                match token.map(|t| self.realtime.secret.verify(t)) {
                    Some(Ok(claims)) => {
                        self.realtime
                            .registry
                            .refresh_token(self.conn, &msg.topic, claims.sub, claims.exp);
                        self.reply(&msg, "ok", json!({})).await
                    }
                    Some(Err(e)) => {
                        self.realtime.registry.leave(self.conn, &msg.topic);
                        self.end_channel(&msg.topic, join_ref, token_error(&e))
                            .await
                    }
                    None => {
                        let reason = "access_token needs an access_token";
                        self.reply(&msg, "error", json!({"reason": reason})).await
                    }
                }
            }
            other if msg.reference.is_some() => {
                let reason = format!(
                    "{other} is not supported by helix-local-cloud's Realtime (postgres_changes only)"
                );
                self.reply(&msg, "error", json!({"reason": reason})).await
            }
            _ => Ok(()),
        }
    }

    /// Ends the channels whose token expired.
    async fn on_expiry(&mut self) -> Result<(), End> {
        let now = now_secs();
        for (topic, join_ref) in self.realtime.registry.take_expired(self.conn, now) {
            debug!(%topic, "token expired; closing the channel");
            self.end_channel(&topic, join_ref, "Token has expired 0 seconds ago".into())
                .await?;
        }
        Ok(())
    }

    /// Sends a close frame (unless the client closed first), waits for the client's, and
    /// shuts the connection down, all within [`CLOSE_TIMEOUT`].
    async fn close(&mut self, frame: Option<(CloseCode, &str)>) {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            if let Some((code, reason)) = frame {
                let _ = self.ws.send(Message::close(Some(code), reason)).await;
            }
            let _ = self.ws.close().await;
        })
        .await;
    }
}

/// When a channel's token expires, as an instant (now if it already has).
fn expiry_instant(exp: Option<i64>) -> Option<Instant> {
    let exp = exp?;
    let wait = u64::try_from(exp.saturating_sub(now_secs())).unwrap_or(0);
    Some(Instant::now() + std::time::Duration::from_secs(wait))
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Serves one upgraded socket until it ends; `outbox` is the registry's way in.
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    ws: WebSocketStream<S>,
    vsn: Vsn,
    conn: ConnId,
    mut outbox: mpsc::Receiver<Msg>,
    kick: CancellationToken,
    apikey_claims: Claims,
    realtime: Arc<Realtime>,
) {
    let stop = realtime.stop.clone();
    let mut s = Socket {
        ws,
        vsn,
        conn,
        realtime,
        apikey_claims,
    };
    let mut idle = Instant::now() + IDLE_TIMEOUT;
    let end = loop {
        let expiry = expiry_instant(s.realtime.registry.next_expiry(conn));
        let step = tokio::select! {
            () = stop.cancelled() => Err(End::Close(CloseCode::GOING_AWAY, "server shutting down")),
            () = kick.cancelled() => Err(End::Close(CloseCode::SERVICE_OVERLOAD, "too slow: changes piled up")),
            () = tokio::time::sleep_until(idle) => Err(End::Close(CloseCode::NORMAL_CLOSURE, "heartbeat timeout")),
            () = sleep_until(expiry) => s.on_expiry().await,
            Some(msg) = outbox.recv() => s.send(&msg).await,
            frame = s.ws.next() => match frame {
                Some(Ok(message)) if message.is_close() => Err(End::Gone),
                Some(Ok(message)) => {
                    idle = Instant::now() + IDLE_TIMEOUT;
                    match message.as_text().and_then(|t| Msg::decode(vsn, t)) {
                        Some(msg) => s.on_frame(msg).await,
                        None => {
                            debug!("ignoring a frame that is not Phoenix JSON of this vsn");
                            Ok(())
                        }
                    }
                }
                Some(Err(_)) | None => Err(End::Gone),
            },
        };
        if let Err(end) = step {
            break end;
        }
    };
    s.realtime.registry.close(conn);
    match end {
        End::Close(code, reason) => s.close(Some((code, reason))).await,
        End::Gone => s.close(None).await,
    }
    debug!("socket closed");
}
