//! The iroh side of the wire: ALPNs, close codes, endpoint construction shared by hub and
//! spoke, persistent keys, and which route a connection uses.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use iroh::{
    Endpoint, RelayMap, RelayMode, RelayUrl, SecretKey,
    address_lookup::{DnsAddressLookup, PkarrPublisher, PkarrResolver},
    endpoint::{
        Connection, EndpointHooks, PathList, PortmapperConfig, QuicTransportConfig, VarInt, presets,
    },
    tls::CaTlsConfig,
};
use iroh_mdns_address_lookup::MdnsAddressLookup;
use rustls::pki_types::{CertificateDer, pem::PemObject};

use crate::fsutil::{self, FsError};

/// gRPC (HTTP/2) over one QUIC bi-stream per HTTP/2 connection. Paired devices only.
pub const ALPN_GRPC: &[u8] = b"helix/grpc/1";
/// The pairing exchange. Open to anyone; serves nothing else.
pub const ALPN_PAIR: &[u8] = b"helix/pair/1";

/// Connection close code: the device is not paired with this hub.
pub const CLOSE_NOT_PAIRED: u32 = 4031;
/// Connection close code: the device was revoked.
pub const CLOSE_REVOKED: u32 = 4032;
/// Connection close code: the hub is shutting down.
pub const CLOSE_SHUTDOWN: u32 = 4033;
/// Connection close code: the hub dropped the connection (e.g. an operator's request).
pub const CLOSE_DROPPED: u32 = 4034;

/// Receive window of one QUIC stream. The default (~1.25 MB) caps a single stream at about
/// 100 Mbit/s on a 100 ms path, and gRPC puts a whole HTTP/2 connection on one stream. 2 MiB
/// lifts that to ~170 Mbit/s. Larger is not safe with noq 1.4: a burst of loss at the receiver
/// can leave more than 1,024 gaps in the stream's reassembly buffer, and noq then closes the
/// connection ("too many gaps in stream buffer"); docs/performance.md has the window sizes
/// where that was seen.
pub const STREAM_RECEIVE_WINDOW: u32 = 2 << 20;
/// Receive window of a whole connection (all streams), twice the stream window.
pub const CONNECTION_RECEIVE_WINDOW: u32 = 4 << 20;
/// Send window of a connection, matching the peer's receive window.
pub const SEND_WINDOW: u64 = 4 << 20;

/// How a peer reaches the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// UDP straight to the peer (possibly hole-punched).
    Direct,
    /// Through an iroh relay server.
    Relay,
}

impl Route {
    /// `direct` or `iroh-relay`, as the CLI reports it.
    pub fn name(self) -> &'static str {
        match self {
            Route::Direct => "direct",
            Route::Relay => "iroh-relay",
        }
    }
}

/// The route of the path a connection currently sends on.
pub fn current_route(conn: &Connection) -> Option<Route> {
    selected_route(&conn.paths())
}

/// The route of the selected path in a snapshot of a connection's paths (one item of
/// `Connection::paths_stream`, say); `None` while no path is selected.
pub fn selected_route(paths: &PathList<'_>) -> Option<Route> {
    let selected = paths.iter().find(|p| p.is_selected())?;
    Some(if selected.is_relay() {
        Route::Relay
    } else {
        Route::Direct
    })
}

/// Which relay servers an endpoint uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RelayChoice {
    /// n0's public relays.
    #[default]
    N0,
    /// These relays only (e.g. a self-hosted `iroh-relay`).
    Custom(Vec<RelayUrl>),
    /// No relay: direct connections only.
    Disabled,
}

/// How to build an endpoint. The defaults are for production; tests turn off everything that
/// would leave the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointOptions {
    pub relay: RelayChoice,
    /// Publish to and resolve from n0's DNS, so peers can be dialed by key alone.
    pub n0_discovery: bool,
    /// Find peers on the local network with mDNS.
    pub mdns: bool,
    /// Bind UDP only on this address (default: all interfaces, a random port).
    pub udp_addr: Option<SocketAddr>,
    /// `false`: no UDP at all, only relays (a diagnostic and test setting).
    pub ip_transports: bool,
    /// Ask the router for a port mapping (UPnP, PCP, NAT-PMP).
    pub portmapper: bool,
    /// A PEM file of extra root certificates to trust for relays (and n0's DNS and pkarr
    /// services), beside the embedded web roots: for a self-hosted relay with its own CA.
    pub relay_ca: Option<PathBuf>,
}

