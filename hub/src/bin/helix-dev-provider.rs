//! `helix-dev-provider`: a local stand-in for the Anthropic Messages API, for trying Helix
//! Mesh without an account or internet (the README's quickstart uses it).
//!
//! It serves `POST /v1/messages` with `"stream": true` in the documented SSE format
//! (message_start, content_block_start, ping, content_block_delta/text_delta per word,
//! content_block_stop, message_delta, message_stop) and answers by echoing the prompt (the
//! last message; with a session's earlier turns before it, it says how many), one word at a
//! time. It requires an `x-api-key` header (any value) like the real API. It prints
//! `http://127.0.0.1:PORT` on stdout once listening, and runs until SIGINT/SIGTERM.

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use anyhow::Context;
use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
    routing::post,
    serve::ListenerExt,
};
use clap::Parser;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// A local Anthropic-compatible streaming server that echoes prompts (for demos and tests).
#[derive(Debug, Parser)]
#[command(name = "helix-dev-provider", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Pause between streamed words, in milliseconds.
    #[arg(long, default_value_t = 40)]
    word_delay_ms: u64,
}

/// Response chunks buffered per stream; the client's pace sets ours beyond that.
const STREAM_BUFFER: usize = 16;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let delay = Duration::from_millis(args.word_delay_ms);
    let app = Router::new()
        .route("/v1/messages", post(messages))
        .with_state(delay);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    // Each word is a small write: with Nagle's algorithm on, a word waits for the ACK of the
    // one before, which the hub's end delays by up to 40 ms on a reused connection.
    // (A socket that refused it would still work, only slower.)
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    say_url(addr);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        })
        .await?;
    Ok(())
}

#[allow(clippy::print_stdout)]
fn say_url(addr: SocketAddr) {
    println!("http://{addr}");
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"type": "error", "error": {"type": kind, "message": message}}).to_string(),
        ))
        .unwrap_or_default()
}

fn event(name: &str, data: Value) -> Result<Bytes, Infallible> {
    Ok(Bytes::from(format!("event: {name}\ndata: {data}\n\n")))
}

async fn messages(State(delay): State<Duration>, headers: HeaderMap, body: Bytes) -> Response {
    if headers.get("x-api-key").is_none() {
        return error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "x-api-key header is required",
        );
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "body is not JSON",
        );
    };
    if request["stream"] != true {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "this dev server only streams",
        );
    }
    // The prompt is the last message; the ones before it are the session's earlier turns.
    let messages = request["messages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let prompt = match messages.last().map(|m| &m["content"]) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let earlier = messages.len().saturating_sub(1) / 2;
    let model = request["model"].as_str().unwrap_or("dev").to_owned();
    let reply = if earlier == 0 {
        format!("(helix-dev-provider echo) You said: {prompt}\n")
    } else {
        format!("(helix-dev-provider echo, after {earlier} earlier turn(s)) You said: {prompt}\n")
    };
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(async move {
        let head = [
            event(
                "message_start",
                json!({"type":"message_start","message":{"id":"msg_dev","type":"message","role":"assistant","model":model,"content":[],"stop_reason":null,"usage":{"input_tokens":0,"output_tokens":0}}}),
            ),
            event(
                "content_block_start",
                json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
            ),
            event("ping", json!({"type":"ping"})),
        ];
        for chunk in head {
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
        for word in reply.split_inclusive(' ') {
            tokio::time::sleep(delay).await;
            let delta = event(
                "content_block_delta",
                json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":word}}),
            );
            if tx.send(delta).await.is_err() {
                return;
            }
        }
        let tail = [
            event(
                "content_block_stop",
                json!({"type":"content_block_stop","index":0}),
            ),
            event(
                "message_delta",
                json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":1}}),
            ),
            event("message_stop", json!({"type":"message_stop"})),
        ];
        for chunk in tail {
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))
        .unwrap_or_default()
}
