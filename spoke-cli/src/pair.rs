//! `helix pair` (prove a ticket's secret over `helix/pair/1`, or through the cloud, and remember
//! the hub) and
//! `helix hubs` (the paired hubs and whether they answer now).

mod cloud;

pub use cloud::CloudPairError;

use futures::StreamExt;
use std::time::Duration;

use helix_mesh::{
    iroh_grpc::error_chain,
    pb,
    proto_ext::now_ms,
    ticket::{
        BadTicket, PairRequest, PairResponse, PairWireError, PairingSecret, Ticket,
        read_pair_message, write_pair_message,
    },
    transport::ALPN_PAIR,
};
use iroh::endpoint::{ConnectionError, VarInt};
use serde_json::json;

use crate::{
    cli::Via,
    client::{BindError, ConnectError, Connected, HubStatus, Spoke, Target},
    config::{ConfigError, KnownHub},
    exit::Exit,
    render::{Printer, printable},
};

/// Longest hub name accepted for the known-hubs file.
const MAX_HUB_NAME: usize = 64;
/// Most hubs `helix hubs` probes at once. A probe of an offline hub waits out the dial timeout,
/// so probing one after another took that long per hub; 8 at a time covers the usual handful
/// of hubs in one wait without opening an unbounded number of dials.
const PROBE_CONCURRENCY: usize = 8;

/// `helix pair` or `helix hubs` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PairError {
    #[error(transparent)]
    Ticket(#[from] BadTicket),
    #[error(
        "that is an address ticket, which grants nothing: create a pairing ticket on the hub with `helix-hub pair`"
    )]
    AddressTicket,
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("could not reach the hub to pair: no route within {0:?}")]
    NoRoute(Duration),
    #[error("could not reach the hub to pair: {}", error_chain(.0))]
    Dial(#[source] iroh::endpoint::ConnectError),
    #[error("could not reach the hub to pair: {0}")]
    Stream(#[source] ConnectionError),
    #[error("could not reach the hub to pair: {0}")]
    Exchange(#[source] PairWireError),
    #[error(
        "the hub did not answer the pairing request within {0:?}; check that it is a Helix hub and try again"
    )]
    NoAnswer(Duration),
    #[error("the hub refused to pair: {0}")]
    Refused(String),
    #[error("reading the pairing ticket: {0}")]
    TicketInput(#[from] helix_mesh::secret_input::SecretInputError),
    #[error("reading the pairing ticket from {path}: {source}")]
    TicketFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Cloud(#[from] cloud::CloudPairError),
    /// The known-hubs file could not be read or written.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Why `helix hubs` shows a paired hub as not reachable.
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("connected, but no answer within {}", humantime::format_duration(*.0))]
    NoAnswer(Duration),
    #[error(transparent)]
    Status(#[from] HubStatus),
}

/// The ticket's text: from `file`, else the argument, else (no argument or `-`) from stdin.
pub fn ticket_text(
    argument: Option<String>,
    file: Option<&std::path::Path>,
) -> Result<String, PairError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| PairError::TicketFile {
            path: path.to_owned(),
            source,
        })?;
        return Ok(text.trim().to_owned());
    }
    match argument {
        Some(ticket) if ticket != "-" => Ok(ticket),
        _ => Ok(helix_mesh::secret_input::read_secret(
            &helix_mesh::secret_input::SecretRequest {
                what: "pairing ticket",
                prompt: "Paste the pairing ticket from `helix-hub pair`, then press Enter and Ctrl-D:",
                shape: helix_mesh::secret_input::Shape::Token {
                    example: "`helix pair < ticket.txt`",
                },
            },
        )?),
    }
}

