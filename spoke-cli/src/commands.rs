//! The `helix` subcommands.

use std::{
    io::{IsTerminal, Read},
    time::SystemTime,
};

use helix_mesh::{
    pb::{self, CommandStatus, Provider},
    proto_ext::{ms_to_timestamp, system_time_to_ms},
};
use serde_json::json;

use helix_mesh::transport::{EndpointOptions, RelayChoice};

use crate::{
    cli::{Cli, Command, LsArgs, RunArgs, Via},
    client::{Connected, Spoke, Target},
    config::{SpokeConfig, default_config_dir},
    exit::{CliError, Exit},
    follow::{Start, follow},
    render::{Printer, command_json, provider_name, status_name, time_text},
};

/// Runs one parsed command line.
pub async fn dispatch(cli: Cli) -> Result<Exit, CliError> {
    let spoke = spoke_for(&cli)?;
    let result = dispatch_with(&spoke, cli).await;
    spoke.close().await;
    result
}

async fn dispatch_with(spoke: &Spoke, cli: Cli) -> Result<Exit, CliError> {
    let quiet = cli.quiet;
    let hub = cli.hub.clone();
    match cli.command {
        Command::Run(args) => run(spoke, hub.as_deref(), args, quiet).await,
        Command::Attach {
            id,
            after_seq,
            json,
            via,
        } => {
            let mut printer = Printer::new(json, quiet);
            let target = spoke.resolve(hub.as_deref())?;
            if via == Via::Cloud {
                let Target::Remote { addr, .. } = &target else {
                    return Err(CliError::new(Exit::Usage, "--via cloud needs --hub"));
                };
                return crate::relay::attach(spoke, addr.id, &id, after_seq, &mut printer).await;
            }
            let conn = connect(spoke, &target, &mut printer).await?;
            let start = Start::Attach {
                command_id: id,
                after_seq,
            };
            follow(spoke, &target, conn, start, &mut printer, false).await
        }
        Command::Cancel { id, via } => {
            crate::cancel::cancel(spoke, hub.as_deref(), id, via, quiet).await
        }
        Command::Show { id, json } => show(spoke, hub.as_deref(), id, json).await,
        Command::Ls(args) => ls(spoke, hub.as_deref(), args).await,
        Command::Watch { json } => watch(spoke, hub.as_deref(), json, quiet).await,
        Command::Info { json } => info(spoke, hub.as_deref(), json).await,
        Command::Pair {
            ticket,
            name,
            device_name,
        } => crate::pair::pair(spoke, &ticket, name, device_name, quiet).await,
        Command::Hubs { json } => crate::pair::hubs(spoke, json).await,
        Command::Cloud { command } => {
            let cloud = helix_discovery::cloud::Cloud::in_dir(spoke.config.path());
            let lines = cloud
                .run(command, read_secret)
                .await
                .map_err(|e| CliError::new(Exit::Failed, e.to_string()))?;
            let mut printer = Printer::new(false, quiet);
            for line in lines {
                printer.out_line(&line);
            }
            Ok(Exit::Ok)
        }
        Command::Whoami => {
            let key = spoke
                .config
                .secret_key()
                .map_err(|e| CliError::new(Exit::Failed, e.to_string()))?;
            Printer::new(false, quiet).out_line(&key.public().to_string());
            Ok(Exit::Ok)
        }
    }
}

/// With `--via auto` and the cloud available: how long iroh may take before the table relay.
pub const FALLBACK_AFTER: std::time::Duration = std::time::Duration::from_secs(3);

/// The spoke context the flags describe.
fn spoke_for(cli: &Cli) -> Result<Spoke, CliError> {
    let relay = match (&cli.relay_url, cli.no_relay || cli.local_only) {
        (Some(url), _) => RelayChoice::Custom(vec![url.parse().map_err(|e| {
            CliError::new(
                Exit::Usage,
                format!("--relay-url {url:?} is not a relay URL: {e}"),
            )
        })?]),
        (None, true) => RelayChoice::Disabled,
        (None, false) => RelayChoice::N0,
    };
    let mut options = if cli.local_only {
        EndpointOptions::loopback(relay)
    } else {
        EndpointOptions {
            relay,
            mdns: !cli.no_mdns,
            // Spokes only dial out: no port mapping needed.
            portmapper: false,
            ..EndpointOptions::default()
        }
    };
    if cli.relay_only {
        options.ip_transports = false;
    }
    let config = SpokeConfig::new(cli.config_dir.clone().unwrap_or_else(default_config_dir));
    Ok(Spoke::new(
        config,
        cli.hub_dir.clone(),
        options,
        cli.connect_timeout,
    ))
}

