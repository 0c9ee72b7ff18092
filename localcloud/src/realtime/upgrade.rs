//! `GET /realtime/v1/websocket?apikey=<anon key>&vsn=<1.0.0|2.0.0>`: checks the key and the
//! version, answers the websocket handshake (RFC 6455 §4.2.2) itself and hands the upgraded
//! connection to a socket task the realtime tracker owns.

use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use axum::{
    Json,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use data_encoding::BASE64;
use hyper_util::rt::TokioIo;
use serde_json::json;
use sha1::{Digest, Sha1};
use tokio::sync::mpsc;
use tokio_websockets::{Limits, ServerBuilder};
use tracing::{Instrument, debug, info_span};

use super::{MAX_FRAME_BYTES, OUTBOX_CAPACITY, phoenix::Vsn, socket};
use crate::{
    app::Shared,
    gateway::{is_anon_key, query_param},
};

/// The GUID RFC 6455 appends to the client's key.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WS_GUID.as_bytes());
    BASE64.encode(&sha.finalize())
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"message": message}))).into_response()
}

fn header_has(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case(token))
}

/// The route.
pub async fn websocket(State(shared): State<Arc<Shared>>, mut request: Request) -> Response {
    let query = request.uri().query().unwrap_or_default().to_owned();
    let Some(apikey) = query_param(&query, "apikey") else {
        return refuse(StatusCode::FORBIDDEN, "No API key found in request");
    };
    if !is_anon_key(&shared, &apikey) {
        return refuse(StatusCode::FORBIDDEN, "Invalid API key");
    }
    let Ok(apikey_claims) = shared.secret.verify(&apikey) else {
        return refuse(StatusCode::FORBIDDEN, "Invalid API key");
    };
    let Some(vsn) = Vsn::parse(query_param(&query, "vsn").as_deref()) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "unsupported vsn: this Realtime speaks 1.0.0 and 2.0.0",
        );
    };
    let headers = request.headers();
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (Some(key), true, true) = (
        key,
        header_has(headers, header::UPGRADE, "websocket"),
        header_has(headers, header::CONNECTION, "upgrade"),
    ) else {
        return refuse(
            StatusCode::UPGRADE_REQUIRED,
            "this is Realtime's websocket endpoint",
        );
    };
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v != "13")
    {
        return refuse(StatusCode::BAD_REQUEST, "Sec-WebSocket-Version must be 13");
    }
    let realtime = shared.realtime.clone();
    let (outbox_tx, outbox) = mpsc::channel(OUTBOX_CAPACITY);
    // Its own token, not a child of `stop`: a shutdown must close the socket as "going away"
    // (1001), and a child would be cancelled with it, racing the "too slow" close (1013).
    let kick = CancellationToken::new();
    let conn = match realtime.registry.open(outbox_tx, kick.clone()) {
        Ok(conn) => conn,
        Err(refused) => return refuse(StatusCode::SERVICE_UNAVAILABLE, &refused.to_string()),
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    let task_realtime = realtime.clone();
    let span = info_span!("realtime_socket", conn, vsn = ?vsn);
    realtime.tracker.spawn(
        async move {
            let upgraded = match on_upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    debug!(error = %e, "websocket upgrade failed");
                    task_realtime.registry.close(conn);
                    return;
                }
            };
            let limits = Limits::default().max_payload_len(Some(MAX_FRAME_BYTES));
            let ws = ServerBuilder::new()
                .limits(limits)
                .serve(TokioIo::new(upgraded));
            debug!("socket open");
            socket::run(ws, vsn, conn, outbox, kick, apikey_claims, task_realtime).await;
        }
        .instrument(span),
    );
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = response.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&accept_key(&key)) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_accept_key_is_rfc_6455s() {
        // The example of RFC 6455 §1.3.
        assert_eq!(
            super::accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
