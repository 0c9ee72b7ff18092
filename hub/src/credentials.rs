//! The credential store: `auth-profiles.json` in the OpenClaw v1 shape.
//!
//! ```json
//! {"version":1,"profiles":{"anthropic:default":{"type":"api_key","provider":"anthropic","key":"sk-ant-…"}}}
//! ```
//!
//! The file is 0600 in a 0700 directory and written atomically. A file that cannot be parsed is
//! reported with its path and what is wrong, and is never rewritten. The hub checks it for every
//! command attempt (a `stat`; it is read again only when it changed), so `helix-hub login`
//! takes effect without a restart. Fields this version does not
//! know are kept when the file is rewritten.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
};

use helix_mesh::pb::Provider;
use serde::{Deserialize, Serialize};

use helix_mesh::fsutil::{self, FsError};

/// The file name inside the hub's data dir.
pub const FILE_NAME: &str = "auth-profiles.json";

/// Appended to the store's file name to name its lock file.
pub const LOCK_SUFFIX: &str = ".lock";

/// The only store version this hub reads and writes.
pub const STORE_VERSION: u32 = 1;

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

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(
        "credential store {path} is corrupt ({problem}); it was left untouched: fix or move it"
    )]
    Corrupt { path: PathBuf, problem: String },
    #[error(
        "credential store {path} has version {found}, this hub reads version {STORE_VERSION}; it was left untouched"
    )]
    UnsupportedVersion { path: PathBuf, found: u32 },
    #[error("profile {id} in {path} is incomplete: {problem}")]
    IncompleteProfile {
        path: PathBuf,
        id: String,
        problem: &'static str,
    },
    #[error("serializing the credential store: {0}")]
    Serialize(#[source] serde_json::Error),
}

/// The store at one path. Clones share a parsed copy of the file, used while the file's
/// [`FileStamp`] is unchanged: the hub looks up a credential for every command attempt, and
/// a `stat` is much cheaper than reading and parsing the file each time.
#[derive(Clone)]
pub struct CredentialStore {
    path: PathBuf,
    cache: Arc<Mutex<Option<(FileStamp, AuthProfiles)>>>,
}

impl fmt::Debug for CredentialStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// One version of the store's file, told apart without reading it: every writer of this
/// store replaces the file atomically (a new inode); an edit in place changes its size or
/// its modification or change time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

impl CredentialStore {
    /// The store inside a hub data dir.
    pub fn in_dir(data_dir: &Path) -> Self {
        Self::at(data_dir.join(FILE_NAME))
    }

    /// A store file anywhere (e.g. an OpenClaw file being imported).
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            cache: Arc::default(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sidecar file processes lock while they refresh a token (`auth-profiles.json.lock`).
    pub fn lock_path(&self) -> PathBuf {
        let mut name = self
            .path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| FILE_NAME.into());
        name.push(LOCK_SUFFIX);
        self.path.with_file_name(name)
    }

    /// Reads the file; a missing file is an empty store.
    pub fn load(&self) -> Result<AuthProfiles, CredentialError> {
        let Some(bytes) = fsutil::read_optional(&self.path)? else {
            return Ok(AuthProfiles::default());
        };
        let profiles: AuthProfiles =
            serde_json::from_slice(&bytes).map_err(|e| CredentialError::Corrupt {
                path: self.path.clone(),
                problem: e.to_string(),
            })?;
        if profiles.version != STORE_VERSION {
            return Err(CredentialError::UnsupportedVersion {
                path: self.path.clone(),
                found: profiles.version,
            });
        }
        Ok(profiles)
    }