/// Connects and says so (with the route) on stderr.
pub async fn connect(
    spoke: &Spoke,
    target: &Target,
    printer: &mut Printer,
) -> Result<Connected, CliError> {
    match target {
        Target::Local(dir) => {
            printer.progress(&format!("connecting to the hub ({})…", dir.display()))
        }
        Target::Remote { label, .. } => printer.progress(&format!("connecting to hub {label}…")),
    }
    let conn = spoke.connect(target).await?;
    if let Target::Remote { label, .. } = target {
        printer.progress(&format!(
            "connected to hub {label} (route {})",
            conn.route()
        ));
    }
    Ok(conn)
}

async fn connect_quietly(spoke: &Spoke, hub: Option<&str>) -> Result<Connected, CliError> {
    let target = spoke.resolve(hub)?;
    spoke.connect(&target).await
}

async fn run(
    spoke: &Spoke,
    hub: Option<&str>,
    args: RunArgs,
    quiet: bool,
) -> Result<Exit, CliError> {
    let content = if args.prompt == "-" {
        read_prompt_from_stdin()?
    } else {
        args.prompt.clone()
    };
    if content.trim().is_empty() {
        return Err(CliError::new(Exit::Usage, "the prompt is empty"));
    }
    let mut printer = Printer::new(args.json, quiet);
    let target = spoke.resolve(hub)?;
    let now = SystemTime::now();
    let command_id = uuid::Uuid::new_v4().to_string();
    let request = pb::ExecuteRequest {
        command_id,
        source_device_id: String::new(),
        source_user_id: String::new(),
        agent_id: args.agent.clone(),
        provider: args
            .provider
            .map(Provider::from)
            .unwrap_or(Provider::Unspecified) as i32,
        content,
        session_id: args.session.clone().unwrap_or_default(),
        channel_id: None,
        created_at: Some(ms_to_timestamp(system_time_to_ms(now))),
        expires_at: Some(ms_to_timestamp(system_time_to_ms(now + args.ttl))),
        model: args.model.clone(),
    };
    let remote_hub = match &target {
        Target::Remote { addr, .. } => Some(addr.id),
        Target::Local(_) => None,
    };
    if args.via == Via::Cloud {
        let hub = remote_hub.ok_or_else(|| {
            CliError::new(
                Exit::Usage,
                "--via cloud needs --hub (a paired hub's name, id or ticket)",
            )
        })?;
        return crate::relay::run(spoke, hub, request, &mut printer, args.detach).await;
    }
    let fallback = match remote_hub {
        Some(hub) if args.via == Via::Auto && crate::relay::available(spoke).await => Some(hub),
        _ => None,
    };
    let conn = match fallback {
        Some(hub) => {
            match tokio::time::timeout(FALLBACK_AFTER, connect(spoke, &target, &mut printer)).await
            {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) if e.exit != Exit::Unreachable => return Err(e),
                Ok(Err(_)) | Err(_) => {
                    printer.progress(&format!(
                        "no iroh route to the hub within {}s; using the table relay",
                        FALLBACK_AFTER.as_secs()
                    ));
                    return crate::relay::run(spoke, hub, request, &mut printer, args.detach).await;
                }
            }
        }
        None => connect(spoke, &target, &mut printer).await?,
    };
    follow(
        spoke,
        &target,
        conn,
        Start::Execute(Box::new(request)),
        &mut printer,
        args.detach,
    )
    .await
}

/// One secret from stdin (a prompt on stderr when it is a terminal).
fn read_secret(what: &str) -> Result<String, helix_discovery::cloud::CloudError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("helix: enter the {what}, then Enter and Ctrl-D\n").as_bytes(),
        );
    }
    let mut text = String::new();
    stdin.lock().read_to_string(&mut text).map_err(|e| {
        helix_discovery::cloud::CloudError::Usage(format!("reading the {what} from stdin: {e}"))
    })?;
    // Only the line ending goes: passwords may contain spaces.
    let secret = text.trim_end_matches(['\r', '\n']).to_owned();
    if secret.is_empty() {
        return Err(helix_discovery::cloud::CloudError::Usage(format!(
            "no {what} on stdin"
        )));
    }
    Ok(secret)
}

fn read_prompt_from_stdin() -> Result<String, CliError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"helix: type the prompt, then Ctrl-D\n",
        );
    }
    let mut text = String::new();
    stdin
        .lock()
        .read_to_string(&mut text)
        .map_err(|e| CliError::new(Exit::Usage, format!("reading the prompt from stdin: {e}")))?;
    Ok(text)
}

