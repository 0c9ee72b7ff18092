//! tonic gRPC carried over iroh QUIC: one iroh connection per spoke–hub pair, one QUIC
//! bi-stream per HTTP/2 connection (hyper multiplexes every RPC of a channel over it, exactly
//! as over one TCP socket).
//!
//! - [`IrohIo`]: a bi-stream as `AsyncRead + AsyncWrite`, carrying the peer's key as tonic
//!   connect info.
//! - [`GrpcAcceptor`]: the hub's `ProtocolHandler`, feeding accepted streams to
//!   `tonic::transport::Server::serve_with_incoming`, and tracking live connections so a device
//!   can be cut off.
//! - [`IrohConnector`]: the spoke's side, for `Endpoint::connect_with_connector`.

use std::{
    collections::HashMap,
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use iroh::{
    Endpoint, EndpointAddr, EndpointId,
    endpoint::{Connection, ConnectionError, RecvStream, SendStream, VarInt},
    protocol::{AcceptError, ProtocolHandler},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::mpsc,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use crate::{
    hub_channel::DirectChannel,
    transport::{ALPN_GRPC, CLOSE_NOT_PAIRED, CLOSE_REVOKED, current_route},
};

/// What tonic puts into every request's extensions on an iroh connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IrohConnectInfo {
    /// The peer's key, authenticated by the QUIC (TLS) handshake.
    pub remote_id: EndpointId,
    /// The connection's id, for logs.
    pub connection_id: usize,
}

/// A QUIC bi-stream as a byte pipe.
#[derive(Debug)]
pub struct IrohIo {
    send: SendStream,
    recv: RecvStream,
    info: IrohConnectInfo,
}

impl IrohIo {
    pub fn new(send: SendStream, recv: RecvStream, conn: &Connection) -> Self {
        Self {
            send,
            recv,
            info: IrohConnectInfo {
                remote_id: conn.remote_id(),
                connection_id: conn.stable_id(),
            },
        }
    }
}

impl AsyncRead for IrohIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        AsyncRead::poll_read(Pin::new(&mut self.recv), cx, buf)
    }
}

impl AsyncWrite for IrohIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // Fully qualified: SendStream also has an inherent poll_write with another error type.
        AsyncWrite::poll_write(Pin::new(&mut self.send), cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_flush(Pin::new(&mut self.send), cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_shutdown(Pin::new(&mut self.send), cx)
    }
}

impl Connected for IrohIo {
    type ConnectInfo = IrohConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

/// Live connections by peer, so a peer can be cut off at once.
#[derive(Debug, Clone, Default)]
pub struct ConnectionTracker {
    inner: Arc<Mutex<HashMap<EndpointId, Vec<Connection>>>>,
}

impl ConnectionTracker {
    fn add(&self, conn: &Connection) {
        if let Ok(mut map) = self.inner.lock() {
            map.entry(conn.remote_id()).or_default().push(conn.clone());
        }
    }

    fn remove(&self, conn: &Connection) {
        if let Ok(mut map) = self.inner.lock()
            && let Some(list) = map.get_mut(&conn.remote_id())
        {
            list.retain(|c| c.stable_id() != conn.stable_id());
            if list.is_empty() {
                map.remove(&conn.remote_id());
            }
        }
    }

    /// Closes every live connection of `peer`; returns how many there were.
    pub fn close_peer(&self, peer: EndpointId, code: u32, reason: &str) -> usize {
        let conns = self
            .inner
            .lock()
            .ok()
            .and_then(|mut map| map.remove(&peer))
            .unwrap_or_default();
        for c in &conns {
            c.close(VarInt::from_u32(code), reason.as_bytes());
        }
        conns.len()
    }

    /// Closes every live connection.
    pub fn close_all(&self, code: u32, reason: &str) -> usize {
        let all: Vec<Connection> = self
            .inner
            .lock()
            .map(|mut map| map.drain().flat_map(|(_, v)| v).collect())
            .unwrap_or_default();
        for c in &all {
            c.close(VarInt::from_u32(code), reason.as_bytes());
        }
        all.len()
    }

    /// Live connections of `peer`.
    pub fn count(&self, peer: EndpointId) -> usize {
        self.inner
            .lock()
            .map(|m| m.get(&peer).map_or(0, Vec::len))
            .unwrap_or(0)
    }
}

/// Streams waiting for the gRPC server to take them. Each is a whole HTTP/2 connection, so a
/// handful suffices; a full queue makes the acceptor wait (QUIC flow control pushes back).
pub const ACCEPT_QUEUE: usize = 64;

/// Asked of a peer once its connection is registered: `None` lets it in, `Some((code,
/// reason))` closes the connection with them. A device revoked between the handshake's check
/// and the registration is not among the connections the revoke closed; this second look,
/// made after the registration, is what catches it (the revoke removes the device before it
/// closes the registered connections, so one of the two always sees the other).
pub type PeerGate = Arc<dyn Fn(&EndpointId) -> Option<(u32, String)> + Send + Sync>;

/// The hub's handler for [`ALPN_GRPC`]: every accepted bi-stream becomes an HTTP/2 connection
/// of the gRPC server.
#[derive(Clone)]
pub struct GrpcAcceptor {
    tx: mpsc::Sender<io::Result<IrohIo>>,
    tracker: ConnectionTracker,
    gate: Option<PeerGate>,
}

impl std::fmt::Debug for GrpcAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcAcceptor")
            .field("tracker", &self.tracker)
            .field("gate", &self.gate.is_some())
            .finish_non_exhaustive()
    }
}

