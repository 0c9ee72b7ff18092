//! Private files: a 0700 data dir, 0600 files written atomically (temp file, fsync, rename,
//! fsync of the directory), so a crash leaves either the old file or the new one, never half.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

/// Makes temp file names unique within this process (the pid makes them unique across).
static TEMP_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Mode of directories that hold secrets.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of files that hold secrets.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// A filesystem operation that failed, with the path it was about.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub struct FsError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl FsError {
    pub fn new(action: &'static str, path: &Path, source: io::Error) -> Self {
        Self {
            action,
            path: path.to_owned(),
            source,
        }
    }
}

/// Creates `dir` (and parents) if needed and makes it 0700.
pub fn ensure_private_dir(dir: &Path) -> Result<(), FsError> {
    fs::create_dir_all(dir).map_err(|e| FsError::new("creating directory", dir, e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(PRIVATE_DIR_MODE))
        .map_err(|e| FsError::new("setting permissions of", dir, e))
}

/// Writes `bytes` to `path` atomically with mode 0600.
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> Result<(), FsError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_owned());
    let tmp = dir.join(format!(
        ".{file_name}.tmp-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(PRIVATE_FILE_MODE)
            .open(&tmp)
            .map_err(|e| FsError::new("creating", &tmp, e))?;
        f.write_all(bytes)
            .map_err(|e| FsError::new("writing", &tmp, e))?;
        f.sync_all().map_err(|e| FsError::new("syncing", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| FsError::new("replacing", path, e))?;
        // Make the rename itself durable.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| FsError::new("syncing directory", dir, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Reads a file, mapping "not found" to `None`.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, FsError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FsError::new("reading", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_is_private_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        ensure_private_dir(&sub).unwrap();
        assert_eq!(
            fs::metadata(&sub).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let file = sub.join("secret.json");
        write_private_atomic(&file, b"one").unwrap();
        write_private_atomic(&file, b"two").unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let leftovers: Vec<_> = fs::read_dir(&sub).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp files left behind");
        assert_eq!(read_optional(&sub.join("missing")).unwrap(), None);
    }
}