impl Default for EndpointOptions {
    fn default() -> Self {
        Self {
            relay: RelayChoice::N0,
            n0_discovery: true,
            mdns: true,
            udp_addr: None,
            ip_transports: true,
            portmapper: true,
            relay_ca: None,
        }
    }
}

impl EndpointOptions {
    /// Everything local: no n0 services, no mDNS, no portmapper, UDP on 127.0.0.1 only.
    pub fn loopback(relay: RelayChoice) -> Self {
        Self {
            relay,
            n0_discovery: false,
            mdns: false,
            udp_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            ip_transports: true,
            portmapper: false,
            relay_ca: None,
        }
    }
}

/// Building an endpoint failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    #[error("starting the iroh endpoint: bad UDP address {addr}: {source}")]
    UdpAddr {
        addr: SocketAddr,
        #[source]
        source: iroh::endpoint::InvalidSocketAddr,
    },
    #[error("starting the iroh endpoint: {}", crate::iroh_grpc::error_chain(.0))]
    Bind(#[from] iroh::endpoint::BindError),
    #[error(
        "reading the relay CA {}: {problem}: it must be a PEM file with one or more CERTIFICATE blocks",
        path.display()
    )]
    RelayCa { path: PathBuf, problem: String },
}

/// The certificates of the PEM file at `path` (at least one).
pub fn load_relay_ca(path: &Path) -> Result<Vec<CertificateDer<'static>>, EndpointError> {
    let problem = |problem: String| EndpointError::RelayCa {
        path: path.to_owned(),
        problem,
    };
    let pem = std::fs::read(path).map_err(|e| problem(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| problem(e.to_string()))?;
    if certs.is_empty() {
        return Err(problem("no certificate in it".into()));
    }
    Ok(certs)
}

/// The QUIC transport settings both sides use (see the window constants).
pub fn transport_config() -> QuicTransportConfig {
    QuicTransportConfig::builder()
        .stream_receive_window(VarInt::from_u32(STREAM_RECEIVE_WINDOW))
        .receive_window(VarInt::from_u32(CONNECTION_RECEIVE_WINDOW))
        .send_window(SEND_WINDOW)
        .keep_alive_interval(Duration::from_secs(5))
        .build()
}

/// Binds an endpoint with `secret`, accepting `alpns`, with optional connection hooks.
pub async fn bind_endpoint(
    options: &EndpointOptions,
    secret: SecretKey,
    alpns: Vec<Vec<u8>>,
    hooks: Option<Box<dyn FnOnce(iroh::endpoint::Builder) -> iroh::endpoint::Builder + Send>>,
) -> Result<Endpoint, EndpointError> {
    let ca = match &options.relay_ca {
        Some(path) => Some(CaTlsConfig::embedded().with_extra_roots(load_relay_ca(path)?)),
        None => None,
    };
    let mut builder = Endpoint::builder(presets::Minimal)
        .secret_key(secret)
        .alpns(alpns)
        .transport_config(transport_config());
    builder = builder.relay_mode(match &options.relay {
        RelayChoice::N0 => RelayMode::Default,
        RelayChoice::Custom(urls) => RelayMode::Custom(RelayMap::from_iter(urls.iter().cloned())),
        RelayChoice::Disabled => RelayMode::Disabled,
    });
    if let Some(ca) = ca {
        builder = builder.ca_tls_config(ca);
    }
    if options.n0_discovery {
        builder = builder
            .address_lookup(PkarrPublisher::n0_dns())
            .address_lookup(PkarrResolver::n0_dns())
            .address_lookup(DnsAddressLookup::n0_dns());
    }
    if options.mdns {
        builder = builder.address_lookup(MdnsAddressLookup::builder());
    }
    if !options.portmapper {
        builder = builder.portmapper_config(PortmapperConfig::Disabled);
    }
    if !options.ip_transports {
        builder = builder.clear_ip_transports();
    } else if let Some(addr) = options.udp_addr {
        builder = builder
            .clear_ip_transports()
            .bind_addr(addr)
            .map_err(|source| EndpointError::UdpAddr { addr, source })?;
    }
    if let Some(apply) = hooks {
        builder = apply(builder);
    }
    Ok(builder.bind().await?)
}

