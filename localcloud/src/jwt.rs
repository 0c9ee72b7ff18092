//! HS256 JWTs as Supabase issues them: the anon key, users' access tokens. One random secret
//! per run signs them all, and postrust checks them with the same secret.

use std::fmt;

use data_encoding::BASE64URL_NOPAD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// The JWT header every token carries.
const HEADER: &[u8] = br#"{"alg":"HS256","typ":"JWT"}"#;

/// How long the anon key is valid: Supabase's local keys last ten years.
const ANON_KEY_LIFETIME_SECS: i64 = 10 * 365 * 24 * 3600;

/// The signing secret (64 hex characters; postrust wants at least 32). Never logged.
#[derive(Clone)]
pub struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// A fresh random secret.
    pub fn random() -> Self {
        Self(hex32())
    }

    /// The secret's text, for postrust's `PGRST_JWT_SECRET`.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length; this cannot fail.
        <Hmac<Sha256> as KeyInit>::new_from_slice(self.0.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
    }

    /// A signed token of `claims`.
    pub fn sign(&self, claims: &Value) -> String {
        let header = BASE64URL_NOPAD.encode(HEADER);
        let payload = BASE64URL_NOPAD.encode(claims.to_string().as_bytes());
        let mut mac = self.mac();
        mac.update(format!("{header}.{payload}").as_bytes());
        let signature = BASE64URL_NOPAD.encode(&mac.finalize().into_bytes());
        format!("{header}.{payload}.{signature}")
    }

    /// The anon key: role `anon`, no user.
    pub fn anon_key(&self) -> String {
        let now = now_secs();
        self.sign(&json!({
            "iss": "supabase", "ref": "helix-local-cloud", "role": "anon",
            "iat": now, "exp": now + ANON_KEY_LIFETIME_SECS,
        }))
    }

    /// The claims of `token` if its signature is this secret's and it has not expired.
    pub fn verify(&self, token: &str) -> Result<Claims, JwtError> {
        let mut parts = token.split('.');
        let (Some(head), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header: Value = decode_json(head)?;
        if header.get("alg").and_then(Value::as_str) != Some("HS256") {
            return Err(JwtError::Algorithm);
        }
        let signature = BASE64URL_NOPAD
            .decode(signature.as_bytes())
            .map_err(|_| JwtError::Malformed)?;
        let mut mac = self.mac();
        mac.update(format!("{head}.{payload}").as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| JwtError::Signature)?;
        let claims: Value = decode_json(payload)?;
        let exp = claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or(JwtError::NoExpiry)?;
        let now = now_secs();
        if exp <= now {
            return Err(JwtError::Expired { ago: now - exp });
        }
        Ok(Claims {
            sub: claims.get("sub").and_then(Value::as_str).map(str::to_owned),
            role: claims
                .get("role")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            session_id: claims
                .get("session_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            exp,
        })
    }
}

fn decode_json(part: &str) -> Result<Value, JwtError> {
    let bytes = BASE64URL_NOPAD
        .decode(part.trim_end_matches('=').as_bytes())
        .map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The user id; none for the anon key.
    pub sub: Option<String>,
    pub role: String,
    pub session_id: Option<String>,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwtError {
    #[error("the token is not a JWT")]
    Malformed,
    #[error("the token is not signed with HS256")]
    Algorithm,
    #[error("the token's signature does not match this project's secret")]
    Signature,
    #[error("the token has no exp claim")]
    NoExpiry,
    #[error("the token expired {ago} seconds ago")]
    Expired { ago: i64 },
}

/// Seconds since the epoch.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// 32 random bytes as 64 hex digits.
pub fn hex32() -> String {
    let bytes: [u8; 32] = rand::random();
    data_encoding::HEXLOWER.encode(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_with_their_secret_and_before_expiry() {
        let secret = Secret::random();
        let now = now_secs();
        let token = secret.sign(&json!({"sub": "u1", "role": "authenticated", "exp": now + 60}));
        let claims = secret.verify(&token).unwrap();
        assert_eq!(claims.sub.as_deref(), Some("u1"));
        assert_eq!(claims.role, "authenticated");
        assert_eq!(Secret::random().verify(&token), Err(JwtError::Signature));
        let old = secret.sign(&json!({"sub": "u1", "role": "authenticated", "exp": now - 5}));
        assert!(matches!(secret.verify(&old), Err(JwtError::Expired { ago }) if ago >= 5));
        assert_eq!(secret.verify("a.b"), Err(JwtError::Malformed));
        let anon = secret.verify(&secret.anon_key()).unwrap();
        assert_eq!((anon.sub, anon.role.as_str()), (None, "anon"));
        assert!(!format!("{secret:?}").contains(secret.expose()));
    }

    #[test]
    fn a_token_with_another_algorithm_is_refused() {
        let secret = Secret::random();
        let token = secret.sign(&json!({"exp": now_secs() + 60}));
        let (_, rest) = token.split_once('.').unwrap();
        let none = format!("{}.{rest}", BASE64URL_NOPAD.encode(br#"{"alg":"none"}"#));
        assert_eq!(secret.verify(&none), Err(JwtError::Algorithm));
    }
}
