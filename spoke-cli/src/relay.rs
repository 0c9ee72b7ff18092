//! The spoke's side of the Supabase table relay (route `supabase`): seal the command to the
//! hub, insert the row, then read the events by seq cursor, opening each (only the hub's
//! signature is accepted), until `finished`.

use std::time::Duration;

use helix_discovery::cloud::Cloud;
use helix_mesh::{
    envelope::{self, EnvelopeKind, Header},
    pb,
    proto_ext::{ms_to_system_time, now_ms, timestamp_to_ms},
};
use iroh::PublicKey;
use prost::Message;
use serde_json::{Value, json};

use crate::{
    client::Spoke,
    exit::{CliError, Exit},
    follow::show_event,
    render::Printer,
};

/// The route name of the table relay.
pub const ROUTE_SUPABASE: &str = "supabase";
/// How often the event rows are read while a command runs.
pub const EVENT_POLL: Duration = Duration::from_millis(250);
/// How long to wait for the hub when nothing at all happens (the command's expiry also ends it).
const NOTHING_TIMEOUT: Duration = Duration::from_secs(3600);

fn cloud_error(e: impl std::fmt::Display) -> CliError {
    CliError::new(Exit::Unreachable, format!("table relay: {e}"))
}

/// Whether this device is signed in to the cloud (the relay is possible).
pub async fn available(spoke: &Spoke) -> bool {
    matches!(Cloud::in_dir(spoke.config.path()).rest().await, Ok(Some(_)))
}

async fn signed_in(spoke: &Spoke) -> Result<helix_discovery::rest::Rest, CliError> {
    Ok(Cloud::in_dir(spoke.config.path())
        .rest()
        .await
        .map_err(cloud_error)?
        .ok_or_else(|| {
            CliError::new(
                Exit::Unreachable,
                "the table relay needs the cloud: run `helix cloud login`",
            )
        })?
        .0)
}

/// Sends `request` to `hub` through the table and follows it to its end (or, with `detach`,
/// prints its id and returns).
pub async fn run(
    spoke: &Spoke,
    hub: PublicKey,
    request: pb::ExecuteRequest,
    printer: &mut Printer,
    detach: bool,
) -> Result<Exit, CliError> {
    let rest = signed_in(spoke).await?;
    let secret = spoke
        .config
        .secret_key()
        .map_err(|e| CliError::new(Exit::Failed, e.to_string()))?;
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
    let sealed =
        envelope::seal(&secret, &hub, &header, &request.encode_to_vec()).map_err(cloud_error)?;
    let expires = humantime::format_rfc3339_millis(ms_to_system_time(expires_at_ms)).to_string();
    let row = json!({
        "command_id": command_id, "source_device_id": secret.public().to_string(),
        "target_hub_id": hub.to_string(), "envelope": sealed, "expires_at": expires,
    });
    let _: Vec<Value> = rest
        .insert("remote_commands", &[row], None)
        .await
        .map_err(cloud_error)?;
    if detach {
        printer.progress(&format!(
            "sent through the cloud (route {ROUTE_SUPABASE}); follow it with `helix attach --via cloud {command_id}`"
        ));
        printer.out_line(&command_id);
        return Ok(Exit::Ok);
    }
    printer.progress(&format!(
        "sent through the cloud (route {ROUTE_SUPABASE}); waiting for the hub…"
    ));
    follow_events(&rest, &secret, hub, &command_id, 0, printer).await
}

/// Follows a relayed command's events after `after_seq` (`helix attach --via cloud`).
pub async fn attach(
    spoke: &Spoke,
    hub: PublicKey,
    command_id: &str,
    after_seq: u64,
    printer: &mut Printer,
) -> Result<Exit, CliError> {
    let rest = signed_in(spoke).await?;
    let secret = spoke
        .config
        .secret_key()
        .map_err(|e| CliError::new(Exit::Failed, e.to_string()))?;
    let known: Vec<Value> = rest
        .select(
            "remote_commands",
            &format!("command_id=eq.{command_id}&select=command_id"),
        )
        .await
        .map_err(cloud_error)?;
    if known.is_empty() {
        return Err(CliError::new(
            Exit::Refused,
            format!("no relayed command {command_id} in the cloud"),
        ));
    }
    follow_events(&rest, &secret, hub, command_id, after_seq, printer).await
}

async fn follow_events(
    rest: &helix_discovery::rest::Rest,
    secret: &iroh::SecretKey,
    hub: PublicKey,
    command_id: &str,
    after_seq: u64,
    printer: &mut Printer,
) -> Result<Exit, CliError> {
    let started = tokio::time::Instant::now();
    let mut last = after_seq;
    loop {
        let rows: Vec<Value> = rest
            .select(
                "remote_command_events",
                &format!(
                    "command_id=eq.{command_id}&seq=gt.{last}&order=seq.asc&select=seq,envelope"
                ),
            )
            .await
            .map_err(cloud_error)?;
        for row in &rows {
            let text = row["envelope"].as_str().unwrap_or_default();
            let opened = envelope::open(secret, text, now_ms(), |k| *k == hub).map_err(|e| {
                CliError::new(Exit::Failed, format!("table relay: refused an event: {e}"))
            })?;
            let event = pb::CommandEvent::decode(opened.plaintext.as_slice())
                .map_err(|e| CliError::new(Exit::Failed, format!("table relay: bad event: {e}")))?;
            if event.seq != last + 1 {
                return Err(CliError::new(
                    Exit::Failed,
                    format!("table relay: event {} after {last}", event.seq),
                ));
            }
            last = event.seq;
            if let Some(exit) = show_event(printer, &event, ROUTE_SUPABASE, false) {
                return Ok(exit);
            }
        }
        if rows.is_empty() {
            // Refused by the hub (or expired unclaimed): the row says why, with no events.
            let status: Vec<Value> = rest
                .select(
                    "remote_commands",
                    &format!("command_id=eq.{command_id}&select=status,reason,last_seq"),
                )
                .await
                .map_err(cloud_error)?;
            if let Some(s) = status.first()
                && matches!(
                    s["status"].as_str(),
                    Some("failed" | "expired" | "cancelled")
                )
                && s["last_seq"].as_u64() == Some(last)
            {
                printer.finish_output();
                let reason = s["reason"].as_str().unwrap_or("no reason given");
                printer.note(&format!(
                    "command {}: {reason}",
                    s["status"].as_str().unwrap_or("failed")
                ));
                return Ok(row_exit(s["status"].as_str().unwrap_or("failed")));
            }
            if started.elapsed() > NOTHING_TIMEOUT {
                return Err(CliError::new(
                    Exit::Unreachable,
                    "table relay: the hub never answered",
                ));
            }
            tokio::time::sleep(EVENT_POLL).await;
        }
    }
}

/// The exit code of a row that ended without a `finished` event (refused, expired unclaimed,
/// or cancelled by a device), as for the same end over iroh.
fn row_exit(status: &str) -> Exit {
    match status {
        "expired" => Exit::Expired,
        "cancelled" => Exit::Cancelled,
        _ => Exit::Failed,
    }
}
