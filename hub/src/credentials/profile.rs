//! The file's shape (a profile, the whole store), secrets, and the credential a profile gives.

use std::{collections::BTreeMap, fmt};

use helix_mesh::pb::Provider;
use serde::{Deserialize, Serialize};

use super::STORE_VERSION;

/// A secret string: serialized as itself, never shown by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends it (an HTTP header, a child's env).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// One profile. `type` is `api_key`, `token` or `oauth`; which secret fields are set follows
/// from it. Unknown fields are kept in `extra` (and, since they may be secrets too, `Debug`
/// shows only their names).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    #[serde(rename = "type")]
    pub kind: String,
    pub provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<Secret>,
    /// Expiry in milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
    #[serde(default, rename = "accountId", skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Profile {
    /// A profile of `kind` for `provider` with no fields set.
    pub fn new(kind: &str, provider: Provider) -> Self {
        Self {
            kind: kind.into(),
            provider: provider.name().into(),
            key: None,
            token: None,
            access: None,
            refresh: None,
            expires: None,
            account_id: None,
            email: None,
            extra: BTreeMap::new(),
        }
    }
}

impl fmt::Debug for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profile")
            .field("kind", &self.kind)
            .field("provider", &self.provider)
            .field("key", &self.key)
            .field("token", &self.token)
            .field("access", &self.access)
            .field("refresh", &self.refresh)
            .field("expires", &self.expires)
            .field("account_id", &self.account_id)
            .field("email", &self.email)
            .field("extra_fields", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The whole file. (`Debug` of unknown top-level fields shows only their names.)
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthProfiles {
    pub version: u32,
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl fmt::Debug for AuthProfiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthProfiles")
            .field("version", &self.version)
            .field("profiles", &self.profiles)
            .field("extra_fields", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Default for AuthProfiles {
    fn default() -> Self {
        Self {
            version: STORE_VERSION,
            profiles: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }
}

/// A usable credential for one provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    ApiKey(Secret),
    Token {
        token: Secret,
        expires_ms: Option<i64>,
    },
    OAuth {
        access: Secret,
        expires_ms: Option<i64>,
        account_id: Option<String>,
    },
}

impl Credential {
    /// Expiry in ms since the Unix epoch, if the credential has one.
    pub fn expires_ms(&self) -> Option<i64> {
        match self {
            Credential::ApiKey(_) => None,
            Credential::Token { expires_ms, .. } | Credential::OAuth { expires_ms, .. } => {
                *expires_ms
            }
        }
    }

    /// `api_key`, `token` or `oauth`, as in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::ApiKey(_) => "api_key",
            Credential::Token { .. } => "token",
            Credential::OAuth { .. } => "oauth",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let p = Credential::ApiKey(Secret::new("sk-ant-very-secret"));
        assert!(!format!("{p:?}").contains("very-secret"));
    }
}
