//! `helix-hub`: parse arguments, set up logging, load config, call the library, wait for a
//! signal. Exit codes: 0 ok, 1 error, 2 usage.

use std::{
    io::{IsTerminal, Read},
    path::Path,
    process::ExitCode,
};

use anyhow::{Context, bail};
use clap::Parser;
use helix_discovery::local::{AddBearer, LocalHub};
use helix_hub::{
    Hub, HubConfig,
    cli::{Cli, Command, DevicesAction, LoginArgs, ServeArgs},
    config::default_data_dir,
    credentials::{CredentialStore, Secret},
    devices::Devices,
    hub::read_runtime_info,
};
use helix_mesh::{
    pb::{self, Provider, hub_admin_client::HubAdminClient},
    proto_ext::{ms_to_system_time, timestamp_to_ms},
};
use tokio::signal::unix::{SignalKind, signal};
use tonic::service::interceptor::InterceptedService;

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
        Command::Pair { ttl, json } => pair(&data_dir, ttl, json).await,
        Command::Devices { action } => {
            devices(
                &data_dir,
                action.unwrap_or(DevicesAction::List { json: false }),
            )
            .await
        }
        Command::Ticket => ticket(&data_dir).await,
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
    let stale = read_runtime_info(data_dir)?;
    let running = helix_discovery::local::is_running(data_dir);
    let runtime = stale.clone().filter(|_| running);
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
        None => match stale {
            Some(info) => out(&format!(
                "hub: not running (stale hub.json from pid {}, which did not stop cleanly; start it with `helix-hub serve`)",
                info.pid
            )),
            None => out("hub: not running (start it with `helix-hub serve`)"),
        },
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

/// The running hub's admin service.
async fn admin_client(
    data_dir: &Path,
) -> anyhow::Result<HubAdminClient<InterceptedService<tonic::transport::Channel, AddBearer>>> {
    let hub = LocalHub::find(data_dir)?;
    let (channel, bearer) = hub.dial().await?;
    Ok(HubAdminClient::with_interceptor(channel, bearer))
}

fn status_error(action: &str, status: tonic::Status) -> anyhow::Error {
    if status.code() == tonic::Code::Unimplemented {
        anyhow::anyhow!(
            "{action}: the hub runs without iroh (iroh.enabled = false or --no-iroh), so it has no devices"
        )
    } else {
        anyhow::anyhow!("{action}: {}", status.message())
    }
}

async fn pair(data_dir: &Path, ttl: std::time::Duration, json: bool) -> anyhow::Result<()> {
    let mut admin = admin_client(data_dir)
        .await
        .context("pairing needs the running hub")?;
    let ttl_seconds = u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX);
    let ticket = admin
        .create_pairing(pb::CreatePairingRequest { ttl_seconds })
        .await
        .map_err(|s| status_error("creating a pairing ticket", s))?
        .into_inner();
    let expires = ticket
        .expires_at
        .as_ref()
        .map(|t| {
            humantime::format_rfc3339_seconds(ms_to_system_time(timestamp_to_ms(t))).to_string()
        })
        .unwrap_or_default();
    if json {
        out(&serde_json::json!({"ticket": ticket.ticket, "expires_at": expires}).to_string());
        return Ok(());
    }
    if std::io::stdout().is_terminal()
        && let Ok(code) = qrcode::QrCode::new(ticket.ticket.as_bytes())
    {
        out(&code
            .render::<qrcode::render::unicode::Dense1x2>()
            .quiet_zone(true)
            .build());
    }
    say(&format!(
        "one-time pairing ticket, valid until {expires}; on the new device run: helix pair <ticket>"
    ));
    out(&ticket.ticket);
    Ok(())
}

async fn devices(data_dir: &Path, action: DevicesAction) -> anyhow::Result<()> {
    let running = helix_discovery::local::is_running(data_dir);
    match action {
        DevicesAction::List { json } => {
            let rows: Vec<(String, String, i64, Option<u32>)> = if running {
                let mut admin = admin_client(data_dir).await?;
                admin
                    .list_devices(pb::ListDevicesRequest {})
                    .await
                    .map_err(|s| status_error("listing devices", s))?
                    .into_inner()
                    .devices
                    .into_iter()
                    .map(|d| {
                        let at = d.paired_at.as_ref().map(timestamp_to_ms).unwrap_or(0);
                        (d.device_id, d.name, at, Some(d.live_connections))
                    })
                    .collect()
            } else {
                Devices::load(data_dir)?
                    .list()
                    .into_iter()
                    .map(|(id, r)| (id.to_string(), r.name, r.paired_at_ms, None))
                    .collect()
            };
            if json {
                for (id, name, at, live) in &rows {
                    out(&serde_json::json!({"device_id": id, "name": name, "paired_at_ms": at, "live_connections": live}).to_string());
                }
                return Ok(());
            }
            if rows.is_empty() {
                say("no paired devices; pair one with `helix-hub pair`");
                return Ok(());
            }
            out(&format!(
                "{:<64}  {:<20}  {:<20}  LIVE",
                "DEVICE", "NAME", "PAIRED"
            ));
            for (id, name, at, live) in rows {
                let when = humantime::format_rfc3339_seconds(ms_to_system_time(at)).to_string();
                let live = live.map_or("-".to_owned(), |n| n.to_string());
                out(&format!("{id:<64}  {name:<20}  {when:<20}  {live}"));
            }
            Ok(())
        }
        DevicesAction::Revoke { id } => {
            if running {
                let mut admin = admin_client(data_dir).await?;
                let answer = admin
                    .revoke_device(pb::RevokeDeviceRequest {
                        device_id: id.clone(),
                    })
                    .await
                    .map_err(|s| status_error("revoking", s))?
                    .into_inner();
                say(&format!(
                    "revoked {id}; closed {} live connection(s)",
                    answer.closed_connections
                ));
            } else {
                let device: iroh::EndpointId = id
                    .trim()
                    .parse()
                    .map_err(|_| anyhow::anyhow!("{id:?} is not a device id"))?;
                if !Devices::load(data_dir)?.remove(&device)? {
                    bail!("no paired device {id}");
                }
                say(&format!(
                    "revoked {id} (the hub is not running, so nothing was connected)"
                ));
            }
            Ok(())
        }
    }
}

async fn ticket(data_dir: &Path) -> anyhow::Result<()> {
    let mut admin = admin_client(data_dir)
        .await
        .context("the address ticket needs the running hub")?;
    let ticket = admin
        .get_ticket(pb::GetTicketRequest {})
        .await
        .map_err(|s| status_error("getting the ticket", s))?
        .into_inner();
    say(&format!("hub {}", ticket.hub_id));
    out(&ticket.ticket);
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
