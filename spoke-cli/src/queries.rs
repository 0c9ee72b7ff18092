//! The `helix` subcommands that read commands: `show` (one) and `ls` (a page, newest first).

use helix_mesh::pb::{self, CommandStatus};

use crate::{
    cli::{LsArgs, Via},
    client::{HubStatus, ReachError, Spoke, Target},
    cloud_route::{self, CloudRouteError},
    exit::Exit,
    render::{Printer, command_json, provider_name, status_name, time_text},
};

/// `helix show` or `helix ls` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    #[error(transparent)]
    Reach(#[from] ReachError),
    /// The hub answered with an error.
    #[error(transparent)]
    Status(#[from] HubStatus),
    #[error("--via cloud needs --hub")]
    ViaCloudWithoutHub,
    #[error(transparent)]
    Cloud(#[from] CloudRouteError),
}

pub async fn show(
    spoke: &Spoke,
    hub: Option<&str>,
    id: String,
    json: bool,
    via: Via,
) -> Result<Exit, QueryError> {
    let command = if via == Via::Cloud {
        let Target::Remote { addr, .. } = spoke.resolve(hub).map_err(ReachError::from)? else {
            return Err(QueryError::ViaCloudWithoutHub);
        };
        cloud_route::show(spoke, addr.id, &id).await?
    } else {
        let mut conn = spoke.connect_quietly(hub).await?;
        conn.client
            .get_command(pb::GetCommandRequest { command_id: id })
            .await
            .map_err(HubStatus)?
            .into_inner()
    };
    let mut printer = Printer::new(json, false);
    if json {
        printer.out_line(&command_json(&command).to_string());
        return Ok(Exit::Ok);
    }
    printer.out(&describe_command(&command));
    Ok(Exit::Ok)
}

/// The text form of `helix show`.
pub fn describe_command(c: &pb::Command) -> String {
    let mut s = String::new();
    let line = |s: &mut String, k: &str, v: &str| s.push_str(&format!("{k:<10}{v}\n"));
    line(&mut s, "command", &c.command_id);
    let status = status_name(c.status);
    match &c.result {
        Some(r) => line(
            &mut s,
            "status",
            &format!("{status} after {} attempt(s)", r.attempts),
        ),
        None => line(&mut s, "status", status),
    }
    line(&mut s, "provider", provider_name(c.provider));
    line(&mut s, "agent", &c.agent_id);
    line(&mut s, "session", &c.session_id);
    if let Some(model) = &c.model {
        line(&mut s, "model", model);
    }
    line(&mut s, "device", &c.source_device_id);
    if let Some(t) = &c.created_at {
        line(&mut s, "created", &time_text(t));
    }
    if let Some(t) = c.result.as_ref().and_then(|r| r.executed_at.as_ref()) {
        line(&mut s, "executed", &time_text(t));
    }
    if let Some(t) = &c.expires_at {
        line(&mut s, "expires", &time_text(t));
    }
    if let Some(r) = &c.result
        && !r.error.is_empty()
    {
        line(&mut s, "error", &r.error);
    }
    line(&mut s, "prompt", &one_line(&c.content, 200));
    if let Some(r) = &c.result {
        s.push_str("--- output ---\n");
        s.push_str(&r.output);
        if !r.output.ends_with('\n') {
            s.push('\n');
        }
    }
    s
}

pub async fn ls(spoke: &Spoke, hub: Option<&str>, args: LsArgs) -> Result<Exit, QueryError> {
    let status = args.status.map(CommandStatus::from);
    let commands = if args.via == Via::Cloud {
        let Target::Remote { addr, .. } = spoke.resolve(hub).map_err(ReachError::from)? else {
            return Err(QueryError::ViaCloudWithoutHub);
        };
        let filter = cloud_route::ListFilter {
            status,
            session: args.session,
            limit: args.limit,
        };
        cloud_route::list(spoke, addr.id, &filter).await?
    } else {
        let mut conn = spoke.connect_quietly(hub).await?;
        conn.client
            .list_commands(pb::ListCommandsRequest {
                page_size: args.limit,
                page_token: String::new(),
                status: status.unwrap_or(CommandStatus::Unspecified) as i32,
                session_id: args.session.unwrap_or_default(),
            })
            .await
            .map_err(HubStatus)?
            .into_inner()
            .commands
            .into_iter()
            .map(|c| (c, cloud_route::Prompt::Open))
            .collect()
    };
    let mut printer = Printer::new(args.json, false);
    if args.json {
        for (c, _) in &commands {
            printer.out_line(&command_json(c).to_string());
        }
        return Ok(Exit::Ok);
    }
    if commands.is_empty() {
        printer.note("no commands");
        return Ok(Exit::Ok);
    }
    printer.out_line(&format!(
        "{:<36}  {:<9}  {:<13}  {:<24}  PROMPT",
        "ID", "STATUS", "PROVIDER", "CREATED"
    ));
    for (c, prompt) in &commands {
        let prompt = match prompt {
            cloud_route::Prompt::Open => one_line(&c.content, 48),
            cloud_route::Prompt::NotPublished => "(not yet with the hub)".to_owned(),
            cloud_route::Prompt::Sealed => "(sealed: no key on this device)".to_owned(),
        };
        printer.out_line(&format!(
            "{:<36}  {:<9}  {:<13}  {:<24}  {prompt}",
            c.command_id,
            status_name(c.status),
            provider_name(c.provider),
            c.created_at.as_ref().map(time_text).unwrap_or_default(),
        ));
    }
    Ok(Exit::Ok)
}

/// The first `max` characters of `s` on one line.
fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.trim();
    if flat.chars().count() <= max {
        return flat.to_owned();
    }
    let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use helix_mesh::{pb::Provider, proto_ext::ms_to_timestamp};

    use super::*;

    #[test]
    fn show_text_snapshot() {
        let c = pb::Command {
            command_id: "0b9f7a52-6a3c-4f3e-9c55-3f1c0d2e8a11".into(),
            agent_id: "main".into(),
            provider: Provider::Anthropic as i32,
            content: "Say\nhello".into(),
            session_id: "s1".into(),
            source_device_id: "local".into(),
            created_at: Some(ms_to_timestamp(1_700_000_000_000)),
            expires_at: Some(ms_to_timestamp(1_700_003_600_000)),
            status: CommandStatus::Failed as i32,
            result: Some(pb::CommandResult {
                status: pb::ResultStatus::Error as i32,
                output: "Hel".into(),
                executed_at: Some(ms_to_timestamp(1_700_000_000_500)),
                error: "anthropic: overloaded_error: Overloaded".into(),
                attempts: 1,
            }),
            ..Default::default()
        };
        insta::assert_snapshot!(describe_command(&c), @r"
        command   0b9f7a52-6a3c-4f3e-9c55-3f1c0d2e8a11
        status    failed after 1 attempt(s)
        provider  anthropic
        agent     main
        session   s1
        device    local
        created   2023-11-14T22:13:20.000Z
        executed  2023-11-14T22:13:20.500Z
        expires   2023-11-14T23:13:20.000Z
        error     anthropic: overloaded_error: Overloaded
        prompt    Say hello
        --- output ---
        Hel
        ");
    }

    #[test]
    fn one_line_truncates_on_characters() {
        assert_eq!(one_line("héllo\nworld", 5), "héll…");
        assert_eq!(one_line("  ok ", 5), "ok");
    }
}
