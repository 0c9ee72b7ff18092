//! The hub's claim token and its registration with the cloud.
//!
//! The token is 32 random bytes in hex (64 characters), created on first cloud use in
//! `<data-dir>/cloud-claim-token` (mode 0600; written to a temporary file, then linked into
//! place, so two processes racing on an empty data dir end up with the same token). The
//! database keeps only its SHA-256: every function that writes what a hub writes takes
//! `(p_hub_id, p_token)` and refuses (42501) unless they match the hub's registration. The
//! token goes only into RPC bodies: never into a log line, an error, a URL or `Debug` output.
//!
//! At start the cloud route calls `register_cloud_hub` until it gets through (trust on first use:
//! the first token registered for this hub under the account is the only one accepted after).
//! A 42501 means this hub id is registered under the account with another token (the token
//! file was lost or replaced, or the hub signed in to an account another copy of this hub
//! registered with): that is logged once, with what to do, and the cloud route stops.

use std::{fmt, path::Path, time::Duration};

use helix_discovery::cloud::Cloud;
use helix_mesh::fsutil::{self, FsError};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::row::{backoff, is_transient};

/// The token file's name in the data dir.
pub const CLAIM_TOKEN_FILE: &str = "cloud-claim-token";
/// The longest wait between two registration attempts: a cloud that comes back is noticed
/// within a minute, and an outage costs at most 60 requests an hour.
pub const REGISTER_RETRY_MAX: Duration = Duration::from_secs(60);

/// Why the claim token could not be read or created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimTokenError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(
        "{0} is not a claim token (64 lower-case hex digits): restore it from a backup; deleting it makes the hub create a new one, which the cloud accepts only under an account this hub has not registered with"
    )]
    Corrupt(String),
}

/// The hub's claim token.
#[derive(Clone, PartialEq, Eq)]
pub struct ClaimToken(String);

impl fmt::Debug for ClaimToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClaimToken(<redacted>)")
    }
}

impl ClaimToken {
    /// Reads `<data_dir>/cloud-claim-token`, creating it first if there is none.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, ClaimTokenError> {
        let path = data_dir.join(CLAIM_TOKEN_FILE);
        if let Some(bytes) = fsutil::read_optional(&path)? {
            return Self::parse(&path, &bytes);
        }
        let fresh = hex::encode(rand::random::<[u8; 32]>());
        let staged = data_dir.join(format!(
            ".{CLAIM_TOKEN_FILE}.new-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        fsutil::write_private_atomic(&staged, fresh.as_bytes())?;
        // A link does not replace an existing file: whoever links first wins, and everyone
        // reads the winner's token.
        let linked = std::fs::hard_link(&staged, &path);
        let _ = std::fs::remove_file(&staged);
        match linked {
            Ok(()) => {
                std::fs::File::open(data_dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| FsError::new("syncing directory", data_dir, e))?;
                tracing::info!(path = %path.display(), "created the hub's cloud claim token");
                Ok(Self(fresh))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let bytes = std::fs::read(&path).map_err(|e| FsError::new("reading", &path, e))?;
                Self::parse(&path, &bytes)
            }
            Err(e) => Err(FsError::new("creating", &path, e).into()),
        }
    }

    fn parse(path: &Path, bytes: &[u8]) -> Result<Self, ClaimTokenError> {
        let text = std::str::from_utf8(bytes).unwrap_or_default().trim();
        let valid = text.len() == 64
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid {
            return Err(ClaimTokenError::Corrupt(path.display().to_string()));
        }
        Ok(Self(text.to_owned()))
    }
}

/// The hub as the database knows it: its id and claim token, put into every hub call.
#[derive(Clone)]
pub(super) struct HubCaller {
    pub hub_id: String,
    token: ClaimToken,
}

impl fmt::Debug for HubCaller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubCaller")
            .field("hub_id", &self.hub_id)
            .finish_non_exhaustive()
    }
}

impl HubCaller {
    pub fn new(hub_id: String, token: ClaimToken) -> Self {
        Self { hub_id, token }
    }

