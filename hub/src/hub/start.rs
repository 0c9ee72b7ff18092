//! Starting a hub, step by step: its key and paired devices; the journal, what it recovered
//! and the executor ([`HubContext`]); the iroh side (tunnel); the cloud route (with presence);
//! the gRPC server; and last `hub.json`, so a spoke that reads it finds a hub that answers.
//!
//! Every background task gets a child of the hub's root token (see [`Hub`]).

use std::{fs::File, net::SocketAddr, path::Path, sync::Arc};

use helix_mesh::{fsutil, pb::Provider};
use iroh::SecretKey;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::AbortOnDropHandle};

use super::{
    GrpcServer, Hub, HubError, KEY_FILE, RUNTIME_FILE, RuntimeInfo, providers_from_config,
    services::grpc_router,
};
use crate::{
    admin::AdminService,
    bearer::BearerToken,
    bus::Bus,
    cloud_route::MirrorFeed,
    config::HubConfig,
    context::HubContext,
    credentials::CredentialStore,
    devices::{Devices, Pairings},
    executor::Executor,
    journal::Journal,
    pairing::PairingDesk,
    presence::PresenceSource,
    provider::Providers,
    service::RemoteExecutionService,
    tunnel::Tunnel,
};

impl Hub {
    /// Starts a hub on `data_dir`, whose `lock` the caller holds, serving gRPC on `listener`.
    pub(super) async fn start(
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
        let devices = Arc::new(Devices::load(data_dir)?);
        let pairings = Arc::new(Pairings::default());
        let token = BearerToken::rotate(data_dir)?;
        let providers = match providers {
            Some(p) => p,
            None => providers_from_config(&config)?,
        };
        let (mirror, mirror_intake) = crate::cloud_route::mirror_queue();
        let context = Arc::new(open_context(
            data_dir,
            &secret,
            config,
            devices,
            providers,
            mirror,
            root.child_token(),
        )?);
        let streams_shutdown = root.child_token();
        let service = RemoteExecutionService::new(context.clone(), streams_shutdown.clone());
        let local_addr = listener.local_addr().map_err(|source| HubError::Bind {
            addr: context.config.grpc_addr,
            source,
        })?;
        let hub_name = hub_name(&context.config);
        let tunnel = if context.config.iroh.enabled {
            let tunnel = Tunnel::start(
                secret.clone(),
                &endpoint_options,
                context.devices.clone(),
                pairings.clone(),
                service.clone(),
                hub_name.clone(),
                root.child_token(),
            );
            Some(Arc::new(tunnel.await?))
        } else {
            None
        };
        let desk = PairingDesk {
            devices: context.devices.clone(),
            pairings: pairings.clone(),
            hub_name: hub_name.clone(),
        };
        let presence = tunnel
            .as_ref()
            .map(|tunnel| presence_source(tunnel, hub_name, &context));
        let cloud_route = crate::cloud_route::spawn(
            context.clone(),
            secret,
            data_dir,
            mirror_intake,
            presence,
            desk,
            root.child_token(),
        )
        .await;
        let admin = tunnel.clone().map(|tunnel| AdminService {
            devices: context.devices.clone(),
            pairings,
            tunnel,
        });
        let server = serve_grpc(service, admin, token, listener, root.child_token()).await?;
        write_runtime_info(data_dir, &context.hub_id, local_addr)?;
        tracing::info!(%local_addr, hub_id = %context.hub_id, data_dir = %data_dir.display(), "hub ready");

        Ok(Hub {
            data_dir: data_dir.to_owned(),
            local_addr,
            context,
            _root: root.drop_guard(),
            streams_shutdown,
            cloud_route,
            tunnel,
            server,
            _lock: lock,
        })
    }
}

/// Opens the journal (logging what it recovered from the last run), starts the executor with
/// the recovered pending commands, and gathers what the command paths share. `stop` is the
/// executor's stage token.
fn open_context(
    data_dir: &Path,
    secret: &SecretKey,
    config: Arc<HubConfig>,
    devices: Arc<Devices>,
    providers: Providers,
    mirror: MirrorFeed,
    stop: CancellationToken,
) -> Result<HubContext, HubError> {
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
        stop,
    );
    Ok(HubContext {
        hub_id: secret.public().to_string(),
        config,
        journal,
        bus,
        executor,
        credentials,
        providers,
        devices,
        mirror,
    })
}

/// The name the hub gives itself: the config's, else the host name.
fn hub_name(config: &HubConfig) -> String {
    config.name.clone().unwrap_or_else(|| {
        helix_discovery::local::host_name().unwrap_or_else(|| "helix-hub".to_owned())
    })
}

/// What presence announces: the iroh address and the providers this hub runs.
fn presence_source(tunnel: &Tunnel, hub_name: String, context: &HubContext) -> PresenceSource {
    let providers = Provider::ALL
        .into_iter()
        .filter(|p| context.providers.get(*p).is_some())
        .map(|p| p.name().to_owned())
        .collect();
    PresenceSource {
        endpoint: tunnel.endpoint().clone(),
        hub_name,
        providers,
    }
}

/// Serves the gRPC router on `listener` until `shutdown`.
async fn serve_grpc(
    service: RemoteExecutionService,
    admin: Option<AdminService>,
    token: BearerToken,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<GrpcServer, HubError> {
    let router = grpc_router(service, admin, token).await?;
    let incoming = helix_mesh::transport::tcp_incoming(listener);
    let task = AbortOnDropHandle::new(tokio::spawn(
        router.serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned()),
    ));
    Ok(GrpcServer { shutdown, task })
}

/// Writes `hub.json`: where this hub listens, for spokes on this machine.
fn write_runtime_info(
    data_dir: &Path,
    hub_id: &str,
    grpc_addr: SocketAddr,
) -> Result<(), HubError> {
    let info = RuntimeInfo {
        hub_id: hub_id.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        pid: std::process::id(),
        grpc_addr,
        started_at_ms: helix_mesh::proto_ext::now_ms(),
    };
    let json = serde_json::to_vec_pretty(&info).unwrap_or_default();
    fsutil::write_private_atomic(&data_dir.join(RUNTIME_FILE), &json)?;
    Ok(())
}
