//! A running hub: the journal, the executor, and the gRPC listener, with a staged shutdown.
//!
//! `Hub::bind` takes the data dir and config; `Hub::builder` also takes an already-bound TCP
//! listener (tests use port 0) or other providers. While running, `<data-dir>/hub.json` says
//! where the hub listens (spokes on this machine read it); a lock on `<data-dir>/hub.lock`
//! keeps a second hub off the same data dir.

use std::{fs::File, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use helix_mesh::fsutil::FsError;
use tokio_util::{
    sync::{CancellationToken, DropGuard},
    task::AbortOnDropHandle,
};

use crate::{
    cloud_route::CloudRouteHandle, context::HubContext, journal::JournalError, tunnel::Tunnel,
};

mod builder;
mod data_dir;
mod services;
mod start;

pub use builder::HubBuilder;
pub use data_dir::read_runtime_info;
pub use services::providers_from_config;

pub use helix_discovery::local::{RUNTIME_FILE, RuntimeInfo};

pub use helix_discovery::local::LOCK_FILE;
/// The hub's secret key file (its public key is the hub id).
pub const KEY_FILE: &str = "secret.key";

/// How long the gRPC server may take to close its connections after streams were ended.
const SERVER_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(
        "another helix-hub is already running with data dir {0} (stop it first, or pass another --data-dir)"
    )]
    AlreadyRunning(PathBuf),
    #[error(
        "binding gRPC listener on {addr}: {source} (is another program using the port? pass --grpc-addr)"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("setting up the {0} provider: {1}")]
    Provider(&'static str, #[source] crate::provider::ProviderError),
    #[error("setting up gRPC reflection: {0}")]
    Reflection(#[source] tonic_reflection::server::Error),
    #[error(transparent)]
    Key(#[from] helix_mesh::transport::KeyError),
    #[error(transparent)]
    Devices(#[from] crate::devices::DevicesError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Tunnel(#[from] crate::tunnel::TunnelError),
}

/// A running hub. Dropping it instead of awaiting [`Hub::shutdown`] stops its background work
/// at once (no drain, no withdrawn presence, `hub.json` left behind).
///
/// Its background work hangs off one root token, with a child per shutdown stage: the
/// executor, live streams, the cloud route (with presence), the iroh side and the gRPC server.
/// Shutdown cancels the stages one by one, in that order (the cloud route stops claiming first
/// of all); a drop cancels the root.
#[derive(Debug)]
pub struct Hub {
    data_dir: PathBuf,
    local_addr: SocketAddr,
    context: Arc<HubContext>,
    /// Cancels the root token when the hub is dropped. Declared before the tasks, so they see
    /// their tokens cancelled before their handles abort them.
    _root: DropGuard,
    streams_shutdown: CancellationToken,
    cloud_route: Option<CloudRouteHandle>,
    tunnel: Option<Arc<Tunnel>>,
    server: GrpcServer,
    _lock: File,
}

/// The TCP listener's gRPC server: its stage token and its task.
#[derive(Debug)]
struct GrpcServer {
    shutdown: CancellationToken,
    task: AbortOnDropHandle<Result<(), tonic::transport::Error>>,
}

impl GrpcServer {
    /// Stops accepting and closes the connections, dropping those still open after
    /// [`SERVER_CLOSE_TIMEOUT`].
    async fn close(self) {
        self.shutdown.cancel();
        let mut task = self.task;
        match tokio::time::timeout(SERVER_CLOSE_TIMEOUT, &mut task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "gRPC server ended with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "gRPC server task failed"),
            Err(_) => {
                tracing::warn!("gRPC connections did not close in time; dropping them");
                task.abort();
            }
        }
    }
}

impl Hub {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn hub_id(&self) -> &str {
        &self.context.hub_id
    }

    /// The hub's iroh address (`None` when iroh is disabled in the config).
    pub fn endpoint_addr(&self) -> Option<iroh::EndpointAddr> {
        self.tunnel.as_ref().map(|m| m.endpoint().addr())
    }

    /// Drops every live iroh connection (devices reconnect and resume); returns how many.
    pub fn drop_connections(&self) -> usize {
        self.tunnel.as_ref().map_or(0, |m| {
            m.tracker().close_all(
                helix_mesh::transport::CLOSE_DROPPED,
                "the hub dropped the connection",
            )
        })
    }

    /// The hub's paired devices.
    pub fn devices(&self) -> &crate::devices::Devices {
        &self.context.devices
    }

    /// Wakes the cloud route's worker now (what a Realtime insert notification does).
    pub fn wake_cloud_route(&self) {
        if let Some(cloud_route) = &self.cloud_route {
            cloud_route.wake();
        }
    }

    /// Staged stop: refuse new commands, let running ones finish (up to the configured drain
    /// timeout, then stop them), end live streams, close the listener, remove `hub.json`.
    pub async fn shutdown(self) {
        let drain = self.context.config.drain_timeout;
        self.shutdown_with_drain(drain).await;
    }

    /// [`Hub::shutdown`] with an explicit drain timeout.
    pub async fn shutdown_with_drain(self, drain: Duration) {
        tracing::info!(drain_ms = drain.as_millis() as u64, "hub stopping");
        if let Some(cloud_route) = &self.cloud_route {
            // A command claimed now could not be queued any more.
            cloud_route.stop_claiming();
        }
        self.context.executor.shutdown(drain).await;
        self.streams_shutdown.cancel();
        if let Some(cloud_route) = self.cloud_route {
            cloud_route.stop().await;
        }
        if let Some(tunnel) = &self.tunnel {
            tunnel.shutdown().await;
        }
        self.server.close().await;
        let _ = std::fs::remove_file(self.data_dir.join(RUNTIME_FILE));
        tracing::info!("hub stopped");
    }
}
