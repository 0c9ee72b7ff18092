//! The keeper: a background `helix` process per config dir (that is, per device key) that
//! keeps this device's iroh connection to each hub it was used for warm, so a `helix` command
//! run again within [`DEFAULT_IDLE`] skips binding an endpoint and the QUIC handshake: its
//! request leaves at once and the first output comes one round trip later, where a cold
//! command spends two or more. It works as ssh's ControlMaster does: the command talks to the
//! keeper over a Unix socket in the config dir, and the keeper splices that socket to a new
//! QUIC stream on the warm connection; the command speaks its own HTTP/2 (gRPC) end to end,
//! so the hub sees a stream of this device's connection like any other.
//!
//! Why not QUIC 0-RTT: iroh keeps TLS session tickets in memory only, so a resumption ticket
//! cannot outlive the `helix` process that got it, and 0-RTT data can be replayed.
//!
//! One endpoint per key at a time: a relay serves one client per endpoint id (a second one
//! takes over and the first stops receiving), so a command never binds its own endpoint
//! while the keeper runs. It asks the keeper to leave first ([`leave`]), and the keeper also
//! leaves when asked for a hub with other endpoint settings (`--relay-only`, another relay)
//! or when it cannot reach the hub (the command then dials, and reports, on its own).
//!
//! - A command asks for a hub (`{"hub": TICKET, "settings": HASH}` and a newline). The
//!   keeper answers `{"ok": true, "route": "direct"}` and splices, first dialing the hub if it
//!   has no live connection to it (`{"dialing": true}` meanwhile), or `{"ok": false}` as it
//!   leaves. A keeper that says nothing within [`ANSWER_WAIT`] is ignored.
//! - A command that went cold starts a keeper as it ends, with the hub to dial.
//! - The keeper leaves after [`DEFAULT_IDLE`] without a command, when its socket is removed
//!   or replaced (its config dir deleted), and on SIGTERM. It only accepts its own user
//!   (the socket is 0600 in the config dir, and the peer's uid is checked).
//! - `--no-keeper` (or `keep_warm = "0s"` in config.toml) turns it off; `--local-only` never
//!   uses it.

use std::{
    collections::HashMap,
    ffi::OsString,
    hash::{Hash, Hasher},
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use helix_mesh::{
    hub_channel::DirectChannel,
    iroh_grpc::{IrohIo, http2_channel},
    ticket::Ticket,
    transport::{ALPN_GRPC, EndpointOptions, current_route},
};
use iroh::{Endpoint, EndpointAddr, EndpointId, endpoint::Connection};
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::{UnixListener, UnixStream},
};

/// How long a keeper stays without a command.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(10 * 60);

/// How long a command waits for a keeper's first answer before it goes on its own.
pub const ANSWER_WAIT: Duration = Duration::from_millis(250);

/// How long a leaving keeper may take to close its endpoint.
const LEAVE_WAIT: Duration = Duration::from_millis(500);

/// The longest request or answer line.
const MAX_LINE: usize = 8 * 1024;

/// How often an idle keeper looks whether it should leave.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Unix socket paths are limited to 108 bytes (`sun_path`).
const MAX_SOCKET_PATH: usize = 100;

/// Where the keeper listens, and how to start one.
#[derive(Debug, Clone)]
pub struct Keeper {
    pub socket: PathBuf,
    /// A digest of the endpoint settings: a keeper serves only commands with its own.
    pub settings: String,
    /// The global flags that make a `helix` with the same endpoint settings.
    pub args: Vec<OsString>,
    pub idle: Duration,
}

