//! The hub's data directory: the lock that keeps a second hub off it, and the runtime file
//! that tells spokes on this machine where the hub listens.

use std::{fs::File, path::Path};

use helix_mesh::fsutil::{self, FsError};

use super::{HubError, LOCK_FILE, RUNTIME_FILE, RuntimeInfo};

/// Creates the data dir if needed and takes its lock; a second hub gets `AlreadyRunning`.
pub(super) fn lock_data_dir(data_dir: &Path) -> Result<File, HubError> {
    fsutil::ensure_private_dir(data_dir)?;
    let path = data_dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| FsError::new("opening", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(HubError::AlreadyRunning(data_dir.to_owned()))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(FsError::new("locking", &path, e).into()),
    }
}

/// Reads `<data-dir>/hub.json`, if a hub wrote one.
pub fn read_runtime_info(data_dir: &Path) -> Result<Option<RuntimeInfo>, FsError> {
    let path = data_dir.join(RUNTIME_FILE);
    let Some(bytes) = fsutil::read_optional(&path)? else {
        return Ok(None);
    };
    Ok(serde_json::from_slice(&bytes).ok())
}
