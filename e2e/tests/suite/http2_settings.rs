//! The HTTP/2 settings every gRPC peer announces, read off the wire: 256 KiB frames (a 64 KiB
//! output event crosses as one DATA frame, not four) and 4 MiB stream / 16 MiB connection
//! windows (one stream is not held back by window updates). docs/performance.md has the
//! measurements behind them; only a benchmark shows their speed, so these tests pin the
//! settings themselves, on each side and each transport. Also here: the hub's TCP listener
//! turns Nagle's algorithm off on what it accepts.

use std::time::Duration;

use helix_hub::devices::Devices;
use helix_mesh::{
    iroh_grpc::IrohConnector,
    transport::{
        ALPN_GRPC, H2_CONNECTION_WINDOW, H2_MAX_FRAME, H2_STREAM_WINDOW, grpc_client_endpoint,
    },
};
use iroh::SecretKey;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::support::{
    TEST_TIMEOUT, TestHub, config_for, loopback_endpoint,
    mock_anthropic::{MockAnthropic, Reply},
    store_api_key,
};

/// What a client sends first (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An HTTP/2 connection's flow-control window before any WINDOW_UPDATE (RFC 9113 §6.9.2).
const DEFAULT_WINDOW: u32 = 65_535;
const SETTINGS: u8 = 0x4;
const WINDOW_UPDATE: u8 = 0x8;
const ACK: u8 = 0x1;
const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;

/// The settings one side of an HTTP/2 connection announced.
#[derive(Debug, PartialEq, Eq)]
struct Announced {
    max_frame: Option<u32>,
    stream_window: Option<u32>,
    connection_window: u32,
}

/// What every peer of the mesh must announce.
fn expected() -> Announced {
    Announced {
        max_frame: Some(H2_MAX_FRAME),
        stream_window: Some(H2_STREAM_WINDOW),
        connection_window: H2_CONNECTION_WINDOW,
    }
}

/// Reads the peer's opening: the preface if it is a client, then frames up to its SETTINGS
/// and the connection-level WINDOW_UPDATE that follows it (past a SETTINGS ACK; any other
/// frame first means the peer kept the default connection window).
async fn read_announced(io: &mut (impl AsyncRead + Unpin), client: bool) -> Announced {
    tokio::time::timeout(TEST_TIMEOUT, async {
        if client {
            let mut preface = [0u8; PREFACE.len()];
            io.read_exact(&mut preface).await.unwrap();
            assert_eq!(&preface[..], PREFACE);
        }
        let mut announced: Option<Announced> = None;
        for _ in 0..8 {
            let mut head = [0u8; 9];
            io.read_exact(&mut head).await.unwrap();
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let (kind, flags) = (head[3], head[4]);
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let mut payload = vec![0u8; len];
            io.read_exact(&mut payload).await.unwrap();
            match (kind, announced.as_mut()) {
                (SETTINGS, None) if flags & ACK == 0 => {
                    let mut settings = Announced {
                        max_frame: None,
                        stream_window: None,
                        connection_window: DEFAULT_WINDOW,
                    };
                    for entry in payload.chunks_exact(6) {
                        let value = u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]);
                        match u16::from_be_bytes([entry[0], entry[1]]) {
                            SETTINGS_MAX_FRAME_SIZE => settings.max_frame = Some(value),
                            SETTINGS_INITIAL_WINDOW_SIZE => settings.stream_window = Some(value),
                            _ => {}
                        }
                    }
                    announced = Some(settings);
                }
                (WINDOW_UPDATE, Some(settings)) if stream == 0 => {
                    let increment =
                        u32::from_be_bytes([payload[0] & 0x7f, payload[1], payload[2], payload[3]]);
                    settings.connection_window += increment;
                    break;
                }
                // The server's acknowledgement of the client's SETTINGS may come first.
                (SETTINGS, Some(_)) if flags & ACK != 0 => {}
                (SETTINGS, None) => panic!("a SETTINGS ACK before the peer's own SETTINGS"),
                (_, None) => panic!("frame type {kind} before the peer's SETTINGS"),
                (_, Some(_)) => break,
            }
        }
        announced.expect("the peer announced no SETTINGS in its first 8 frames")
    })
    .await
    .expect("the peer's HTTP/2 opening did not arrive")
}

/// Opens an HTTP/2 connection as a client with default settings, then reads the server's.
async fn server_settings(mut io: impl AsyncRead + AsyncWrite + Unpin) -> Announced {
    io.write_all(PREFACE).await.unwrap();
    // An empty SETTINGS frame: this client keeps every default.
    io.write_all(&[0, 0, 0, SETTINGS, 0, 0, 0, 0, 0])
        .await
        .unwrap();
    io.flush().await.unwrap();
    read_announced(&mut io, false).await
}

