//! Changing the store (login, logout, import): each change is a read-modify-write under the
//! sidecar lock that token refreshes hold.

use helix_mesh::{
    fsutil::{self, FsError},
    pb::Provider,
};

use super::{AuthProfiles, CredentialError, CredentialStore, Profile, Secret, default_profile_id};

impl CredentialStore {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Credential;

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
}