pub async fn pair(
    spoke: &Spoke,
    ticket: &str,
    names: Names,
    via: Via,
    quiet: bool,
) -> Result<Exit, PairError> {
    let mut printer = Printer::new(false, quiet);
    let (addr, secret) = match Ticket::decode(ticket)? {
        Ticket::Pair { addr, secret } => (addr, secret),
        Ticket::Hub(_) => return Err(PairError::AddressTicket),
    };
    let device_name = names.device.unwrap_or_else(|| {
        helix_discovery::local::host_name().unwrap_or_else(|| "helix-cli".to_owned())
    });
    let hub_name = match via {
        Via::Iroh => over_iroh(spoke, &addr, &secret, &device_name, &mut printer).await?,
        Via::Cloud => through_cloud(spoke, &addr, &secret, &device_name, &mut printer).await?,
        Via::Auto => match over_iroh(spoke, &addr, &secret, &device_name, &mut printer).await {
            Err(e @ (PairError::NoRoute(_) | PairError::Dial(_) | PairError::Stream(_))) => {
                let signed_in = matches!(
                    helix_discovery::cloud::Cloud::in_dir(spoke.config.path()).config(),
                    Ok(Some(_))
                );
                if !signed_in {
                    return Err(e);
                }
                printer.note(&format!("{e}; trying through the cloud"));
                through_cloud(spoke, &addr, &secret, &device_name, &mut printer).await?
            }
            other => other?,
        },
    };
    let name = names
        .hub
        .or_else(|| (!hub_name.is_empty()).then(|| hub_name.clone()))
        .unwrap_or_else(|| "hub".to_owned());
    let name: String = name
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_HUB_NAME)
        .collect();
    spoke.config.save_hub(
        &name,
        KnownHub {
            hub_id: addr.id,
            hub_name: hub_name.clone(),
            addr: addr.clone(),
            paired_at_ms: now_ms(),
        },
    )?;
    printer.progress(&format!(
        "paired with hub {hub_name} ({}); run prompts with `helix run --hub {name} \"…\"`",
        addr.id.fmt_short()
    ));
    printer.out_line(&name);
    Ok(Exit::Ok)
}

/// The names `helix pair` was given.
#[derive(Debug, Default)]
pub struct Names {
    /// What to remember the hub by.
    pub hub: Option<String>,
    /// How this device introduces itself.
    pub device: Option<String>,
}

/// Proves the secret over `helix/pair/1`; the hub's name.
async fn over_iroh(
    spoke: &Spoke,
    addr: &iroh::EndpointAddr,
    secret: &PairingSecret,
    device_name: &str,
    printer: &mut Printer,
) -> Result<String, PairError> {
    let endpoint = spoke.endpoint().await?;
    printer.progress(&format!("pairing with hub {}…", addr.id.fmt_short()));
    let conn = tokio::time::timeout(
        spoke.dial_timeout,
        endpoint.connect(addr.clone(), ALPN_PAIR),
    )
    .await
    .map_err(|_| PairError::NoRoute(spoke.dial_timeout))?
    .map_err(PairError::Dial)?;
    let request = PairRequest {
        secret: secret.to_hex(),
        name: device_name.to_owned(),
    };
    let exchange = async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(PairError::Stream)?;
        write_pair_message(&mut send, &request)
            .await
            .map_err(PairError::Exchange)?;
        read_pair_message::<PairResponse>(&mut recv)
            .await
            .map_err(PairError::Exchange)
    };
    // The hub answers at once (a refusal after a 300 ms pause); something that takes the
    // connection and never answers is not left to hang `helix pair`.
    let answered = tokio::time::timeout(spoke.dial_timeout, exchange).await;
    let response = match answered {
        Ok(response) => response?,
        Err(_) => {
            conn.close(VarInt::from_u32(0), b"no answer");
            return Err(PairError::NoAnswer(spoke.dial_timeout));
        }
    };
    conn.close(VarInt::from_u32(0), b"paired");
    if !response.ok {
        return Err(PairError::Refused(response.error));
    }
    Ok(response.hub_name)
}

/// Asks through the cloud; the hub's name.
async fn through_cloud(
    spoke: &Spoke,
    addr: &iroh::EndpointAddr,
    secret: &PairingSecret,
    device_name: &str,
    printer: &mut Printer,
) -> Result<String, PairError> {
    let device = spoke.config.secret_key()?;
    match cloud::pair(
        spoke.config.path(),
        &device,
        addr.id,
        secret,
        device_name,
        printer,
    )
    .await?
    {
        cloud::Answer::Accepted { hub_name } => Ok(hub_name),
        cloud::Answer::Refused { reason } => Err(PairError::Refused(reason)),
    }
}

