//! Looking up a provider's credential, answered from a parsed copy of the file while the
//! file is unchanged.

use std::sync::MutexGuard;

use helix_mesh::{fsutil::FsError, pb::Provider};

use super::{
    AuthProfiles, Credential, CredentialError, CredentialStore, Profile, default_profile_id,
};

/// One version of the store's file, told apart without reading it: every writer of this
/// store replaces the file atomically (a new inode); an edit in place changes its size or
/// its modification or change time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileStamp {
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

    /// The profile [`Self::credential_for`] would use, with its id.
    pub fn profile_for(
        &self,
        provider: Provider,
    ) -> Result<Option<(String, Profile)>, CredentialError> {
        let profiles = self.load_cached()?;
        Ok(chosen(&profiles, provider).map(|(id, p)| (id.clone(), p.clone())))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Secret;

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
