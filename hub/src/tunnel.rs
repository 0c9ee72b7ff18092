//! The hub's iroh side: one endpoint (the hub's key is its id) serving `helix/grpc/1` (the
//! gRPC services, paired devices only) and `helix/pair/1` (the pairing exchange, anyone).

use std::{sync::Arc, time::Duration};

use helix_mesh::{
    iroh_grpc::{ConnectionTracker, GrpcAcceptor},
    pb::remote_execution_server::RemoteExecutionServer,
    ticket::{
        PairRequest, PairResponse, PairingSecret, Ticket, read_pair_message, write_pair_message,
    },
    transport::{
        ALPN_GRPC, ALPN_PAIR, CLOSE_REVOKED, CLOSE_SHUTDOWN, EndpointOptions, RelayChoice,
        bind_endpoint, with_hooks,
    },
};
use iroh::{
    Endpoint, SecretKey,
    endpoint::Connection,
    protocol::{AcceptError, ProtocolHandler, Router},
};
use tokio_util::{sync::CancellationToken, task::AbortOnDropHandle};

use crate::{
    devices::{Devices, PairedOnly, Pairings},
    pairing::PairingDesk,
    service::RemoteExecutionService,
};

/// What a revoked device's connections are closed with (at the revoke, or when one was
/// registered just after it).
pub const REVOKED_REASON: &str = "this device was revoked on the hub: pair it again to use it";

/// How long a pairing peer may take to send its request.
const PAIR_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before answering a refused pairing attempt (slows guessing).
const PAIR_REFUSAL_DELAY: Duration = Duration::from_millis(300);
/// How long `ticket()` waits for the relay connection so the ticket carries the relay URL.
const ONLINE_WAIT: Duration = Duration::from_secs(3);

