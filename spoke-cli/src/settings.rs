//! `<config-dir>/config.toml`: this device's defaults for how it reaches hubs over iroh. Every
//! key is optional and a flag wins over it (`--relay-url`/`--no-relay`, `--relay-ca`,
//! `--no-n0-discovery`, `--no-mdns`, `--local-only`). Unknown keys are refused.
//!
//! ```toml
//! [iroh]
//! relay = "https://relay.example.com"   # "n0" (default), "none", or a relay URL
//! relay_ca = "relay-ca.pem"             # extra roots for that relay (relative to this dir)
//! n0_discovery = false                  # resolve hub ids through n0's DNS (default true)
//! mdns = true                           # look for hubs on the local network (default true)
//! keep_warm = "10m"                     # how long the keeper holds a hub's connection
//!                                       # after a command; "0s" turns it off
//! ```

use std::path::{Path, PathBuf};

use helix_mesh::transport::RelayChoice;
use serde::Deserialize;

/// The file's name in the config dir.
pub const FILE_NAME: &str = "config.toml";

/// What the file says.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub iroh: IrohSettings,
}

/// The `[iroh]` section.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IrohSettings {
    /// `n0`, `none`, or a relay URL.
    pub relay: Option<String>,
    /// A PEM file of extra root certificates for a self-hosted relay.
    pub relay_ca: Option<PathBuf>,
    pub n0_discovery: Option<bool>,
    pub mdns: Option<bool>,
    /// How long the keeper stays after a command, e.g. `10m`; `0s` turns it off.
    pub keep_warm: Option<String>,
}

/// The file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not valid: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

impl Settings {
    /// The settings in `dir` (the defaults when there is no file). A relative `relay_ca` is
    /// taken relative to `dir`.
    pub fn load(dir: &Path) -> Result<Self, SettingsError> {
        let path = dir.join(FILE_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(SettingsError::Read { path, source }),
        };
        let mut settings: Settings = toml::from_str(&text).map_err(|e| SettingsError::Invalid {
            path: path.clone(),
            message: e.message().to_owned(),
        })?;
        if let Some(relay) = &settings.iroh.relay {
            relay_choice(relay).map_err(|message| SettingsError::Invalid {
                path: path.clone(),
                message: format!("iroh.relay: {message}"),
            })?;
        }
        if let Some(text) = &settings.iroh.keep_warm {
            humantime::parse_duration(text).map_err(|e| SettingsError::Invalid {
                path: path.clone(),
                message: format!("iroh.keep_warm: {text:?} is not a duration such as \"10m\": {e}"),
            })?;
        }
        if let Some(ca) = settings.iroh.relay_ca.as_mut()
            && ca.is_relative()
        {
            *ca = dir.join(&*ca);
        }
        Ok(settings)
    }

    /// How long the keeper stays after a command (`None`: the default).
    pub fn keep_warm(&self) -> Option<std::time::Duration> {
        self.iroh
            .keep_warm
            .as_deref()
            .and_then(|t| humantime::parse_duration(t).ok())
    }

    /// The relay the file names, if any.
    pub fn relay(&self) -> Option<RelayChoice> {
        self.iroh
            .relay
            .as_deref()
            .and_then(|r| relay_choice(r).ok())
    }
}

/// `n0`, `none` or a relay URL, as the hub's `[iroh] relay` takes it.
fn relay_choice(text: &str) -> Result<RelayChoice, String> {
    match text {
        "n0" | "default" => Ok(RelayChoice::N0),
        "none" | "" => Ok(RelayChoice::Disabled),
        url => url
            .parse()
            .map(|url| RelayChoice::Custom(vec![url]))
            .map_err(|e| format!("{url:?} is not \"n0\", \"none\" or a relay URL: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_file_is_the_defaults_and_a_file_is_read_with_paths_from_its_dir() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Settings::load(dir.path()).unwrap(), Settings::default());
        std::fs::write(
            dir.path().join(FILE_NAME),
            "[iroh]\nrelay = \"https://relay.example.com\"\nrelay_ca = \"ca.pem\"\nn0_discovery = false\n",
        )
        .unwrap();
        let settings = Settings::load(dir.path()).unwrap();
        assert_eq!(settings.iroh.relay_ca, Some(dir.path().join("ca.pem")));
        assert_eq!(settings.iroh.n0_discovery, Some(false));
        assert_eq!(settings.iroh.mdns, None);
        assert!(matches!(settings.relay(), Some(RelayChoice::Custom(urls)) if urls.len() == 1));
    }

    #[test]
    fn unknown_keys_and_bad_relays_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, "[iroh]\nn0_discovry = false\n").unwrap();
        let err = Settings::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "{} is not valid: unknown field `n0_discovry`",
                path.display()
            )),
            "{err}"
        );
        std::fs::write(&path, "[iroh]\nrelay = \"not a url\"\n").unwrap();
        let err = Settings::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("iroh.relay: \"not a url\" is not \"n0\", \"none\" or a relay URL"),
            "{err}"
        );
        std::fs::write(&path, "[iroh]\nkeep_warm = \"soon\"\n").unwrap();
        let err = Settings::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("iroh.keep_warm: \"soon\" is not a duration such as \"10m\""),
            "{err}"
        );
        std::fs::write(&path, "[iroh]\nkeep_warm = \"0s\"\n").unwrap();
        let settings = Settings::load(dir.path()).unwrap();
        assert_eq!(settings.keep_warm(), Some(std::time::Duration::ZERO));
    }
}
