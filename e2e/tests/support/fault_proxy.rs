//! A loopback HTTP proxy in front of the REST server that answers `503 Service Unavailable`
//! to the first POSTs of one path, as scripted, and forwards everything else unchanged: how
//! the tests make the cloud fail for the hub without touching the hub.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::Response,
};

/// How one targeted request fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A 503 without passing the request on (the server never sees it).
    Refuse,
    /// The request is passed on and applied, but the answer is replaced by a 503 (the
    /// client cannot know it went through).
    LoseAnswer,
}

#[derive(Debug)]
struct Shared {
    upstream: String,
    /// Requests whose path ends with this fail.
    path_suffix: String,
    /// Failures still to inject, in order.
    faults: Mutex<VecDeque<Fault>>,
    /// Failures injected.
    failed: AtomicUsize,
    /// Requests to `path_suffix` forwarded.
    forwarded: AtomicUsize,
    /// Requests received, to any path.
    received: AtomicUsize,
    http: reqwest::Client,
}

/// The running proxy; its listener task ends with the test's runtime.
#[derive(Debug, Clone)]
pub struct FaultProxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Proxies to `upstream` (a base URL); the first POSTs to a path ending with
    /// `path_suffix` fail with `faults`, one each, in order.
    pub async fn start(upstream: &str, path_suffix: &str, faults: &[Fault]) -> Self {
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            path_suffix: path_suffix.to_owned(),
            faults: Mutex::new(faults.iter().copied().collect()),
            failed: AtomicUsize::new(0),
            forwarded: AtomicUsize::new(0),
            received: AtomicUsize::new(0),
            http: reqwest::Client::new(),
        });
        let app = Router::new().fallback(forward).with_state(shared.clone());
        let addr = crate::support::serve_http(app).await;
        Self { addr, shared }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Injects no more faults: everything is forwarded from now on.
    pub fn heal(&self) {
        self.shared.faults.lock().unwrap().clear();
    }

    /// How many faults it has injected.
    pub fn failed(&self) -> usize {
        self.shared.failed.load(Ordering::SeqCst)
    }

    /// How many requests to the failing path it has passed on.
    pub fn forwarded(&self) -> usize {
        self.shared.forwarded.load(Ordering::SeqCst)
    }

    /// How many requests it has received, to any path.
    pub fn received(&self) -> usize {
        self.shared.received.load(Ordering::SeqCst)
    }
}

async fn forward(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.received.fetch_add(1, Ordering::SeqCst);
    let targeted = method == Method::POST && uri.path().ends_with(&shared.path_suffix);
    let fault = if targeted {
        shared.faults.lock().unwrap().pop_front()
    } else {
        None
    };
    if fault == Some(Fault::Refuse) {
        shared.failed.fetch_add(1, Ordering::SeqCst);
        return unavailable();
    }
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut request = shared
        .http
        .request(method, format!("{}{path}", shared.upstream))
        .body(body);
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    let answer = match request.send().await {
        Ok(answer) => answer,
        Err(e) => {
            return Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .body(Body::from(format!("proxy: {e}")))
                .unwrap();
        }
    };
    if targeted {
        shared.forwarded.fetch_add(1, Ordering::SeqCst);
    }
    if fault == Some(Fault::LoseAnswer) {
        let _ = answer.bytes().await;
        shared.failed.fetch_add(1, Ordering::SeqCst);
        return unavailable();
    }
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if name != "transfer-encoding" && name != "connection" && name != "content-length" {
            response = response.header(name, value);
        }
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    response.body(Body::from(bytes)).unwrap()
}

fn unavailable() -> Response {
    Response::builder()
        .status(StatusCode::SERVICE_UNAVAILABLE)
        .header("content-type", "application/json")
        .body(Body::from(
            r#"{"code":"PGRST000","message":"injected failure: the database is unavailable"}"#,
        ))
        .unwrap()
}
