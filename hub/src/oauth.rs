//! OpenAI (ChatGPT) OAuth for the `openai-codex` provider, as the Codex CLI does it: PKCE S256,
//! a loopback callback server, the code exchange, and token refresh.
//!
//! Nothing here logs or formats a secret: tokens travel as [`Secret`], error messages carry
//! only the OAuth `error`/`error_description` fields and URLs without credentials.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use axum::{
    Router,
    extract::{Query, State},
    http::StatusCode,
    response::{Html, IntoResponse},
    routing::get,
};
use data_encoding::BASE64URL_NOPAD;
use helix_mesh::proto_ext::now_ms;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::{
    credentials::Secret,
    provider::{describe_transport, kind_for_status},
};

/// The issuer Codex signs in with.
pub const DEFAULT_ISSUER: &str = "https://auth.openai.com";
/// Environment variable that replaces the issuer (tests run a local authorization server).
pub const ISSUER_ENV: &str = "HELIX_OPENAI_ISSUER";
/// The Codex CLI's public OAuth client id.
pub const CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";
/// Scopes requested at sign-in.
pub const SCOPE: &str = "openid profile email offline_access";
/// Scopes requested on refresh (what the Codex CLI sends).
pub const REFRESH_SCOPE: &str = "openid profile email";
/// The port the Codex client id's registered redirect URI uses.
pub const DEFAULT_CALLBACK_PORT: u16 = 1455;
/// How long a sign-in may take before the callback server gives up (the default of
/// `helix-hub login openai-codex`).
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(180);
/// Longest wait for the token endpoint: a refresh holds the store's lock meanwhile.
pub const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Random bytes in the PKCE verifier (64 bytes → 86 base64url characters, as Codex does).
const VERIFIER_BYTES: usize = 64;
/// Random bytes in `state`.
const STATE_BYTES: usize = 32;
/// The id_token claim that holds the ChatGPT account.
const AUTH_CLAIM: &str = "https://api.openai.com/auth";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthError {
    #[error(
        "port {port} on 127.0.0.1 is taken (another sign-in still running?); free it, or pass --port (the redirect URI must match what the client id allows)"
    )]
    PortTaken { port: u16 },
    #[error("starting the sign-in callback server on 127.0.0.1:{port}: {source}")]
    Bind {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("no sign-in arrived within {}; nothing was stored: run the login again", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error(
        "the sign-in callback's state did not match this login (a stale or forged redirect); nothing was stored: run the login again"
    )]
    StateMismatch,
    #[error("sign-in was refused: {error}{}; nothing was stored", describe(.description))]
    Denied {
        error: String,
        description: Option<String>,
    },
    #[error("the sign-in callback carried no authorization code; nothing was stored")]
    MissingCode,
    #[error("reaching the token endpoint {url}: {detail}")]
    Transport { url: String, detail: String },
    #[error("the token endpoint answered HTTP {status}: {error}{}", describe(.description))]
    TokenEndpoint {
        status: u16,
        error: String,
        description: Option<String>,
    },
    #[error("the token endpoint's answer is unusable: {0}")]
    BadResponse(String),
}

fn describe(description: &Option<String>) -> String {
    description
        .as_deref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default()
}

impl OAuthError {
    /// Whether trying later may succeed (the network or the server failed), as opposed to the
    /// grant itself being refused.
    pub fn is_transient(&self) -> bool {
        match self {
            OAuthError::Transport { .. } => true,
            OAuthError::TokenEndpoint { status, .. } => {
                crate::provider::ProviderError::new(kind_for_status(*status), "").is_retryable()
            }
            _ => false,
        }
    }
}

/// Tokens from the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    pub access: Secret,
    pub refresh: Option<Secret>,
    /// Expiry of `access` in ms since the Unix epoch, when known.
    pub expires_ms: Option<i64>,
    pub account_id: Option<String>,
    pub email: Option<String>,
}

/// A PKCE verifier and its S256 challenge.
#[derive(Debug)]
pub struct Pkce {
    pub verifier: Secret,
    pub challenge: String,
}

impl Pkce {
    pub fn generate() -> Self {
        let verifier = BASE64URL_NOPAD.encode(&random_bytes(VERIFIER_BYTES));
        let challenge = s256(&verifier);
        Self {
            verifier: Secret::new(verifier),
            challenge,
        }
    }
}

