//! `helix run --continue`: the session this device's last `helix run` on each hub was a turn
//! of, kept in `<config dir>/last-sessions.json` (hub key → session id; a command without
//! `--session` is its own session, named after its id, so `--continue` goes on from it too).

use std::{collections::BTreeMap, path::Path};

use helix_mesh::fsutil;

use crate::client::Target;

const FILE: &str = "last-sessions.json";

/// How a target hub is named in the file: its data dir for a hub on this machine, its key
/// otherwise.
pub fn hub_key(target: &Target) -> String {
    match target {
        Target::Local(dir) => format!("local:{}", dir.display()),
        Target::Remote { addr, .. } => addr.id.to_string(),
    }
}

fn read(config_dir: &Path) -> BTreeMap<String, String> {
    fsutil::read_optional(&config_dir.join(FILE))
        .ok()
        .flatten()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// The session of this device's last `helix run` on `hub`.
pub fn last(config_dir: &Path, hub: &str) -> Option<String> {
    read(config_dir).remove(hub)
}

/// Remembers `session` as the last one on `hub`. A failure is only a warning: the command
/// itself is not affected.
pub fn remember(config_dir: &Path, hub: &str, session: &str) -> Result<(), fsutil::FsError> {
    let mut all = read(config_dir);
    if all.get(hub).is_some_and(|s| s == session) {
        return Ok(());
    }
    all.insert(hub.to_owned(), session.to_owned());
    fsutil::ensure_private_dir(config_dir)?;
    let bytes = serde_json::to_vec_pretty(&all).unwrap_or_default();
    fsutil::write_private_atomic(&config_dir.join(FILE), &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_session_per_hub_is_remembered() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(last(dir.path(), "h1"), None);
        remember(dir.path(), "h1", "trip").unwrap();
        remember(dir.path(), "h2", "other").unwrap();
        remember(dir.path(), "h1", "later").unwrap();
        assert_eq!(last(dir.path(), "h1").as_deref(), Some("later"));
        assert_eq!(last(dir.path(), "h2").as_deref(), Some("other"));
        // A damaged file is as good as none (it is rewritten on the next run).
        std::fs::write(dir.path().join(FILE), "{").unwrap();
        assert_eq!(last(dir.path(), "h1"), None);
    }
}
