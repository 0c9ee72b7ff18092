//! `helix-hub`: parse arguments, set up logging, load config, call the library, wait for a
//! signal. Exit codes: 0 ok, 1 error, 2 usage; `auth status --check`: 0 ok, 1 missing or
//! expired, 3 expiring within 24 h.
//!
//! The subcommands other than `serve` and `cloud` live beside this file: [`login`] (`login`,
//! `logout`), [`auth`] (`auth status|refresh|import-openclaw`), [`status`], [`devices`]
//! (`pair`, `devices`, `ticket`), [`service`] (`service install|uninstall|status`); [`terminal`] reads secrets from stdin and writes stdout and
//! stderr.

mod auth;
mod devices;
mod doctor;
mod login;
mod service;
mod status;
mod terminal;

use std::{path::Path, process::ExitCode};

use anyhow::{Context, bail};
use clap::Parser;
use helix_hub::{
    Hub, HubConfig,
    cli::{Cli, Command, DevicesAction, ServeArgs},
    config::default_data_dir,
};
use tokio::signal::unix::{SignalKind, signal};

use terminal::{out, read_password_from_stdin};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            report(&anyhow::Error::new(e).context("starting the async runtime"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stderr)]
fn report(e: &anyhow::Error) {
    eprintln!("helix-hub: error: {}", chain_text(e));
}

/// The error and its causes joined with `: `, leaving out a cause whose text the message
/// already holds: library errors keep their source and also name it in their own text (the
/// spoke prints only that text), so `{:#}` would repeat it.
fn chain_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

fn init_tracing(cli: &Cli) {
    let default = match (cli.verbose, &cli.command) {
        (0, Command::Serve(_)) => "info",
        (0, _) => "warn",
        (1, _) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HELIX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let data_dir = cli.data_dir.clone().unwrap_or_else(default_data_dir);
    match cli.command {
        Command::Auth { action } => auth::auth(&data_dir, action).await,
        Command::Doctor { json } => doctor::doctor(&data_dir, json).await,
        command => run_plain(&data_dir, command)
            .await
            .map(|()| ExitCode::SUCCESS),
    }
}

async fn run_plain(data_dir: &Path, command: Command) -> anyhow::Result<()> {
    let data_dir = data_dir.to_owned();
    match command {
        Command::Auth { .. } | Command::Doctor { .. } => Ok(()),
        Command::Serve(args) => serve(&data_dir, args).await,
        Command::Login(args) => login::login(&data_dir, args).await,
        Command::Logout { provider } => login::logout(&data_dir, provider.into()),
        Command::Status { json } => status::status(&data_dir, json),
        Command::Pair {
            ttl,
            json,
            web,
            app_url,
        } => {
            let web = web.then_some(app_url);
            devices::pair(&data_dir, ttl, json, web).await
        }
        Command::Devices { action } => {
            devices::devices(
                &data_dir,
                action.unwrap_or(DevicesAction::List { json: false }),
            )
            .await
        }
        Command::Ticket => devices::ticket(&data_dir).await,
        Command::Service { action } => service::service(&data_dir, action),
        Command::Completions { shell } => {
            use std::io::Write;
            let script = helix_hub::cli::completion_script(shell);
            match std::io::stdout().lock().write_all(&script) {
                // `| head` closing the pipe early is not a failure.
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(anyhow::Error::new(e).context("writing the completion script"))
                }
                _ => Ok(()),
            }
        }
        Command::Cloud { command } => {
            let cloud = helix_discovery::cloud::Cloud::in_dir(&data_dir);
            let lines = cloud
                .run(command, |what| {
                    read_password_from_stdin(what)
                        .map_err(|e| helix_discovery::cloud::CloudError::Usage(chain_text(&e)))
                })
                .await?;
            for line in lines {
                out(&line);
            }
            Ok(())
        }
    }
}

/// Config precedence: flag > env > file.
fn load_config(data_dir: &Path, args: &ServeArgs) -> anyhow::Result<HubConfig> {
    let mut config = HubConfig::load(data_dir)?;
    config.apply_env(|k| std::env::var(k).ok());
    if let Some(addr) = args.grpc_addr {
        config.grpc_addr = addr;
    }
    if let Some(n) = args.max_concurrent {
        config.max_concurrent = n;
    }
    if args.local_only {
        config.iroh = helix_hub::config::IrohConfig::loopback("none");
    }
    if let Some(url) = &args.relay_url {
        config.iroh.relay = url.clone();
    }
    if args.no_relay {
        config.iroh.relay = "none".into();
    }
    if args.no_mdns {
        config.iroh.mdns = false;
    }
    if let Some(addr) = args.udp_addr {
        config.iroh.udp_addr = Some(addr);
    }
    if args.no_iroh {
        config.iroh.enabled = false;
    }
    config.validate()?;
    Ok(config)
}

async fn serve(data_dir: &Path, args: ServeArgs) -> anyhow::Result<()> {
    let config = load_config(data_dir, &args)?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let hub = Hub::bind(data_dir, config).await?;
    let addr = hub.local_addr();
    tracing::info!(
        "listening on {addr}; run a prompt with: helix --hub-dir {} run \"hello\"",
        data_dir.display()
    );
    tokio::select! {
        _ = sigint.recv() => {},
        _ = sigterm.recv() => {},
    }
    tracing::info!("signal received; draining (send another signal to stop at once)");
    tokio::select! {
        _ = hub.shutdown() => Ok(()),
        _ = sigint.recv() => bail!("stopped at once by a second signal"),
        _ = sigterm.recv() => bail!("stopped at once by a second signal"),
    }
}

/// Config for the commands that are not `serve`: file, then environment.
fn load_plain_config(data_dir: &Path) -> anyhow::Result<HubConfig> {
    let mut config = HubConfig::load(data_dir)?;
    config.apply_env(|k| std::env::var(k).ok());
    config.validate()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::chain_text;

    #[derive(Debug, thiserror::Error)]
    #[error("starting the iroh endpoint: {0}")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn a_cause_the_message_already_names_is_not_repeated() {
        let e =
            anyhow::Error::new(Outer(std::io::Error::other("address in use"))).context("serving");
        assert_eq!(
            chain_text(&e),
            "serving: starting the iroh endpoint: address in use"
        );
        let plain = anyhow::anyhow!("disk full").context("writing the journal");
        assert_eq!(chain_text(&plain), "writing the journal: disk full");
    }
}
