//! The `helix` subcommands.

use std::{
    io::{IsTerminal, Read},
    time::SystemTime,
};

use helix_mesh::{
    pb::{self, Provider},
    proto_ext::{ms_to_timestamp, system_time_to_ms},
};

use helix_mesh::transport::{EndpointOptions, RelayChoice};

use crate::{
    cli::{Cli, Command, RunArgs, Via},
    client::{Connected, Spoke, Target},
    config::{SpokeConfig, default_config_dir},
    exit::{CliError, Exit},
    fallback::{Route, direct_or_relay, no_route},
    follow::{Start, follow},
    queries,
    render::Printer,
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
        Command::Show { id, json } => queries::show(spoke, hub.as_deref(), id, json).await,
        Command::Ls(args) => queries::ls(spoke, hub.as_deref(), args).await,
        Command::Watch { json } => queries::watch(spoke, hub.as_deref(), json, quiet).await,
        Command::Info { json } => queries::info(spoke, hub.as_deref(), json).await,
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
        cli.relay_silence,
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

pub(crate) async fn connect_quietly(
    spoke: &Spoke,
    hub: Option<&str>,
) -> Result<Connected, CliError> {
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
    let conn = match remote_hub {
        Some(hub) if args.via == Via::Auto => {
            let connecting = connect(spoke, &target, &mut printer);
            match direct_or_relay(connecting, crate::relay::available(spoke)).await? {
                Route::Direct { conn, .. } => conn,
                Route::Relay => {
                    printer.progress(&no_route("using the table relay"));
                    return crate::relay::run(spoke, hub, request, &mut printer, args.detach).await;
                }
            }
        }
        _ => connect(spoke, &target, &mut printer).await?,
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
