//! Reaching a hub: on this machine through its data dir (loopback TCP + bearer token), or
//! anywhere by its key over iroh QUIC (direct or through a relay), as a paired device.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use helix_discovery::local::{self, AddBearer, LocalHub, LocalHubError};
use helix_mesh::{
    hub_channel::HubChannel,
    iroh_grpc::{DialError, IrohConnector},
    pb::remote_execution_client::RemoteExecutionClient,
    ticket::{BadTicket, Ticket},
    transport::{EndpointError, EndpointOptions, bind_endpoint, current_route},
};
use iroh::{Endpoint, EndpointAddr, EndpointId, endpoint::Connection};
use tokio::sync::OnceCell;
use tonic::service::interceptor::InterceptedService;

use crate::{
    config::{ConfigError, KnownHub, SpokeConfig},
    keeper::{self, Asked, Keeper},
    render::Printer,
};

/// How long `helix` lets the endpoint close before it exits anyway (the close frames are sent
/// by then; their acknowledgement is not waited for).
pub const CLOSE_GRACE: Duration = Duration::from_millis(50);

/// The route name of the loopback TCP listener.
pub const ROUTE_LOCAL: &str = "local";

/// The route name of an iroh connection in a moment when none of its paths is selected.
pub const ROUTE_IROH: &str = "iroh";

pub type HubClient = RemoteExecutionClient<InterceptedService<HubChannel, AddBearer>>;

/// Which hub `--hub` names could not be decided.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    #[error(
        "no hub to talk to: none runs on this machine (start one with `helix-hub serve`) and none is paired (pair with `helix pair TICKET`, the ticket comes from `helix-hub pair`)"
    )]
    NoHub,
    #[error("several hubs are known ({}): choose one with --hub NAME", .0.join(", "))]
    SeveralHubs(Vec<String>),
    #[error(transparent)]
    Ticket(#[from] BadTicket),
    #[error(
        "unknown hub {hub:?}: known hubs are [{}] (see `helix hubs`); or pass a ticket or a hub id",
        known.join(", ")
    )]
    UnknownHub { hub: String, known: Vec<String> },
    /// The known-hubs file could not be read.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// This device's iroh endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    /// This device's key could not be read or created.
    #[error(transparent)]
    Key(ConfigError),
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
}

