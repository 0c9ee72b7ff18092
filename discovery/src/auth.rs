//! Supabase auth sessions (`/auth/v1`): sign in with a password or an emailed one-time code,
//! or use a given access token (service accounts, tests); keep the session in a 0600 file;
//! refresh it before it expires.
//!
//! Refresh tokens are single-use: the new pair is saved before the new access token is used,
//! and refreshing happens under an exclusive lock on a sidecar file after re-reading the
//! session, so several processes sharing one session refresh it once.

use std::{
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use helix_mesh::fsutil::{self, FsError};
use serde::{Deserialize, Serialize};

use crate::rest::{RestError, SupabaseConfig};

/// Refresh when the access token expires within this long.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// How long one auth request may take.
const AUTH_TIMEOUT: Duration = Duration::from_secs(15);

/// A signed-in user. `Debug` shows no token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub access_token: String,
    /// Empty for a session made from a bare access token (it cannot be refreshed).
    #[serde(default)]
    pub refresh_token: String,
    /// Unix seconds.
    pub expires_at: i64,
    pub user_id: String,
    #[serde(default)]
    pub email: Option<String>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("user_id", &self.user_id)
            .field("email", &self.email)
            .field("expires_at", &self.expires_at)
            .field("tokens", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("signing in to Supabase failed: {0}")]
    Refused(String),
    #[error(
        "the Supabase session expired and cannot be refreshed ({0}): sign in again with `helix cloud login` (on the hub: `helix-hub cloud login`)"
    )]
    Expired(String),
    #[error("Supabase auth: {0}")]
    Transport(#[source] reqwest::Error),
    #[error("Supabase auth: unexpected answer: {0}")]
    BadAnswer(#[source] reqwest::Error),
    #[error("Supabase auth: {0}")]
    LockTask(#[source] tokio::task::JoinError),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(
        "session file {path} is corrupt ({problem}); it was left untouched: sign in again or move it"
    )]
    Corrupt { path: PathBuf, problem: String },
    #[error("the access token is not a JWT with sub and exp")]
    BadToken,
    #[error(transparent)]
    Rest(#[from] RestError),
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    refresh_token: String,
    #[serde(default)]
    expires_at: Option<i64>,
    #[serde(default)]
    expires_in: Option<i64>,
    user: UserAnswer,
}

#[derive(Deserialize)]
struct UserAnswer {
    id: String,
    #[serde(default)]
    email: Option<String>,
}

/// Both shapes of GoTrue error body (older `error_description`, newer `msg`/`error_code`).
#[derive(Deserialize, Default)]
struct ErrorAnswer {
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    msg: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

impl ErrorAnswer {
    fn text(self, status: u16) -> String {
        let what = self
            .msg
            .or(self.error_description)
            .or(self.message)
            .unwrap_or_else(|| format!("HTTP {status}"));
        match self.error_code.or(self.error) {
            Some(code) => format!("{what} ({code})"),
            None => what,
        }
    }
}

/// The auth API of one project.
#[derive(Clone)]
pub struct Auth {
    http: reqwest::Client,
    base: String,
    anon_key: String,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Auth {
    pub fn new(config: &SupabaseConfig) -> Result<Self, AuthError> {
        let http = reqwest::Client::builder()
            .timeout(AUTH_TIMEOUT)
            .build()
            .map_err(AuthError::Transport)?;
        Ok(Self {
            http,
            base: format!("{}/auth/v1", config.url.trim_end_matches('/')),
            anon_key: config.anon_key.clone(),
        })
    }

    async fn post(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> Result<reqwest::Response, AuthError> {
        let response = self
            .http
            .post(format!("{}/{path}", self.base))
            .header("apikey", &self.anon_key)
            .json(&body)
            .send()
            .await
            .map_err(|e| AuthError::Transport(e.without_url()))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let answer: ErrorAnswer = response.json().await.unwrap_or_default();
        Err(AuthError::Refused(answer.text(status)))
    }

    async fn session(&self, path: &str, body: serde_json::Value) -> Result<Session, AuthError> {
        let answer: TokenAnswer = self
            .post(path, body)
            .await?
            .json()
            .await
            .map_err(|e| AuthError::BadAnswer(e.without_url()))?;
        let expires_at = answer
            .expires_at
            .or_else(|| answer.expires_in.map(|s| now_secs() + s))
            .unwrap_or_else(now_secs);
        Ok(Session {
            access_token: answer.access_token,
            refresh_token: answer.refresh_token,
            expires_at,
            user_id: answer.user.id,
            email: answer.user.email,
        })
    }

    /// The password grant.
    pub async fn sign_in_password(
        &self,
        email: &str,
        password: &str,
    ) -> Result<Session, AuthError> {
        self.session(
            "token?grant_type=password",
            serde_json::json!({"email": email, "password": password}),
        )
        .await
    }

    /// Emails a one-time code to an existing user.
    pub async fn send_otp(&self, email: &str) -> Result<(), AuthError> {
        self.post(
            "otp",
            serde_json::json!({"email": email, "create_user": false}),
        )
        .await?;
        Ok(())
    }

    /// Exchanges the emailed code for a session.
    pub async fn verify_otp(&self, email: &str, code: &str) -> Result<Session, AuthError> {
        self.session(
            "verify",
            serde_json::json!({"type": "email", "email": email, "token": code}),
        )
        .await
    }

    /// Uses up `refresh_token` for a new pair.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Session, AuthError> {
        self.session(
            "token?grant_type=refresh_token",
            serde_json::json!({"refresh_token": refresh_token}),
        )
        .await
    }
}

/// A session from a bare access token (a JWT with `sub` and `exp`); it cannot be refreshed.
pub fn session_from_access_token(token: &str) -> Result<Session, AuthError> {
    let payload = token.split('.').nth(1).ok_or(AuthError::BadToken)?;
    let bytes = data_encoding::BASE64URL_NOPAD
        .decode(payload.trim_end_matches('=').as_bytes())
        .map_err(|_| AuthError::BadToken)?;
    #[derive(Deserialize)]
    struct Claims {
        sub: String,
        exp: i64,
        #[serde(default)]
        email: Option<String>,
    }
    let claims: Claims = serde_json::from_slice(&bytes).map_err(|_| AuthError::BadToken)?;
    Ok(Session {
        access_token: token.to_owned(),
        refresh_token: String::new(),
        expires_at: claims.exp,
        user_id: claims.sub,
        email: claims.email,
    })
}

fn now_secs() -> i64 {
    helix_mesh::proto_ext::now_ms() / 1000
}

/// The session file (0600) and its lock.
#[derive(Debug, Clone)]
pub struct SessionStore {
    path: PathBuf,
}

impl SessionStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn load(&self) -> Result<Option<Session>, AuthError> {
        match fsutil::read_optional(&self.path)? {
            None => Ok(None),
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| AuthError::Corrupt {
                        path: self.path.clone(),
                        problem: e.to_string(),
                    })
            }
        }
    }

    pub fn save(&self, session: &Session) -> Result<(), AuthError> {
        if let Some(dir) = self.path.parent() {
            fsutil::ensure_private_dir(dir)?;
        }
        let bytes = serde_json::to_vec_pretty(session).unwrap_or_default();
        fsutil::write_private_atomic(&self.path, &bytes)?;
        Ok(())
    }

    /// Removes the session; `true` if there was one.
    pub fn clear(&self) -> Result<bool, AuthError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(FsError::new("removing", &self.path, e).into()),
        }
    }

    /// The session, refreshed first if it expires within [`REFRESH_MARGIN`]: under an exclusive
    /// lock on `<file>.lock`, re-read, refresh only if still needed, save the new pair, then
    /// return it. `None` when nobody is signed in.
    pub async fn fresh(&self, auth: &Auth) -> Result<Option<Session>, AuthError> {
        let needs_refresh =
            |s: &Session| s.expires_at - now_secs() <= REFRESH_MARGIN.as_secs() as i64;
        match self.load()? {
            None => return Ok(None),
            Some(s) if !needs_refresh(&s) => return Ok(Some(s)),
            Some(_) => {}
        }
        let lock_path = self.path.with_extension("json.lock");
        if let Some(dir) = lock_path.parent() {
            fsutil::ensure_private_dir(dir)?;
        }
        let lock = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| FsError::new("opening", &lock_path, e))?;
        let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
            .await
            .map_err(AuthError::LockTask)?
            .map_err(|e| FsError::new("locking", &lock_path, e))?;
        // Another process may have refreshed while we waited.
        let current = self
            .load()?
            .ok_or_else(|| AuthError::Expired("signed out meanwhile".into()))?;
        if !needs_refresh(&current) {
            drop(lock);
            return Ok(Some(current));
        }
        if current.refresh_token.is_empty() {
            drop(lock);
            return Err(AuthError::Expired(
                "a session from an access token has no refresh token".into(),
            ));
        }
        let result = auth.refresh(&current.refresh_token).await;
        let outcome = match result {
            Ok(next) => self.save(&next).map(|()| Some(next)),
            Err(AuthError::Refused(why)) => Err(AuthError::Expired(why)),
            Err(other) => Err(other),
        };
        drop(lock);
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_tokens_and_debug() {
        let payload = data_encoding::BASE64URL_NOPAD
            .encode(br#"{"sub":"u1","exp":42,"role":"authenticated"}"#);
        let session = session_from_access_token(&format!("h.{payload}.s")).unwrap();
        assert_eq!((session.user_id.as_str(), session.expires_at), ("u1", 42));
        assert!(!format!("{session:?}").contains(&payload));
        assert!(session_from_access_token("not a jwt").is_err());
    }

    #[test]
    fn error_bodies_of_both_generations_read_well() {
        let old: ErrorAnswer = serde_json::from_str(
            r#"{"error":"invalid_grant","error_description":"Invalid login credentials"}"#,
        )
        .unwrap();
        assert_eq!(old.text(400), "Invalid login credentials (invalid_grant)");
        let new: ErrorAnswer = serde_json::from_str(r#"{"code":400,"error_code":"refresh_token_already_used","msg":"Invalid Refresh Token: Already Used"}"#).unwrap();
        assert_eq!(
            new.text(400),
            "Invalid Refresh Token: Already Used (refresh_token_already_used)"
        );
    }
}
