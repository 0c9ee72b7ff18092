//! `helix show --via cloud`: one command of the hub as the cloud has it, for any paired device.
//! The prompt and the output are what the hub sealed under the command's content key (opened
//! and checked as when following); the status and a row-only ending's reason are the row's.

use helix_mesh::{
    cloud_payload::CommandPayload,
    pb::{self, CommandStatus, ResultStatus, command_event::Kind},
    proto_ext::{ms_to_timestamp, system_time_to_ms},
};
use iroh::PublicKey;
use serde::Deserialize;

use super::{
    CloudRouteError, command_id,
    open::{check_hub, unwrap_key},
    row::{self, COMMANDS, CommandRow},
    signed_in,
};
use crate::{client::Spoke, render::printable};

/// What `show` reads of the row besides [`CommandRow`].
#[derive(Deserialize)]
struct Extra {
    #[serde(default)]
    source_device_id: String,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    expires_at: Option<String>,
}

/// The command `command_id` of `hub`, read from the cloud.
pub async fn show(
    spoke: &Spoke,
    hub: PublicKey,
    command_id_text: &str,
) -> Result<pb::Command, CloudRouteError> {
    let id = command_id(command_id_text)?;
    let rest = signed_in(spoke).await?;
    let secret = spoke.config.secret_key().map_err(CloudRouteError::Key)?;
    let query = format!(
        "command_id=eq.{id}&select=status,reason,last_seq,hub_id,prompt,source_device_id,created_at,expires_at"
    );
    let rows: Vec<serde_json::Value> = rest.select(COMMANDS, &query).await?;
    let value = rows
        .into_iter()
        .next()
        .ok_or_else(|| CloudRouteError::UnknownCommand(id.clone()))?;
    let parse = |e: serde_json::Error| {
        CloudRouteError::Rest(helix_discovery::rest::RestError::Decode {
            what: format!("reading {COMMANDS}"),
            message: e.to_string(),
        })
    };
    let row: CommandRow = serde_json::from_value(value.clone()).map_err(parse)?;
    let extra: Extra = serde_json::from_value(value).map_err(parse)?;
    check_hub(&row, &hub, &id)?;
    let status = row
        .status
        .parse::<CommandStatus>()
        .unwrap_or(CommandStatus::Unspecified);
    let mut command = pb::Command {
        command_id: id.clone(),
        source_device_id: printable(&extra.source_device_id),
        created_at: extra.created_at.as_deref().and_then(row_time),
        expires_at: extra.expires_at.as_deref().and_then(row_time),
        status: status as i32,
        last_seq: row.last_seq,
        ..Default::default()
    };
    let Some(prompt) = &row.prompt else {
        // Not published (still waiting, or ended before the hub ran it): the row is all there is.
        if let Some(reason) = &row.reason {
            command.result = Some(pb::CommandResult {
                status: ResultStatus::Error as i32,
                error: printable(reason),
                ..Default::default()
            });
        }
        return Ok(command);
    };
    let device = secret.public().to_string();
    let envelope = row::key(&rest, &id, &device)
        .await?
        .ok_or_else(|| CloudRouteError::NoKey {
            command_id: id.clone(),
        })?;
    let opener = unwrap_key(&secret, hub, &id, &envelope)?;
    let payload = opener
        .prompt(prompt)
        .map_err(|why| CloudRouteError::RefusedPrompt {
            command_id: id.clone(),
            why,
        })?;
    fill_from_prompt(&mut command, payload);
    let mut result = pb::CommandResult::default();
    let mut last = 0;
    loop {
        let page = row::events(&rest, &id, last).await?;
        for stored in &page {
            let event = opener.event(stored, last + 1)?;
            last = event.seq;
            match event.kind {
                Some(Kind::Output(o)) => result.output.push_str(&o.text),
                Some(Kind::Started(s)) => result.attempts = s.attempt,
                Some(Kind::Finished(f)) => {
                    result.status = if f.status == CommandStatus::Completed as i32 {
                        ResultStatus::Success
                    } else {
                        ResultStatus::Error
                    } as i32;
                    result.error = f.error;
                    result.attempts = f.attempts;
                    result.executed_at = f.executed_at;
                }
                _ => {}
            }
        }
        if page.is_empty() {
            break;
        }
    }
    if result.error.is_empty()
        && result.status != ResultStatus::Success as i32
        && let Some(reason) = &row.reason
    {
        result.error = printable(reason);
    }
    command.result = Some(result);
    Ok(command)
}

/// The command as the hub accepted it.
pub(super) fn fill_from_prompt(command: &mut pb::Command, payload: CommandPayload) {
    let source = payload.source_device_id.clone();
    if let Ok(request) = payload.into_request() {
        command.agent_id = request.agent_id;
        command.provider = request.provider;
        command.content = request.content;
        command.session_id = request.session_id;
        command.channel_id = request.channel_id;
        command.model = request.model;
        command.created_at = request.created_at.or(command.created_at.take());
        command.expires_at = request.expires_at.or(command.expires_at.take());
        if let Some(source) = source {
            command.source_device_id = source;
        }
    }
}

/// A `timestamptz` as PostgREST writes it in UTC (`2026-12-03T10:00:00.123456+00:00`).
pub(super) fn row_time(text: &str) -> Option<prost_types::Timestamp> {
    let utc = text.strip_suffix("+00:00").unwrap_or(text);
    let utc = utc.strip_suffix('Z').unwrap_or(utc);
    humantime::parse_rfc3339_weak(utc)
        .ok()
        .map(|t| ms_to_timestamp(system_time_to_ms(t)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_times_in_utc_are_read() {
        let t = row_time("2023-11-14T22:13:20.5+00:00").unwrap();
        assert_eq!((t.seconds, t.nanos), (1_700_000_000, 500_000_000));
        assert_eq!(
            row_time("2023-11-14T22:13:20Z").unwrap().seconds,
            1_700_000_000
        );
        assert!(row_time("yesterday").is_none());
    }
}