/// `BASE64URL(SHA256(verifier))`, without padding (RFC 7636 S256).
pub fn s256(verifier: &str) -> String {
    BASE64URL_NOPAD.encode(&Sha256::digest(verifier.as_bytes()))
}

fn random_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|_| rand::random::<u8>()).collect()
}

/// The redirect URI for a callback port (exactly what the client id has registered).
pub fn redirect_uri(port: u16) -> String {
    format!("http://localhost:{port}/auth/callback")
}

/// The authorize URL with every parameter Codex sends.
pub fn authorize_url(issuer: &str, redirect_uri: &str, challenge: &str, state: &str) -> String {
    let params = [
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("redirect_uri", redirect_uri),
        ("scope", SCOPE),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
        ("id_token_add_organizations", "true"),
        ("codex_cli_simplified_flow", "true"),
        ("state", state),
    ];
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect();
    format!(
        "{}/oauth/authorize?{}",
        issuer.trim_end_matches('/'),
        query.join("&")
    )
}

fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A sign-in in progress: the callback port is bound and the authorize URL is ready to show.
#[derive(Debug)]
pub struct CodexLogin {
    /// 127.0.0.1:port, and [::1]:port when it could be bound: the redirect URI says
    /// `localhost`, which a browser may resolve to either.
    listeners: Vec<tokio::net::TcpListener>,
    issuer: String,
    pkce: Pkce,
    state: String,
    redirect_uri: String,
    authorize_url: String,
}

/// What the callback handler passes to the login, and how the login answers the browser.
type Callback = (
    HashMap<String, String>,
    oneshot::Sender<(StatusCode, String)>,
);

impl CodexLogin {
    /// Binds 127.0.0.1:`port` (0 picks a free port, for tests), and [::1] on the same port if
    /// it can (without it, a browser that resolves `localhost` to ::1 first falls back to
    /// 127.0.0.1 or fails), and prepares the URL.
    pub async fn start(issuer: &str, port: u16) -> Result<Self, OAuthError> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            .await
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::AddrInUse => OAuthError::PortTaken { port },
                _ => OAuthError::Bind { port, source },
            })?;
        let port = listener
            .local_addr()
            .map_err(|source| OAuthError::Bind { port, source })?
            .port();
        let mut listeners = vec![listener];
        match tokio::net::TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, port))).await {
            Ok(v6) => listeners.push(v6),
            Err(error) => {
                tracing::debug!(port, %error, "no sign-in callback on [::1] (IPv4 only)");
            }
        }
        let pkce = Pkce::generate();
        let state = BASE64URL_NOPAD.encode(&random_bytes(STATE_BYTES));
        let redirect_uri = redirect_uri(port);
        let authorize_url = authorize_url(issuer, &redirect_uri, &pkce.challenge, &state);
        Ok(Self {
            listeners,
            issuer: issuer.trim_end_matches('/').to_owned(),
            pkce,
            state,
            redirect_uri,
            authorize_url,
        })
    }

    pub fn authorize_url(&self) -> &str {
        &self.authorize_url
    }

    /// Answers the callback, exchanges the code, and shows the person how it went. Ends at the
    /// first callback (whatever it says) or after `timeout`.
    pub async fn finish(self, timeout: Duration) -> Result<Tokens, OAuthError> {
        let (tx, mut rx) = mpsc::channel::<Callback>(1);
        let app = Router::new()
            .route("/auth/callback", get(callback))
            .with_state(tx);
        let stop = CancellationToken::new();
        let mut servers = tokio::task::JoinSet::new();
        for listener in self.listeners {
            let (app, stop) = (app.clone(), stop.clone());
            servers.spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await
            });
        }
        let result = match tokio::time::timeout(timeout, rx.recv()).await {
            Err(_) | Ok(None) => Err(OAuthError::Timeout(timeout)),
            Ok(Some((params, reply))) => {
                let result = handle_callback(
                    &params,
                    &self.state,
                    &self.issuer,
                    &self.redirect_uri,
                    &self.pkce.verifier,
                )
                .await;
                let page = match &result {
                    Ok(_) => (
                        StatusCode::OK,
                        "Signed in to Helix Mesh. You can close this tab.".to_owned(),
                    ),
                    Err(e) => (StatusCode::BAD_REQUEST, format!("Sign-in failed: {e}")),
                };
                let _ = reply.send(page);
                result
            }
        };
        drop(rx);
        stop.cancel();
        // The servers stop once the answer above is written; they have nothing else to finish.
        while servers.join_next().await.is_some() {}
        result
    }
}