/// Connecting to a hub failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    #[error(transparent)]
    Bind(#[from] BindError),
    /// Over iroh; [`DialError::Refused`] when the hub refuses this device.
    #[error(transparent)]
    Dial(#[from] DialError),
    /// The hub on this machine could not be found through its data dir.
    #[error(transparent)]
    LocalHub(#[from] LocalHubError),
    /// The hub on this machine did not answer.
    #[error(transparent)]
    LocalDial(#[from] local::DialError),
}

impl ConnectError {
    /// The hub refuses this device (not paired, revoked): trying again will not help.
    pub fn refused_by_hub(&self) -> bool {
        matches!(self, ConnectError::Dial(DialError::Refused(_)))
    }

    /// The hub could not be reached (as opposed to refusing this device, or a problem on this
    /// device such as its key): another route may get through.
    pub fn hub_unreachable(&self) -> bool {
        !matches!(
            self,
            ConnectError::Bind(BindError::Key(_)) | ConnectError::Dial(DialError::Refused(_))
        )
    }
}

/// Finding or connecting to the hub `--hub` names failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReachError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
}

/// The hub answered a call with an error status. The text is the status's message (or its
/// code when it has none).
#[derive(Debug, thiserror::Error)]
#[error("{}", status_text(.0))]
pub struct HubStatus(#[source] pub tonic::Status);

fn status_text(status: &tonic::Status) -> String {
    if status.message().is_empty() {
        format!("{:?}", status.code())
    } else {
        status.message().to_owned()
    }
}

impl From<tonic::Status> for HubStatus {
    fn from(status: tonic::Status) -> Self {
        Self(status)
    }
}

/// Which hub to talk to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A hub on this machine, by data dir.
    Local(PathBuf),
    /// A hub by key (and addresses) over iroh; `label` is how the CLI names it.
    Remote { label: String, addr: EndpointAddr },
}

/// Everything the CLI needs to reach hubs; binds its iroh endpoint on first use.
#[derive(Debug)]
pub struct Spoke {
    pub config: SpokeConfig,
    /// The hub data dir given by `--hub-dir`/`HELIX_HUB_DIR`, if any.
    pub hub_dir: Option<PathBuf>,
    pub options: EndpointOptions,
    pub dial_timeout: Duration,
    /// How long a command followed through the cloud route may go without news from the hub.
    pub cloud_silence: Duration,
    /// The keeper to ask for warm connections (and start after a cold one), if it is on.
    keeper: Option<Keeper>,
    /// The hub this command dialed itself, for the keeper to dial when it ends.
    cold_hub: std::sync::Mutex<Option<EndpointAddr>>,
    /// Held while this process has an endpoint, so no keeper binds one with the same key.
    endpoint_lock: std::sync::Mutex<Option<std::fs::File>>,
    endpoint: OnceCell<Endpoint>,
}

/// A connected hub.
#[derive(Debug, Clone)]
pub struct Connected {
    pub client: HubClient,
    pub link: Link,
    /// When the connection came up: route changes are timed from here.
    pub connected_at: Instant,
    /// The route at that moment (what `connected to hub … (route …)` says); the route may
    /// change later ([`crate::route_watch`]).
    pub route_at_connect: &'static str,
}

#[derive(Debug, Clone)]
pub enum Link {
    Local(Box<LocalHub>),
    Iroh {
        conn: Connection,
        hub_id: EndpointId,
    },
    /// A stream of the keeper's warm connection ([`crate::keeper`]), on the route it had when
    /// the keeper answered.
    Keeper {
        hub_id: EndpointId,
        route: &'static str,
    },
}

impl Link {
    /// `local`, `direct` or `iroh-relay`: what carries the calls right now ([`ROUTE_IROH`] in
    /// a moment when no path is selected).
    pub fn route(&self) -> &'static str {
        match self {
            Link::Local(_) => ROUTE_LOCAL,
            Link::Iroh { conn, .. } => current_route(conn).map_or(ROUTE_IROH, |r| r.name()),
            Link::Keeper { route, .. } => route,
        }
    }
}

impl Connected {
    /// A connection that came up just now.
    fn new(client: HubClient, link: Link) -> Self {
        Self {
            client,
            route_at_connect: link.route(),
            link,
            connected_at: Instant::now(),
        }
    }

    /// `local`, `direct` or `iroh-relay`: what carries the calls right now.
    pub fn route(&self) -> &'static str {
        self.link.route()
    }

    /// The hub's id, when known from the transport.
    pub fn hub_label(&self) -> String {
        match &self.link {
            Link::Local(hub) => hub.info.grpc_addr.to_string(),
            Link::Iroh { hub_id, .. } | Link::Keeper { hub_id, .. } => {
                hub_id.fmt_short().to_string()
            }
        }
    }
}

impl Spoke {
    pub fn new(
        config: SpokeConfig,
        hub_dir: Option<PathBuf>,
        options: EndpointOptions,
        dial_timeout: Duration,
        cloud_silence: Duration,
    ) -> Self {
        Self {
            config,
            hub_dir,
            options,
            dial_timeout,
            cloud_silence,
            keeper: None,
            cold_hub: Default::default(),
            endpoint_lock: Default::default(),
            endpoint: OnceCell::new(),
        }
    }

    /// This spoke, asking `keeper` for warm connections.
    pub fn with_keeper(self, keeper: Option<Keeper>) -> Self {
        Self { keeper, ..self }
    }

    /// The keeper, when it is on.
    pub fn keeper(&self) -> Option<&Keeper> {
        self.keeper.as_ref()
    }

