//! A local Codex backend: `POST /backend-api/codex/responses` answering with Responses API
//! server-sent events (`response.created`, `response.output_text.delta`…,
//! `response.completed`). Bearer tokens listed as refused get HTTP 401; a scripted failure
//! (status and JSON error body, as the backend sends them) answers every other request.

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
    routing::post,
};

/// What the server saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub authorization: Option<String>,
    pub account_id: Option<String>,
    pub body: serde_json::Value,
}

#[derive(Debug, Default)]
struct Shared {
    chunks: Mutex<Vec<String>>,
    refused: Mutex<HashSet<String>>,
    failure: Mutex<Option<(u16, String)>>,
    seen: Mutex<Vec<Seen>>,
}

#[derive(Debug, Clone)]
pub struct MockCodex {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl MockCodex {
    /// Every answer streams `chunks`.
    pub async fn start(chunks: &[&str]) -> Self {
        let shared = Arc::new(Shared::default());
        *shared.chunks.lock().unwrap() = chunks.iter().map(|c| c.to_string()).collect();
        let app = Router::new()
            .route("/backend-api/codex/responses", post(responses))
            .with_state(shared.clone());
        let addr = crate::support::serve_http(app).await;
        Self { addr, shared }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers 401 to this access token.
    pub fn refuse(&self, access_token: &str) {
        self.shared
            .refused
            .lock()
            .unwrap()
            .insert(access_token.to_owned());
    }

    /// Answers every request (with an accepted token) with `status` and the JSON `body`.
    pub fn fail_with(&self, status: u16, body: serde_json::Value) {
        *self.shared.failure.lock().unwrap() = Some((status, body.to_string()));
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }
}

async fn responses(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let authorization = header("authorization");
    shared.seen.lock().unwrap().push(Seen {
        authorization: authorization.clone(),
        account_id: header("chatgpt-account-id"),
        body: serde_json::from_slice(&body).unwrap_or_default(),
    });
    let token = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or("");
    if token.is_empty() || shared.refused.lock().unwrap().contains(token) {
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header("content-type", "application/json")
            .body(Body::from(r#"{"detail":"token expired or invalid"}"#))
            .unwrap();
    }
    if let Some((status, body)) = shared.failure.lock().unwrap().clone() {
        return Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
    }
    let mut sse = String::new();
    let mut event = |data: serde_json::Value| {
        sse.push_str(&format!(
            "event: {}\ndata: {data}\n\n",
            data["type"].as_str().unwrap()
        ));
    };
    event(serde_json::json!({"type":"response.created","response":{"id":"resp_1"}}));
    for chunk in shared.chunks.lock().unwrap().iter() {
        event(
            serde_json::json!({"type":"response.output_text.delta","item_id":"msg_1","output_index":0,"content_index":0,"delta":chunk}),
        );
    }
    event(
        serde_json::json!({"type":"response.completed","response":{"id":"resp_1","status":"completed"}}),
    );
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .body(Body::from(sse))
        .unwrap()
}