impl Keeper {
    /// The keeper of the config dir `dir`, for commands with `options`. `None` when the
    /// socket path would be too long for a Unix socket.
    pub fn new(
        dir: &Path,
        options: &EndpointOptions,
        args: Vec<OsString>,
        idle: Duration,
    ) -> Option<Self> {
        let mut hasher = std::hash::DefaultHasher::new();
        format!("{options:?}").hash(&mut hasher);
        let socket = dir.join("keeper.sock");
        (socket.as_os_str().len() <= MAX_SOCKET_PATH).then(|| Self {
            socket,
            settings: format!("{:016x}", hasher.finish()),
            args,
            idle,
        })
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Request {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hub: Option<String>,
    #[serde(default)]
    settings: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    leave: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Answer {
    #[serde(default)]
    ok: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    dialing: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    route: Option<String>,
}

/// What asking the keeper gave.
#[derive(Debug)]
pub enum Asked {
    /// A channel to the hub over the keeper's warm connection, and its route now.
    Warm(DirectChannel, &'static str),
    /// No keeper (any more): the command goes on its own.
    Absent,
}

/// Asks the keeper for a channel to the hub at `addr`: at once when it holds a connection to
/// it, after its dial (within `dial_timeout`) when not. Absent when no keeper answers within
/// [`ANSWER_WAIT`], or it leaves (other settings, the hub unreachable).
pub async fn ask(keeper: &Keeper, addr: &EndpointAddr, dial_timeout: Duration) -> Asked {
    let request = Request {
        hub: Some(Ticket::Hub(addr.clone()).encode()),
        settings: keeper.settings.clone(),
        leave: false,
    };
    let Some((mut stream, mut answer)) = send(keeper, &request).await else {
        return Asked::Absent;
    };
    if answer.dialing {
        let wait = dial_timeout + ANSWER_WAIT;
        match tokio::time::timeout(wait, read_answer(&mut stream)).await {
            Ok(Some(next)) => answer = next,
            _ => return Asked::Absent,
        }
    }
    if !answer.ok {
        return Asked::Absent;
    }
    match http2_channel(stream).await {
        Ok(channel) => Asked::Warm(channel, route_name(answer.route.as_deref())),
        Err(_) => Asked::Absent,
    }
}

/// Asks a running keeper to leave, and waits until it has (its endpoint closed), so this
/// process can bind one with the same key.
pub async fn leave(keeper: &Keeper) {
    let request = Request {
        leave: true,
        ..Request::default()
    };
    if let Some((mut stream, _)) = send(keeper, &request).await {
        // The keeper closes the socket once its endpoint is closed.
        let _ = tokio::time::timeout(LEAVE_WAIT, stream.read_u8()).await;
    }
}

/// The lock a command holds shared while it has an endpoint of its own, and the keeper
/// exclusively for its life: the two never have an endpoint with one key at once.
fn lock_path(keeper: &Keeper) -> PathBuf {
    keeper.socket.with_file_name("endpoint.lock")
}

/// Before a command binds its own endpoint: asks the keeper to leave and takes the endpoint
/// lock (shared: commands may run side by side), retrying for up to [`LEAVE_WAIT`] twice
/// while a keeper that is starting holds it. The lock is held until the file is dropped
/// (at the latest, when the process exits).
pub async fn own_endpoint(keeper: &Keeper) -> Option<std::fs::File> {
    let deadline = Instant::now() + LEAVE_WAIT * 2;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path(keeper))
        .ok()?;
    loop {
        leave(keeper).await;
        match file.try_lock_shared() {
            Ok(()) => return Some(file),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(_) => return None,
        }
    }
}

/// Sends `request` and reads the first answer, within [`ANSWER_WAIT`].
async fn send(keeper: &Keeper, request: &Request) -> Option<(UnixStream, Answer)> {
    let attempt = async {
        let mut stream = UnixStream::connect(&keeper.socket).await.ok()?;
        let mut line = serde_json::to_string(request).ok()?;
        line.push('\n');
        stream.write_all(line.as_bytes()).await.ok()?;
        let answer = read_answer(&mut stream).await?;
        Some((stream, answer))
    };
    tokio::time::timeout(ANSWER_WAIT, attempt)
        .await
        .ok()
        .flatten()
}

async fn read_answer(stream: &mut UnixStream) -> Option<Answer> {
    let line = read_line(stream).await.ok()?;
    serde_json::from_str(&line).ok()
}

/// Starts a keeper in the background that dials `addr` at once; it outlives this process.
pub fn start(keeper: &Keeper, addr: &EndpointAddr) {
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(&keeper.args)
        .arg("keeper")
        .arg("--hub")
        .arg(Ticket::Hub(addr.clone()).encode())
        .arg("--idle")
        .arg(humantime::format_duration(keeper.idle).to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: a Ctrl-C at this terminal is not for it.
        .process_group(0);
    match cmd.spawn() {
        // Reaped if it ends while this process still runs; otherwise init adopts it.
        Ok(mut child) => drop(tokio::spawn(async move { child.wait().await })),
        Err(error) => tracing::debug!(%error, "could not start the keeper"),
    }
}

/// Runs the keeper until it is idle for its `idle`, its socket goes, it is asked to leave,
/// or SIGTERM. Another keeper already answering there means this one is not needed: it
/// leaves at once.
///
/// The socket is bound before the endpoint (`endpoint` binds it): a command that starts
/// meanwhile waits for this keeper rather than binding a second endpoint with the same key.
pub async fn serve(
    keeper: &Keeper,
    endpoint: impl std::future::Future<Output = std::io::Result<Endpoint>>,
    dial_timeout: Duration,
    pre_dial: Vec<EndpointAddr>,
) -> std::io::Result<()> {
    // Wait until no command holds an endpoint of this key.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path(keeper))?;
    let locking = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock));
    let _lock = match tokio::time::timeout(keeper.idle, locking).await {
        Ok(Ok(Ok(lock))) => lock,
        Ok(Ok(Err(e))) => return Err(e),
        _ => return Ok(()),
    };
    let socket = &keeper.socket;
    if UnixStream::connect(socket).await.is_ok() {
        return Ok(());
    }
    // A socket file nobody answers on is a dead keeper's.
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    let ours = std::fs::metadata(socket)?;
    let endpoint = match endpoint.await {
        Ok(endpoint) => endpoint,
        Err(e) => {
            let _ = std::fs::remove_file(socket);
            return Err(e);
        }
    };
    let state = Arc::new(State {
        endpoint,
        dial_timeout,
        settings: keeper.settings.clone(),
        conns: Mutex::new(HashMap::new()),
        active: AtomicUsize::new(0),
        last_used: Mutex::new(Instant::now()),
        leave: tokio::sync::Notify::new(),
        leaving: Mutex::new(Vec::new()),
    });
    for addr in pre_dial {
        let state = state.clone();
        tokio::spawn(async move { state.connection(&addr).await });
    }
    let mut check = tokio::time::interval(CHECK_EVERY);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                match stream.peer_cred() {
                    Ok(cred) if cred.uid() == ours.uid() => {
                        let state = state.clone();
                        tokio::spawn(async move { state.answer(stream).await });
                    }
                    _ => tracing::warn!("keeper: refused a connection from another user"),
                }
            }
            _ = check.tick() => {
                let replaced = std::fs::metadata(socket)
                    .map(|now| now.ino() != ours.ino() || now.dev() != ours.dev())
                    .unwrap_or(true);
                if replaced {
                    break;
                }
                if state.idle_for() >= keeper.idle {
                    break;
                }
            }
            _ = state.leave.notified() => break,
            _ = term.recv() => break,
        }
    }
    // No new command finds this keeper; then the endpoint goes, then those who asked it to
    // leave hear that it has.
    if std::fs::metadata(socket).is_ok_and(|now| now.ino() == ours.ino()) {
        let _ = std::fs::remove_file(socket);
    }
    drop(listener);
    let _ = tokio::time::timeout(LEAVE_WAIT, state.endpoint.close()).await;
    if let Ok(mut waiting) = state.leaving.lock() {
        waiting.clear();
    }
    Ok(())
}