    /// `args` (a JSON object) with `p_hub_id` and `p_token` added. The result holds the
    /// token: it is sent, never logged.
    pub fn args(&self, mut args: Value) -> Value {
        if let Some(map) = args.as_object_mut() {
            map.insert("p_hub_id".into(), json!(self.hub_id));
            map.insert("p_token".into(), json!(self.token.0));
        }
        args
    }

    /// The token's text, for the discovery crate's presence calls (sent in a body only).
    pub fn token(&self) -> &str {
        &self.token.0
    }
}

/// How registering ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Registration {
    Registered,
    /// 42501: another claim token holds this hub id under the account (logged).
    Refused,
    /// The hub stops.
    Stopped,
}

/// Registers the hub until it gets through, is refused, or `cancel` fires. Not signed in:
/// checks again every `poll` (a later `helix-hub cloud login` takes effect without a restart).
pub(super) async fn register(
    cloud: &Cloud,
    caller: &HubCaller,
    data_dir: &Path,
    poll: Duration,
    cancel: &CancellationToken,
) -> Registration {
    let hub_id = caller.hub_id.as_str();
    let mut failures = 0u32;
    loop {
        let wait = match cloud.rest().await {
            Ok(Some((rest, _))) => {
                let answer: Result<Value, _> = rest
                    .rpc("register_cloud_hub", &caller.args(json!({})))
                    .await;
                match answer {
                    Ok(_) => {
                        tracing::info!(%hub_id, "registered with the cloud");
                        return Registration::Registered;
                    }
                    Err(error) if error.is_permission_denied() => {
                        tracing::error!(
                            %hub_id,
                            %error,
                            token_file = %data_dir.join(CLAIM_TOKEN_FILE).display(),
                            "the cloud refused this hub's claim token: this hub is registered under the signed-in account with another token. Either sign in to the account this hub belongs to (`helix-hub cloud logout`, then `helix-hub cloud login`), or restore the token file from a backup; then restart the hub. The cloud route is off until then"
                        );
                        return Registration::Refused;
                    }
                    Err(error) => {
                        failures = failures.saturating_add(1);
                        if !is_transient(&error) {
                            tracing::error!(%hub_id, %error, "the cloud refused to register this hub; trying again");
                        } else if failures == 1 {
                            tracing::warn!(%hub_id, %error, "registering with the cloud failed; trying again");
                        }
                        backoff(failures).min(REGISTER_RETRY_MAX)
                    }
                }
            }
            Ok(None) => poll,
            Err(error) => {
                failures = failures.saturating_add(1);
                if failures == 1 {
                    tracing::warn!(%error, "cloud route: no usable cloud session");
                }
                backoff(failures).min(REGISTER_RETRY_MAX)
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return Registration::Stopped,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_token_is_created_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let first = ClaimToken::load_or_create(dir.path()).unwrap();
        let path = dir.path().join(CLAIM_TOKEN_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 64);
        assert!(text.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(ClaimToken::load_or_create(dir.path()).unwrap(), first);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no staging file left"
        );
        assert_eq!(format!("{first:?}"), "ClaimToken(<redacted>)");
        let caller = HubCaller::new("ab".repeat(32), first);
        assert!(!format!("{caller:?}").contains(&text));
        assert_eq!(caller.args(json!({"p_limit": 3}))["p_token"], text);
    }

    #[test]
    fn a_corrupt_token_file_is_named_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CLAIM_TOKEN_FILE);
        std::fs::write(&path, "not a token").unwrap();
        let err = ClaimToken::load_or_create(dir.path()).unwrap_err();
        assert!(err.to_string().contains(CLAIM_TOKEN_FILE), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a token");
    }

    #[test]
    fn processes_racing_on_an_empty_dir_share_one_token() {
        let dir = tempfile::tempdir().unwrap();
        let tokens: Vec<ClaimToken> = std::thread::scope(|s| {
            let racers: Vec<_> = (0..4)
                .map(|_| s.spawn(|| ClaimToken::load_or_create(dir.path()).unwrap()))
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        assert!(tokens.windows(2).all(|w| w[0] == w[1]));
    }
}
