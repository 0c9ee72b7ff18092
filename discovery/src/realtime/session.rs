//! One Realtime connection: connect, join this hub's channel, then heartbeats and
//! `postgres_changes` events until something fails or the client is stopped.
//!
//! [`session`] owns the loop and its `select!`; a [`Session`] holds the connection's state and
//! has one method per thing that can happen (a heartbeat tick, a new access token, a frame).

use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::{
    net::TcpStream,
    sync::watch,
    time::{Instant, Interval, MissedTickBehavior},
};
use tokio_util::sync::CancellationToken;
use tokio_websockets::{ClientBuilder, Connector, MaybeTlsStream, Message, WebSocketStream};
use tracing::{debug, info};

use super::{
    CLOSE_TIMEOUT, RealtimeConfig, RealtimeError, Stop, Watch,
    frame::{Frame, reply_reason},
    watches::all_closed,
};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub(super) fn tls_connector() -> Result<Connector, RealtimeError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(RealtimeError::Tls)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Connector::Rustls(tokio_rustls::TlsConnector::from(
        Arc::new(config),
    )))
}

async fn connect(config: &RealtimeConfig, connector: &Connector) -> Result<Socket, RealtimeError> {
    // The URI error is replaced by one without the URL (its query carries the key); the
    // library's connect errors do not carry the URL.
    let builder = ClientBuilder::new()
        .uri(&config.connect_url())
        .map_err(|_| RealtimeError::BadUri)?
        .connector(connector);
    match tokio::time::timeout(config.timing.connect_timeout, builder.connect()).await {
        Err(_) => Err(RealtimeError::ConnectTimeout),
        Ok(Err(e)) => Err(RealtimeError::Connect(e)),
        Ok(Ok((socket, _response))) => Ok(socket),
    }
}

/// The refs of this connection: Phoenix matches replies to requests by `ref`.
struct Refs(u64);

impl Refs {
    fn next(&mut self) -> String {
        self.0 += 1;
        self.0.to_string()
    }
}

/// What a handled frame means for the loop.
enum Next {
    Continue,
    Stop(Stop),
}

/// One connection's state between events.
struct Session<'a> {
    socket: Socket,
    topic: String,
    refs: Refs,
    token: &'a mut watch::Receiver<String>,
    watches: &'a [Watch],
    /// Told `true` once the join is answered `ok` (the caller sets it back to `false`).
    listening: &'a watch::Sender<bool>,
    /// The join's ref and deadline while its reply is outstanding.
    join: Option<(String, Instant)>,
    /// Set once the join was answered `ok`; read by the caller after a failure (a joined
    /// session resets the backoff).
    joined: &'a mut bool,
    /// A token that changed before the join was answered goes out once it is.
    token_pending: bool,
    /// False once the token's sender is gone (the last token is kept).
    token_open: bool,
    /// The outstanding heartbeat's ref and deadline.
    heartbeat_pending: Option<(String, Instant)>,
}

