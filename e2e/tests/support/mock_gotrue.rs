//! A local stand-in for Supabase Auth (GoTrue) `/auth/v1`: password grant, single-use refresh
//! tokens, email one-time codes. Access tokens are HS256 JWTs with the test secret, so the
//! PostgREST-compatible server accepts them.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use axum::{
    Json, Router,
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::{Value, json};

use super::{pg::ALICE, postrust::jwt_for};

pub const EMAIL: &str = "alice@example.com";
pub const PASSWORD: &str = "correct horse battery staple";
pub const OTP: &str = "123456";

#[derive(Default)]
struct Shared {
    /// refresh token -> used?
    refresh: Mutex<HashMap<String, bool>>,
    refreshes: AtomicUsize,
    /// Lifetime of issued access tokens, in seconds.
    expires_in: Mutex<i64>,
}

#[derive(Clone)]
pub struct MockGoTrue {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl MockGoTrue {
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        *shared.expires_in.lock().unwrap() = 3600;
        let app = Router::new()
            .route("/auth/v1/token", post(token))
            .route("/auth/v1/otp", post(|| async { Json(json!({})) }))
            .route("/auth/v1/verify", post(verify))
            .with_state(shared.clone());
        let addr = crate::support::serve_http(app).await;
        Self { addr, shared }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Issue access tokens that expire after `secs`.
    pub fn set_expires_in(&self, secs: i64) {
        *self.shared.expires_in.lock().unwrap() = secs;
    }

    pub fn refreshes(&self) -> usize {
        self.shared.refreshes.load(Ordering::SeqCst)
    }
}

fn session(shared: &Shared) -> Response {
    let refresh = uuid::Uuid::new_v4().to_string();
    shared
        .refresh
        .lock()
        .unwrap()
        .insert(refresh.clone(), false);
    let expires_in = *shared.expires_in.lock().unwrap();
    Json(json!({
        "access_token": jwt_for(ALICE), "token_type": "bearer", "expires_in": expires_in,
        "expires_at": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 + expires_in,
        "refresh_token": refresh, "user": {"id": ALICE, "email": EMAIL},
    }))
    .into_response()
}

fn refused(body: Value) -> Response {
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

async fn token(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
    Json(body): Json<Value>,
) -> Response {
    match q.get("grant_type").map(String::as_str) {
        Some("password") if body["email"] == EMAIL && body["password"] == PASSWORD => {
            session(&shared)
        }
        Some("password") => refused(
            json!({"error": "invalid_grant", "error_description": "Invalid login credentials"}),
        ),
        Some("refresh_token") => {
            let token = body["refresh_token"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let fresh = match shared.refresh.lock().unwrap().get_mut(&token) {
                Some(used) => !std::mem::replace(used, true),
                None => false,
            };
            if fresh {
                shared.refreshes.fetch_add(1, Ordering::SeqCst);
                session(&shared)
            } else {
                refused(
                    json!({"code": 400, "error_code": "refresh_token_already_used", "msg": "Invalid Refresh Token: Already Used"}),
                )
            }
        }
        _ => refused(json!({"error": "unsupported_grant_type"})),
    }
}

async fn verify(State(shared): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    if body["type"] == "email" && body["email"] == EMAIL && body["token"] == OTP {
        session(&shared)
    } else {
        refused(
            json!({"code": 403, "error_code": "otp_expired", "msg": "Token has expired or is invalid"}),
        )
    }
}
