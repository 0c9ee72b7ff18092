//! A local Gemini API: `POST /v1beta/models/{model}:streamGenerateContent?alt=sse` answering
//! with `data:` chunks of `GenerateContentResponse` JSON, the last one with `finishReason`.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::Response,
    routing::post,
};

/// What the server saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub api_key: Option<String>,
    /// `{model}:streamGenerateContent`
    pub model_action: String,
    pub alt: Option<String>,
    pub body: serde_json::Value,
}

#[derive(Debug, Default)]
struct Shared {
    chunks: Vec<String>,
    seen: Mutex<Vec<Seen>>,
}

#[derive(Debug, Clone)]
pub struct MockGemini {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl MockGemini {
    pub async fn start(chunks: &[&str]) -> Self {
        let shared = Arc::new(Shared {
            chunks: chunks.iter().map(|c| c.to_string()).collect(),
            seen: Mutex::default(),
        });
        let app = Router::new()
            .route("/v1beta/models/{model_action}", post(generate))
            .with_state(shared.clone());
        let addr = crate::support::serve_http(app).await;
        Self { addr, shared }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }
}

async fn generate(
    State(shared): State<Arc<Shared>>,
    Path(model_action): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let api_key = headers
        .get("x-goog-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    shared.seen.lock().unwrap().push(Seen {
        api_key: api_key.clone(),
        model_action,
        alt: query.get("alt").cloned(),
        body: serde_json::from_slice(&body).unwrap_or_default(),
    });
    if api_key.is_none() {
        return Response::builder()
            .status(StatusCode::FORBIDDEN)
            .body(Body::from(
                r#"{"error":{"code":403,"message":"no key","status":"PERMISSION_DENIED"}}"#,
            ))
            .unwrap();
    }
    let mut sse = String::new();
    let last = shared.chunks.len().saturating_sub(1);
    for (i, chunk) in shared.chunks.iter().enumerate() {
        let mut candidate =
            serde_json::json!({"content":{"parts":[{"text":chunk}],"role":"model"},"index":0});
        if i == last {
            candidate["finishReason"] = "STOP".into();
        }
        let data = serde_json::json!({"candidates":[candidate],"modelVersion":"gemini-2.5-flash"});
        sse.push_str(&format!("data: {data}\r\n\r\n"));
    }
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .body(Body::from(sse))
        .unwrap()
}