    /// This device's iroh endpoint (bound once).
    pub async fn endpoint(&self) -> Result<&Endpoint, BindError> {
        self.endpoint
            .get_or_try_init(|| async {
                // One endpoint per key: a relay serves only the newest.
                if let Some(keeper) = &self.keeper
                    && let Some(lock) = keeper::own_endpoint(keeper).await
                    && let Ok(mut held) = self.endpoint_lock.lock()
                {
                    *held = Some(lock);
                }
                let secret = self.config.secret_key().map_err(BindError::Key)?;
                // Signed in to the cloud: hub keys also resolve through presence rows.
                let lookup = match helix_discovery::cloud::Cloud::in_dir(self.config.path())
                    .rest()
                    .await
                {
                    Ok(Some((rest, _))) => Some(helix_discovery::lookup::PresenceLookup::new(rest)),
                    Ok(None) => None,
                    Err(error) => {
                        tracing::warn!(%error, "cloud address lookup unavailable");
                        None
                    }
                };
                let hooks = lookup.map(
                    |lookup| -> Box<
                        dyn FnOnce(iroh::endpoint::Builder) -> iroh::endpoint::Builder + Send,
                    > {
                        Box::new(move |builder| builder.address_lookup(lookup))
                    },
                );
                Ok(bind_endpoint(&self.options, secret, Vec::new(), hooks).await?)
            })
            .await
    }

    /// Closes the iroh endpoint (if it was bound), so the hub sees the connections end now
    /// rather than at their idle timeout. The close frames go out at once; iroh then waits
    /// for the hub to acknowledge them (a round trip, more through a relay), which nobody at
    /// this terminal needs: after [`CLOSE_GRACE`] the process leaves the endpoint to the OS as
    /// it exits, rather than drop it mid-close (iroh logs that as an ungraceful abort).
    /// A command that dialed a hub itself then starts the keeper, to hold the connection for
    /// the next one.
    pub async fn close(&self) {
        let Some(endpoint) = self.endpoint.get() else {
            return;
        };
        let closing = endpoint.clone();
        let close = tokio::spawn(async move { closing.close().await });
        if tokio::time::timeout(CLOSE_GRACE, close).await.is_err() {
            // The process is about to exit: the spawned close, and this clone, must not drop
            // the endpoint's last handle before it does.
            std::mem::forget(endpoint.clone());
        }
        let cold = self.cold_hub.lock().ok().and_then(|mut hub| hub.take());
        if let (Some(keeper), Some(hub)) = (&self.keeper, cold) {
            keeper::start(keeper, &hub);
        }
    }

    /// Which hub `--hub` names; without it, the hub on this machine, else the only known hub.
    pub fn resolve(&self, hub: Option<&str>) -> Result<Target, ResolveError> {
        let Some(hub) = hub else {
            let dir = self.hub_dir.clone().unwrap_or_else(local::default_hub_dir);
            if self.hub_dir.is_some() || local::is_running(&dir) {
                return Ok(Target::Local(dir));
            }
            let known = self.known_hubs()?;
            // A hub.json a crashed hub left, and no paired hub to use instead: say so.
            if known.is_empty() && dir.join(local::RUNTIME_FILE).exists() {
                return Ok(Target::Local(dir));
            }
            return match known.len() {
                1 => {
                    let (name, hub) = known.into_iter().next().ok_or(ResolveError::NoHub)?;
                    Ok(Target::Remote {
                        label: name,
                        addr: hub.addr,
                    })
                }
                0 => Err(ResolveError::NoHub),
                _ => Err(ResolveError::SeveralHubs(known.into_keys().collect())),
            };
        };
        if hub.starts_with(helix_mesh::ticket::HUB_PREFIX)
            || hub.starts_with(helix_mesh::ticket::PAIR_PREFIX)
        {
            let ticket = Ticket::decode(hub)?;
            let addr = ticket.addr().clone();
            return Ok(Target::Remote {
                label: addr.id.fmt_short().to_string(),
                addr,
            });
        }
        let known = self.known_hubs()?;
        if let Some(found) = known.get(hub) {
            return Ok(Target::Remote {
                label: hub.to_owned(),
                addr: found.addr.clone(),
            });
        }
        if let Ok(id) = hub.parse::<EndpointId>() {
            let addr = known
                .values()
                .find(|k| k.hub_id == id)
                .map(|k| k.addr.clone())
                .unwrap_or_else(|| EndpointAddr::new(id));
            return Ok(Target::Remote {
                label: id.fmt_short().to_string(),
                addr,
            });
        }
        Err(ResolveError::UnknownHub {
            hub: hub.to_owned(),
            known: known.into_keys().collect(),
        })
    }