pub async fn hubs(spoke: &Spoke, json: bool) -> Result<Exit, PairError> {
    let known = spoke.config.hubs()?.hubs;
    let mut printer = Printer::new(json, false);
    // Hubs the cloud has seen online (when signed in): listed too, marked as such.
    let cloud_online: Vec<helix_discovery::presence::Presence> =
        match helix_discovery::cloud::Cloud::in_dir(spoke.config.path())
            .rest()
            .await
        {
            Ok(Some((rest, _))) => helix_discovery::presence::online(&rest)
                .await
                .unwrap_or_else(|e| {
                    printer.note(&format!("could not read presence from the cloud: {e}"));
                    Vec::new()
                }),
            Ok(None) => Vec::new(),
            Err(e) => {
                printer.note(&format!("cloud: {e}"));
                Vec::new()
            }
        };
    if known.is_empty() && cloud_online.is_empty() {
        printer.note("no paired hubs: pair with `helix pair TICKET` (the ticket comes from `helix-hub pair`)");
        return Ok(Exit::Ok);
    }
    if !json {
        printer.out_line(&format!(
            "{:<16}  {:<10}  {:<11}  {:<10}  DETAIL",
            "NAME", "HUB", "REACHABLE", "ROUTE"
        ));
    }
    let paired: Vec<String> = known.values().map(|h| h.hub_id.to_string()).collect();
    for row in cloud_online.iter().filter(|p| !paired.contains(&p.hub_id)) {
        let detail = format!(
            "online via cloud ({}), not paired with this device",
            printable(&row.hub_name)
        );
        if json {
            printer.out_line(
                &json!({"name": null, "hub_id": row.hub_id, "hub_name": row.hub_name, "reachable": null,
                        "route": null, "cloud_online": true, "detail": detail})
                .to_string(),
            );
        } else {
            let short: String = row.hub_id.chars().take(10).collect();
            printer.out_line(&format!(
                "{:<16}  {short:<10}  {:<11}  {:<10}  {detail}",
                "-", "-", "-"
            ));
        }
    }
    // Probed concurrently, printed in the known-hubs order (by name) as results come in.
    let probes = futures::stream::iter(known)
        .map(|(name, hub)| async move {
            let result = probe(spoke, &name, &hub).await;
            (name, hub, result)
        })
        .buffered(PROBE_CONCURRENCY);
    futures::pin_mut!(probes);
    while let Some((name, hub, result)) = probes.next().await {
        let cloud = cloud_online
            .iter()
            .any(|p| p.hub_id == hub.hub_id.to_string());
        // The path selected now, as the row is printed: a probe that answered early had the
        // time the slower ones took to move from the relay to a direct path, at no cost.
        let (reachable, route, detail) = match result {
            Ok((conn, version)) => (true, conn.route(), format!("version {version}")),
            Err(e) => (false, "-", e.to_string()),
        };
        if json {
            printer.out_line(
                &json!({
                    "name": name,
                    "hub_id": hub.hub_id.to_string(),
                    "hub_name": hub.hub_name,
                    "reachable": reachable,
                    "route": if reachable { Some(route) } else { None },
                    "cloud_online": cloud,
                    "detail": detail,
                })
                .to_string(),
            );
        } else {
            printer.out_line(&format!(
                "{:<16}  {:<10}  {:<11}  {:<10}  {detail}",
                name,
                hub.hub_id.fmt_short().to_string(),
                if reachable { "yes" } else { "no" },
                route
            ));
        }
    }
    Ok(Exit::Ok)
}

/// Whether a paired hub answers now: dials it (within the dial timeout) and asks for its info
/// (within the same timeout again). The connection (kept open until its row is printed) and
/// the hub's version when it does.
async fn probe(
    spoke: &Spoke,
    name: &str,
    hub: &KnownHub,
) -> Result<(Connected, String), ProbeError> {
    let target = Target::Remote {
        label: name.to_owned(),
        addr: hub.addr.clone(),
    };
    let mut conn = spoke.connect(&target).await?;
    let info = tokio::time::timeout(
        spoke.dial_timeout,
        conn.client.get_hub_info(pb::GetHubInfoRequest {}),
    )
    .await
    .map_err(|_| ProbeError::NoAnswer(spoke.dial_timeout))?
    .map_err(HubStatus)?
    .into_inner();
    Ok((conn, info.version))
}