impl GrpcAcceptor {
    /// The handler and the stream to give `serve_with_incoming`.
    pub fn new(tracker: ConnectionTracker) -> (Self, ReceiverStream<io::Result<IrohIo>>) {
        let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
        let acceptor = Self {
            tx,
            tracker,
            gate: None,
        };
        (acceptor, ReceiverStream::new(rx))
    }

    /// Asks `gate` of every peer once its connection is registered (see [`PeerGate`]).
    pub fn with_gate(mut self, gate: PeerGate) -> Self {
        self.gate = Some(gate);
        self
    }
}

impl ProtocolHandler for GrpcAcceptor {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        self.tracker.add(&conn);
        if let Some(gate) = &self.gate
            && let Some((code, reason)) = gate(&conn.remote_id())
        {
            self.tracker.remove(&conn);
            tracing::info!(peer = %conn.remote_id(), %reason, "refused a connection after registering it");
            conn.close(VarInt::from_u32(code), reason.as_bytes());
            return Ok(());
        }
        tracing::debug!(peer = %conn.remote_id(), route = ?current_route(&conn), "grpc connection");
        // A spoke's channel opens a new stream whenever it reconnects: keep accepting.
        while let Ok((send, recv)) = conn.accept_bi().await {
            if self
                .tx
                .send(Ok(IrohIo::new(send, recv, &conn)))
                .await
                .is_err()
            {
                break; // the gRPC server has stopped
            }
        }
        self.tracker.remove(&conn);
        Ok(())
    }
}

/// Dialing a hub failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    #[error("no route to the hub within {0:?} (is it running and online? try `helix hubs`)")]
    Timeout(Duration),
    #[error("could not connect to the hub: {0}")]
    Connect(#[source] iroh::endpoint::ConnectError),
    /// The hub closed the connection, saying why (not paired, revoked…).
    #[error("{0}")]
    Refused(String),
    /// No stream for gRPC could be opened on the connection.
    #[error("setting up gRPC over the connection: {0}")]
    Channel(#[source] io::Error),
    /// The HTTP/2 handshake on the stream failed.
    #[error("setting up gRPC over the connection: {}", error_chain(.0))]
    Handshake(#[source] hyper::Error),
}

/// Why the hub closed a connection, in words, if it said.
pub fn refusal(err: &ConnectionError) -> Option<String> {
    match err {
        ConnectionError::ApplicationClosed(close) => {
            let code = u32::try_from(close.error_code.into_inner()).unwrap_or(0);
            let reason = String::from_utf8_lossy(&close.reason).into_owned();
            match code {
                CLOSE_NOT_PAIRED | CLOSE_REVOKED => Some(reason),
                _ if !reason.is_empty() => Some(format!("the hub closed the connection: {reason}")),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The spoke's connector: one iroh connection, a new bi-stream per HTTP/2 connection.
#[derive(Debug, Clone)]
pub struct IrohConnector {
    endpoint: Endpoint,
    addr: EndpointAddr,
    timeout: Duration,
    conn: Arc<tokio::sync::Mutex<Option<Connection>>>,
}

impl IrohConnector {
    pub fn new(endpoint: Endpoint, addr: EndpointAddr, timeout: Duration) -> Self {
        Self {
            endpoint,
            addr,
            timeout,
            conn: Default::default(),
        }
    }

    /// The live connection, dialing (within the timeout) if there is none.
    pub async fn connection(&self) -> Result<Connection, DialError> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref()
            && c.close_reason().is_none()
        {
            return Ok(c.clone());
        }
        let dial = self.endpoint.connect(self.addr.clone(), ALPN_GRPC);
        let conn = tokio::time::timeout(self.timeout, dial)
            .await
            .map_err(|_| DialError::Timeout(self.timeout))?
            .map_err(DialError::Connect)?;
        *guard = Some(conn.clone());
        Ok(conn)
    }

    /// The hub's reason for closing the current connection, if it gave one.
    pub async fn refusal(&self) -> Option<String> {
        let guard = self.conn.lock().await;
        let conn = guard.as_ref()?;
        refusal(&conn.close_reason()?)
    }

    async fn open(&self) -> io::Result<IrohIo> {
        let conn = self.connection().await.map_err(io::Error::other)?;
        let (send, recv) = conn.open_bi().await.map_err(io::Error::other)?;
        Ok(IrohIo::new(send, recv, &conn))
    }

    /// An HTTP/2 connection on a new stream of this connection, for a generated gRPC client.
    /// Opened now (within the dial timeout), so an unpaired device learns it here.
    pub async fn channel(&self) -> Result<DirectChannel, DialError> {
        let opened = tokio::time::timeout(self.timeout, async {
            let io = self.open().await.map_err(DialError::Channel)?;
            http2_channel(io).await.map_err(DialError::Handshake)
        })
        .await
        .unwrap_or(Err(DialError::Timeout(self.timeout)));
        match opened {
            Ok(channel) => Ok(channel),
            Err(e) => Err(match self.refusal().await {
                Some(reason) => DialError::Refused(reason),
                None => e,
            }),
        }
    }
}

/// A gRPC client's HTTP/2 connection over `io` (an iroh stream, or a pipe spliced to one),
/// with the windows and frame size both sides use; its connection task runs until `io` ends.
/// The client's preface goes out with its first request: no round trip is spent here.
pub async fn http2_channel<T>(io: T) -> Result<DirectChannel, hyper::Error>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (send, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .initial_stream_window_size(crate::transport::H2_STREAM_WINDOW)
            .initial_connection_window_size(crate::transport::H2_CONNECTION_WINDOW)
            .max_frame_size(crate::transport::H2_MAX_FRAME)
            .handshake(hyper_util::rt::TokioIo::new(io))
            .await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(error = %error_chain(&error), "gRPC connection over iroh ended");
        }
    });
    Ok(DirectChannel::new(send))
}

/// An error with its sources, on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}