/// The running iroh side.
#[derive(Debug)]
pub struct Tunnel {
    endpoint: Endpoint,
    router: Router,
    tracker: ConnectionTracker,
    relay_enabled: bool,
    /// Stops the iroh gRPC server: the hub's iroh stage token.
    server_shutdown: CancellationToken,
    /// Aborted when the last reference goes (a hub dropped without a shutdown).
    server: std::sync::Mutex<Option<AbortOnDropHandle<Result<(), tonic::transport::Error>>>>,
}

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct TunnelError(#[from] helix_mesh::transport::EndpointError);

impl Tunnel {
    /// Binds the endpoint and serves both protocols until [`Tunnel::shutdown`] or `cancel`.
    pub async fn start(
        secret: SecretKey,
        options: &EndpointOptions,
        devices: Arc<Devices>,
        pairings: Arc<Pairings>,
        service: RemoteExecutionService,
        hub_name: String,
        cancel: CancellationToken,
    ) -> Result<Tunnel, TunnelError> {
        let endpoint = bind_endpoint(
            options,
            secret,
            vec![ALPN_GRPC.to_vec(), ALPN_PAIR.to_vec()],
            Some(with_hooks(PairedOnly(devices.clone()))),
        )
        .await?;
        let tracker = ConnectionTracker::default();
        let (acceptor, incoming) = GrpcAcceptor::new(tracker.clone());
        let paired = devices.clone();
        let acceptor = acceptor.with_gate(Arc::new(move |peer| {
            (!paired.is_paired(peer)).then(|| (CLOSE_REVOKED, REVOKED_REASON.to_owned()))
        }));
        let router = Router::builder(endpoint.clone())
            .accept(ALPN_GRPC, acceptor)
            .accept(
                ALPN_PAIR,
                PairHandler {
                    desk: PairingDesk {
                        devices,
                        pairings,
                        hub_name,
                    },
                },
            )
            .spawn();
        let (health_reporter, health) = tonic_health::server::health_reporter();
        health_reporter
            .set_service_status(
                helix_mesh::SERVICE_NAME,
                tonic_health::ServingStatus::Serving,
            )
            .await;
        let remote = RemoteExecutionServer::new(service)
            .max_decoding_message_size(helix_mesh::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(helix_mesh::MAX_MESSAGE_BYTES);
        let server_shutdown = cancel;
        let server = AbortOnDropHandle::new(tokio::spawn(
            helix_mesh::transport::grpc_server()
                .trace_fn(
                    |req| tracing::info_span!("rpc", transport = "iroh", path = %req.uri().path()),
                )
                .add_service(health)
                .add_service(remote)
                .serve_with_incoming_shutdown(incoming, server_shutdown.clone().cancelled_owned()),
        ));
        tracing::info!(hub_id = %endpoint.id(), "iroh endpoint ready");
        Ok(Tunnel {
            endpoint,
            router,
            tracker,
            relay_enabled: options.relay != RelayChoice::Disabled,
            server_shutdown,
            server: std::sync::Mutex::new(Some(server)),
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub fn tracker(&self) -> &ConnectionTracker {
        &self.tracker
    }

    /// The hub's current address as a ticket; waits briefly for the relay so it is included.
    pub async fn ticket(&self) -> Ticket {
        if self.relay_enabled {
            let _ = tokio::time::timeout(ONLINE_WAIT, self.endpoint.online()).await;
        }
        Ticket::Hub(self.endpoint.addr())
    }

    /// A pairing ticket for `secret`.
    pub async fn pairing_ticket(&self, secret: PairingSecret) -> Ticket {
        let addr = self.ticket().await.addr().clone();
        Ticket::Pair { addr, secret }
    }

    /// Closes every connection, stops the gRPC server and the endpoint.
    pub async fn shutdown(&self) {
        self.tracker
            .close_all(CLOSE_SHUTDOWN, "the hub is shutting down");
        self.server_shutdown.cancel();
        let server = self.server.lock().ok().and_then(|mut s| s.take());
        if let Some(server) = server
            && tokio::time::timeout(Duration::from_secs(5), server)
                .await
                .is_err()
        {
            tracing::warn!("iroh gRPC server did not stop in time");
        }
        if let Err(e) = self.router.shutdown().await {
            tracing::warn!(error = %e, "iroh router shutdown");
        }
        self.endpoint.close().await;
    }
}

/// Serves the pairing exchange on `helix/pair/1`.
#[derive(Debug, Clone)]
struct PairHandler {
    desk: PairingDesk,
}

impl PairHandler {
    fn answer(&self, conn: &Connection, request: PairRequest) -> PairResponse {
        match self
            .desk
            .answer(conn.remote_id(), &request.secret, &request.name)
        {
            Ok(()) => PairResponse {
                ok: true,
                error: String::new(),
                hub_name: self.desk.hub_name.clone(),
            },
            Err(error) => PairResponse {
                ok: false,
                error,
                hub_name: String::new(),
            },
        }
    }
}

impl ProtocolHandler for PairHandler {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        let Ok(Ok((mut send, mut recv))) =
            tokio::time::timeout(PAIR_READ_TIMEOUT, conn.accept_bi()).await
        else {
            return Ok(());
        };
        let response = match tokio::time::timeout(
            PAIR_READ_TIMEOUT,
            read_pair_message::<PairRequest>(&mut recv),
        )
        .await
        {
            Ok(Ok(request)) => self.answer(&conn, request),
            Ok(Err(e)) => PairResponse {
                ok: false,
                error: e.to_string(),
                hub_name: String::new(),
            },
            Err(_) => return Ok(()),
        };
        if !response.ok {
            tokio::time::sleep(PAIR_REFUSAL_DELAY).await;
        }
        let _ = write_pair_message(&mut send, &response).await;
        // Let the answer reach the peer: it closes the connection once it has read it.
        let _ = tokio::time::timeout(PAIR_READ_TIMEOUT, conn.closed()).await;
        Ok(())
    }
}