#[tokio::test]
async fn the_hub_announces_large_frames_and_windows_on_tcp_and_iroh() {
    let mock = MockAnthropic::start(Reply::text(&["unused"])).await;
    let dir = tempfile::tempdir().unwrap();
    store_api_key(dir.path());
    let device = SecretKey::generate();
    Devices::load(dir.path())
        .unwrap()
        .add(device.public(), "settings-test")
        .unwrap();
    let hub = TestHub::start_in(dir, config_for(&mock)).await;

    let tcp = tokio::net::TcpStream::connect(hub.hub().local_addr())
        .await
        .unwrap();
    assert_eq!(server_settings(tcp).await, expected(), "over loopback TCP");

    let endpoint = loopback_endpoint(device, &[]).await;
    let conn = endpoint
        .connect(hub.hub().endpoint_addr().unwrap(), ALPN_GRPC)
        .await
        .unwrap();
    let (send, recv) = conn.open_bi().await.unwrap();
    assert_eq!(
        server_settings(tokio::io::join(recv, send)).await,
        expected(),
        "over iroh"
    );
    endpoint.close().await;
    hub.shutdown().await;
}

#[tokio::test]
async fn the_spokes_channels_announce_large_frames_and_windows() {
    // Over iroh: a stand-in hub that reads what the spoke's connector sends on the stream.
    let hub = loopback_endpoint(SecretKey::generate(), &[ALPN_GRPC]).await;
    let spoke = loopback_endpoint(SecretKey::generate(), &[]).await;
    let connector = IrohConnector::new(spoke.clone(), hub.addr(), Duration::from_secs(10));
    let dial = tokio::spawn(async move { connector.channel().await.map(drop) });
    let conn = hub.accept().await.unwrap().await.unwrap();
    let (_send, mut recv) = conn.accept_bi().await.unwrap();
    assert_eq!(
        read_announced(&mut recv, true).await,
        expected(),
        "over iroh"
    );
    dial.await.unwrap().unwrap();

    // Over TCP: the endpoint the CLI uses for a hub on this machine.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap());
    let dial = tokio::spawn(async move { grpc_client_endpoint(&uri).unwrap().connect().await });
    let (mut tcp, _) = listener.accept().await.unwrap();
    assert_eq!(
        read_announced(&mut tcp, true).await,
        expected(),
        "over loopback TCP"
    );
    dial.abort();
    spoke.close().await;
    hub.close().await;
}

/// The hub's loopback TCP listener turns Nagle's algorithm off on every connection it accepts
/// (`helix_mesh::transport::tcp_incoming`; without it each small event waited for the ACK of
/// the one before, up to 40 ms). Read off the hub's own end of a served connection: the hub
/// runs in this process, so its socket is one of this process's file descriptors.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_hubs_tcp_listener_accepts_connections_with_nagle_off() {
    let mock = MockAnthropic::start(Reply::text(&["unused"])).await;
    let hub = TestHub::start(config_for(&mock)).await;
    let mut client = hub.client().await;
    client
        .get_hub_info(helix_mesh::pb::GetHubInfoRequest {})
        .await
        .unwrap();
    let accepted = accepted_nodelay(hub.hub().local_addr().port());
    assert!(!accepted.is_empty(), "the hub's end was not found");
    assert!(accepted.iter().all(|&on| on), "TCP_NODELAY: {accepted:?}");
    drop(client);
    hub.shutdown().await;
}

/// TCP_NODELAY of each of this process's connected TCP sockets whose local port is `port`
/// (the listening socket itself is left out).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn accepted_nodelay(port: u16) -> Vec<bool> {
    fn option(fd: i32, level: i32, name: i32) -> Option<i32> {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `value` and `len` are locals of the sizes getsockopt(2) is told; a closed or
        // reused descriptor only makes the call fail.
        let rc = unsafe { libc::getsockopt(fd, level, name, (&raw mut value).cast(), &mut len) };
        (rc == 0).then_some(value)
    }
    fn local_port(fd: i32) -> Option<u16> {
        // SAFETY: sockaddr_storage is plain data, valid when zeroed.
        let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: getsockname(2) writes at most `len` bytes into `addr`.
        let rc = unsafe { libc::getsockname(fd, (&raw mut addr).cast(), &mut len) };
        if rc != 0 || i32::from(addr.ss_family) != libc::AF_INET {
            return None;
        }
        // SAFETY: an AF_INET address is a sockaddr_in, which fits in sockaddr_storage.
        let v4 = unsafe { &*(&raw const addr).cast::<libc::sockaddr_in>() };
        Some(u16::from_be(v4.sin_port))
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if !is_socket
            || local_port(fd) != Some(port)
            || option(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN) != Some(0)
        {
            continue;
        }
        if let Some(nodelay) = option(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY) {
            found.push(nodelay != 0);
        }
    }
    found
}