/// Installs `hooks` on an endpoint builder (a helper for [`bind_endpoint`]'s `hooks`).
pub fn with_hooks(
    hooks: impl EndpointHooks + 'static,
) -> Box<dyn FnOnce(iroh::endpoint::Builder) -> iroh::endpoint::Builder + Send> {
    Box::new(move |b| b.hooks(hooks))
}

/// Reading or creating a key file failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(
        "key file {0} is corrupt (expected 64 hex digits); it was left untouched: move it away to make a new identity"
    )]
    Corrupt(std::path::PathBuf),
}

/// Loads the secret key at `path` (64 hex digits), creating it (0600) if missing.
pub fn load_or_create_secret_key(path: &Path) -> Result<SecretKey, KeyError> {
    if let Some(bytes) = fsutil::read_optional(path)? {
        let text = String::from_utf8_lossy(&bytes);
        return match crate::hex::decode32(text.trim()) {
            Some(raw) => Ok(SecretKey::from_bytes(&raw)),
            None => Err(KeyError::Corrupt(path.to_owned())),
        };
    }
    if let Some(dir) = path.parent() {
        fsutil::ensure_private_dir(dir)?;
    }
    let key = SecretKey::generate();
    let text = format!("{}\n", crate::hex::encode(&key.to_bytes()));
    fsutil::write_private_atomic(path, text.as_bytes())?;
    Ok(key)
}

/// HTTP/2 stream window for gRPC. hyper's default (64 KiB, growing only with adaptive
/// windows) makes one stream wait for a window update every 64 KiB: on a 1 ms path that caps a
/// stream near 60 MiB/s. 4 MiB keeps the pipe full up to ~30 ms of RTT at 1 Gbit/s.
pub const H2_STREAM_WINDOW: u32 = 4 << 20;
/// HTTP/2 connection window: room for a few full streams at once.
pub const H2_CONNECTION_WINDOW: u32 = 16 << 20;

/// Largest HTTP/2 frame a peer may send us (announced in SETTINGS; HTTP/2's default is
/// 16 KiB). Every frame costs a header, a pass through h2's frame loop and, over iroh, a write
/// into the QUIC stream: with 16 KiB frames a 64 KiB output event took four of each. 256 KiB
/// carries any usual event in one frame, which gives gRPC over iroh more throughput for less
/// CPU per MiB (docs/performance.md has the figures), while a long frame holds up the
/// connection's other streams for at most 256 KiB (20 ms at 100 Mbit/s).
pub const H2_MAX_FRAME: u32 = 256 << 10;

/// The gRPC server settings every listener uses (TCP and iroh).
pub fn grpc_server() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_frame_size(H2_MAX_FRAME)
        .tcp_nodelay(true)
}

/// A gRPC TCP listener's accepted connections, each with TCP_NODELAY. [`grpc_server`]'s
/// `tcp_nodelay` only reaches listeners tonic binds itself (`serve`), not
/// `serve_with_incoming`: without this, Nagle's algorithm holds each small event (a status, a
/// token) behind the ACK of the one before, which the client may delay by up to 40 ms.
pub fn tcp_incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// The gRPC client settings every dialer uses (TCP and iroh).
pub fn grpc_client_endpoint(
    uri: &str,
) -> Result<tonic::transport::Endpoint, tonic::transport::Error> {
    Ok(tonic::transport::Endpoint::from_shared(uri.to_owned())?
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_frame_size(H2_MAX_FRAME)
        .tcp_nodelay(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_grpc_tcp_connections_send_small_writes_at_once() {
        use tokio_stream::StreamExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = tcp_incoming(listener);
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let accepted = incoming.next().await.unwrap().unwrap();
        assert!(accepted.nodelay().unwrap(), "TCP_NODELAY on the hub's end");
    }

    #[test]
    fn key_file_round_trips_and_corruption_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/secret.key");
        let a = load_or_create_secret_key(&path).unwrap();
        let b = load_or_create_secret_key(&path).unwrap();
        assert_eq!(a.public(), b.public());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::write(&path, "zz").unwrap();
        let err = load_or_create_secret_key(&path).unwrap_err().to_string();
        assert!(err.contains("corrupt"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"zz");
    }
}