async fn show(spoke: &Spoke, hub: Option<&str>, id: String, json: bool) -> Result<Exit, CliError> {
    let mut conn = connect_quietly(spoke, hub).await?;
    let command = conn
        .client
        .get_command(pb::GetCommandRequest { command_id: id })
        .await
        .map_err(|s| CliError::from_status(&s))?
        .into_inner();
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

async fn ls(spoke: &Spoke, hub: Option<&str>, args: LsArgs) -> Result<Exit, CliError> {
    let mut conn = connect_quietly(spoke, hub).await?;
    let page = conn
        .client
        .list_commands(pb::ListCommandsRequest {
            page_size: args.limit,
            page_token: String::new(),
            status: args
                .status
                .map(CommandStatus::from)
                .unwrap_or(CommandStatus::Unspecified) as i32,
            session_id: args.session.unwrap_or_default(),
        })
        .await
        .map_err(|s| CliError::from_status(&s))?
        .into_inner();
    let mut printer = Printer::new(args.json, false);
    if args.json {
        for c in &page.commands {
            printer.out_line(&command_json(c).to_string());
        }
        return Ok(Exit::Ok);
    }
    if page.commands.is_empty() {
        printer.note("no commands");
        return Ok(Exit::Ok);
    }
    printer.out_line(&format!(
        "{:<36}  {:<9}  {:<13}  {:<24}  PROMPT",
        "ID", "STATUS", "PROVIDER", "CREATED"
    ));
    for c in &page.commands {
        printer.out_line(&format!(
            "{:<36}  {:<9}  {:<13}  {:<24}  {}",
            c.command_id,
            status_name(c.status),
            provider_name(c.provider),
            c.created_at.as_ref().map(time_text).unwrap_or_default(),
            one_line(&c.content, 48),
        ));
    }
    Ok(Exit::Ok)
}

async fn watch(
    spoke: &Spoke,
    hub: Option<&str>,
    json: bool,
    quiet: bool,
) -> Result<Exit, CliError> {
    let mut conn = connect_quietly(spoke, hub).await?;
    let mut stream = conn
        .client
        .watch(pb::WatchRequest {})
        .await
        .map_err(|s| CliError::from_status(&s))?
        .into_inner();
    let mut printer = Printer::new(json, quiet);
    printer.progress("watching the hub's commands (Ctrl-C to stop)");
    loop {
        let change = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(Exit::Ok),
            m = stream.message() => m,
        };
        match change {
            Ok(Some(c)) => {
                let time = c.time.as_ref().map(time_text).unwrap_or_default();
                if json {
                    printer.out_line(
                        &json!({
                            "command_id": c.command_id,
                            "status": status_name(c.status),
                            "time": time,
                            "session_id": c.session_id,
                            "provider": provider_name(c.provider),
                            "source_device_id": c.source_device_id,
                            "error": c.error,
                            "seq": c.seq,
                        })
                        .to_string(),
                    );
                } else {
                    let mut line = format!(
                        "{time}  {:<9}  {}  {}",
                        status_name(c.status),
                        c.command_id,
                        provider_name(c.provider)
                    );
                    if !c.error.is_empty() {
                        line.push_str(&format!("  {}", c.error));
                    }
                    printer.out_line(&line);
                }
            }
            Ok(None) => {
                return Err(CliError::new(Exit::Unreachable, "the hub ended the watch"));
            }
            Err(status) => return Err(CliError::from_status(&status)),
        }
    }
}

async fn info(spoke: &Spoke, hub: Option<&str>, json: bool) -> Result<Exit, CliError> {
    let mut conn = connect_quietly(spoke, hub).await?;
    let info = conn
        .client
        .get_hub_info(pb::GetHubInfoRequest {})
        .await
        .map_err(|s| CliError::from_status(&s))?
        .into_inner();
    let mut printer = Printer::new(json, false);
    let limits = info.limits.unwrap_or_default();
    if json {
        printer.out_line(
            &json!({
                "hub_id": info.hub_id,
                "version": info.version,
                "protocol_version": info.protocol_version,
                "address": conn.hub_label(),
                "route": conn.route(),
                "providers": info.providers.iter().map(|p| json!({
                    "name": p.name, "supported": p.supported,
                    "has_credential": p.has_credential, "credential_kind": p.credential_kind,
                })).collect::<Vec<_>>(),
                "max_concurrent": limits.max_concurrent,
                "queue_capacity": limits.queue_capacity,
                "max_content_bytes": limits.max_content_bytes,
            })
            .to_string(),
        );
        return Ok(Exit::Ok);
    }
    printer.out_line(&format!("hub       {}", info.hub_id));
    printer.out_line(&format!(
        "version   {} (protocol {})",
        info.version, info.protocol_version
    ));
    printer.out_line(&format!(
        "address   {} (route {})",
        conn.hub_label(),
        conn.route()
    ));
    printer.out_line(&format!(
        "limits    {} at once, {} queued, prompts up to {} bytes",
        limits.max_concurrent, limits.queue_capacity, limits.max_content_bytes
    ));
    for p in &info.providers {
        let state = match (p.supported, p.has_credential) {
            (false, _) => "not supported by this hub".to_owned(),
            (true, true) => format!("ready ({})", p.credential_kind),
            (true, false) => format!(
                "no credential: run `helix-hub login {} --api-key` on the hub",
                p.name
            ),
        };
        printer.out_line(&format!("{:<14}{state}", p.name));
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
