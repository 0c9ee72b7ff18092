//! One Realtime connection: connect, join this hub's channel, then heartbeats and
//! `postgres_changes` events until something fails or the client is stopped.

use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::{
    net::TcpStream,
    sync::{mpsc, watch},
    time::{Instant, MissedTickBehavior},
};
use tokio_util::sync::CancellationToken;
use tokio_websockets::{ClientBuilder, Connector, MaybeTlsStream, Message, WebSocketStream};
use tracing::{debug, info};

use super::{
    CLOSE_TIMEOUT, RealtimeConfig, RealtimeError, Stop,
    frame::{Frame, reply_reason},
};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub(super) fn tls_connector() -> Result<Connector, RealtimeError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| RealtimeError::Connect(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Connector::Rustls(tokio_rustls::TlsConnector::from(
        Arc::new(config),
    )))
}

async fn connect(config: &RealtimeConfig, connector: &Connector) -> Result<Socket, RealtimeError> {
    // Errors are built from the library's messages, which do not carry the URL (and its key).
    let builder = ClientBuilder::new()
        .uri(&config.connect_url())
        .map_err(|_| RealtimeError::Connect("the Realtime URL is not a valid URI".into()))?
        .connector(connector);
    match tokio::time::timeout(config.timing.connect_timeout, builder.connect()).await {
        Err(_) => Err(RealtimeError::ConnectTimeout),
        Ok(Err(e)) => Err(RealtimeError::Connect(e.to_string())),
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

async fn send(
    socket: &mut Socket,
    topic: &str,
    event: &str,
    payload: Value,
    r: &str,
) -> Result<(), RealtimeError> {
    let frame = json!({"topic": topic, "event": event, "payload": payload, "ref": r});
    socket
        .send(Message::text(frame.to_string()))
        .await
        .map_err(|e| RealtimeError::Socket(e.to_string()))
}

/// One connection: connect, join, then heartbeats and events until something fails.
pub(super) async fn session(
    config: &RealtimeConfig,
    connector: &Connector,
    token: &mut watch::Receiver<String>,
    wake: &mpsc::Sender<()>,
    cancel: &CancellationToken,
    joined: &mut bool,
) -> Result<Stop, RealtimeError> {
    let timing = config.timing;
    let mut socket = tokio::select! {
        () = cancel.cancelled() => return Ok(Stop::Cancelled),
        () = wake.closed() => return Ok(Stop::NobodyListens),
        socket = connect(config, connector) => socket?,
    };
    let topic = config.topic();
    let mut refs = Refs(0);

    let join_ref = refs.next();
    let access_token = token.borrow_and_update().clone();
    send(
        &mut socket,
        &topic,
        "phx_join",
        config.join_payload(&access_token),
        &join_ref,
    )
    .await?;
    let mut join_deadline = Some(Instant::now() + timing.reply_timeout);
    // A token that changed before the join was answered goes out once it is.
    let mut token_pending = false;
    let mut token_open = true;

    let mut heartbeat = tokio::time::interval_at(
        Instant::now() + timing.heartbeat_interval,
        timing.heartbeat_interval,
    );
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut heartbeat_pending: Option<(String, Instant)> = None;

    loop {
        let deadline = [join_deadline, heartbeat_pending.as_ref().map(|(_, d)| *d)]
            .into_iter()
            .flatten()
            .min();
        tokio::select! {
            () = cancel.cancelled() => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.close()).await;
                return Ok(Stop::Cancelled);
            }
            () = wake.closed() => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.close()).await;
                return Ok(Stop::NobodyListens);
            }
            () = wait_until(deadline) => {
                return Err(RealtimeError::ReplyTimeout(timing.reply_timeout));
            }
            _ = heartbeat.tick() => {
                if heartbeat_pending.is_none() {
                    let r = refs.next();
                    send(&mut socket, "phoenix", "heartbeat", json!({}), &r).await?;
                    heartbeat_pending = Some((r, Instant::now() + timing.reply_timeout));
                }
            }
            changed = token.changed(), if token_open => {
                if changed.is_err() {
                    // The session owner is gone; keep the last token until told to stop.
                    token_open = false;
                } else if *joined {
                    let fresh = token.borrow_and_update().clone();
                    let r = refs.next();
                    send(&mut socket, &topic, "access_token", json!({"access_token": fresh}), &r).await?;
                    debug!("access token updated on the channel");
                } else {
                    token_pending = true;
                }
            }
            message = socket.next() => {
                let message = match message {
                    None => return Err(RealtimeError::Closed),
                    Some(Err(e)) => return Err(RealtimeError::Socket(e.to_string())),
                    Some(Ok(m)) => m,
                };
                if message.is_close() {
                    return Err(RealtimeError::Closed);
                }
                let Some(text) = message.as_text() else { continue };
                let Ok(frame) = serde_json::from_str::<Frame>(text) else {
                    debug!("ignoring a Realtime frame that is not Phoenix JSON");
                    continue;
                };
                match frame.event.as_str() {
                    "phx_reply" => {
                        let status = frame.payload.get("status").and_then(Value::as_str).unwrap_or_default();
                        let r = frame.ref_string();
                        if join_deadline.is_some() && r.as_deref() == Some(join_ref.as_str()) {
                            if status != "ok" {
                                return Err(RealtimeError::JoinRefused(reply_reason(&frame.payload)));
                            }
                            join_deadline = None;
                            *joined = true;
                            info!("listening for remote commands");
                            if token_pending {
                                token_pending = false;
                                let fresh = token.borrow_and_update().clone();
                                let r = refs.next();
                                send(&mut socket, &topic, "access_token", json!({"access_token": fresh}), &r).await?;
                            }
                        } else if heartbeat_pending.as_ref().map(|(h, _)| Some(h.as_str())) == Some(r.as_deref()) {
                            heartbeat_pending = None;
                        } else if status != "ok" {
                            debug!(reason = %reply_reason(&frame.payload), "a Realtime request was refused");
                        }
                    }
                    "postgres_changes" if frame.topic == topic => {
                        let kind = frame.payload.pointer("/data/type").and_then(Value::as_str);
                        if kind == Some("INSERT") {
                            match wake.try_send(()) {
                                Ok(()) | Err(mpsc::error::TrySendError::Full(())) => {}
                                Err(mpsc::error::TrySendError::Closed(())) => {
                                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.close()).await;
                                    return Ok(Stop::NobodyListens);
                                }
                            }
                        }
                    }
                    "phx_error" | "phx_close" if frame.topic == topic => {
                        return Err(RealtimeError::Channel(frame.event));
                    }
                    "system" if frame.topic == topic => {
                        // Realtime reports here whether the postgres_changes subscription
                        // took; without it no wake-up would come, so a failure starts over.
                        let status = frame.payload.get("status").and_then(Value::as_str);
                        if status == Some("error") {
                            return Err(RealtimeError::Channel(format!(
                                "a subscription error: {}",
                                reply_reason(&frame.payload)
                            )));
                        }
                    }
                    _ => {}
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
