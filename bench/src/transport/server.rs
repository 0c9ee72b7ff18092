//! The bench's server side: one iroh endpoint serving the raw QUIC baseline and the bench
//! `RemoteExecution` (which streams output events from memory), and the client endpoints and
//! addresses that reach it directly or through a relay.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use futures::{Stream, StreamExt};
use helix_mesh::{
    iroh_grpc::{ConnectionTracker, GrpcAcceptor},
    pb::{
        self,
        remote_execution_server::{RemoteExecution, RemoteExecutionServer},
    },
    transport::{ALPN_GRPC, EndpointOptions, RelayChoice, bind_endpoint},
};
use iroh::{
    Endpoint, EndpointAddr, SecretKey,
    endpoint::{Connection, ConnectionStats},
    protocol::{AcceptError, ProtocolHandler, Router},
};
use tonic::{Request, Response, Status};

use super::CHUNK;

/// ALPN of the raw QUIC baseline.
pub const RAW_ALPN: &[u8] = b"helix-bench/raw/1";

/// Raw QUIC: each bi-stream starts with a mode byte. `0`: echo until EOF. `1`: then an u64
/// byte count; send that many bytes and finish.
/// The sender's connection statistics are kept after each download, for the report.
#[derive(Debug, Clone, Default)]
struct RawServer {
    sent: Arc<Mutex<Option<ConnectionStats>>>,
}

impl ProtocolHandler for RawServer {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        while let Ok((mut send, mut recv)) = conn.accept_bi().await {
            let sent = self.sent.clone();
            let conn = conn.clone();
            tokio::spawn(async move {
                let mut mode = [0u8; 1];
                if recv.read_exact(&mut mode).await.is_err() {
                    return;
                }
                if mode[0] == 0 {
                    let mut buf = [0u8; 8];
                    while recv.read_exact(&mut buf).await.is_ok() {
                        if send.write_all(&buf).await.is_err() {
                            return;
                        }
                    }
                } else {
                    let mut n = [0u8; 8];
                    if recv.read_exact(&mut n).await.is_err() {
                        return;
                    }
                    let mut left = u64::from_le_bytes(n) as usize;
                    let chunk = bytes::Bytes::from(vec![7u8; CHUNK]);
                    while left > 0 {
                        let take = left.min(CHUNK);
                        if send.write_chunk(chunk.slice(..take)).await.is_err() {
                            return;
                        }
                        left -= take;
                    }
                    let _ = send.finish();
                    let _ = send.stopped().await;
                    *sent.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn.stats());
                    return;
                }
                let _ = send.finish();
            });
        }
        Ok(())
    }
}

/// The bench `RemoteExecution`: `Execute` with content `bulk <chunk> <count>` streams `count`
/// output events of `chunk` bytes; `GetHubInfo` answers at once (the unary round trip).
#[derive(Debug, Clone, Default)]
pub struct BenchService;

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::CommandEvent, Status>> + Send>>;
type StatusStream = Pin<Box<dyn Stream<Item = Result<pb::StatusChange, Status>> + Send>>;

#[tonic::async_trait]
impl RemoteExecution for BenchService {
    type ExecuteStream = EventStream;
    type AttachStream = EventStream;
    type WatchStream = StatusStream;