/// A hub's connection, once dialed (empty while the first dial is under way, or after one
/// failed).
type Slot = Arc<tokio::sync::OnceCell<Connection>>;

/// The keeper's connections.
#[derive(Debug)]
struct State {
    endpoint: Endpoint,
    dial_timeout: Duration,
    settings: String,
    /// One slot per hub: commands asking while it is dialed wait for that one dial (the
    /// map's lock is held only to find or replace a slot, never across a dial).
    conns: Mutex<HashMap<EndpointId, Slot>>,
    /// Commands being spliced now.
    active: AtomicUsize,
    last_used: Mutex<Instant>,
    leave: tokio::sync::Notify,
    /// The sockets of commands waiting for this keeper to be gone (closed when it is).
    leaving: Mutex<Vec<UnixStream>>,
}

impl State {
    /// How long no command has used the keeper (zero while one does).
    fn idle_for(&self) -> Duration {
        if self.active.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        self.last_used
            .lock()
            .map(|at| at.elapsed())
            .unwrap_or_default()
    }

    fn touch(&self) {
        if let Ok(mut at) = self.last_used.lock() {
            *at = Instant::now();
        }
    }

    /// The live connection to the hub `id`, if there is one now.
    fn live(&self, id: &EndpointId) -> Option<Connection> {
        let conns = self.conns.lock().ok()?;
        conns
            .get(id)
            .and_then(|slot| slot.get())
            .filter(|conn| conn.close_reason().is_none())
            .cloned()
    }

