//! `helix sessions --via cloud`: sessions as the cloud's history shows them, for a device that
//! reaches the hub only through the cloud. The session of a command is inside its sealed
//! prompt, so the newest commands (at most 500) are listed and opened here, grouped by
//! session; a session's turns are its ended commands, each read like `helix show --via cloud`.

use std::collections::BTreeMap;

use helix_mesh::{
    pb::{self, CommandStatus},
    proto_ext::session_title,
};
use iroh::PublicKey;

use crate::{
    client::Spoke,
    cloud_route::{self, CloudRouteError, ListFilter, MAX_LIST, Prompt},
};

/// The ended commands this device can read, oldest first.
async fn ended(
    spoke: &Spoke,
    hub: PublicKey,
    session: Option<String>,
) -> Result<Vec<pb::Command>, CloudRouteError> {
    let filter = ListFilter {
        status: None,
        session,
        limit: MAX_LIST,
    };
    let mut commands: Vec<pb::Command> = cloud_route::list(spoke, hub, &filter)
        .await?
        .into_iter()
        .filter(|(c, prompt)| {
            *prompt == Prompt::Open
                && CommandStatus::try_from(c.status).is_ok_and(|s| s.is_terminal())
        })
        .map(|(c, _)| c)
        .collect();
    commands.reverse();
    Ok(commands)
}

/// The sessions of the hub's newest commands, the most recently active first.
pub async fn list(
    spoke: &Spoke,
    hub: PublicKey,
) -> Result<Vec<pb::SessionSummary>, CloudRouteError> {
    let mut by_session: BTreeMap<String, Vec<pb::Command>> = BTreeMap::new();
    for c in ended(spoke, hub, None).await? {
        by_session.entry(c.session_id.clone()).or_default().push(c);
    }
    let mut sessions: Vec<(prost_types::Timestamp, pb::SessionSummary)> = by_session
        .into_iter()
        // As the hub lists them: named sessions, and unnamed ones a later command continued.
        .filter(|(id, turns)| turns.len() > 1 || turns.iter().any(|c| c.command_id != *id))
        .filter_map(|(id, turns)| {
            let first = turns.first()?;
            let last = turns.last()?;
            let at = last.created_at.unwrap_or_default();
            Some((
                at,
                pb::SessionSummary {
                    session_id: id,
                    title: session_title(&first.content),
                    turns: u32::try_from(turns.len()).unwrap_or(u32::MAX),
                    last_activity: Some(at),
                    provider: last.provider,
                },
            ))
        })
        .collect();
    sessions.sort_by_key(|(at, _)| std::cmp::Reverse((at.seconds, at.nanos)));
    Ok(sessions.into_iter().map(|(_, s)| s).collect())
}

/// One session's turns, oldest first, each command read (and checked) from the cloud.
pub async fn session(
    spoke: &Spoke,
    hub: PublicKey,
    id: &str,
) -> Result<pb::Session, CloudRouteError> {
    let commands = ended(spoke, hub, Some(id.to_owned())).await?;
    if commands.is_empty() {
        return Err(CloudRouteError::NoSession(id.to_owned()));
    }
    let mut turns = Vec::with_capacity(commands.len());
    for c in commands {
        let read = cloud_route::show(spoke, hub, &c.command_id).await?;
        let result = read.result.unwrap_or_default();
        let completed = read.status == CommandStatus::Completed as i32;
        turns.push(pb::SessionTurn {
            command_id: read.command_id,
            prompt: read.content,
            answer: if completed {
                result.output
            } else {
                String::new()
            },
            status: read.status,
            error: result.error,
            provider: read.provider,
            model: read.model.unwrap_or_default(),
            source_device_id: read.source_device_id,
            finished_at: read.created_at,
        });
    }
    Ok(pb::Session {
        session_id: id.to_owned(),
        total_turns: u32::try_from(turns.len()).unwrap_or(u32::MAX),
        turns,
    })
}
