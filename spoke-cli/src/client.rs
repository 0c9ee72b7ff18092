//! Reaching a hub: on this machine through its data dir (loopback TCP + bearer token), or
//! anywhere by its key over iroh QUIC (direct or through a relay), as a paired device.

use std::{path::PathBuf, time::Duration};

use helix_discovery::local::{AddBearer, LocalHub};
use helix_mesh::{
    hub_channel::HubChannel,
    iroh_grpc::{DialError, IrohConnector},
    pb::remote_execution_client::RemoteExecutionClient,
    ticket::Ticket,
    transport::{EndpointOptions, bind_endpoint, current_route},
};
use iroh::{Endpoint, EndpointAddr, EndpointId, endpoint::Connection};
use tokio::sync::OnceCell;
use tonic::service::interceptor::InterceptedService;

use crate::{
    config::SpokeConfig,
    exit::{CliError, Exit},
    render::Printer,
};

/// How long closing the iroh endpoint may delay the exit (a clean close takes milliseconds;
/// an abandoned dial would otherwise hold it for its whole timeout).
const CLOSE_TIMEOUT: Duration = Duration::from_millis(500);

/// The route name of the loopback TCP listener.
pub const ROUTE_LOCAL: &str = "local";

pub type HubClient = RemoteExecutionClient<InterceptedService<HubChannel, AddBearer>>;

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
    endpoint: OnceCell<Endpoint>,
}

/// A connected hub.
#[derive(Debug, Clone)]
pub struct Connected {
    pub client: HubClient,
    pub link: Link,
}

#[derive(Debug, Clone)]
pub enum Link {
    Local(Box<LocalHub>),
    Iroh {
        conn: Connection,
        hub_id: EndpointId,
    },
}