    /// The live connection to the hub at `addr`, dialing it (within the dial timeout) if
    /// there is none; a dial already under way is joined, not repeated.
    async fn connection(&self, addr: &EndpointAddr) -> Option<Connection> {
        let slot = {
            let mut conns = self.conns.lock().ok()?;
            let slot = conns.entry(addr.id).or_default();
            if slot.get().is_some_and(|conn| conn.close_reason().is_some()) {
                *slot = Slot::default();
            }
            slot.clone()
        };
        let dial = || async {
            let dial = self.endpoint.connect(addr.clone(), ALPN_GRPC);
            match tokio::time::timeout(self.dial_timeout, dial).await {
                Ok(Ok(conn)) => Ok(conn),
                Ok(Err(error)) => {
                    tracing::debug!(%error, "keeper: dialing the hub failed");
                    Err(())
                }
                Err(_) => Err(()),
            }
        };
        slot.get_or_try_init(dial).await.ok().cloned()
    }

    /// Leaves, telling `stream`'s command once it has.
    fn leave_then_tell(&self, stream: UnixStream) {
        if let Ok(mut waiting) = self.leaving.lock() {
            waiting.push(stream);
        }
        self.leave.notify_one();
    }

    /// Answers one command: splices it to a new stream of the connection to its hub, or
    /// leaves (it asked, its settings differ, or the hub cannot be reached).
    async fn answer(self: Arc<Self>, mut stream: UnixStream) {
        self.touch();
        let Ok(Ok(line)) = tokio::time::timeout(ANSWER_WAIT * 4, read_line(&mut stream)).await
        else {
            return;
        };
        let Ok(request) = serde_json::from_str::<Request>(&line) else {
            return;
        };
        let hub = request
            .hub
            .as_deref()
            .and_then(|t| Ticket::decode(t).ok())
            .map(|t| t.addr().clone());
        let Some(addr) = hub.filter(|_| !request.leave && request.settings == self.settings) else {
            let _ = reply(&mut stream, &Answer::default()).await;
            self.leave_then_tell(stream);
            return;
        };
        let conn = match self.live(&addr.id) {
            Some(conn) => conn,
            None => {
                let dialing = Answer {
                    dialing: true,
                    ..Answer::default()
                };
                if reply(&mut stream, &dialing).await.is_err() {
                    return;
                }
                match self.connection(&addr).await {
                    Some(conn) => conn,
                    None => {
                        let _ = reply(&mut stream, &Answer::default()).await;
                        self.leave_then_tell(stream);
                        return;
                    }
                }
            }
        };
        let Ok((send, recv)) = conn.open_bi().await else {
            let _ = reply(&mut stream, &Answer::default()).await;
            self.leave_then_tell(stream);
            return;
        };
        let answer = Answer {
            ok: true,
            dialing: false,
            route: current_route(&conn).map(|r| r.name().to_owned()),
        };
        if reply(&mut stream, &answer).await.is_err() {
            return;
        }
        self.active.fetch_add(1, Ordering::Relaxed);
        let mut hub = IrohIo::new(send, recv, &conn);
        if let Err(error) = tokio::io::copy_bidirectional(&mut stream, &mut hub).await {
            tracing::debug!(%error, "keeper: a spliced command ended with an error");
        }
        self.active.fetch_sub(1, Ordering::Relaxed);
        self.touch();
    }
}

async fn reply(stream: &mut UnixStream, answer: &Answer) -> std::io::Result<()> {
    let mut line = serde_json::to_string(answer).map_err(std::io::Error::other)?;
    line.push('\n');
    stream.write_all(line.as_bytes()).await
}

