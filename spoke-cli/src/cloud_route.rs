//! The spoke's side of the cloud route (route `cloud`: the Supabase tables): seal the command
//! to the hub, insert the row, then read the events by seq cursor, opening each (only the hub's
//! signature is accepted), until `finished`.
//!
//! Cancelling goes through the row: `complete_remote_command` with `cancelled` (the hub
//! notices and cancels the command in its executor). The first Ctrl-C while following does
//! that and keeps following until the row or the command ends; a second leaves at once.

mod follow;

use std::time::Duration;

use helix_discovery::cloud::{Cloud, CloudError};
use helix_discovery::rest::{Rest, RestError};
use helix_mesh::{
    envelope::{self, EnvelopeError, EnvelopeKind, Header},
    pb,
    proto_ext::{ms_to_system_time, now_ms, timestamp_to_ms},
};
use iroh::PublicKey;
use prost::Message;
use serde_json::{Value, json};
use tokio::signal::unix::{Signal, SignalKind, signal};

use self::follow::Follow;
use crate::{client::Spoke, config::ConfigError, exit::Exit, follow::Until, render::Printer};

/// Events read per request: a page of envelopes stays well under the REST client's
/// `MAX_RESPONSE_BYTES` (an event envelope is at most 2 MiB), and a long answer is read in
/// several requests instead of one unbounded one.
const EVENT_PAGE: usize = 32;

/// The route name of the cloud route.
pub const ROUTE_CLOUD: &str = "cloud";
/// How often the event rows are read while a command runs.
pub const EVENT_POLL: Duration = Duration::from_millis(250);
/// The row's reason when this device's Ctrl-C cancels a command sent through the cloud.
pub const CTRL_C_REASON: &str = "cancelled with Ctrl-C on the device";
/// The row's reason when `helix cancel` cancels a command sent through the cloud.
pub const CANCEL_REASON: &str = "cancelled with `helix cancel`";

