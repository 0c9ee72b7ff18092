//! The local rendezvous: a running hub writes `<data-dir>/hub.json` (where it listens) and keeps
//! its bearer token in `<data-dir>/hub-token`; a spoke on the same machine reads both.

use std::{
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// The runtime file's name inside the hub's data dir.
pub const RUNTIME_FILE: &str = "hub.json";
/// The lock file a running hub holds (exclusively) in its data dir.
pub const LOCK_FILE: &str = "hub.lock";

/// Whether a hub holds the lock on `dir` right now (a `hub.json` alone may be stale: a hub
/// killed with SIGKILL leaves it behind, but the lock dies with the process).
pub fn is_running(dir: &Path) -> bool {
    let Ok(file) = std::fs::File::options()
        .read(true)
        .write(true)
        .open(dir.join(LOCK_FILE))
    else {
        return false;
    };
    matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

/// The token file's name inside the hub's data dir.
pub const TOKEN_FILE: &str = "hub-token";
/// The environment variable that may name the hub's data dir.
pub const HUB_DIR_ENV: &str = "HELIX_HUB_DIR";

/// What `hub.json` says about a running hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeInfo {
    pub hub_id: String,
    pub version: String,
    pub pid: u32,
    pub grpc_addr: SocketAddr,
    pub started_at_ms: i64,
}

/// Why the local hub could not be found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalHubError {
    #[error(
        "no hub is running with data dir {dir} (no {RUNTIME_FILE}): start one with `helix-hub serve`, or pass --hub-dir"
    )]
    NotRunning { dir: PathBuf },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a valid hub runtime file ({problem}); restart the hub to rewrite it")]
    Corrupt { path: PathBuf, problem: String },
    #[error("{path} is empty; restart the hub to create a token")]
    EmptyToken { path: PathBuf },
    /// `hub.json` is there but no hub holds the data dir's lock: a hub that crashed left it.
    /// Nothing is sent to the port it names (another program may have taken it).
    #[error(
        "no hub is running with data dir {dir}: its {RUNTIME_FILE} was left by a hub (pid {pid}) that did not exit cleanly, so nothing was sent to the port it names; start the hub with `helix-hub serve`"
    )]
    Stale { dir: PathBuf, pid: u32 },
}

/// A hub found through its data dir. `Debug` does not show the token.
#[derive(Clone)]
pub struct LocalHub {
    pub dir: PathBuf,
    pub info: RuntimeInfo,
    token: String,
}

impl std::fmt::Debug for LocalHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalHub")
            .field("dir", &self.dir)
            .field("info", &self.info)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl LocalHub {
    /// Reads `hub.json` and the token from `dir`, when a hub holds the data dir's lock: a
    /// `hub.json` a crashed hub left names a port anyone may have bound since, and the token
    /// is never offered to it.
    pub fn find(dir: &Path) -> Result<Self, LocalHubError> {
        let runtime_path = dir.join(RUNTIME_FILE);
        let bytes = match std::fs::read(&runtime_path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(LocalHubError::NotRunning {
                    dir: dir.to_owned(),
                });
            }
            Err(source) => {
                return Err(LocalHubError::Read {
                    path: runtime_path,
                    source,
                });
            }
        };
        let info: RuntimeInfo =
            serde_json::from_slice(&bytes).map_err(|e| LocalHubError::Corrupt {
                path: runtime_path.clone(),
                problem: e.to_string(),
            })?;
        if !is_running(dir) {
            return Err(LocalHubError::Stale {
                dir: dir.to_owned(),
                pid: info.pid,
            });
        }
        let token_path = dir.join(TOKEN_FILE);
        let token = std::fs::read_to_string(&token_path)
            .map_err(|source| LocalHubError::Read {
                path: token_path.clone(),
                source,
            })?
            .trim()
            .to_owned();
        if token.is_empty() {
            return Err(LocalHubError::EmptyToken { path: token_path });
        }
        Ok(Self {
            dir: dir.to_owned(),
            info,
            token,
        })
    }

    /// The bearer token, for the `authorization` header.
    pub fn token(&self) -> &str {
        &self.token
    }
}

