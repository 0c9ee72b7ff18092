//! Transport scenarios: raw iroh QUIC, tonic over TCP, and gRPC over iroh (direct and via a
//! local relay), each measured for throughput (one server-to-client stream, the direction
//! command output travels) and round-trip time.
//!
//! The gRPC side is the real `RemoteExecution` service definition carried by the project's
//! own iroh adapters ([`helix_mesh::iroh_grpc`]); its bench implementation streams `Output`
//! events of a given size from memory, so only the transport is measured.

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context;
use futures::{Stream, StreamExt};
use helix_mesh::{
    hub_channel::HubChannel,
    iroh_grpc::{ConnectionTracker, GrpcAcceptor, IrohConnector},
    pb::{
        self,
        remote_execution_client::RemoteExecutionClient,
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

use crate::stats::{Samples, median};

/// ALPN of the raw QUIC baseline.
pub const RAW_ALPN: &[u8] = b"helix-bench/raw/1";
/// Bytes per write and per gRPC message in throughput runs.
pub const CHUNK: usize = 64 * 1024;

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
}

/// A server endpoint (raw + gRPC) and what a client needs to reach it.
pub struct Server {
    pub endpoint: Endpoint,
    raw: RawServer,
    _router: Router,
}

/// Starts the bench server endpoint; `relay` is the local relay URL, if any.
pub async fn start_server(relay: Option<&str>) -> anyhow::Result<Server> {
    let relay_choice = match relay {
        Some(url) => RelayChoice::Custom(vec![url.parse()?]),
        None => RelayChoice::Disabled,
    };
    let endpoint = bind_endpoint(
        &EndpointOptions::loopback(relay_choice),
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

/// The address to dial: IP addresses only for direct, the relay only otherwise.
pub fn dial_addr(server: &Server, relay: Option<&str>) -> anyhow::Result<EndpointAddr> {
    let addr = server.endpoint.addr();
    Ok(match relay {
        None => EndpointAddr::from_parts(addr.id, addr.addrs.iter().filter(|a| a.is_ip()).cloned()),
        Some(url) => EndpointAddr::new(addr.id).with_relay_url(url.parse()?),
    })
}

/// Throughput (MiB/s) and RTT samples of one transport.
#[derive(Debug, Clone)]
pub struct TransportResult {
    pub mib_per_s: f64,
    /// CPU time of the whole bench process (sender and receiver, every thread) per MiB
    /// moved: what the transport costs, steadier than MiB/s on a shared machine.
    pub cpu_ms_per_mib: f64,
    pub rtt: Samples,
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

/// Raw QUIC round trips alone: a new connection, `pings` 8-byte echoes on one stream.
pub async fn raw_rtt(
    client: &Endpoint,
    addr: EndpointAddr,
    pings: usize,
) -> anyhow::Result<Samples> {
    let conn = client.connect(addr, RAW_ALPN).await.context("connecting")?;
    let rtt = echoes(&conn, pings).await?;
    conn.close(0u32.into(), b"done");
    Ok(rtt)
}

/// `pings` timed 8-byte echoes on a new stream of `conn` (after 10 untimed ones).
async fn echoes(conn: &Connection, pings: usize) -> anyhow::Result<Samples> {
    let (mut send, mut recv) = conn.open_bi().await.context("opening the echo stream")?;
    send.write_all(&[0]).await.context("echo request")?;
    let mut rtt = Samples::default();
    let mut buf = [0u8; 8];
    for i in 0..pings + 10 {
        let t = Instant::now();
        send.write_all(&(i as u64).to_le_bytes())
            .await
            .context("ping")?;
        recv.read_exact(&mut buf).await.context("pong")?;
        if i >= 10 {
            rtt.push(t.elapsed());
        }
    }
    send.finish().context("finishing the echo stream")?;
    Ok(rtt)
}

/// Raw QUIC: RTT of 8-byte echoes on one stream, then a `bytes` download on another.
pub async fn raw_iroh(
    client: &Endpoint,
    addr: EndpointAddr,
    bytes: usize,
    pings: usize,
) -> anyhow::Result<TransportResult> {
    let conn = client.connect(addr, RAW_ALPN).await.context("connecting")?;
    let rtt = echoes(&conn, pings).await?;
    let t = Instant::now();
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .context("opening the download stream")?;
    let cpu = crate::procs::own_cpu();
    send.write_all(&[1]).await.context("download request")?;
    send.write_all(&(bytes as u64).to_le_bytes())
        .await
        .context("download request")?;
    send.finish()?;
    let mut got = 0usize;
    while let Some(chunk) = recv.read_chunk(CHUNK).await.context("download")? {
        got += chunk.len();
    }
    let secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(got == bytes, "raw download got {got} of {bytes} bytes");
    let cpu_ms_per_mib = cpu_per_mib(cpu, got);
    drop(conn);
    Ok(TransportResult {
        mib_per_s: mib(got, secs),
        cpu_ms_per_mib,
        rtt,
    })
}

/// gRPC: RTT of unary calls, then one server-streaming call of `bytes` in 64 KiB messages.
pub async fn grpc(
    channel: HubChannel,
    bytes: usize,
    pings: usize,
) -> anyhow::Result<TransportResult> {
    let mut client = RemoteExecutionClient::new(channel)
        .max_decoding_message_size(helix_mesh::MAX_MESSAGE_BYTES);
    let mut rtt = Samples::default();
    for i in 0..pings + 10 {
        let t = Instant::now();
        client.get_hub_info(pb::GetHubInfoRequest {}).await?;
        if i >= 10 {
            rtt.push(t.elapsed());
        }
    }
    let count = bytes.div_ceil(CHUNK);
    let cpu = crate::procs::own_cpu();
    let t = Instant::now();
    let mut stream = client
        .execute(pb::ExecuteRequest {
            command_id: uuid::Uuid::new_v4().to_string(),
            content: format!("bulk {CHUNK} {count}"),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut got = 0usize;
    while let Some(event) = stream.message().await? {
        if let Some(pb::command_event::Kind::Output(o)) = event.kind {
            got += o.text.len();
        }
    }
    let secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        got == count * CHUNK,
        "gRPC stream got {got} of {} bytes",
        count * CHUNK
    );
    Ok(TransportResult {
        mib_per_s: mib(got, secs),
        cpu_ms_per_mib: cpu_per_mib(cpu, got),
        rtt,
    })
}

/// Raw iroh, tonic/TCP and gRPC over iroh, measured in interleaved rounds so that a slow
/// moment of the machine hits every transport alike.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// Median throughput and CPU per MiB of the rounds; the RTT samples of all of them.
    pub raw: TransportResult,
    pub tcp: TransportResult,
    pub grpc: TransportResult,
    /// gRPC over iroh ÷ raw iroh throughput, round by round.
    pub vs_raw: Vec<f64>,
    /// gRPC over iroh ÷ tonic/TCP throughput, round by round.
    pub vs_tcp: Vec<f64>,
}

/// Runs `rounds` rounds of raw iroh → tonic/TCP → gRPC over iroh, each moving `bytes`.
pub async fn compare(
    client: &Endpoint,
    addr: EndpointAddr,
    bytes: usize,
    pings: usize,
    rounds: usize,
) -> anyhow::Result<Comparison> {
    let tcp = tcp_channel().await.context("tonic over TCP")?;
    let iroh = iroh_channel(client, addr.clone())
        .await
        .context("gRPC over iroh direct")?;
    let (mut raws, mut tcps, mut grpcs) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds.max(1) {
        raws.push(
            raw_iroh(client, addr.clone(), bytes, pings)
                .await
                .context("raw iroh QUIC")?,
        );
        tcps.push(
            grpc(tcp.clone(), bytes, pings)
                .await
                .context("tonic over TCP")?,
        );
        grpcs.push(
            grpc(iroh.clone(), bytes, pings)
                .await
                .context("gRPC over iroh direct")?,
        );
    }
    let ratio = |other: &[TransportResult]| -> Vec<f64> {
        grpcs
            .iter()
            .zip(other)
            .map(|(g, o)| g.mib_per_s / o.mib_per_s)
            .collect()
    };
    Ok(Comparison {
        vs_raw: ratio(&raws),
        vs_tcp: ratio(&tcps),
        raw: combine(&raws),
        tcp: combine(&tcps),
        grpc: combine(&grpcs),
    })
}

/// Median throughput and CPU of several runs of one transport, with all their RTT samples.
fn combine(runs: &[TransportResult]) -> TransportResult {
    let mut rtt = Samples::default();
    for run in runs {
        rtt.merge(&run.rtt);
    }
    TransportResult {
        mib_per_s: median(runs.iter().map(|r| r.mib_per_s)),
        cpu_ms_per_mib: median(runs.iter().map(|r| r.cpu_ms_per_mib)),
        rtt,
    }
}

/// tonic over loopback TCP, the same service.
pub async fn tcp_channel() -> anyhow::Result<HubChannel> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    tokio::spawn(
        helix_mesh::transport::grpc_server()
            .add_service(RemoteExecutionServer::new(BenchService))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let channel = helix_mesh::transport::grpc_client_endpoint(&format!("http://{addr}"))?
        .connect()
        .await?;
    Ok(channel.into())
}

/// gRPC over iroh with the project's connector: what the spoke uses.
pub async fn iroh_channel(client: &Endpoint, addr: EndpointAddr) -> anyhow::Result<HubChannel> {
    let channel = IrohConnector::new(client.clone(), addr, Duration::from_secs(10))
        .channel()
        .await?;
    Ok(channel.into())
}

/// Milliseconds of process CPU since `before`, per MiB of `bytes`.
fn cpu_per_mib(before: Duration, bytes: usize) -> f64 {
    let used = crate::procs::own_cpu().saturating_sub(before);
    used.as_secs_f64() * 1000.0 / (bytes as f64 / (1024.0 * 1024.0)).max(1e-9)
}

fn mib(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / secs.max(1e-9)
}