impl Connected {
    /// `local`, `direct` or `iroh-relay`: what carries the calls right now.
    pub fn route(&self) -> &'static str {
        match &self.link {
            Link::Local(_) => ROUTE_LOCAL,
            Link::Iroh { conn, .. } => current_route(conn).map_or("iroh", |r| r.name()),
        }
    }

    /// The hub's id, when known from the transport.
    pub fn hub_label(&self) -> String {
        match &self.link {
            Link::Local(hub) => hub.info.grpc_addr.to_string(),
            Link::Iroh { hub_id, .. } => hub_id.fmt_short().to_string(),
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
            endpoint: OnceCell::new(),
        }
    }

    /// This device's iroh endpoint (bound once).
    pub async fn endpoint(&self) -> Result<&Endpoint, CliError> {
        self.endpoint
            .get_or_try_init(|| async {
                let secret = self
                    .config
                    .secret_key()
                    .map_err(|e| CliError::new(Exit::Failed, e.to_string()))?;
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
                bind_endpoint(&self.options, secret, Vec::new(), hooks)
                    .await
                    .map_err(|e| CliError::new(Exit::Unreachable, e.to_string()))
            })
            .await
    }

    /// Closes the iroh endpoint (if it was bound), so the hub sees the connections end now
    /// rather than at their idle timeout.
    pub async fn close(&self) {
        if let Some(endpoint) = self.endpoint.get() {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, endpoint.close()).await;
        }
    }

    /// Which hub `--hub` names; without it, the hub on this machine, else the only known hub.
    pub fn resolve(&self, hub: Option<&str>) -> Result<Target, CliError> {
        let Some(hub) = hub else {
            let dir = self
                .hub_dir
                .clone()
                .unwrap_or_else(helix_discovery::local::default_hub_dir);
            if self.hub_dir.is_some() || dir.join(helix_discovery::local::RUNTIME_FILE).exists() {
                return Ok(Target::Local(dir));
            }
            let known = self.known_hubs()?;
            return match known.len() {
                1 => {
                    let (name, hub) = known.into_iter().next().ok_or_else(no_hub)?;
                    Ok(Target::Remote {
                        label: name,
                        addr: hub.addr,
                    })
                }
                0 => Err(no_hub()),
                _ => Err(CliError::new(
                    Exit::Usage,
                    format!(
                        "several hubs are known ({}): choose one with --hub NAME",
                        known.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                )),
            };
        };
        if hub.starts_with(helix_mesh::ticket::HUB_PREFIX)
            || hub.starts_with(helix_mesh::ticket::PAIR_PREFIX)
        {
            let ticket =
                Ticket::decode(hub).map_err(|e| CliError::new(Exit::Usage, e.to_string()))?;
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
        Err(CliError::new(
            Exit::Usage,
            format!(
                "unknown hub {hub:?}: known hubs are [{}] (see `helix hubs`); or pass a ticket or a hub id",
                known.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        ))
    }

    fn known_hubs(
        &self,
    ) -> Result<std::collections::BTreeMap<String, crate::config::KnownHub>, CliError> {
        self.config
            .hubs()
            .map(|f| f.hubs)
            .map_err(|e| CliError::new(Exit::Failed, e.to_string()))
    }

    /// Connects to the hub `--hub` names (see [`Spoke::resolve`]), saying nothing.
    pub async fn connect_quietly(&self, hub: Option<&str>) -> Result<Connected, CliError> {
        let target = self.resolve(hub)?;
        self.connect(&target).await
    }

    /// Connects to `target` and says so (with the route) on stderr.
    pub async fn connect_with_progress(
        &self,
        target: &Target,
        printer: &mut Printer,
    ) -> Result<Connected, CliError> {
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
            printer.progress(&format!(
                "connected to hub {label} (route {})",
                conn.route()
            ));
        }
        Ok(conn)
    }

    /// Connects to `target`.
    pub async fn connect(&self, target: &Target) -> Result<Connected, CliError> {
        match target {
            Target::Local(dir) => connect_local(dir).await,
            Target::Remote { addr, .. } => {
                let endpoint = self.endpoint().await?.clone();
                let connector = IrohConnector::new(endpoint, addr.clone(), self.dial_timeout);
                let channel = connector.channel().await.map_err(|e| match e {
                    DialError::Refused(reason) => CliError::new(Exit::Refused, reason),
                    other => CliError::new(Exit::Unreachable, other.to_string()),
                })?;
                let conn = connector
                    .connection()
                    .await
                    .map_err(|e| CliError::new(Exit::Unreachable, e.to_string()))?;
                let client = RemoteExecutionClient::with_interceptor(
                    HubChannel::from(channel),
                    AddBearer::none(),
                )
                .max_decoding_message_size(helix_mesh::MAX_MESSAGE_BYTES)
                .max_encoding_message_size(helix_mesh::MAX_MESSAGE_BYTES);
                Ok(Connected {
                    client,
                    link: Link::Iroh {
                        hub_id: addr.id,
                        conn,
                    },
                })
            }
        }
    }
}

fn no_hub() -> CliError {
    CliError::new(
        Exit::Unreachable,
        "no hub to talk to: none runs on this machine (start one with `helix-hub serve`) and none is paired (pair with `helix pair TICKET`, the ticket comes from `helix-hub pair`)",
    )
}

/// Finds the hub through its data dir and dials it.
pub async fn connect_local(dir: &std::path::Path) -> Result<Connected, CliError> {
    let hub = LocalHub::find(dir).map_err(|e| CliError::new(Exit::Unreachable, e.to_string()))?;
    let (channel, bearer) = hub
        .dial()
        .await
        .map_err(|e| CliError::new(Exit::Unreachable, e.to_string()))?;
    let client = RemoteExecutionClient::with_interceptor(HubChannel::from(channel), bearer)
        .max_decoding_message_size(helix_mesh::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(helix_mesh::MAX_MESSAGE_BYTES);
    Ok(Connected {
        client,
        link: Link::Local(Box::new(hub)),
    })
}