impl Session<'_> {
    async fn send(
        &mut self,
        topic: &str,
        event: &str,
        payload: Value,
    ) -> Result<String, RealtimeError> {
        let r = self.refs.next();
        let frame = json!({"topic": topic, "event": event, "payload": payload, "ref": r});
        self.socket
            .send(Message::text(frame.to_string()))
            .await
            .map_err(RealtimeError::Socket)?;
        Ok(r)
    }

    async fn send_token(&mut self) -> Result<(), RealtimeError> {
        let fresh = self.token.borrow_and_update().clone();
        let topic = self.topic.clone();
        self.send(&topic, "access_token", json!({"access_token": fresh}))
            .await?;
        Ok(())
    }

    /// Closes the socket (bounded by [`CLOSE_TIMEOUT`]) and stops with `why`.
    async fn close(&mut self, why: Stop) -> Result<Stop, RealtimeError> {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.socket.close()).await;
        Ok(why)
    }

    /// The earliest reply deadline: the join's or the heartbeat's.
    fn deadline(&self) -> Option<Instant> {
        [&self.join, &self.heartbeat_pending]
            .into_iter()
            .flatten()
            .map(|(_, d)| *d)
            .min()
    }

    async fn on_heartbeat_tick(
        &mut self,
        reply_timeout: std::time::Duration,
    ) -> Result<(), RealtimeError> {
        if self.heartbeat_pending.is_none() {
            let r = self.send("phoenix", "heartbeat", json!({})).await?;
            self.heartbeat_pending = Some((r, Instant::now() + reply_timeout));
        }
        Ok(())
    }

    async fn on_token_changed(&mut self, changed: bool) -> Result<(), RealtimeError> {
        if !changed {
            // The session owner is gone; keep the last token until told to stop.
            self.token_open = false;
        } else if *self.joined {
            self.send_token().await?;
            debug!("access token updated on the channel");
        } else {
            self.token_pending = true;
        }
        Ok(())
    }

    async fn on_message(&mut self, message: Message) -> Result<Next, RealtimeError> {
        if message.is_close() {
            return Err(RealtimeError::Closed);
        }
        let Some(text) = message.as_text() else {
            return Ok(Next::Continue);
        };
        let Ok(frame) = serde_json::from_str::<Frame>(text) else {
            debug!("ignoring a Realtime frame that is not Phoenix JSON");
            return Ok(Next::Continue);
        };
        match frame.event.as_str() {
            "phx_reply" => self.on_reply(&frame).await.map(|()| Next::Continue),
            "postgres_changes" if frame.topic == self.topic => self.on_change(&frame),
            "phx_error" | "phx_close" if frame.topic == self.topic => {
                Err(RealtimeError::Channel(frame.event))
            }
            "system" if frame.topic == self.topic => {
                // Realtime reports here whether the postgres_changes subscription took;
                // without it no wake-up would come, so a failure starts over.
                let status = frame.payload.get("status").and_then(Value::as_str);
                if status == Some("error") {
                    return Err(RealtimeError::Channel(format!(
                        "a subscription error: {}",
                        reply_reason(&frame.payload)
                    )));
                }
                Ok(Next::Continue)
            }
            _ => Ok(Next::Continue),
        }
    }

    async fn on_reply(&mut self, frame: &Frame) -> Result<(), RealtimeError> {
        let status = frame
            .payload
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let r = frame.ref_string();
        let is_join = matches!((&self.join, &r), (Some((j, _)), Some(r)) if j == r);
        let is_heartbeat =
            matches!((&self.heartbeat_pending, &r), (Some((h, _)), Some(r)) if h == r);
        if is_join {
            if status != "ok" {
                return Err(RealtimeError::JoinRefused(reply_reason(&frame.payload)));
            }
            self.join = None;
            *self.joined = true;
            self.listening.send_replace(true);
            info!("joined; listening for wake-ups");
            if self.token_pending {
                self.token_pending = false;
                self.send_token().await?;
            }
        } else if is_heartbeat {
            self.heartbeat_pending = None;
        } else if status != "ok" {
            debug!(reason = %reply_reason(&frame.payload), "a Realtime request was refused");
        }
        Ok(())
    }

    /// A change wakes the watches it matches; once every receiver is gone the session ends.
    fn on_change(&mut self, frame: &Frame) -> Result<Next, RealtimeError> {
        let Some(data) = frame.payload.get("data") else {
            return Ok(Next::Continue);
        };
        for watch in self.watches.iter().filter(|w| w.matches(data)) {
            // Full: a wake-up already waits; closed: checked below.
            let _ = watch.wake.try_send(());
        }
        if self.watches.iter().all(|w| w.wake.is_closed()) {
            return Ok(Next::Stop(Stop::NobodyListens));
        }
        Ok(Next::Continue)
    }
}

fn heartbeat_interval(period: std::time::Duration) -> Interval {
    let mut heartbeat = tokio::time::interval_at(Instant::now() + period, period);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    heartbeat
}

/// One connection: connect, join, then heartbeats and events until something fails.
pub(super) async fn session(
    config: &RealtimeConfig,
    connector: &Connector,
    token: &mut watch::Receiver<String>,
    listening: &watch::Sender<bool>,
    cancel: &CancellationToken,
    joined: &mut bool,
) -> Result<Stop, RealtimeError> {
    let timing = config.timing;
    let socket = tokio::select! {
        () = cancel.cancelled() => return Ok(Stop::Cancelled),
        () = all_closed(&config.watches) => return Ok(Stop::NobodyListens),
        socket = connect(config, connector) => socket?,
    };
    let mut s = Session {
        socket,
        topic: config.topic(),
        refs: Refs(0),
        token,
        watches: &config.watches,
        listening,
        join: None,
        joined,
        token_pending: false,
        token_open: true,
        heartbeat_pending: None,
    };
    let access_token = s.token.borrow_and_update().clone();
    let topic = s.topic.clone();
    let join_ref = s
        .send(&topic, "phx_join", config.join_payload(&access_token))
        .await?;
    s.join = Some((join_ref, Instant::now() + timing.reply_timeout));
    let mut heartbeat = heartbeat_interval(timing.heartbeat_interval);

    loop {
        let deadline = s.deadline();
        tokio::select! {
            () = cancel.cancelled() => return s.close(Stop::Cancelled).await,
            () = all_closed(s.watches) => return s.close(Stop::NobodyListens).await,
            () = wait_until(deadline) => {
                return Err(RealtimeError::ReplyTimeout(timing.reply_timeout));
            }
            _ = heartbeat.tick() => s.on_heartbeat_tick(timing.reply_timeout).await?,
            changed = s.token.changed(), if s.token_open => {
                s.on_token_changed(changed.is_ok()).await?;
            }
            message = s.socket.next() => {
                let message = match message {
                    None => return Err(RealtimeError::Closed),
                    Some(Err(e)) => return Err(RealtimeError::Socket(e)),
                    Some(Ok(m)) => m,
                };
                if let Next::Stop(why) = s.on_message(message).await? {
                    return s.close(why).await;
                }
            }
        }
    }
}

async fn wait_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tls_is_set_up_with_ring_without_a_process_default() {
        assert!(super::tls_connector().is_ok());
    }
}
