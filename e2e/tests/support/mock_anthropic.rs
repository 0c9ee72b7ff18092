//! A local HTTP server that speaks the Anthropic Messages API's streaming format
//! (`POST /v1/messages`, `text/event-stream`: message_start, content_block_start,
//! content_block_delta/text_delta, ping, content_block_stop, message_delta, message_stop, and
//! `error` events), with scripted replies so tests can make it slow, fail, or hang.

use std::{
    collections::VecDeque,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
    routing::post,
};
use tokio::sync::{Notify, mpsc};

/// How one request is answered.
#[derive(Debug, Clone)]
pub enum Reply {
    /// HTTP 200 and an SSE stream of these text deltas, `pause` apart, then `end`.
    Stream {
        chunks: Vec<String>,
        pause: Duration,
        end: End,
    },
    /// An HTTP error with an Anthropic-style JSON body.
    Status {
        code: u16,
        retry_after: Option<u32>,
        error_type: String,
    },
}

#[derive(Debug, Clone)]
pub enum End {
    /// `message_delta` + `message_stop`.
    Stop,
    /// An `error` event (after HTTP 200).
    Error { error_type: String },
    /// Wait until [`MockAnthropic::release`] (or the client goes away), then `message_stop`.
    Hang,
}

impl Reply {
    pub fn text(chunks: &[&str]) -> Self {
        Reply::Stream {
            chunks: chunks.iter().map(|c| c.to_string()).collect(),
            pause: Duration::ZERO,
            end: End::Stop,
        }
    }

    pub fn slow(chunks: &[&str], pause: Duration) -> Self {
        Reply::Stream {
            chunks: chunks.iter().map(|c| c.to_string()).collect(),
            pause,
            end: End::Stop,
        }
    }

    pub fn hang_after(chunks: &[&str]) -> Self {
        Reply::Stream {
            chunks: chunks.iter().map(|c| c.to_string()).collect(),
            pause: Duration::ZERO,
            end: End::Hang,
        }
    }

    pub fn error_after(chunks: &[&str], error_type: &str) -> Self {
        Reply::Stream {
            chunks: chunks.iter().map(|c| c.to_string()).collect(),
            pause: Duration::ZERO,
            end: End::Error {
                error_type: error_type.into(),
            },
        }
    }

    pub fn status(code: u16) -> Self {
        Reply::Status {
            code,
            retry_after: None,
            error_type: match code {
                529 => "overloaded_error",
                429 => "rate_limit_error",
                401 => "authentication_error",
                400 => "invalid_request_error",
                _ => "api_error",
            }
            .into(),
        }
    }
}

/// What the server saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub api_key: Option<String>,
    pub authorization: Option<String>,
    pub version: Option<String>,
    pub body: serde_json::Value,
}

#[derive(Debug)]
struct Shared {
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    seen: Mutex<Vec<Seen>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Wakes streams waiting in `End::Hang`.
    release: Notify,
    released: std::sync::atomic::AtomicBool,
    /// Wakes tests waiting for a request count or an in-flight level.
    changed: Notify,
}

/// The running mock.
#[derive(Debug, Clone)]
pub struct MockAnthropic {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl MockAnthropic {
    /// Starts on 127.0.0.1:0. Requests get the scripted replies in order, then `default`.
    pub async fn start(default: Reply) -> Self {
        let shared = Arc::new(Shared {
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(default),
            seen: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            release: Notify::new(),
            released: false.into(),
            changed: Notify::new(),
        });
        let app = Router::new()
            .route("/v1/messages", post(messages))
            .with_state(shared.clone());
        let addr = crate::support::serve_http(app).await;
        Self { addr, shared }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues replies for the next requests.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.script.lock().unwrap().extend(replies);
    }

    pub fn set_default(&self, reply: Reply) {
        *self.shared.default.lock().unwrap() = reply;
    }

