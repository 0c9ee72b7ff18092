//! The `helix` subcommands: [`dispatch`] builds the spoke context from the flags and hands each
//! subcommand to the file of its group. Each group file imports only the shared modules
//! (client, follow, render…), never another group or this dispatcher. Their errors end as an
//! [`Error`], whose exit code is decided in [`crate::error`].

use helix_mesh::transport::{EndpointOptions, RelayChoice};

use crate::{
    cancel, chat,
    cli::{Cli, Command, Via},
    client::Spoke,
    config::{SpokeConfig, default_config_dir},
    device,
    error::Error,
    exit::Exit,
    hub_info,
    keeper::{self, Keeper},
    pair, queries, run, sessions,
    settings::Settings,
};

/// Runs one parsed command line.
pub async fn dispatch(cli: Cli) -> Result<Exit, Error> {
    // Needs no config dir, key or settings: a completion script is printed on a fresh machine.
    if let Command::Completions { shell } = cli.command {
        return Ok(completions(shell));
    }
    let spoke = spoke_for(&cli)?;
    let result = dispatch_with(&spoke, cli).await;
    spoke.close().await;
    result
}

async fn dispatch_with(spoke: &Spoke, cli: Cli) -> Result<Exit, Error> {
    let quiet = cli.quiet;
    let hub = cli.hub.as_deref();
    Ok(match cli.command {
        Command::Run(args) => run::run(spoke, hub, args, quiet).await?,
        Command::Attach {
            id,
            after_seq,
            json,
            via,
        } => run::attach(spoke, hub, id, after_seq, json, via, quiet).await?,
        Command::Cancel { id, via } => cancel::cancel(spoke, hub, id, via, quiet).await?,
        Command::Show {
            session: Some(session),
            json,
            ..
        } => sessions::sessions(spoke, hub, Some(session), json, Via::Auto).await?,
        Command::Show { id, json, via, .. } => {
            // clap requires one of `id` and `--session`.
            queries::show(spoke, hub, id.unwrap_or_default(), json, via).await?
        }
        Command::Chat { session, agent } => chat::chat(spoke, hub, session, agent, quiet).await?,
        Command::Sessions { session, json, via } => {
            sessions::sessions(spoke, hub, session, json, via).await?
        }
        Command::Ls(args) => queries::ls(spoke, hub, args).await?,
        Command::Watch { json } => hub_info::watch(spoke, hub, json, quiet).await?,
        Command::Info { json } => hub_info::info(spoke, hub, json).await?,
        Command::Pair {
            ticket,
            ticket_file,
            name,
            device_name,
            via,
        } => {
            let names = pair::Names {
                hub: name,
                device: device_name,
            };
            let ticket = pair::ticket_text(ticket, ticket_file.as_deref())?;
            pair::pair(spoke, &ticket, names, via, quiet).await?
        }
        Command::Hubs { json } => pair::hubs(spoke, json).await?,
        Command::Cloud { command } => device::cloud(spoke, command, quiet).await?,
        Command::Whoami => device::whoami(spoke, quiet)?,
        Command::Keeper { hub, idle } => keep(spoke, hub, idle).await?,
        Command::Completions { shell } => completions(shell),
    })
}

/// `helix completions SHELL` (a pipe closed early, as by `| head`, is not a failure).
fn completions(shell: clap_complete::Shell) -> Exit {
    use std::io::Write;
    let script = crate::cli::completion_script(shell);
    match std::io::stdout().lock().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            #[allow(clippy::print_stderr)] // the one error this command can have
            {
                eprintln!("helix: error: writing the completion script: {e}");
            }
            Exit::Failed
        }
        _ => Exit::Ok,
    }
}

