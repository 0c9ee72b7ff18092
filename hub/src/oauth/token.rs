//! The token endpoint: the code exchange's and the refresh's requests, their answers, and the
//! claims read from the tokens.

use data_encoding::BASE64URL_NOPAD;
use helix_mesh::proto_ext::now_ms;
use serde::Deserialize;

use super::{CLIENT_ID, OAuthError, REFRESH_SCOPE, TOKEN_REQUEST_TIMEOUT};
use crate::{credentials::Secret, provider::describe_transport};

/// The id_token claim that holds the ChatGPT account.
const AUTH_CLAIM: &str = "https://api.openai.com/auth";

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

pub(super) fn token_url(issuer: &str) -> String {
    format!("{}/oauth/token", issuer.trim_end_matches('/'))
}

pub(super) fn http_client(url: &str) -> Result<reqwest::Client, OAuthError> {
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
pub(super) struct TokenResponse {
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

pub(super) async fn send_token_request(
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
    pub(super) fn from_response(
        r: TokenResponse,
        previous: Option<&Tokens>,
    ) -> Result<Self, OAuthError> {
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