/// One line, read a byte at a time so nothing after it is consumed (the HTTP/2 bytes that
/// follow belong to the caller).
async fn read_line(stream: &mut (impl AsyncRead + Unpin)) -> std::io::Result<String> {
    let mut line = Vec::new();
    loop {
        let byte = stream.read_u8().await?;
        if byte == b'\n' {
            break;
        }
        if line.len() == MAX_LINE {
            return Err(std::io::Error::other("line too long"));
        }
        line.push(byte);
    }
    String::from_utf8(line).map_err(std::io::Error::other)
}

/// The route name an answer carries, as the CLI prints routes.
fn route_name(route: Option<&str>) -> &'static str {
    match route {
        Some("direct") => "direct",
        Some("iroh-relay") => "iroh-relay",
        _ => crate::client::ROUTE_IROH,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_socket_per_config_dir_and_a_digest_per_set_of_settings() {
        let dir = Path::new("/tmp/helix-test");
        let plain = EndpointOptions::default();
        let relay_only = EndpointOptions {
            ip_transports: false,
            ..EndpointOptions::default()
        };
        let a = Keeper::new(dir, &plain, vec![], DEFAULT_IDLE).unwrap();
        let b = Keeper::new(dir, &relay_only, vec![], DEFAULT_IDLE).unwrap();
        assert_eq!(a.socket, dir.join("keeper.sock"));
        assert_eq!(a.socket, b.socket);
        assert_ne!(a.settings, b.settings);
        let again = Keeper::new(dir, &plain, vec![], DEFAULT_IDLE).unwrap();
        assert_eq!(a.settings, again.settings);
        let deep = Path::new("/tmp").join("d".repeat(90));
        assert!(Keeper::new(&deep, &plain, vec![], DEFAULT_IDLE).is_none());
    }

    #[tokio::test]
    async fn a_line_is_read_without_what_follows_it_and_bounded() {
        let (mut a, mut b) = tokio::io::duplex(64 * 1024);
        a.write_all(b"{\"ok\":true}\nPRI * HTTP/2.0").await.unwrap();
        assert_eq!(read_line(&mut b).await.unwrap(), "{\"ok\":true}");
        let mut rest = [0u8; 3];
        b.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"PRI");
        a.write_all(&vec![b'x'; MAX_LINE + 1]).await.unwrap();
        assert!(read_line(&mut b).await.is_err());
    }

    #[tokio::test]
    async fn nobody_listening_a_silent_keeper_and_a_leaving_one_are_all_absent() {
        let dir = tempfile::tempdir().unwrap();
        let keeper = Keeper::new(
            dir.path(),
            &EndpointOptions::default(),
            vec![],
            DEFAULT_IDLE,
        )
        .unwrap();
        let addr = EndpointAddr::new(iroh::SecretKey::generate().public());
        let wait = Duration::from_secs(1);
        assert!(matches!(ask(&keeper, &addr, wait).await, Asked::Absent));

        // A listener that never answers is absent too, after the wait.
        let silent = UnixListener::bind(&keeper.socket).unwrap();
        let started = Instant::now();
        assert!(matches!(ask(&keeper, &addr, wait).await, Asked::Absent));
        assert!(started.elapsed() >= ANSWER_WAIT);
        drop(silent);
        std::fs::remove_file(&keeper.socket).unwrap();

        // One that dials and then gives up: the command is told after the dial.
        let listener = UnixListener::bind(&keeper.socket).unwrap();
        let answering = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let line = read_line(&mut stream).await.unwrap();
            let request: Request = serde_json::from_str(&line).unwrap();
            let dialing = Answer {
                dialing: true,
                ..Answer::default()
            };
            reply(&mut stream, &dialing).await.unwrap();
            tokio::time::sleep(ANSWER_WAIT * 2).await;
            reply(&mut stream, &Answer::default()).await.unwrap();
            request
        });
        let started = Instant::now();
        assert!(matches!(ask(&keeper, &addr, wait).await, Asked::Absent));
        assert!(started.elapsed() >= ANSWER_WAIT * 2);
        let request = answering.await.unwrap();
        let hub = request.hub.unwrap();
        assert_eq!(Ticket::decode(&hub).unwrap().addr().id, addr.id);
        assert_eq!(request.settings, keeper.settings);
        assert!(!request.leave);
    }
}