/// How long dialing a local hub may take.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Adds `authorization: Bearer <token>` (marked sensitive, so it is never logged); adds
/// nothing when made with [`AddBearer::none`] (iroh connections are authenticated by key).
#[derive(Clone)]
pub struct AddBearer(Option<tonic::metadata::AsciiMetadataValue>);

impl AddBearer {
    pub fn none() -> Self {
        Self(None)
    }
}

impl std::fmt::Debug for AddBearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AddBearer(<redacted>)")
    }
}

impl tonic::service::Interceptor for AddBearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Dialing a local hub failed.
#[derive(Debug, thiserror::Error)]
#[error(
    "the hub at {addr} (pid {pid}, from {runtime_file}) is not answering ({problem}): is it still running? Start it with `helix-hub serve`"
)]
pub struct DialError {
    pub addr: SocketAddr,
    pub pid: u32,
    pub runtime_file: String,
    pub problem: String,
}

impl LocalHub {
    /// Dials the hub's loopback gRPC listener; calls through the returned channel need the
    /// returned interceptor.
    pub async fn dial(&self) -> Result<(tonic::transport::Channel, AddBearer), DialError> {
        let addr = self.info.grpc_addr;
        let fail = |problem: String| DialError {
            addr,
            pid: self.info.pid,
            runtime_file: self.dir.join(RUNTIME_FILE).display().to_string(),
            problem,
        };
        let channel = helix_mesh::transport::grpc_client_endpoint(&format!("http://{addr}"))
            .map_err(|e| fail(e.to_string()))?
            .connect_timeout(CONNECT_TIMEOUT)
            .connect()
            .await
            .map_err(|e| fail(helix_mesh::iroh_grpc::error_chain(&e)))?;
        let mut value: tonic::metadata::AsciiMetadataValue = format!("Bearer {}", self.token)
            .parse()
            .map_err(|_| fail("the token file is not valid text".into()))?;
        value.set_sensitive(true);
        Ok((channel, AddBearer(Some(value))))
    }
}

/// This machine's host name (how a hub and a device introduce themselves), if it has one.
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// The platform's default hub data directory (`~/.local/share/helix-hub` on Linux).
pub fn default_hub_dir() -> PathBuf {
    dirs::data_dir()
        .or_else(|| dirs::home_dir().map(|h| h.join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("helix-hub")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_means_the_lock_is_held() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_running(dir.path()));
        let lock = std::fs::File::create(dir.path().join(LOCK_FILE)).unwrap();
        assert!(!is_running(dir.path()), "a lock file nobody holds");
        lock.lock().unwrap();
        assert!(is_running(dir.path()));
    }

    #[test]
    fn missing_corrupt_and_good_runtime_files() {
        let dir = tempfile::tempdir().unwrap();
        let err = LocalHub::find(dir.path()).unwrap_err().to_string();
        assert!(err.contains("helix-hub serve"), "{err}");

        std::fs::write(dir.path().join(RUNTIME_FILE), "{").unwrap();
        let err = LocalHub::find(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a valid hub runtime file"), "{err}");

        let info = RuntimeInfo {
            hub_id: "h".into(),
            version: "0".into(),
            pid: 1,
            grpc_addr: "127.0.0.1:1".parse().unwrap(),
            started_at_ms: 0,
        };
        std::fs::write(
            dir.path().join(RUNTIME_FILE),
            serde_json::to_vec(&info).unwrap(),
        )
        .unwrap();
        std::fs::write(dir.path().join(TOKEN_FILE), "secret-token\n").unwrap();
        // Left by a hub that is gone: refused before the token is read.
        let err = LocalHub::find(dir.path()).unwrap_err();
        assert!(matches!(err, LocalHubError::Stale { pid: 1, .. }), "{err}");
        assert!(err.to_string().contains("helix-hub serve"), "{err}");
        let lock = std::fs::File::create(dir.path().join(LOCK_FILE)).unwrap();
        lock.lock().unwrap();
        let hub = LocalHub::find(dir.path()).unwrap();
        assert_eq!(hub.info, info);
        assert_eq!(hub.token(), "secret-token");
        assert!(!format!("{hub:?}").contains("secret-token"));
    }
}
