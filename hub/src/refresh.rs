//! Refreshing OAuth tokens without races between processes.
//!
//! Several hubs and CLIs may share one `auth-profiles.json`, and refresh tokens rotate (the old
//! one stops working once used). So a refresh takes an exclusive lock on the sidecar
//! `auth-profiles.json.lock`, re-reads the store, refreshes only if the token still needs it,
//! saves the new pair, and only then unlocks and uses it. N processes racing on one expired
//! token therefore make exactly one refresh request; the others find the new token.

use std::{fs::File, os::unix::fs::OpenOptionsExt, time::Duration};

use helix_mesh::{
    fsutil::{self, FsError},
    pb::Provider,
    proto_ext::now_ms,
};

use crate::{
    credentials::{Credential, CredentialError, CredentialStore, Secret},
    oauth::{self, OAuthError, Tokens},
};

/// Refresh a token this long before it expires, so no request starts with a token that
/// expires on the way.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RefreshError {
    #[error(transparent)]
    Store(#[from] CredentialError),
    #[error("locking the credential store: {0}")]
    Lock(#[source] FsError),
    #[error("no {provider} credential is stored: sign in with `helix-hub login {provider}`")]
    Missing { provider: Provider },
    #[error(
        "the {provider} profile {id} has no refresh token; sign in again: helix-hub login {provider}"
    )]
    NoRefreshToken { provider: Provider, id: String },
    #[error(
        "refreshing the {provider} token failed: {source}; sign in again: helix-hub login {provider}"
    )]
    Rejected {
        provider: Provider,
        #[source]
        source: OAuthError,
    },
    #[error("refreshing the {provider} token failed for now (try again later): {source}")]
    Transient {
        provider: Provider,
        #[source]
        source: OAuthError,
    },
}

impl RefreshError {
    /// Whether a later attempt may succeed without the person signing in again.
    pub fn is_transient(&self) -> bool {
        matches!(self, RefreshError::Transient { .. } | RefreshError::Lock(_))
    }
}

/// What [`Refresher::ensure_fresh`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The stored credential was good enough (possibly because another process had just
    /// refreshed it).
    AlreadyFresh,
    /// This call refreshed it.
    Refreshed,
}

/// Refreshes OAuth credentials of one store against one issuer.
#[derive(Debug, Clone)]
pub struct Refresher {
    store: CredentialStore,
    issuer: String,
}

impl Refresher {
    pub fn new(store: CredentialStore, issuer: &str) -> Self {
        Self {
            store,
            issuer: issuer.trim_end_matches('/').to_owned(),
        }
    }

    /// The store it refreshes.
    pub fn store(&self) -> &CredentialStore {
        &self.store
    }

    /// The credential for `provider`, refreshed first if it is an OAuth token that expires
    /// within [`REFRESH_MARGIN`], or that was just refused (`refused` is the access token the
    /// provider answered 401 to: refreshed only if the store still holds that one).
    /// `Ok(None)`: nothing stored. Only `openai-codex` OAuth tokens are refreshed here; other
    /// credentials are returned as they are.
    pub async fn ensure_fresh(
        &self,
        provider: Provider,
        refused: Option<&Secret>,
    ) -> Result<Option<(Credential, Outcome)>, RefreshError> {
        let Some(credential) = self.store.credential_for(provider)? else {
            return Ok(None);
        };
        if provider != Provider::OpenaiCodex || !needs_refresh(&credential, refused) {
            return Ok(Some((credential, Outcome::AlreadyFresh)));
        }
        let lock = self.lock().await?;
        // Another process may have refreshed while we waited for the lock.
        let (id, profile) = self
            .store
            .profile_for(provider)?
            .ok_or(RefreshError::Missing { provider })?;
        let Some(credential) = self.store.credential_for(provider)? else {
            return Err(RefreshError::Missing { provider });
        };
        if !needs_refresh(&credential, refused) {
            tracing::debug!(%provider, "another process refreshed the token");
            return Ok(Some((credential, Outcome::AlreadyFresh)));
        }
        let refresh_token = profile
            .refresh
            .clone()
            .filter(|r| !r.expose().is_empty())
            .ok_or_else(|| RefreshError::NoRefreshToken {
                provider,
                id: id.clone(),
            })?;
        let previous = Tokens {
            access: profile.access.clone().unwrap_or_else(|| Secret::new("")),
            refresh: Some(refresh_token.clone()),
            expires_ms: profile.expires,
            account_id: profile.account_id.clone(),
            email: profile.email.clone(),
        };
        tracing::info!(%provider, profile = %id, "refreshing the OAuth token");
        let tokens = oauth::refresh(&self.issuer, &refresh_token, &previous)
            .await
            .map_err(|source| {
                if source.is_transient() {
                    RefreshError::Transient { provider, source }
                } else {
                    RefreshError::Rejected { provider, source }
                }
            })?;
        // The old refresh token is spent: the new pair is saved before anything uses it.
        let mut updated = profile;
        updated.access = Some(tokens.access.clone());
        updated.refresh = tokens.refresh.clone();
        updated.expires = tokens.expires_ms;
        updated.account_id = tokens.account_id.clone();
        if tokens.email.is_some() {
            updated.email = tokens.email.clone();
        }
        self.store.set_profile_locked(&id, updated)?;
        drop(lock);
        let credential = Credential::OAuth {
            access: tokens.access,
            expires_ms: tokens.expires_ms,
            account_id: tokens.account_id,
        };
        Ok(Some((credential, Outcome::Refreshed)))
    }

