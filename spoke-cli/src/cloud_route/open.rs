//! What a device believes of the rows: the content key the hub sealed to it, and each event,
//! opened under that key as exactly the event it follows (kind `event`, the paired hub's
//! signature, this command, this seq — in the envelope's signed header and in the event
//! inside). Nothing else of the rows is trusted.

use helix_mesh::{
    cloud_payload::{CommandPayload, EventPayload},
    envelope_v2::{self, ContentHeader, ContentKey, ContentKind},
    pb,
};
use iroh::{PublicKey, SecretKey};

use super::{
    CloudRouteError, Refusal,
    row::{CommandRow, EventRow},
};

/// The command a device follows: whose signatures it accepts and what it unwrapped.
pub(super) struct Opener {
    /// The paired hub (from this device's config, never from a row).
    pub(super) hub: PublicKey,
    pub(super) command_id: String,
    pub(super) key: ContentKey,
}

/// Unwraps this device's content key for `command_id` (sealed to `device` by `hub`).
pub(super) fn unwrap_key(
    device: &SecretKey,
    hub: PublicKey,
    command_id: &str,
    envelope: &str,
) -> Result<Opener, CloudRouteError> {
    let key =
        envelope_v2::unwrap_content_key(device, &hub, command_id, envelope).map_err(|source| {
            CloudRouteError::RefusedKey {
                command_id: command_id.to_owned(),
                source,
            }
        })?;
    Ok(Opener {
        hub,
        command_id: command_id.to_owned(),
        key,
    })
}

/// The row must be for the paired hub: its events are checked against that hub's key.
pub(super) fn check_hub(
    row: &CommandRow,
    hub: &PublicKey,
    command_id: &str,
) -> Result<(), CloudRouteError> {
    if row.hub_id == hub.to_string() {
        return Ok(());
    }
    Err(CloudRouteError::OtherHub {
        command_id: command_id.to_owned(),
        row_hub: crate::render::printable(&row.hub_id.chars().take(10).collect::<String>()),
        hub: hub.fmt_short().to_string(),
    })
}

impl Opener {
    /// Opens `row`, which must be event `expected` of this command.
    pub(super) fn event(
        &self,
        row: &EventRow,
        expected: u64,
    ) -> Result<pb::CommandEvent, CloudRouteError> {
        self.open_event(row, expected)
            .map_err(|why| CloudRouteError::RefusedEvent {
                seq: expected,
                command_id: self.command_id.clone(),
                why,
            })
    }

    fn open_event(&self, row: &EventRow, expected: u64) -> Result<pb::CommandEvent, Refusal> {
        if row.seq > expected {
            return Err(Refusal::Missing { next: row.seq });
        }
        if row.seq < expected {
            return Err(Refusal::Repeated { found: row.seq });
        }
        let plaintext = envelope_v2::open_content(
            &self.key,
            &self.header(ContentKind::Event, expected),
            &row.envelope,
        )?;
        let payload = EventPayload::from_json(&plaintext)?;
        if payload.seq != expected {
            return Err(Refusal::PayloadSeq { found: payload.seq });
        }
        Ok(payload.into_event(&self.command_id)?)
    }

    /// Opens the command's prompt (content kind `prompt`, seq 0): the command as the hub
    /// accepted it. Its command id must be this one.
    pub(super) fn prompt(&self, envelope: &str) -> Result<CommandPayload, Refusal> {
        let plaintext =
            envelope_v2::open_content(&self.key, &self.header(ContentKind::Prompt, 0), envelope)?;
        let payload = CommandPayload::from_json(&plaintext)?;
        if payload.command_id != self.command_id {
            return Err(Refusal::Envelope(
                envelope_v2::EnvelopeError::WrongCommand {
                    expected: self.command_id.clone(),
                    found: payload.command_id,
                },
            ));
        }
        Ok(payload)
    }

    fn header(&self, kind: ContentKind, seq: u64) -> ContentHeader {
        ContentHeader {
            kind,
            hub: self.hub,
            context: self.command_id.clone(),
            seq,
        }
    }
}

#[cfg(test)]
mod tests;
