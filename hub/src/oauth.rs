//! OpenAI (ChatGPT) OAuth for the `openai-codex` provider, as the Codex CLI does it: PKCE S256,
//! a loopback callback server, the code exchange, and token refresh.
//!
//! Nothing here logs or formats a secret: tokens travel as
//! [`Secret`](crate::credentials::Secret), error messages carry only the OAuth
//! `error`/`error_description` fields and URLs without credentials.
//!
//! `oauth/authorize.rs` builds the sign-in request, `oauth/login.rs` runs the callback server
//! and the code exchange, `oauth/token.rs` talks to the token endpoint (exchange and refresh).

use std::time::Duration;

use crate::provider::kind_for_status;

mod authorize;
mod login;
mod token;

pub use authorize::{Pkce, authorize_url, redirect_uri, s256};
pub use login::CodexLogin;
pub use token::{Tokens, jwt_claims, refresh};

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