    /// Takes the exclusive lock on the sidecar file (released when the file is dropped).
    async fn lock(&self) -> Result<File, RefreshError> {
        let path = self.store.lock_path();
        if let Some(dir) = path.parent() {
            fsutil::ensure_private_dir(dir).map_err(RefreshError::Lock)?;
        }
        tokio::task::spawn_blocking(move || {
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(fsutil::PRIVATE_FILE_MODE)
                .open(&path)
                .map_err(|e| FsError::new("opening", &path, e))?;
            // Whoever holds it is making one bounded HTTP request (see TOKEN_REQUEST_TIMEOUT).
            file.lock().map_err(|e| FsError::new("locking", &path, e))?;
            Ok(file)
        })
        .await
        .map_err(|e| {
            RefreshError::Lock(FsError::new(
                "locking",
                self.store.path(),
                std::io::Error::other(e.to_string()),
            ))
        })?
        .map_err(RefreshError::Lock)
    }
}

/// An OAuth credential that expires within the margin, or whose access token was refused.
pub fn needs_refresh(credential: &Credential, refused: Option<&Secret>) -> bool {
    let Credential::OAuth {
        access, expires_ms, ..
    } = credential
    else {
        return false;
    };
    if refused.is_some_and(|r| r == access) {
        return true;
    }
    let margin = i64::try_from(REFRESH_MARGIN.as_millis()).unwrap_or(i64::MAX);
    expires_ms.is_some_and(|e| e.saturating_sub(now_ms()) < margin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oauth(access: &str, expires_ms: Option<i64>) -> Credential {
        Credential::OAuth {
            access: Secret::new(access),
            expires_ms,
            account_id: None,
        }
    }

    #[test]
    fn refresh_when_expiring_or_refused_only() {
        let now = now_ms();
        assert!(needs_refresh(&oauth("a", Some(now - 1)), None));
        assert!(needs_refresh(&oauth("a", Some(now + 60_000)), None));
        assert!(!needs_refresh(&oauth("a", Some(now + 3_600_000)), None));
        assert!(!needs_refresh(&oauth("a", None), None));
        let refused = Secret::new("a");
        assert!(needs_refresh(&oauth("a", None), Some(&refused)));
        assert!(!needs_refresh(&oauth("b", None), Some(&refused)));
        assert!(!needs_refresh(
            &Credential::ApiKey(Secret::new("k")),
            Some(&refused)
        ));
    }

    #[test]
    fn lock_file_sits_next_to_the_store() {
        let store = CredentialStore::in_dir(std::path::Path::new("/d"));
        assert_eq!(
            store.lock_path(),
            std::path::Path::new("/d/auth-profiles.json.lock")
        );
    }
}
