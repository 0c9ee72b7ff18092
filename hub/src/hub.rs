//! A running hub: the journal, the executor, and the gRPC listener, with a staged shutdown.
//!
//! `Hub::bind` takes the data dir and config; `Hub::builder` also takes an already-bound TCP
//! listener (tests use port 0) or other providers. While running, `<data-dir>/hub.json` says
//! where the hub listens (spokes on this machine read it); a lock on `<data-dir>/hub.lock`
//! keeps a second hub off the same data dir.

use std::{
    fs::File,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use helix_mesh::fsutil::{self, FsError};
use tokio::net::TcpListener;
use tokio_util::{
    sync::{CancellationToken, DropGuard},
    task::AbortOnDropHandle,
};

use crate::{
    admin::AdminService,
    background::BackgroundTask,
    bearer::BearerToken,
    bus::Bus,
    config::HubConfig,
    context::HubContext,
    credentials::CredentialStore,
    devices::{Devices, Pairings},
    executor::Executor,
    journal::{Journal, JournalError},
    mesh::Mesh,
    provider::Providers,
    relay::RelayHandle,
    service::RemoteExecutionService,
};

mod builder;
mod data_dir;
mod services;

pub use builder::HubBuilder;
pub use data_dir::read_runtime_info;
use services::grpc_router;
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
    Provider(&'static str, String),
    #[error("setting up gRPC reflection: {0}")]
    Reflection(String),
    #[error(transparent)]
    Key(#[from] helix_mesh::transport::KeyError),
    #[error(transparent)]
    Devices(#[from] crate::devices::DevicesError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Mesh(#[from] crate::mesh::MeshError),
}

/// A running hub. Dropping it instead of awaiting [`Hub::shutdown`] stops its background work
/// at once (no drain, no withdrawn presence, `hub.json` left behind).
///
/// Its background work hangs off one root token, with a child per shutdown stage: the
/// executor, live streams, the table relay, presence, the iroh side and the gRPC server.
/// Shutdown cancels the stages one by one, in that order; a drop cancels the root.
#[derive(Debug)]
pub struct Hub {
    data_dir: PathBuf,
    hub_id: String,
    local_addr: SocketAddr,
    executor: Executor,
    config: Arc<HubConfig>,
    /// Cancels the root token when the hub is dropped. Declared before the tasks, so they see
    /// their tokens cancelled before their handles abort them.
    _root: DropGuard,
    streams_shutdown: CancellationToken,
    relay: Option<RelayHandle>,
    presence: Option<BackgroundTask>,
    mesh: Option<Arc<Mesh>>,
    server_shutdown: CancellationToken,
    server: AbortOnDropHandle<Result<(), tonic::transport::Error>>,
    _lock: File,
}

impl Hub {
    async fn start(
        data_dir: &Path,
        config: HubConfig,
        listener: TcpListener,
        lock: File,
        providers: Option<Providers>,
    ) -> Result<Hub, HubError> {
        let config = Arc::new(config);
        let root = CancellationToken::new();
        let endpoint_options = config.iroh.endpoint_options()?;
        let secret = helix_mesh::transport::load_or_create_secret_key(&data_dir.join(KEY_FILE))?;
        let hub_id = secret.public().to_string();
        let devices = Arc::new(Devices::load(data_dir)?);
        let pairings = Arc::new(Pairings::default());
        let token = BearerToken::load_or_create(data_dir)?;
        let providers = match providers {
            Some(p) => p,
            None => providers_from_config(&config)?,
        };
        let credentials = CredentialStore::in_dir(data_dir);
        let bus = Bus::new();
        let (journal, recovery) = Journal::open(data_dir, bus.clone())?;
        if !recovery.interrupted.is_empty() {
            tracing::warn!(
                count = recovery.interrupted.len(),
                "finished commands interrupted by the last stop as failed"
            );
        }
        if !recovery.pending.is_empty() {
            tracing::info!(count = recovery.pending.len(), "re-queued pending commands");
        }
        let executor = Executor::start(
            journal.clone(),
            bus.clone(),
            providers.clone(),
            credentials.clone(),
            config.clone(),
            recovery.pending,
            root.child_token(),
        );
        let provider_names: Vec<String> = helix_mesh::pb::Provider::ALL
            .into_iter()
            .filter(|p| providers.get(*p).is_some())
            .map(|p| p.name().to_owned())
            .collect();
        let context = Arc::new(HubContext {
            hub_id: hub_id.clone(),
            config: config.clone(),
            journal,
            bus,
            executor: executor.clone(),
            credentials,
            providers,
            devices: devices.clone(),
        });
        let streams_shutdown = root.child_token();
        let service = RemoteExecutionService::new(context.clone(), streams_shutdown.clone());

        let local_addr = listener.local_addr().map_err(|source| HubError::Bind {
            addr: config.grpc_addr,
            source,
        })?;
        let hub_name = config.name.clone().unwrap_or_else(|| {
            helix_discovery::local::host_name().unwrap_or_else(|| "helix-hub".to_owned())
        });
        let mesh = if config.iroh.enabled {
            Some(Arc::new(
                Mesh::start(
                    secret.clone(),
                    &endpoint_options,
                    devices.clone(),
                    pairings.clone(),
                    service.clone(),
                    hub_name.clone(),
                    root.child_token(),
                )
                .await?,
            ))
        } else {
            None
        };
        let relay = crate::relay::spawn(context, secret, data_dir, root.child_token()).await;
        let presence = mesh.as_ref().map(|mesh| {
            let (data_dir, endpoint) = (data_dir.to_owned(), mesh.endpoint().clone());
            BackgroundTask::spawn(root.child_token(), |cancel| {
                crate::presence::heartbeat(data_dir, endpoint, hub_name, provider_names, cancel)
            })
        });
        let admin = mesh.clone().map(|mesh| AdminService {
            devices,
            pairings,
            mesh,
        });
        let server_shutdown = root.child_token();
        let router = grpc_router(service, admin, token).await?;
        let incoming = helix_mesh::transport::tcp_incoming(listener);
        let server = AbortOnDropHandle::new(tokio::spawn(
            router
                .serve_with_incoming_shutdown(incoming, server_shutdown.clone().cancelled_owned()),
        ));

        let info = RuntimeInfo {
            hub_id: hub_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            grpc_addr: local_addr,
            started_at_ms: helix_mesh::proto_ext::now_ms(),
        };
        let json = serde_json::to_vec_pretty(&info).unwrap_or_default();
        fsutil::write_private_atomic(&data_dir.join(RUNTIME_FILE), &json)?;
        tracing::info!(%local_addr, %hub_id, data_dir = %data_dir.display(), "hub ready");

        Ok(Hub {
            data_dir: data_dir.to_owned(),
            hub_id,
            local_addr,
            executor,
            config,
            _root: root.drop_guard(),
            streams_shutdown,
            relay,
            presence,
            mesh,
            server_shutdown,
            server,
            _lock: lock,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn hub_id(&self) -> &str {
        &self.hub_id
    }

    /// The hub's iroh address (`None` when iroh is disabled in the config).
    pub fn endpoint_addr(&self) -> Option<iroh::EndpointAddr> {
        self.mesh.as_ref().map(|m| m.endpoint().addr())
    }

    /// Drops every live iroh connection (devices reconnect and resume); returns how many.
    pub fn drop_connections(&self) -> usize {
        self.mesh.as_ref().map_or(0, |m| {
            m.tracker().close_all(
                helix_mesh::transport::CLOSE_DROPPED,
                "the hub dropped the connection",
            )
        })
    }

    /// Wakes the table relay worker now (what a Realtime insert notification does).
    pub fn wake_relay(&self) {
        if let Some(relay) = &self.relay {
            relay.wake();
        }
    }

    /// Staged stop: refuse new commands, let running ones finish (up to the configured drain
    /// timeout, then stop them), end live streams, close the listener, remove `hub.json`.
    pub async fn shutdown(self) {
        let drain = self.config.drain_timeout;
        self.shutdown_with_drain(drain).await;
    }

    /// [`Hub::shutdown`] with an explicit drain timeout.
    pub async fn shutdown_with_drain(self, drain: Duration) {
        tracing::info!(drain_ms = drain.as_millis() as u64, "hub stopping");
        self.executor.shutdown(drain).await;
        self.streams_shutdown.cancel();
        if let Some(relay) = self.relay {
            relay.stop().await;
        }
        if let Some(presence) = self.presence {
            presence.stop().await;
        }
        if let Some(mesh) = &self.mesh {
            mesh.shutdown().await;
        }
        self.server_shutdown.cancel();
        let mut server = self.server;
        match tokio::time::timeout(SERVER_CLOSE_TIMEOUT, &mut server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "gRPC server ended with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "gRPC server task failed"),
            Err(_) => {
                tracing::warn!("gRPC connections did not close in time; dropping them");
                server.abort();
            }
        }
        let _ = std::fs::remove_file(self.data_dir.join(RUNTIME_FILE));
        tracing::info!("hub stopped");
    }
}