    /// [`Self::load`], answered from the shared parsed copy while the file is unchanged.
    fn load_cached(&self) -> Result<AuthProfiles, CredentialError> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                *self.cached() = None;
                return Ok(AuthProfiles::default());
            }
            Err(e) => return Err(FsError::new("reading", &self.path, e).into()),
        };
        // Stamped before reading: a change while reading leaves a stale stamp, which only
        // means one more read next time.
        let stamp = FileStamp::of(&meta);
        if let Some((cached, profiles)) = self.cached().as_ref()
            && *cached == stamp
        {
            return Ok(profiles.clone());
        }
        let profiles = self.load()?;
        *self.cached() = Some((stamp, profiles.clone()));
        Ok(profiles)
    }

    fn cached(&self) -> MutexGuard<'_, Option<(FileStamp, AuthProfiles)>> {
        // Poisoned only by a panic while cloning or storing a copy; the copy is still whole.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the whole store atomically (0600, directory 0700).
    pub fn save(&self, profiles: &AuthProfiles) -> Result<(), CredentialError> {
        if let Some(dir) = self.path.parent() {
            fsutil::ensure_private_dir(dir)?;
        }
        let mut bytes = serde_json::to_vec_pretty(profiles).map_err(CredentialError::Serialize)?;
        bytes.push(b'\n');
        fsutil::write_private_atomic(&self.path, &bytes)?;
        Ok(())
    }

    /// Stores an API key as `<provider>:default`, replacing what was there. A corrupt store is
    /// refused, not overwritten.
    pub fn set_api_key(&self, provider: Provider, key: Secret) -> Result<(), CredentialError> {
        let mut profile = Profile::new("api_key", provider);
        profile.key = Some(key);
        self.set_profile(&default_profile_id(provider), profile)
    }

    /// Stores a token (e.g. a Claude setup-token) as `<provider>:default`.
    pub fn set_token(
        &self,
        provider: Provider,
        token: Secret,
        expires_ms: Option<i64>,
    ) -> Result<(), CredentialError> {
        let mut profile = Profile::new("token", provider);
        profile.token = Some(token);
        profile.expires = expires_ms;
        self.set_profile(&default_profile_id(provider), profile)
    }

    /// Runs a read-modify-write of the store under the exclusive sidecar lock that refreshes
    /// hold, so a login, logout or import never overwrites a token rotated at the same moment.
    fn locked<T>(
        &self,
        change: impl FnOnce() -> Result<T, CredentialError>,
    ) -> Result<T, CredentialError> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = self.path.parent() {
            fsutil::ensure_private_dir(dir)?;
        }
        let lock_path = self.lock_path();
        let lock = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(fsutil::PRIVATE_FILE_MODE)
            .open(&lock_path)
            .map_err(|e| FsError::new("opening", &lock_path, e))?;
        lock.lock()
            .map_err(|e| FsError::new("locking", &lock_path, e))?;
        let result = change();
        drop(lock);
        result
    }

    /// Stores a profile under `id`, replacing what was there. A corrupt store is refused.
    pub fn set_profile(&self, id: &str, profile: Profile) -> Result<(), CredentialError> {
        self.locked(|| self.set_profile_locked(id, profile))
    }

    /// [`Self::set_profile`] for a caller that already holds the lock (a refresh).
    pub(crate) fn set_profile_locked(
        &self,
        id: &str,
        profile: Profile,
    ) -> Result<(), CredentialError> {
        let mut profiles = self.load()?;
        profiles.profiles.insert(id.to_owned(), profile);
        self.save(&profiles)
    }

    /// Copies every profile of `other` (an OpenClaw file, same shape) into this store,
    /// replacing profiles with the same id; returns the ids copied.
    pub fn import(&self, other: &AuthProfiles) -> Result<Vec<String>, CredentialError> {
        self.locked(|| {
            let mut profiles = self.load()?;
            for (id, profile) in &other.profiles {
                profiles.profiles.insert(id.clone(), profile.clone());
            }
            if !other.profiles.is_empty() {
                self.save(&profiles)?;
            }
            Ok(other.profiles.keys().cloned().collect())
        })
    }

    /// The profile [`Self::credential_for`] would use, with its id.
    pub fn profile_for(
        &self,
        provider: Provider,
    ) -> Result<Option<(String, Profile)>, CredentialError> {
        let profiles = self.load_cached()?;
        Ok(chosen(&profiles, provider).map(|(id, p)| (id.clone(), p.clone())))
    }

    /// Removes every profile of `provider`; returns how many were removed.
    pub fn remove_provider(&self, provider: Provider) -> Result<usize, CredentialError> {
        self.locked(|| {
            let mut profiles = self.load()?;
            let before = profiles.profiles.len();
            profiles
                .profiles
                .retain(|_, p| p.provider != provider.name());
            let removed = before - profiles.profiles.len();
            if removed > 0 {
                self.save(&profiles)?;
            }
            Ok(removed)
        })
    }

    /// The credential to use for `provider`: `<provider>:default` if present, else the first
    /// profile of that provider by id.
    pub fn credential_for(
        &self,
        provider: Provider,
    ) -> Result<Option<Credential>, CredentialError> {
        let profiles = self.load_cached()?;
        let Some((id, profile)) = chosen(&profiles, provider) else {
            return Ok(None);
        };
        let incomplete = |problem| CredentialError::IncompleteProfile {
            path: self.path.clone(),
            id: id.clone(),
            problem,
        };
        let credential = match profile.kind.as_str() {
            "api_key" => Credential::ApiKey(
                profile
                    .key
                    .clone()
                    .ok_or_else(|| incomplete("an api_key profile needs \"key\""))?,
            ),
            "token" => Credential::Token {
                token: profile
                    .token
                    .clone()
                    .ok_or_else(|| incomplete("a token profile needs \"token\""))?,
                expires_ms: profile.expires,
            },
            "oauth" => Credential::OAuth {
                access: profile
                    .access
                    .clone()
                    .ok_or_else(|| incomplete("an oauth profile needs \"access\""))?,
                expires_ms: profile.expires,
                account_id: profile.account_id.clone(),
            },
            _ => return Err(incomplete("\"type\" must be api_key, token or oauth")),
        };
        Ok(Some(credential))
    }
}

/// `<provider>:default` if present, else the first profile of that provider by id.
fn chosen(profiles: &AuthProfiles, provider: Provider) -> Option<(&String, &Profile)> {
    profiles
        .profiles
        .get_key_value(&default_profile_id(provider))
        .or_else(|| {
            profiles
                .profiles
                .iter()
                .find(|(_, p)| p.provider == provider.name())
        })
}

