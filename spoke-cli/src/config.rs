//! The spoke's own files, in its config dir (`--config-dir`, `HELIX_CONFIG_DIR`, or the
//! platform config dir, e.g. `~/.config/helix`):
//! - `secret.key`: this device's key (0600); its public key is the device id;
//! - `hubs.json`: the hubs this device paired with, by name, with their last known addresses.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use helix_mesh::{
    fsutil::{self, FsError},
    transport::{KeyError, load_or_create_secret_key},
};
use iroh::{EndpointAddr, EndpointId, SecretKey};
use serde::{Deserialize, Serialize};

/// The environment variable that may stand for `--config-dir`.
pub const CONFIG_DIR_ENV: &str = "HELIX_CONFIG_DIR";
/// This device's key file.
pub const KEY_FILE: &str = "secret.key";
/// The known hubs file.
pub const HUBS_FILE: &str = "hubs.json";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("known-hubs file {path} is corrupt ({problem}); it was left untouched: fix or move it")]
    Corrupt { path: PathBuf, problem: String },
}

/// A hub this device paired with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownHub {
    pub hub_id: EndpointId,
    /// The name the hub gave itself when pairing.
    #[serde(default)]
    pub hub_name: String,
    /// Its addresses when last seen (dialing also asks discovery for fresh ones).
    pub addr: EndpointAddr,
    pub paired_at_ms: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HubsFile {
    pub version: u32,
    #[serde(default)]
    pub hubs: BTreeMap<String, KnownHub>,
}

/// The spoke's config dir.
#[derive(Debug, Clone)]
pub struct SpokeConfig {
    pub dir: PathBuf,
}

/// The platform's default config dir for the spoke.
pub fn default_config_dir() -> PathBuf {
    dirs::config_dir()
        .or_else(|| dirs::home_dir().map(|h| h.join(".config")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("helix")
}

impl SpokeConfig {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// This device's key, created on first use.
    pub fn secret_key(&self) -> Result<SecretKey, ConfigError> {
        Ok(load_or_create_secret_key(&self.dir.join(KEY_FILE))?)
    }

    pub fn hubs(&self) -> Result<HubsFile, ConfigError> {
        let path = self.dir.join(HUBS_FILE);
        match fsutil::read_optional(&path)? {
            None => Ok(HubsFile {
                version: 1,
                hubs: BTreeMap::new(),
            }),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| ConfigError::Corrupt {
                path,
                problem: e.to_string(),
            }),
        }
    }

    /// Stores `hub` under `name`, replacing an entry of that name.
    pub fn save_hub(&self, name: &str, hub: KnownHub) -> Result<(), ConfigError> {
        let mut file = self.hubs()?;
        file.version = 1;
        file.hubs.insert(name.to_owned(), hub);
        fsutil::ensure_private_dir(&self.dir)?;
        let mut bytes = serde_json::to_vec_pretty(&file).unwrap_or_default();
        bytes.push(b'\n');
        fsutil::write_private_atomic(&self.dir.join(HUBS_FILE), &bytes)?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hubs_round_trip_and_corruption_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let config = SpokeConfig::new(dir.path().join("helix"));
        assert!(config.hubs().unwrap().hubs.is_empty());
        let key = config.secret_key().unwrap();
        assert_eq!(config.secret_key().unwrap().public(), key.public());
        let id = SecretKey::generate().public();
        let hub = KnownHub {
            hub_id: id,
            hub_name: "desk".into(),
            addr: EndpointAddr::new(id),
            paired_at_ms: 1,
        };
        config.save_hub("desk", hub.clone()).unwrap();
        assert_eq!(config.hubs().unwrap().hubs["desk"], hub);
        std::fs::write(dir.path().join("helix").join(HUBS_FILE), "[").unwrap();
        let err = config.hubs().unwrap_err().to_string();
        assert!(
            err.contains("hubs.json") && err.contains("corrupt"),
            "{err}"
        );
    }
}
