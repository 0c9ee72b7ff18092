//! A typed client for Supabase's PostgREST API (`/rest/v1`): the `apikey` header plus the
//! user's bearer JWT on every request; errors keyed on the body's `code` (e.g. `42501` for a
//! row-level-security refusal), not only on the HTTP status (a PostgREST-compatible server may
//! answer 401 where PostgREST answers 403).

use std::{fmt, sync::Arc, time::Duration};

use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::RwLock;

/// How long one REST request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest response body read: a page of the cloud route's events (at most 32 envelopes of at
/// most 2 MiB) fits; a server that sends more is cut off instead of filling memory.
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// Where a Supabase project is.
#[derive(Clone)]
pub struct SupabaseConfig {
    /// The project URL, e.g. `https://<ref>.supabase.co`.
    pub url: String,
    /// The project's anon (publishable) key.
    pub anon_key: String,
    /// Overrides the REST base (`<url>/rest/v1`), e.g. a local PostgREST-compatible server.
    pub rest_url: Option<String>,
}

impl fmt::Debug for SupabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupabaseConfig")
            .field("url", &self.url)
            .field("anon_key", &"<redacted>")
            .field("rest_url", &self.rest_url)
            .finish()
    }
}

impl SupabaseConfig {
    pub fn rest_base(&self) -> String {
        match &self.rest_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("{}/rest/v1", self.url.trim_end_matches('/')),
        }
    }
}

/// A failed REST request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RestError {
    /// The server answered with an error body (`code`, `message`, `details`, `hint`).
    #[error("{what}: HTTP {status}{}: {message}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Api {
        what: String,
        status: u16,
        code: Option<String>,
        message: String,
    },
    #[error("{what}: {message}")]
    Transport { what: String, message: String },
    #[error("{what}: unexpected answer: {message}")]
    Decode { what: String, message: String },
    #[error("{what}: the answer is over {limit} bytes; not read")]
    TooLarge { what: String, limit: usize },
}

impl RestError {
    /// The PostgreSQL / PostgREST error code, when the server gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            RestError::Api { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// Row-level security or a missing grant refused the request.
    pub fn is_permission_denied(&self) -> bool {
        self.code() == Some("42501")
    }

    /// The write conflicts with a stored row (`23505`): a duplicate key, or a table-relay event
    /// re-sent with another envelope than the one stored under its seq.
    pub fn is_conflict(&self) -> bool {
        self.code() == Some("23505")
    }
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// The REST client for one user session.
#[derive(Clone)]
pub struct Rest {
    http: reqwest::Client,
    base: String,
    anon_key: String,
    /// The user's access token (replaced when the session refreshes).
    token: Arc<RwLock<String>>,
}

impl fmt::Debug for Rest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rest")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Rest {
    pub fn new(config: &SupabaseConfig, access_token: String) -> Result<Self, RestError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| RestError::Transport {
                what: "building the HTTP client".into(),
                message: e.to_string(),
            })?;
        Ok(Self {
            http,
            base: config.rest_base(),
            anon_key: config.anon_key.clone(),
            token: Arc::new(RwLock::new(access_token)),
        })
    }

    /// Replaces the access token (after a session refresh).
    pub async fn set_token(&self, access_token: String) {
        *self.token.write().await = access_token;
    }

    async fn send<T: DeserializeOwned>(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<T, RestError> {
        let token = self.token.read().await.clone();
        let response = request
            .header("apikey", &self.anon_key)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| RestError::Transport {
                what: what.into(),
                message: e.without_url().to_string(),
            })?;
        let status = response.status();
        let body = read_capped(what, response).await?;
        if !status.is_success() {
            let parsed: Option<ErrorBody> = serde_json::from_slice(&body).ok();
            return Err(RestError::Api {
                what: what.into(),
                status: status.as_u16(),
                code: parsed.as_ref().and_then(|b| b.code.clone()),
                message: parsed
                    .and_then(|b| b.message)
                    .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(500).collect()),
            });
        }
        let body = if body.is_empty() {
            &b"null"[..]
        } else {
            &body[..]
        };
        serde_json::from_slice(body).map_err(|e| RestError::Decode {
            what: what.into(),
            message: e.to_string(),
        })
    }

    /// `GET /<table>?<query>`: rows as `T`.
    pub async fn select<T: DeserializeOwned>(
        &self,
        table: &str,
        query: &str,
    ) -> Result<Vec<T>, RestError> {
        let url = format!("{}/{table}?{query}", self.base);
        self.send(&format!("reading {table}"), self.http.get(url))
            .await
    }

    /// `POST /<table>` (an upsert on `on_conflict` when given), returning the stored rows.
    pub async fn insert<T: DeserializeOwned>(
        &self,
        table: &str,
        rows: &impl Serialize,
        on_conflict: Option<&str>,
    ) -> Result<Vec<T>, RestError> {
        let mut url = format!("{}/{table}", self.base);
        let mut prefer = String::from("return=representation");
        if let Some(columns) = on_conflict {
            url.push_str(&format!("?on_conflict={columns}"));
            prefer.push_str(",resolution=merge-duplicates");
        }
        let request = self.http.post(url).header("prefer", prefer).json(rows);
        self.send(&format!("writing {table}"), request).await
    }

    /// `DELETE /<table>?<query>`, returning the deleted rows.
    pub async fn delete<T: DeserializeOwned>(
        &self,
        table: &str,
        query: &str,
    ) -> Result<Vec<T>, RestError> {
        let url = format!("{}/{table}?{query}", self.base);
        let request = self
            .http
            .delete(url)
            .header("prefer", "return=representation");
        self.send(&format!("deleting from {table}"), request).await
    }

    /// `POST /rpc/<function>` with named arguments.
    pub async fn rpc<T: DeserializeOwned>(
        &self,
        function: &str,
        args: &impl Serialize,
    ) -> Result<T, RestError> {
        let url = format!("{}/rpc/{function}", self.base);
        self.send(
            &format!("calling {function}"),
            self.http.post(url).json(args),
        )
        .await
    }
}
/// The response body, refused past [`MAX_RESPONSE_BYTES`] (by its `Content-Length`, or as it
/// arrives).
async fn read_capped(what: &str, mut response: reqwest::Response) -> Result<Vec<u8>, RestError> {
    let too_large = || RestError::TooLarge {
        what: what.into(),
        limit: MAX_RESPONSE_BYTES,
    };
    if response
        .content_length()
        .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| RestError::Transport {
        what: what.into(),
        message: e.without_url().to_string(),
    })? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