    fn known_hubs(&self) -> Result<std::collections::BTreeMap<String, KnownHub>, ConfigError> {
        Ok(self.config.hubs()?.hubs)
    }

    /// Connects to the hub `--hub` names (see [`Spoke::resolve`]), saying nothing.
    pub async fn connect_quietly(&self, hub: Option<&str>) -> Result<Connected, ReachError> {
        let target = self.resolve(hub)?;
        Ok(self.connect(&target).await?)
    }

    /// Connects to `target` and says so (with the route) on stderr.
    pub async fn connect_with_progress(
        &self,
        target: &Target,
        printer: &mut Printer,
    ) -> Result<Connected, ConnectError> {
        match target {
            Target::Local(dir) => {
                printer.progress(&format!("connecting to the hub ({})…", dir.display()))
            }
            Target::Remote { label, .. } => {
                printer.progress(&format!("connecting to hub {label}…"))
            }
        }
        let conn = self.connect(target).await?;
        if let Target::Remote { label, .. } = target {
            let warm = if matches!(conn.link, Link::Keeper { .. }) {
                ", kept warm"
            } else {
                ""
            };
            printer.progress(&format!(
                "connected to hub {label} (route {}{warm})",
                conn.route_at_connect
            ));
        }
        Ok(conn)
    }

    /// Connects to `target`.
    pub async fn connect(&self, target: &Target) -> Result<Connected, ConnectError> {
        match target {
            Target::Local(dir) => connect_local(dir).await,
            Target::Remote { addr, .. } => {
                if let Some(keeper) = &self.keeper
                    && let Asked::Warm(channel, route) =
                        keeper::ask(keeper, addr, self.dial_timeout).await
                {
                    return Ok(Connected::new(
                        hub_client(HubChannel::from(channel)),
                        Link::Keeper {
                            hub_id: addr.id,
                            route,
                        },
                    ));
                }
                let endpoint = self.endpoint().await?.clone();
                let connector = IrohConnector::new(endpoint, addr.clone(), self.dial_timeout);
                let channel = connector.channel().await?;
                let conn = connector.connection().await?;
                if let Ok(mut cold) = self.cold_hub.lock() {
                    // For the next command: a keeper is started as this one ends.
                    *cold = Some(addr.clone());
                }
                Ok(Connected::new(
                    hub_client(HubChannel::from(channel)),
                    Link::Iroh {
                        hub_id: addr.id,
                        conn,
                    },
                ))
            }
        }
    }
}

/// A paired device's client on `channel` (the hub knows it by its key: no bearer).
fn hub_client(channel: HubChannel) -> HubClient {
    RemoteExecutionClient::with_interceptor(channel, AddBearer::none())
        .max_decoding_message_size(helix_mesh::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(helix_mesh::MAX_MESSAGE_BYTES)
}

/// Finds the hub through its data dir and dials it.
pub async fn connect_local(dir: &std::path::Path) -> Result<Connected, ConnectError> {
    let hub = LocalHub::find(dir)?;
    let (channel, bearer) = hub.dial().await?;
    let client = RemoteExecutionClient::with_interceptor(HubChannel::from(channel), bearer)
        .max_decoding_message_size(helix_mesh::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(helix_mesh::MAX_MESSAGE_BYTES);
    Ok(Connected::new(client, Link::Local(Box::new(hub))))
}
