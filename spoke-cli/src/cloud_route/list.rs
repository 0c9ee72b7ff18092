//! `helix ls --via cloud`: the hub's history as the cloud holds it, the same for every paired
//! device: commands sent through the cloud by any device, and those the hub mirrored from iroh
//! or its local listener. Status and times are the rows'; the prompt is what the hub sealed
//! under each command's content key, opened with this device's key (a command published before
//! this device was paired, or after it was revoked, is listed without its prompt).

use std::collections::HashMap;

use helix_mesh::pb::{self, CommandStatus};
use iroh::PublicKey;
use serde::Deserialize;

use super::{
    CloudRouteError,
    open::unwrap_key,
    row::{COMMANDS, KEYS},
    show::{fill_from_prompt, row_time},
    signed_in,
};
use crate::{client::Spoke, render::printable};

/// Most commands one listing reads.
pub const MAX_LIST: u32 = 500;

#[derive(Deserialize)]
struct ListedRow {
    command_id: String,
    status: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    last_seq: u64,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    source_device_id: String,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    expires_at: Option<String>,
}

#[derive(Deserialize)]
struct KeyRow {
    command_id: String,
    envelope: String,
}

/// What to list.
#[derive(Debug, Default)]
pub struct ListFilter {
    pub status: Option<CommandStatus>,
    /// Sessions are inside the sealed prompt: filtered here, after opening.
    pub session: Option<String>,
    pub limit: u32,
}

/// Whether a listed command's prompt could be read here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    /// Opened: it is the command's `content`.
    Open,
    /// The hub has not published it (the command waits for the hub, or ended before it ran).
    NotPublished,
    /// Published, but this device has no key for it (paired later, or revoked), or the key or
    /// prompt did not open.
    Sealed,
}

/// The newest commands of `hub` in the cloud, newest first, with whether each one's prompt was
/// read.
pub async fn list(
    spoke: &Spoke,
    hub: PublicKey,
    filter: &ListFilter,
) -> Result<Vec<(pb::Command, Prompt)>, CloudRouteError> {
    let rest = signed_in(spoke).await?;
    let secret = spoke.config.secret_key().map_err(CloudRouteError::Key)?;
    let mut query = format!(
        "hub_id=eq.{hub}&order=created_at.desc&limit={}&select=command_id,status,reason,last_seq,prompt,source_device_id,created_at,expires_at",
        filter.limit.clamp(1, MAX_LIST)
    );
    if let Some(status) = filter.status.filter(|s| *s != CommandStatus::Unspecified) {
        query.push_str(&format!("&status=eq.{}", status.name()));
    }
    let rows: Vec<ListedRow> = rest.select(COMMANDS, &query).await?;
    let device = secret.public();
    let mut keys = HashMap::new();
    // Ids come from the rows as UUIDs; a page of 500 ids stays well inside a URL's limits.
    let ids: Vec<&str> = rows
        .iter()
        .filter(|r| r.prompt.is_some() && uuid::Uuid::parse_str(&r.command_id).is_ok())
        .map(|r| r.command_id.as_str())
        .collect();
    for chunk in ids.chunks(100) {
        let key_rows: Vec<KeyRow> = rest
            .select(
                KEYS,
                &format!(
                    "device_id=eq.{device}&command_id=in.({})&select=command_id,envelope",
                    chunk.join(",")
                ),
            )
            .await?;
        keys.extend(key_rows.into_iter().map(|k| (k.command_id, k.envelope)));
    }
    let mut commands = Vec::with_capacity(rows.len());
    for row in rows {
        let status = row
            .status
            .parse::<CommandStatus>()
            .unwrap_or(CommandStatus::Unspecified);
        let mut command = pb::Command {
            command_id: printable(&row.command_id),
            source_device_id: printable(&row.source_device_id),
            created_at: row.created_at.as_deref().and_then(row_time),
            expires_at: row.expires_at.as_deref().and_then(row_time),
            status: status as i32,
            last_seq: row.last_seq,
            ..Default::default()
        };
        let mut prompt = match row.prompt {
            None => Prompt::NotPublished,
            Some(_) => Prompt::Sealed,
        };
        if let (Some(sealed), Some(key)) = (&row.prompt, keys.get(&row.command_id))
            && let Ok(opener) = unwrap_key(&secret, hub, &row.command_id, key)
            && let Ok(payload) = opener.prompt(sealed)
        {
            fill_from_prompt(&mut command, payload);
            prompt = Prompt::Open;
        }
        if status.is_terminal()
            && let Some(reason) = &row.reason
        {
            command.result = Some(pb::CommandResult {
                error: printable(reason),
                ..Default::default()
            });
        }
        // A session filter keeps only commands whose prompt says that session.
        if filter
            .session
            .as_ref()
            .is_none_or(|s| *s == command.session_id && prompt == Prompt::Open)
        {
            commands.push((command, prompt));
        }
    }
    Ok(commands)
}