    async fn execute(
        &self,
        request: Request<pb::ExecuteRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let req = request.into_inner();
        let mut parts = req.content.split_whitespace().skip(1);
        let chunk: usize = parts.next().and_then(|p| p.parse().ok()).unwrap_or(CHUNK);
        let count: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(1);
        let text = "x".repeat(chunk);
        let id = req.command_id;
        let stream = futures::stream::iter(1..=count).map(move |seq| {
            Ok(pb::CommandEvent {
                command_id: id.clone(),
                seq,
                time: None,
                kind: Some(pb::command_event::Kind::Output(pb::Output {
                    text: text.clone(),
                })),
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn attach(&self, _: Request<pb::AttachRequest>) -> Result<Response<EventStream>, Status> {
        Err(Status::unimplemented("bench"))
    }

    async fn watch(&self, _: Request<pb::WatchRequest>) -> Result<Response<StatusStream>, Status> {
        Err(Status::unimplemented("bench"))
    }

    async fn cancel(
        &self,
        _: Request<pb::CancelRequest>,
    ) -> Result<Response<pb::CancelResponse>, Status> {
        Err(Status::unimplemented("bench"))
    }

    async fn get_command(
        &self,
        _: Request<pb::GetCommandRequest>,
    ) -> Result<Response<pb::Command>, Status> {
        Err(Status::unimplemented("bench"))
    }

    async fn list_commands(
        &self,
        _: Request<pb::ListCommandsRequest>,
    ) -> Result<Response<pb::ListCommandsResponse>, Status> {
        Err(Status::unimplemented("bench"))
    }

    async fn get_hub_info(
        &self,
        _: Request<pb::GetHubInfoRequest>,
    ) -> Result<Response<pb::HubInfo>, Status> {
        Ok(Response::new(pb::HubInfo::default()))
    }

    async fn list_sessions(
        &self,
        _: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        Err(Status::unimplemented("the bench server keeps no sessions"))
    }

    async fn get_session(
        &self,
        _: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        Err(Status::unimplemented("the bench server keeps no sessions"))
    }
}

/// A server endpoint (raw + gRPC) and what a client needs to reach it.
pub struct Server {
    pub endpoint: Endpoint,
    raw: RawServer,
    _router: Router,
}

/// Starts the bench server endpoint on loopback; `relay` is the local relay URL, if any.
pub async fn start_server(relay: Option<&str>) -> anyhow::Result<Server> {
    start_server_at(relay, LOOPBACK_ANY_PORT).await
}

/// UDP on 127.0.0.1, any port.
const LOOPBACK_ANY_PORT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// Starts the bench server endpoint with its UDP socket bound to `udp`.
pub async fn start_server_at(relay: Option<&str>, udp: SocketAddr) -> anyhow::Result<Server> {
    let relay_choice = match relay {
        Some(url) => RelayChoice::Custom(vec![url.parse()?]),
        None => RelayChoice::Disabled,
    };
    let endpoint = bind_endpoint(
        &EndpointOptions {
            udp_addr: Some(udp),
            ..EndpointOptions::loopback(relay_choice)
        },
        SecretKey::generate(),
        vec![ALPN_GRPC.to_vec(), RAW_ALPN.to_vec()],
        None,
    )
    .await?;
    if relay.is_some() {
        tokio::time::timeout(Duration::from_secs(10), endpoint.online())
            .await
            .context("bench server did not reach the local relay")?;
    }
    let (acceptor, incoming) = GrpcAcceptor::new(ConnectionTracker::default());
    let raw = RawServer::default();
    let router = Router::builder(endpoint.clone())
        .accept(ALPN_GRPC, acceptor)
        .accept(RAW_ALPN, raw.clone())
        .spawn();
    tokio::spawn(
        helix_mesh::transport::grpc_server()
            .add_service(RemoteExecutionServer::new(BenchService))
            .serve_with_incoming(incoming),
    );
    Ok(Server {
        endpoint,
        raw,
        _router: router,
    })
}

/// A client endpoint: direct (UDP on loopback, no relay) or relay-only (no UDP of its own).
pub async fn client_endpoint(relay: Option<&str>) -> anyhow::Result<Endpoint> {
    let options = match relay {
        Some(url) => EndpointOptions {
            ip_transports: false,
            ..EndpointOptions::loopback(RelayChoice::Custom(vec![url.parse()?]))
        },
        None => EndpointOptions::loopback(RelayChoice::Disabled),
    };
    Ok(bind_endpoint(&options, SecretKey::generate(), Vec::new(), None).await?)
}

/// A direct client endpoint (no relay) with its UDP socket bound to `udp`.
pub async fn direct_client_at(udp: SocketAddr) -> anyhow::Result<Endpoint> {
    let options = EndpointOptions {
        udp_addr: Some(udp),
        ..EndpointOptions::loopback(RelayChoice::Disabled)
    };
    Ok(bind_endpoint(&options, SecretKey::generate(), Vec::new(), None).await?)
}

/// The address to dial: IP addresses only for direct, the relay only otherwise.
pub fn dial_addr(server: &Server, relay: Option<&str>) -> anyhow::Result<EndpointAddr> {
    let addr = server.endpoint.addr();
    Ok(match relay {
        None => EndpointAddr::from_parts(addr.id, addr.addrs.iter().filter(|a| a.is_ip()).cloned()),
        Some(url) => EndpointAddr::new(addr.id).with_relay_url(url.parse()?),
    })
}

/// What the QUIC sender saw during the raw download: the limits of the path itself.
#[derive(Debug, Clone, Copy)]
pub struct QuicPath {
    /// Mean UDP datagram size (bytes): the path MTU the connection reached.
    pub datagram_bytes: f64,
    /// Share of sent packets declared lost.
    pub loss: f64,
}

impl Server {
    /// The QUIC sender's view of the last raw download, if one finished.
    pub fn raw_path(&self) -> Option<QuicPath> {
        let stats = self
            .raw
            .sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        Some(QuicPath {
            datagram_bytes: stats.udp_tx.bytes as f64 / stats.udp_tx.datagrams.max(1) as f64,
            loss: stats.lost_packets as f64 / stats.sent_packets.max(1) as f64,
        })
    }
}