/// Sending, following or cancelling a command through the cloud route failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CloudRouteError {
    /// The cloud settings or session could not be read or refreshed.
    #[error("cloud route: {0}")]
    Cloud(#[from] CloudError),
    #[error("the cloud route needs the cloud: run `helix cloud login`")]
    SignedOut,
    /// A table read or write failed.
    #[error("cloud route: {0}")]
    Rest(#[from] RestError),
    #[error("cloud route: {0}")]
    Seal(#[source] EnvelopeError),
    /// This device's key could not be read or created.
    #[error(transparent)]
    Key(ConfigError),
    #[error("installing the Ctrl-C handler: {0}")]
    CtrlC(#[source] std::io::Error),
    #[error("no relayed command {0} in the cloud")]
    UnknownCommand(String),
    #[error("command_id: {0:?} is not a UUID")]
    NotAUuid(String),
    #[error("cloud route: event {seq} after {last}")]
    OutOfOrder { seq: u64, last: u64 },
    #[error("cloud route: refused an event: {0}")]
    RefusedEvent(#[source] EnvelopeError),
    #[error(
        "cloud route: refused event {seq} of {command_id}: {why} (spliced into this command's rows in the cloud; nothing of it was printed)"
    )]
    Spliced {
        seq: u64,
        command_id: String,
        why: String,
    },
    #[error("cloud route: bad event: {0}")]
    BadEvent(#[source] prost::DecodeError),
    #[error(
        "cloud route: nothing from the hub for {} (--cloud-silence); the command may still run (follow it again with `helix attach --via cloud {command_id}`)",
        humantime::format_duration(*silence)
    )]
    Silent {
        silence: Duration,
        command_id: String,
    },
}

/// Whether this device is signed in to the cloud (the cloud route is possible).
pub async fn available(spoke: &Spoke) -> bool {
    matches!(Cloud::in_dir(spoke.config.path()).rest().await, Ok(Some(_)))
}

async fn signed_in(spoke: &Spoke) -> Result<Rest, CloudRouteError> {
    Ok(Cloud::in_dir(spoke.config.path())
        .rest()
        .await?
        .ok_or(CloudRouteError::SignedOut)?
        .0)
}

/// Sends `request` to `hub` through the table and follows it to its end (or, with
/// [`Until::Accepted`], prints its id and returns).
pub async fn run(
    spoke: &Spoke,
    hub: PublicKey,
    request: pb::ExecuteRequest,
    printer: &mut Printer,
    until: Until,
) -> Result<Exit, CloudRouteError> {
    let rest = signed_in(spoke).await?;
    let secret = spoke.config.secret_key().map_err(CloudRouteError::Key)?;
    // Before the row exists, so a Ctrl-C from then on cancels it rather than killing `helix`.
    let interrupts = match until {
        Until::Accepted => None,
        Until::Finished => Some(interrupts()?),
    };
    let expires_at_ms = request
        .expires_at
        .as_ref()
        .map(timestamp_to_ms)
        .unwrap_or_else(|| now_ms() + 3_600_000);
    let command_id = request.command_id.clone();
    let header = Header {
        kind: EnvelopeKind::Command,
        context: command_id.clone(),
        seq: 0,
        expires_at_ms,
    };
    let sealed = envelope::seal(&secret, &hub, &header, &request.encode_to_vec())
        .map_err(CloudRouteError::Seal)?;
    let expires = humantime::format_rfc3339_millis(ms_to_system_time(expires_at_ms)).to_string();
    let row = json!({
        "command_id": command_id, "source_device_id": secret.public().to_string(),
        "target_hub_id": hub.to_string(), "envelope": sealed, "expires_at": expires,
    });
    let _: Vec<Value> = rest.insert("remote_commands", &[row], None).await?;
    if until == Until::Accepted {
        printer.progress(&format!(
            "sent through the cloud (route {ROUTE_CLOUD}); follow it with `helix attach --via cloud {command_id}`"
        ));
        printer.out_line(&command_id);
        return Ok(Exit::Ok);
    }
    printer.progress(&format!(
        "sent through the cloud (route {ROUTE_CLOUD}); waiting for the hub…"
    ));
    let Some(interrupts) = interrupts else {
        return Ok(Exit::Ok);
    };
    let follow = Follow {
        rest: &rest,
        secret: &secret,
        hub,
        command_id: &command_id,
        interrupts,
        cancel_requested: false,
        silence: spoke.cloud_silence,
    };
    follow.events(0, printer).await
}

/// Follows the events of a command sent through the cloud after `after_seq` (`helix attach
/// --via cloud`).
pub async fn attach(
    spoke: &Spoke,
    hub: PublicKey,
    command_id: &str,
    after_seq: u64,
    printer: &mut Printer,
) -> Result<Exit, CloudRouteError> {
    let rest = signed_in(spoke).await?;
    let secret = spoke.config.secret_key().map_err(CloudRouteError::Key)?;
    let known: Vec<Value> = rest
        .select(
            "remote_commands",
            &format!("command_id=eq.{command_id}&select=command_id"),
        )
        .await?;
    if known.is_empty() {
        return Err(CloudRouteError::UnknownCommand(command_id.to_owned()));
    }
    let follow = Follow {
        rest: &rest,
        secret: &secret,
        hub,
        command_id,
        interrupts: interrupts()?,
        cancel_requested: false,
        silence: spoke.cloud_silence,
    };
    follow.events(after_seq, printer).await
}

fn interrupts() -> Result<Signal, CloudRouteError> {
    signal(SignalKind::interrupt()).map_err(CloudRouteError::CtrlC)
}

/// `helix cancel` through the cloud: completes the row `cancelled`. Prints the status the
/// command has now (stdout) as the iroh route does.
pub async fn cancel(
    spoke: &Spoke,
    command_id: &str,
    printer: &mut Printer,
) -> Result<Exit, CloudRouteError> {
    let rest = signed_in(spoke).await?;
    match cancel_row(&rest, command_id, CANCEL_REASON).await? {
        Cancelled::Now { claimed: false } => printer.progress(&format!(
            "cancelled {command_id} in the cloud before the hub claimed it"
        )),
        Cancelled::Now { claimed: true } => printer.progress(&format!(
            "cancelled {command_id} in the cloud; the hub stops it when it notices"
        )),
        Cancelled::Already(status) => {
            printer.note(&format!(
                "{command_id} ended {status} before the cancel reached it"
            ));
            printer.out_line(&status);
            return Ok(Exit::Ok);
        }
    }
    printer.out_line("cancelled");
    Ok(Exit::Ok)
}

/// What completing a row `cancelled` found.
enum Cancelled {
    /// The row is `cancelled` now; whether a hub had claimed it.
    Now { claimed: bool },
    /// It had already ended with this status.
    Already(String),
}

async fn cancel_row(
    rest: &Rest,
    command_id: &str,
    reason: &str,
) -> Result<Cancelled, CloudRouteError> {
    let args = json!({"p_command_id": command_id, "p_status": "cancelled", "p_reason": reason});
    match rest.rpc::<Value>("complete_remote_command", &args).await {
        Ok(row) => Ok(Cancelled::Now {
            claimed: !row["claimed_at"].is_null(),
        }),
        // `command <id> already ended <status>`.
        Err(e) if e.code() == Some("55000") => {
            let rows: Vec<Value> = rest
                .select(
                    "remote_commands",
                    &format!("command_id=eq.{command_id}&select=status"),
                )
                .await?;
            let status = rows.first().and_then(|r| r["status"].as_str());
            Ok(Cancelled::Already(status.unwrap_or("already").to_owned()))
        }
        Err(e) if e.code() == Some("P0002") => {
            Err(CloudRouteError::UnknownCommand(command_id.to_owned()))
        }
        // Not a UUID (invalid_text_representation).
        Err(e @ RestError::Api { .. }) if e.code() == Some("22P02") => {
            Err(CloudRouteError::NotAUuid(command_id.to_owned()))
        }
        Err(e) => Err(e.into()),
    }
}