async fn callback(
    State(tx): State<mpsc::Sender<Callback>>,
    Query(params): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    let (reply_tx, reply_rx) = oneshot::channel();
    let answer = match tx.try_send((params, reply_tx)) {
        Ok(()) => reply_rx.await.ok(),
        Err(_) => None,
    };
    let (status, text) = answer.unwrap_or((
        StatusCode::CONFLICT,
        "This sign-in has already ended; run the login again.".to_owned(),
    ));
    (
        status,
        Html(format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Helix Mesh sign-in</title></head><body><p>{}</p></body></html>",
            html_escape(&text)
        )),
    )
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn handle_callback(
    params: &HashMap<String, String>,
    expected_state: &str,
    issuer: &str,
    redirect_uri: &str,
    verifier: &Secret,
) -> Result<Tokens, OAuthError> {
    if let Some(error) = params.get("error") {
        return Err(OAuthError::Denied {
            error: error.clone(),
            description: params.get("error_description").cloned(),
        });
    }
    let state_ok = params.get("state").is_some_and(|s| {
        bool::from(subtle::ConstantTimeEq::ct_eq(
            s.as_bytes(),
            expected_state.as_bytes(),
        ))
    });
    if !state_ok {
        return Err(OAuthError::StateMismatch);
    }
    let code = params
        .get("code")
        .filter(|c| !c.is_empty())
        .ok_or(OAuthError::MissingCode)?;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect_uri),
        ("client_id", CLIENT_ID),
        ("code_verifier", verifier.expose()),
    ];
    let url = token_url(issuer);
    let request = http_client(&url)?.post(&url).form(&form);
    let response = send_token_request(&url, request).await?;
    Tokens::from_response(response, None)
}

/// Exchanges a refresh token for a new pair (JSON body, as the Codex CLI sends it). A
/// response without a new refresh token or id_token keeps `previous`'s.
pub async fn refresh(
    issuer: &str,
    refresh_token: &Secret,
    previous: &Tokens,
) -> Result<Tokens, OAuthError> {
    let url = token_url(issuer);
    let body = serde_json::json!({
        "client_id": CLIENT_ID,
        "grant_type": "refresh_token",
        "refresh_token": refresh_token.expose(),
        "scope": REFRESH_SCOPE,
    });
    let request = http_client(&url)?.post(&url).json(&body);
    let response = send_token_request(&url, request).await?;
    Tokens::from_response(response, Some(previous))
}

fn token_url(issuer: &str) -> String {
    format!("{}/oauth/token", issuer.trim_end_matches('/'))
}

fn http_client(url: &str) -> Result<reqwest::Client, OAuthError> {
    reqwest::Client::builder()
        .timeout(TOKEN_REQUEST_TIMEOUT)
        .user_agent(concat!("helix-hub/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| OAuthError::Transport {
            url: url.to_owned(),
            detail: describe_transport(&e),
        })
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Secret,
    #[serde(default)]
    refresh_token: Option<Secret>,
    #[serde(default)]
    id_token: Option<Secret>,
    #[serde(default)]
    expires_in: Option<i64>,
}

#[derive(Deserialize, Default)]
struct TokenErrorBody {
    #[serde(default)]
    error: Option<serde_json::Value>,
    #[serde(default)]
    error_description: Option<String>,
}

