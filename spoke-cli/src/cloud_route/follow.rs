//! Following one command sent through the cloud: read its event rows by seq cursor, open each
//! (bound to this command and seq, signed by the hub), print them, until `finished` or the row
//! ends.

use std::time::Duration;

use helix_discovery::rest::Rest;
use helix_mesh::{
    envelope::{self, EnvelopeKind},
    pb,
    proto_ext::now_ms,
};
use iroh::PublicKey;
use prost::Message;
use serde_json::Value;
use tokio::signal::unix::Signal;

use super::{CTRL_C_REASON, CloudRouteError, EVENT_PAGE, EVENT_POLL, ROUTE_CLOUD, cancel_row};
use crate::{
    exit::Exit,
    follow::show_event,
    render::{Printer, printable},
};

/// Following one command sent through the cloud.
pub(super) struct Follow<'a> {
    pub(super) rest: &'a Rest,
    pub(super) secret: &'a iroh::SecretKey,
    pub(super) hub: PublicKey,
    pub(super) command_id: &'a str,
    pub(super) interrupts: Signal,
    /// This device cancelled the command with Ctrl-C.
    pub(super) cancel_requested: bool,
    /// How long to wait while nothing new comes from the hub, counted from the last event
    /// (the command's expiry also ends it): a long answer that keeps streaming is followed to
    /// its end.
    pub(super) silence: Duration,
}

impl Follow<'_> {
    /// Prints the events after `after_seq` until the command or its row ends.
    pub(super) async fn events(
        mut self,
        after_seq: u64,
        printer: &mut Printer,
    ) -> Result<Exit, CloudRouteError> {
        let command_id = self.command_id;
        let mut heard = tokio::time::Instant::now();
        let mut last = after_seq;
        loop {
            let query = format!(
                "command_id=eq.{command_id}&seq=gt.{last}&order=seq.asc&select=seq,envelope&limit={EVENT_PAGE}"
            );
            let read = tokio::select! {
                _ = self.interrupts.recv() => {
                    if let Some(exit) = self.interrupted(printer).await {
                        return Ok(exit);
                    }
                    continue;
                }
                read = self.rest.select::<Value>("remote_command_events", &query) => read,
            };
            let rows = read?;
            for row in &rows {
                let event = self.open(row, last + 1)?;
                last = event.seq;
                if let Some(exit) = show_event(printer, &event, ROUTE_CLOUD, self.cancel_requested)
                {
                    return Ok(exit);
                }
            }
            if !rows.is_empty() {
                heard = tokio::time::Instant::now();
                continue;
            }
            // Refused by the hub, expired unclaimed, or cancelled: the row says why, and no
            // event is left to read.
            let status: Vec<Value> = self
                .rest
                .select(
                    "remote_commands",
                    &format!("command_id=eq.{command_id}&select=status,reason,last_seq"),
                )
                .await?;
            if let Some(s) = status.first()
                && let Some(status @ ("failed" | "expired" | "cancelled")) = s["status"].as_str()
                && s["last_seq"].as_u64() == Some(last)
            {
                printer.finish_output();
                let reason = s["reason"].as_str().unwrap_or("no reason given");
                printer.note(&format!("command {status}: {}", printable(reason)));
                return Ok(row_exit(status, self.cancel_requested));
            }
            if heard.elapsed() > self.silence {
                return Err(CloudRouteError::Silent {
                    silence: self.silence,
                    command_id: command_id.to_owned(),
                });
            }
            tokio::select! {
                _ = self.interrupts.recv() => {
                    if let Some(exit) = self.interrupted(printer).await {
                        return Ok(exit);
                    }
                }
                _ = tokio::time::sleep(EVENT_POLL) => {}
            }
        }
    }

    /// Opens one event row, which must be event `expected` of this command: only the hub's
    /// signature is accepted, and the row, the envelope's signed header and the event inside
    /// must all name this command and this seq (an event of another command, or the same
    /// event again, copied into this command's rows is refused).
    fn open(&self, row: &Value, expected: u64) -> Result<pb::CommandEvent, CloudRouteError> {
        let row_seq = row["seq"].as_u64().unwrap_or_default();
        if row_seq != expected {
            return Err(CloudRouteError::OutOfOrder {
                seq: row_seq,
                last: expected - 1,
            });
        }
        let text = row["envelope"].as_str().unwrap_or_default();
        let opened = envelope::open(self.secret, text, now_ms(), |k| *k == self.hub)
            .map_err(CloudRouteError::RefusedEvent)?;
        let event = pb::CommandEvent::decode(opened.plaintext.as_slice())
            .map_err(CloudRouteError::BadEvent)?;
        let header = &opened.header;
        let spliced = if header.kind != EnvelopeKind::Event {
            Some("it is not an event envelope".to_owned())
        } else if header.context != self.command_id || event.command_id != self.command_id {
            Some(format!(
                "it belongs to command {}",
                printable(&event.command_id)
            ))
        } else if header.seq != expected || event.seq != expected {
            Some(format!(
                "it is event {} of this command",
                header.seq.max(event.seq)
            ))
        } else {
            None
        };
        match spliced {
            Some(why) => Err(CloudRouteError::Spliced {
                seq: expected,
                command_id: self.command_id.to_owned(),
                why,
            }),
            None => Ok(event),
        }
    }

    /// Ctrl-C: the first cancels the row (and following goes on until it shows), a second
    /// leaves at once.
    async fn interrupted(&mut self, printer: &mut Printer) -> Option<Exit> {
        let command_id = self.command_id;
        if self.cancel_requested {
            printer.note("interrupted again; leaving without waiting (the command is cancelled in the cloud)");
            return Some(Exit::Interrupted);
        }
        self.cancel_requested = true;
        printer.note(&format!(
            "cancelling command {command_id} through the cloud… (Ctrl-C again to leave at once)"
        ));
        match cancel_row(self.rest, command_id, CTRL_C_REASON).await {
            // Following shows the end (or the command's own, if it ended first).
            Ok(_) => None,
            Err(e) => {
                printer.note(&format!("could not cancel through the cloud: {e}"));
                Some(Exit::Interrupted)
            }
        }
    }
}

/// The exit code of a row that ended without a `finished` event (refused, expired unclaimed,
/// or cancelled by a device), as for the same end over iroh.
fn row_exit(status: &str, cancel_requested: bool) -> Exit {
    match status {
        "expired" => Exit::Expired,
        "cancelled" if cancel_requested => Exit::Interrupted,
        "cancelled" => Exit::Cancelled,
        _ => Exit::Failed,
    }
}
