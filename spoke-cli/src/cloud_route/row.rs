//! The rows a device reads: a command's row in `cloud_commands` (routing metadata in clear, the
//! prompt sealed), this device's key row in `cloud_command_keys`, and pages of
//! `cloud_command_events`. Everything here is as the cloud says; `open` decides what to
//! believe. Command ids reach these queries only as parsed UUIDs ([`super::command_id`]).

use helix_discovery::rest::Rest;
use serde::Deserialize;

use super::{CloudRouteError, EVENT_PAGE};

/// The commands table.
pub(super) const COMMANDS: &str = "cloud_commands";
/// The content keys table (one row per command and device).
pub(super) const KEYS: &str = "cloud_command_keys";
/// The events table.
pub(super) const EVENTS: &str = "cloud_command_events";

/// A command's row, as far as a device reads it.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct CommandRow {
    pub(super) status: String,
    #[serde(default)]
    pub(super) reason: Option<String>,
    #[serde(default)]
    pub(super) last_seq: u64,
    pub(super) hub_id: String,
    /// The prompt under the content key; set when the hub publishes the command (with the
    /// keys, in the same transaction). Only read until then.
    #[serde(default)]
    pub(super) prompt: Option<String>,
}

impl CommandRow {
    /// The row ended (the hub or a device finished it).
    pub(super) fn ended(&self) -> bool {
        !matches!(self.status.as_str(), "pending" | "executing")
    }
}

/// One stored event.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct EventRow {
    pub(super) seq: u64,
    pub(super) envelope: String,
}

/// Reads the row of `command_id` (with its prompt when `with_prompt`); `None` when the cloud has
/// no such command (or it is not this account's).
pub(super) async fn command(
    rest: &Rest,
    command_id: &str,
    with_prompt: bool,
) -> Result<Option<CommandRow>, CloudRouteError> {
    let columns = if with_prompt {
        "status,reason,last_seq,hub_id,prompt"
    } else {
        "status,reason,last_seq,hub_id"
    };
    let rows: Vec<CommandRow> = rest
        .select(
            COMMANDS,
            &format!("command_id=eq.{command_id}&select={columns}"),
        )
        .await?;
    Ok(rows.into_iter().next())
}

/// The envelope of this device's content key for `command_id`, if the hub sealed one to it.
pub(super) async fn key(
    rest: &Rest,
    command_id: &str,
    device: &str,
) -> Result<Option<String>, CloudRouteError> {
    #[derive(Deserialize)]
    struct KeyRow {
        envelope: String,
    }
    let rows: Vec<KeyRow> = rest
        .select(
            KEYS,
            &format!("command_id=eq.{command_id}&device_id=eq.{device}&select=envelope"),
        )
        .await?;
    Ok(rows.into_iter().next().map(|r| r.envelope))
}

/// The next page of events after `last`, oldest first (at most [`EVENT_PAGE`]).
pub(super) async fn events(
    rest: &Rest,
    command_id: &str,
    last: u64,
) -> Result<Vec<EventRow>, CloudRouteError> {
    Ok(rest
        .select(
            EVENTS,
            &format!(
                "command_id=eq.{command_id}&seq=gt.{last}&order=seq.asc&select=seq,envelope&limit={EVENT_PAGE}"
            ),
        )
        .await?)
}
