//! `helix-hub`: parse arguments, set up logging, load config, call the library, wait for a
//! signal. Exit codes: 0 ok, 1 error, 2 usage.

use std::{
    io::{IsTerminal, Read},
    path::Path,
    process::ExitCode,
};

use anyhow::{Context, bail};
use clap::Parser;
use helix_hub::{
    Hub, HubConfig,
    cli::{Cli, Command, LoginArgs, ServeArgs},
    config::default_data_dir,
    credentials::{CredentialStore, Secret},
    hub::read_runtime_info,
};
use helix_mesh::pb::Provider;
use tokio::signal::unix::{SignalKind, signal};

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
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stderr)]
fn report(e: &anyhow::Error) {
    eprintln!("helix-hub: error: {e:#}");
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

async fn run(cli: Cli) -> anyhow::Result<()> {
    let data_dir = cli.data_dir.clone().unwrap_or_else(default_data_dir);
    match cli.command {
        Command::Serve(args) => serve(&data_dir, args).await,
        Command::Login(args) => login(&data_dir, args),
        Command::Logout { provider } => logout(&data_dir, provider.into()),
        Command::Status { json } => status(&data_dir, json),
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

fn login(data_dir: &Path, args: LoginArgs) -> anyhow::Result<()> {
    let provider: Provider = args.provider.into();
    if provider == Provider::OpenaiCodex {
        bail!(
            "openai-codex signs in with ChatGPT OAuth, not an API key; this hub version cannot do that yet"
        );
    }
    let key = read_secret_from_stdin("API key")?;
    let store = CredentialStore::in_dir(data_dir);
    store.set_api_key(provider, Secret::new(key))?;
    say(&format!(
        "stored {provider} API key as profile {provider}:default in {}",
        store.path().display()
    ));
    Ok(())
}

fn logout(data_dir: &Path, provider: Provider) -> anyhow::Result<()> {
    let store = CredentialStore::in_dir(data_dir);
    match store.remove_provider(provider)? {
        0 => say(&format!("no {provider} credential was stored")),
        n => say(&format!(
            "removed {n} {provider} profile(s) from {}",
            store.path().display()
        )),
    }
    Ok(())
}

fn status(data_dir: &Path, json: bool) -> anyhow::Result<()> {
    let runtime = read_runtime_info(data_dir)?;
    let store = CredentialStore::in_dir(data_dir);
    let mut credentials = Vec::new();
    for p in Provider::ALL {
        let kind = store.credential_for(p)?.map(|c| c.kind());
        credentials.push((p, kind));
    }
    if json {
        let value = serde_json::json!({
            "data_dir": data_dir,
            "running": runtime.is_some(),
            "hub": runtime,
            "credentials": credentials.iter().map(|(p, k)| (p.name(), k)).collect::<std::collections::BTreeMap<_, _>>(),
        });
        out(&value.to_string());
        return Ok(());
    }
    out(&format!("data dir: {}", data_dir.display()));
    match runtime {
        Some(info) => out(&format!(
            "hub: running (pid {}, {} on {}, id {})",
            info.pid, info.version, info.grpc_addr, info.hub_id
        )),
        None => out("hub: not running (start it with `helix-hub serve`)"),
    }
    for (p, kind) in credentials {
        out(&format!(
            "{:<14} {}",
            p.name(),
            kind.unwrap_or("no credential")
        ));
    }
    Ok(())
}

fn read_secret_from_stdin(what: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        say(&format!("Paste the {what} and press Enter, then Ctrl-D:"));
    }
    let mut text = String::new();
    stdin
        .lock()
        .read_to_string(&mut text)
        .with_context(|| format!("reading the {what} from stdin"))?;
    let secret = text.trim();
    if secret.is_empty() {
        bail!(
            "no {what} on stdin; pipe it in, e.g. printf %s \"$KEY\" | helix-hub login anthropic --api-key"
        );
    }
    if secret.chars().any(char::is_whitespace) {
        bail!("the {what} on stdin contains whitespace; pass exactly one key");
    }
    Ok(secret.to_owned())
}

/// Product output (stdout).
#[allow(clippy::print_stdout)]
fn out(line: &str) {
    println!("{line}");
}

/// Messages for the person (stderr).
#[allow(clippy::print_stderr)]
fn say(line: &str) {
    eprintln!("{line}");
}