/// `helix keeper`: serves until idle (see [`crate::keeper`]).
async fn keep(spoke: &Spoke, hubs: Vec<String>, idle: std::time::Duration) -> Result<Exit, Error> {
    let Some(keeper) = spoke.keeper() else {
        return Ok(Exit::Ok);
    };
    let keeper = Keeper {
        idle,
        ..keeper.clone()
    };
    let setup = |e: &dyn std::error::Error| Error::Keeper(std::io::Error::other(e.to_string()));
    let mut pre_dial = Vec::new();
    for hub in hubs {
        let ticket = helix_mesh::ticket::Ticket::decode(&hub).map_err(|e| setup(&e))?;
        pre_dial.push(ticket.addr().clone());
    }
    // This process is the keeper: its endpoint does not ask a keeper to leave.
    let own = Spoke::new(
        spoke.config.clone(),
        None,
        spoke.options.clone(),
        spoke.dial_timeout,
        spoke.cloud_silence,
    );
    let endpoint = async {
        own.endpoint()
            .await
            .cloned()
            .map_err(|e| std::io::Error::other(e.to_string()))
    };
    keeper::serve(&keeper, endpoint, spoke.dial_timeout, pre_dial)
        .await
        .map_err(Error::Keeper)?;
    Ok(Exit::Ok)
}

/// The spoke context the flags describe, over the config dir's `config.toml`.
fn spoke_for(cli: &Cli) -> Result<Spoke, Error> {
    let config = SpokeConfig::new(cli.config_dir.clone().unwrap_or_else(default_config_dir));
    let settings = Settings::load(config.path())?;
    let relay = match (&cli.relay_url, cli.no_relay || cli.local_only) {
        (Some(url), _) => {
            RelayChoice::Custom(vec![url.parse().map_err(|source| Error::RelayUrl {
                url: url.clone(),
                source,
            })?])
        }
        (None, true) => RelayChoice::Disabled,
        (None, false) => settings.relay().unwrap_or(RelayChoice::N0),
    };
    let mut options = if cli.local_only {
        EndpointOptions::loopback(relay)
    } else {
        EndpointOptions {
            relay,
            mdns: !cli.no_mdns && settings.iroh.mdns.unwrap_or(true),
            n0_discovery: !cli.no_n0_discovery && settings.iroh.n0_discovery.unwrap_or(true),
            // Spokes only dial out: no port mapping needed.
            portmapper: false,
            ..EndpointOptions::default()
        }
    };
    options.relay_ca = cli.relay_ca.clone().or(settings.iroh.relay_ca.clone());
    if let Some(path) = &options.relay_ca {
        helix_mesh::transport::load_relay_ca(path)?;
    }
    if cli.relay_only {
        options.ip_transports = false;
    }
    let keep_warm = settings.keep_warm().unwrap_or(keeper::DEFAULT_IDLE);
    let keeper = if cli.no_keeper || cli.local_only || keep_warm.is_zero() {
        None
    } else {
        Keeper::new(
            config.path(),
            &options,
            keeper_args(cli, config.path()),
            keep_warm,
        )
    };
    Ok(Spoke::new(
        config,
        cli.hub_dir.clone(),
        options,
        cli.connect_timeout,
        cli.cloud_silence,
    )
    .with_keeper(keeper))
}

/// The global flags that give a keeper the endpoint settings of this command line (the
/// config dir's config.toml gives it the rest).
fn keeper_args(cli: &Cli, config_dir: &std::path::Path) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = vec!["--config-dir".into(), config_dir.into()];
    if let Some(url) = &cli.relay_url {
        args.extend(["--relay-url".into(), url.into()]);
    }
    if let Some(ca) = &cli.relay_ca {
        args.extend(["--relay-ca".into(), ca.into()]);
    }
    for (set, flag) in [
        (cli.no_relay, "--no-relay"),
        (cli.no_mdns, "--no-mdns"),
        (cli.no_n0_discovery, "--no-n0-discovery"),
        (cli.relay_only, "--relay-only"),
    ] {
        if set {
            args.push(flag.into());
        }
    }
    args.extend([
        "--connect-timeout".into(),
        humantime::format_duration(cli.connect_timeout)
            .to_string()
            .into(),
    ]);
    args
}
