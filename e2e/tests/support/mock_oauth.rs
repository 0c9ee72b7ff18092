//! A local OAuth authorization server shaped like auth.openai.com for the Codex client:
//! `GET /oauth/authorize` redirects to the redirect URI with a code and the state (or an
//! error, or a wrong state, as scripted); `POST /oauth/token` exchanges a code (form body:
//! checks the client id, the redirect URI and the S256 verifier) or a refresh token (JSON body,
//! rotating: a refresh token works once), and returns an id_token carrying
//! `chatgpt_account_id`.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use data_encoding::BASE64URL_NOPAD;
use sha2::{Digest, Sha256};

pub const CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";
pub const ACCOUNT_ID: &str = "acct-mock-1234";
pub const EMAIL: &str = "person@example.com";
/// Authorization codes start with this (so logs can be searched for them).
pub const CODE_PREFIX: &str = "authcode-5ecret-";

/// How `/oauth/authorize` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authorize {
    Approve,
    Deny,
    WrongState,
}

#[derive(Debug)]
struct Shared {
    mode: Mutex<Authorize>,
    /// code → (challenge, redirect_uri)
    codes: Mutex<HashMap<String, (String, String)>>,
    /// The refresh token that works now; each refresh replaces it.
    valid_refresh: Mutex<Option<String>>,
    generation: AtomicUsize,
    refresh_requests: AtomicUsize,
    /// How long a refresh takes (widens the window in which racing processes overlap).
    refresh_delay: Duration,
    problems: Mutex<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct MockOAuth {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

/// A JWT with `claims` as payload (the signature is not checked by the client).
pub fn jwt(claims: serde_json::Value) -> String {
    format!(
        "{}.{}.mock-signature",
        BASE64URL_NOPAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        BASE64URL_NOPAD.encode(claims.to_string().as_bytes())
    )
}

/// The tokens of generation `n` (distinctive strings, so logs can be searched for them).
pub fn access_token(n: usize) -> String {
    format!("acc-tok-{n}-5ecret-a7c3")
}

pub fn refresh_token(n: usize) -> String {
    format!("ref-tok-{n}-5ecret-91fe")
}

/// Stores an OAuth profile for openai-codex with generation `n`'s tokens in a hub data dir.
pub fn store_codex(dir: &std::path::Path, n: usize, expires_ms: i64) {
    use helix_hub::credentials::{CredentialStore, Profile, Secret, default_profile_id};
    use helix_mesh::pb::Provider;
    let mut p = Profile::new("oauth", Provider::OpenaiCodex);
    p.access = Some(Secret::new(access_token(n)));
    p.refresh = Some(Secret::new(refresh_token(n)));
    p.expires = Some(expires_ms);
    p.account_id = Some(ACCOUNT_ID.into());
    CredentialStore::in_dir(dir)
        .set_profile(&default_profile_id(Provider::OpenaiCodex), p)
        .unwrap();
}

impl MockOAuth {
    pub async fn start() -> Self {
        let shared = Arc::new(Shared {
            mode: Mutex::new(Authorize::Approve),
            codes: Mutex::new(HashMap::new()),
            valid_refresh: Mutex::new(None),
            generation: AtomicUsize::new(0),
            refresh_requests: AtomicUsize::new(0),
            refresh_delay: Duration::from_millis(200),
            problems: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/oauth/authorize", get(authorize))
            .route("/oauth/token", post(token))
            .with_state(shared.clone());
        let addr = crate::support::serve_http(app).await;
        Self { addr, shared }
    }

    pub fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_authorize(&self, mode: Authorize) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    /// Makes `token` the refresh token that works (as if issued at generation `n`).
    pub fn accept_refresh(&self, n: usize) {
        *self.shared.valid_refresh.lock().unwrap() = Some(refresh_token(n));
        self.shared.generation.store(n, Ordering::SeqCst);
    }

    pub fn refresh_requests(&self) -> usize {
        self.shared.refresh_requests.load(Ordering::SeqCst)
    }

    /// Checks the server found wrong in requests (wrong verifier, client id, …).
    pub fn problems(&self) -> Vec<String> {
        self.shared.problems.lock().unwrap().clone()
    }
}

fn problem(shared: &Shared, text: String) -> Response {
    shared.problems.lock().unwrap().push(text.clone());
    (
        StatusCode::BAD_REQUEST,
        axum::Json(serde_json::json!({"error":"invalid_request","error_description":text})),
    )
        .into_response()
}

async fn authorize(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let expect = [
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("scope", "openid profile email offline_access"),
        ("code_challenge_method", "S256"),
        ("id_token_add_organizations", "true"),
        ("codex_cli_simplified_flow", "true"),
    ];
    for (k, v) in expect {
        if q.get(k).map(String::as_str) != Some(v) {
            return problem(&shared, format!("authorize: {k} is {:?}", q.get(k)));
        }
    }
    let redirect = q.get("redirect_uri").cloned().unwrap_or_default();
    if !redirect.starts_with("http://localhost:") || !redirect.ends_with("/auth/callback") {
        return problem(&shared, format!("authorize: redirect_uri {redirect}"));
    }
    let state = q.get("state").cloned().unwrap_or_default();
    let mode = *shared.mode.lock().unwrap();
    let location = match mode {
        Authorize::Deny => format!(
            "{redirect}?error=access_denied&error_description=The+user+denied+access&state={state}"
        ),
        Authorize::Approve | Authorize::WrongState => {
            let code = format!("{CODE_PREFIX}{}", uuid::Uuid::new_v4().simple());
            let challenge = q.get("code_challenge").cloned().unwrap_or_default();
            shared
                .codes
                .lock()
                .unwrap()
                .insert(code.clone(), (challenge, redirect.clone()));
            let state = if mode == Authorize::WrongState {
                "not-the-state".to_owned()
            } else {
                state
            };
            format!("{redirect}?code={code}&state={state}")
        }
    };
    Redirect::to(&location).into_response()
}

fn tokens(n: usize) -> serde_json::Value {
    serde_json::json!({
        "id_token": jwt(serde_json::json!({
            "email": EMAIL,
            "https://api.openai.com/auth": {"chatgpt_account_id": ACCOUNT_ID},
        })),
        "access_token": access_token(n),
        "refresh_token": refresh_token(n),
        "expires_in": 3600,
    })
}

async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("application/x-www-form-urlencoded") {
        let text = String::from_utf8_lossy(&body);
        let url = reqwest::Url::parse(&format!("http://x/?{text}")).unwrap();
        let form: HashMap<String, String> = url.query_pairs().into_owned().collect();
        if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
            return problem(&shared, "token: form grant_type".into());
        }
        if form.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
            return problem(&shared, "token: client_id".into());
        }
        let code = form.get("code").cloned().unwrap_or_default();
        let Some((challenge, redirect)) = shared.codes.lock().unwrap().remove(&code) else {
            return problem(&shared, "token: unknown or reused code".into());
        };
        if form.get("redirect_uri") != Some(&redirect) {
            return problem(&shared, "token: redirect_uri differs from authorize".into());
        }
        let verifier = form.get("code_verifier").cloned().unwrap_or_default();
        if BASE64URL_NOPAD.encode(&Sha256::digest(verifier.as_bytes())) != challenge {
            return problem(&shared, "token: code_verifier does not match".into());
        }
        let n = shared.generation.fetch_add(1, Ordering::SeqCst) + 1;
        *shared.valid_refresh.lock().unwrap() = Some(refresh_token(n));
        return axum::Json(tokens(n)).into_response();
    }
    // Refresh: JSON, as the Codex CLI sends it.
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return problem(
            &shared,
            format!("token: unexpected content-type {content_type}"),
        );
    };
    shared.refresh_requests.fetch_add(1, Ordering::SeqCst);
    if json["grant_type"] != "refresh_token"
        || json["client_id"] != CLIENT_ID
        || json["scope"] != "openid profile email"
    {
        return problem(&shared, format!("token: refresh body fields {json}"));
    }
    tokio::time::sleep(shared.refresh_delay).await;
    let presented = json["refresh_token"].as_str().unwrap_or("").to_owned();
    let mut valid = shared.valid_refresh.lock().unwrap();
    if valid.as_deref() != Some(presented.as_str()) {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({"error":"invalid_grant","error_description":"refresh token already used"})),
        )
            .into_response();
    }
    let n = shared.generation.fetch_add(1, Ordering::SeqCst) + 1;
    *valid = Some(refresh_token(n));
    axum::Json(tokens(n)).into_response()
}