/// `<provider>:default`.
pub fn default_profile_id(provider: Provider) -> String {
    format!("{}:default", provider.name())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn api_key_round_trips_in_openclaw_shape() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("hub");
        let store = CredentialStore::in_dir(&data);
        assert_eq!(store.credential_for(Provider::Anthropic).unwrap(), None);
        store
            .set_api_key(Provider::Anthropic, Secret::new("sk-ant-test"))
            .unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(store.path()).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"version":1,"profiles":{"anthropic:default":
                {"type":"api_key","provider":"anthropic","key":"sk-ant-test"}}})
        );
        let mode = std::fs::metadata(store.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(&data).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(
            store.credential_for(Provider::Anthropic).unwrap(),
            Some(Credential::ApiKey(Secret::new("sk-ant-test")))
        );
        assert_eq!(store.remove_provider(Provider::Anthropic).unwrap(), 1);
        assert_eq!(store.credential_for(Provider::Anthropic).unwrap(), None);
    }

    #[test]
    fn corrupt_store_is_reported_and_left_byte_identical() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::in_dir(dir.path());
        let garbage = b"{\"version\":1,\"profiles\":{\"anthropic:default\":";
        std::fs::write(store.path(), garbage).unwrap();
        let err = store
            .set_api_key(Provider::Anthropic, Secret::new("k"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&store.path().display().to_string()), "{err}");
        assert!(err.contains("corrupt"), "{err}");
        assert_eq!(std::fs::read(store.path()).unwrap(), garbage);
    }

    #[test]
    fn unknown_fields_survive_a_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::in_dir(dir.path());
        std::fs::write(
            store.path(),
            r#"{"version":1,"lastGood":{"x":1},"profiles":{"openai-codex:default":{"type":"oauth","provider":"openai-codex","access":"a","refresh":"r","expires":5,"accountId":"acc","note":"keep"}}}"#,
        )
        .unwrap();
        store
            .set_api_key(Provider::Anthropic, Secret::new("k"))
            .unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(store.path()).unwrap()).unwrap();
        assert_eq!(json["lastGood"]["x"], 1);
        assert_eq!(json["profiles"]["openai-codex:default"]["note"], "keep");
        assert_eq!(json["profiles"]["openai-codex:default"]["accountId"], "acc");
    }

    #[test]
    fn debug_never_shows_secrets() {
        let p = Credential::ApiKey(Secret::new("sk-ant-very-secret"));
        assert!(!format!("{p:?}").contains("very-secret"));
    }

    #[test]
    fn writes_wait_while_a_refresh_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::in_dir(dir.path());
        store
            .set_api_key(Provider::Anthropic, Secret::new("first"))
            .unwrap();
        let held = std::fs::File::options()
            .write(true)
            .open(store.lock_path())
            .unwrap();
        held.lock().unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let writer = {
            let store = store.clone();
            std::thread::spawn(move || {
                store
                    .set_api_key(Provider::Anthropic, Secret::new("second"))
                    .unwrap();
                done_tx.send(()).unwrap();
            })
        };
        assert!(
            done_rx
                .recv_timeout(std::time::Duration::from_millis(300))
                .is_err(),
            "the write must wait for the lock"
        );
        drop(held);
        done_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        writer.join().unwrap();
        assert_eq!(
            store.credential_for(Provider::Anthropic).unwrap(),
            Some(Credential::ApiKey(Secret::new("second")))
        );
    }

    #[test]
    fn cached_copy_follows_every_change_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::in_dir(dir.path());
        // Another process (another store value) writes; this store's copy must follow.
        let other = CredentialStore::in_dir(dir.path());
        let key = |k: &str| Some(Credential::ApiKey(Secret::new(k)));
        other
            .set_api_key(Provider::Anthropic, Secret::new("one"))
            .unwrap();
        assert_eq!(
            store.credential_for(Provider::Anthropic).unwrap(),
            key("one")
        );
        other
            .set_api_key(Provider::Anthropic, Secret::new("two"))
            .unwrap();
        assert_eq!(
            store.credential_for(Provider::Anthropic).unwrap(),
            key("two")
        );
        // An edit in place (same inode, another size), as an editor might make.
        let text = std::fs::read_to_string(store.path()).unwrap();
        std::fs::write(store.path(), text.replace("\"two\"", "\"three\"")).unwrap();
        assert_eq!(
            store.credential_for(Provider::Anthropic).unwrap(),
            key("three")
        );
        // A corrupt file is reported, not hidden by the copy.
        std::fs::write(store.path(), "{").unwrap();
        assert!(matches!(
            store.credential_for(Provider::Anthropic),
            Err(CredentialError::Corrupt { .. })
        ));
        std::fs::remove_file(store.path()).unwrap();
        assert_eq!(store.credential_for(Provider::Anthropic).unwrap(), None);
    }
}