async fn send_token_request(
    url: &str,
    request: reqwest::RequestBuilder,
) -> Result<TokenResponse, OAuthError> {
    let transport = |e: reqwest::Error| OAuthError::Transport {
        url: url.to_owned(),
        detail: describe_transport(&e),
    };
    let response = request
        .header("accept", "application/json")
        .send()
        .await
        .map_err(transport)?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(transport)?;
    if !status.is_success() {
        // Only the two standard fields are quoted: a body is never echoed whole.
        let body: TokenErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
        let error = match body.error {
            Some(serde_json::Value::String(s)) => s,
            Some(serde_json::Value::Object(o)) => o
                .get("code")
                .or_else(|| o.get("message"))
                .and_then(|v| v.as_str())
                .unwrap_or("error")
                .to_owned(),
            _ => "no OAuth error code".to_owned(),
        };
        return Err(OAuthError::TokenEndpoint {
            status: status.as_u16(),
            error,
            description: body.error_description,
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        // serde's message names the field and position, never the value.
        OAuthError::BadResponse(e.to_string())
    })
}

impl Tokens {
    fn from_response(r: TokenResponse, previous: Option<&Tokens>) -> Result<Self, OAuthError> {
        if r.access_token.expose().is_empty() {
            return Err(OAuthError::BadResponse("empty access_token".into()));
        }
        let claims = r.id_token.as_ref().and_then(|t| jwt_claims(t.expose()));
        let account_id = claims
            .as_ref()
            .and_then(|c| c.get(AUTH_CLAIM)?.get("chatgpt_account_id")?.as_str())
            .map(str::to_owned)
            .or_else(|| previous.and_then(|p| p.account_id.clone()));
        let email = claims
            .as_ref()
            .and_then(|c| c.get("email")?.as_str())
            .map(str::to_owned)
            .or_else(|| previous.and_then(|p| p.email.clone()));
        let expires_ms = match r.expires_in {
            Some(secs) => Some(now_ms().saturating_add(secs.saturating_mul(1000))),
            None => jwt_claims(r.access_token.expose())
                .and_then(|c| c.get("exp")?.as_i64())
                .map(|exp| exp.saturating_mul(1000)),
        };
        Ok(Tokens {
            access: r.access_token,
            refresh: r
                .refresh_token
                .or_else(|| previous.and_then(|p| p.refresh.clone())),
            expires_ms,
            account_id,
            email,
        })
    }
}

/// The payload of a JWT, decoded without checking its signature (what the Codex CLI does with
/// the id_token it just received over TLS from the issuer).
pub fn jwt_claims(token: &str) -> Option<serde_json::Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = BASE64URL_NOPAD
        .decode(payload.trim_end_matches('=').as_bytes())
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_is_base64url_sha256_without_padding() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mJ92IgxwUi5Gt0bC0Y2zJgIVe9nqVM"),
            // Computed independently (Python hashlib + urlsafe_b64encode).
            "pgmbB64Vi0plZPDwdbvOdbqy6zZs9oHko1aQNh5WDSc"
        );
        let p = Pkce::generate();
        assert_eq!(p.verifier.expose().len(), 86);
        assert_eq!(p.challenge, s256(p.verifier.expose()));
    }

    #[test]
    fn authorize_url_has_the_codex_parameters() {
        let url = authorize_url("https://auth.example/", &redirect_uri(1455), "ch", "st");
        assert!(url.starts_with("https://auth.example/oauth/authorize?response_type=code&client_id=app_EMoamEEZ73f0CkXaXp7hrann&redirect_uri=http%3A%2F%2Flocalhost%3A1455%2Fauth%2Fcallback&scope=openid%20profile%20email%20offline_access&code_challenge=ch&code_challenge_method=S256&id_token_add_organizations=true&codex_cli_simplified_flow=true&state=st"), "{url}");
    }

    #[test]
    fn account_id_comes_from_the_id_token() {
        let payload = BASE64URL_NOPAD.encode(
            br#"{"email":"a@b.c","https://api.openai.com/auth":{"chatgpt_account_id":"acc-1"}}"#,
        );
        let r = TokenResponse {
            access_token: Secret::new("at"),
            refresh_token: Some(Secret::new("refresh-secret-xyz")),
            id_token: Some(Secret::new(format!("x.{payload}.sig"))),
            expires_in: Some(60),
        };
        let t = Tokens::from_response(r, None).unwrap();
        assert_eq!(t.account_id.as_deref(), Some("acc-1"));
        assert_eq!(t.email.as_deref(), Some("a@b.c"));
        assert!(t.expires_ms.unwrap() > now_ms());
        assert!(!format!("{t:?}").contains("refresh-secret-xyz"));
    }
}
