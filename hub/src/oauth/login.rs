//! A sign-in in progress: the loopback callback server, the check of what the browser brings
//! back, and the code exchange.

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
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{
    CLIENT_ID, OAuthError,
    authorize::{Pkce, authorize_url, random_bytes, redirect_uri},
    token::{Tokens, http_client, send_token_request, token_url},
};
use crate::credentials::Secret;

/// Random bytes in `state`.
const STATE_BYTES: usize = 32;

/// How long the callback servers may take, once the sign-in has its answer, to finish writing
/// it; connections still open then (idle keep-alives) are dropped.
const CALLBACK_DRAIN: Duration = Duration::from_secs(2);

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
        // An idle connection (a browser's keep-alive, or anything else connected to the port)
        // would hold the graceful shutdown open forever: past a short drain, drop them.
        let drain = async { while servers.join_next().await.is_some() {} };
        if tokio::time::timeout(CALLBACK_DRAIN, drain).await.is_err() {
            servers.abort_all();
        }
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
