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
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use helix_mesh::pb::Provider;

use helix_mesh::fsutil::{self, FsError};

mod edit;
mod lookup;
mod profile;

use lookup::FileStamp;
pub use profile::{AuthProfiles, Credential, Profile, Secret};

/// The file name inside the hub's data dir.
pub const FILE_NAME: &str = "auth-profiles.json";

/// Appended to the store's file name to name its lock file.
pub const LOCK_SUFFIX: &str = ".lock";

/// The only store version this hub reads and writes.
pub const STORE_VERSION: u32 = 1;

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
}