    /// Lets every hanging stream (now and later) finish.
    pub fn release(&self) {
        self.shared.released.store(true, Ordering::SeqCst);
        self.shared.release.notify_waiters();
    }

    pub fn requests(&self) -> usize {
        self.shared.seen.lock().unwrap().len()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Waits (up to 20 s) until `cond` holds, re-checking whenever a request starts or ends.
    pub async fn wait_until(&self, what: &str, cond: impl Fn(&MockAnthropic) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let notified = self.shared.changed.notified();
            if cond(self) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "mock: timed out waiting for {what} (requests {}, in flight {})",
                    self.requests(),
                    self.in_flight()
                );
            }
        }
    }
}

/// Decrements the in-flight count when the response body is gone (finished or dropped).
struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

fn sse(event: &str, data: serde_json::Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

async fn messages(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let reply = shared
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| shared.default.lock().unwrap().clone());
    let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
    shared.seen.lock().unwrap().push(Seen {
        api_key: header("x-api-key"),
        authorization: header("authorization"),
        version: header("anthropic-version"),
        body: body.clone(),
    });
    shared.changed.notify_waiters();
    let guard = InFlight(shared.clone());

    match reply {
        Reply::Status {
            code,
            retry_after,
            error_type,
        } => {
            drop(guard);
            let mut builder = Response::builder()
                .status(StatusCode::from_u16(code).unwrap())
                .header("content-type", "application/json");
            if let Some(s) = retry_after {
                builder = builder.header("retry-after", s.to_string());
            }
            builder
                .body(Body::from(
                    serde_json::json!({"type":"error","error":{"type": error_type,"message": format!("mock {code}")}})
                        .to_string(),
                ))
                .unwrap()
        }
        Reply::Stream { chunks, pause, end } => {
            let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(16);
            let model = body["model"].as_str().unwrap_or("mock").to_owned();
            tokio::spawn(async move {
                let _guard = guard;
                let send = |b: Bytes| {
                    let tx = tx.clone();
                    async move { tx.send(Ok(b)).await.is_ok() }
                };
                let start = sse(
                    "message_start",
                    serde_json::json!({"type":"message_start","message":{"id":"msg_mock","type":"message","role":"assistant","model":model,"content":[],"stop_reason":null,"usage":{"input_tokens":1,"output_tokens":1}}}),
                );
                if !send(start).await {
                    return;
                }
                let block = sse(
                    "content_block_start",
                    serde_json::json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
                );
                if !send(block).await
                    || !send(sse("ping", serde_json::json!({"type":"ping"}))).await
                {
                    return;
                }
                for chunk in chunks {
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                    let delta = sse(
                        "content_block_delta",
                        serde_json::json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":chunk}}),
                    );
                    if !send(delta).await {
                        return;
                    }
                }
                match end {
                    End::Error { error_type } => {
                        let _ = send(sse(
                            "error",
                            serde_json::json!({"type":"error","error":{"type":error_type,"message":"mock failure mid-stream"}}),
                        ))
                        .await;
                        return;
                    }
                    End::Hang => {
                        let notified = shared.release.notified();
                        if !shared.released.load(Ordering::SeqCst) {
                            tokio::select! {
                                _ = notified => {}
                                _ = tx.closed() => return,
                            }
                        }
                    }
                    End::Stop => {}
                }
                let _ = send(sse(
                    "content_block_stop",
                    serde_json::json!({"type":"content_block_stop","index":0}),
                ))
                .await;
                let _ = send(sse(
                    "message_delta",
                    serde_json::json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":5}}),
                ))
                .await;
                let _ = send(sse(
                    "message_stop",
                    serde_json::json!({"type":"message_stop"}),
                ))
                .await;
            });
            Response::builder()
                .status(200)
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .body(Body::from_stream(
                    tokio_stream::wrappers::ReceiverStream::new(rx),
                ))
                .unwrap()
        }
    }
}
