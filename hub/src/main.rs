//! `helix-hub`: parse arguments, set up logging, load config, call the library, wait for a
//! signal. Exit codes: 0 ok, 1 error, 2 usage; `auth status --check`: 0 ok, 1 missing or
//! expired, 2 expiring within 24 h.

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
    cli::{AuthAction, Cli, Command, DevicesAction, LoginArgs, ServeArgs},
    config::default_data_dir,
    credentials::{CredentialStore, Secret},
    devices::Devices,
    hub::read_runtime_info,
    login::{self, CredentialReport},
    refresh::{Outcome, Refresher},
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
        Ok(code) => code,
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

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let data_dir = cli.data_dir.clone().unwrap_or_else(default_data_dir);
    match cli.command {
        Command::Auth { action } => auth(&data_dir, action).await,
        command => run_plain(&data_dir, command)
            .await
            .map(|()| ExitCode::SUCCESS),
    }
}

async fn run_plain(data_dir: &Path, command: Command) -> anyhow::Result<()> {
    let data_dir = data_dir.to_owned();
    match command {
        Command::Auth { .. } => Ok(()),
        Command::Serve(args) => serve(&data_dir, args).await,
        Command::Login(args) => login(&data_dir, args).await,
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
        Command::Cloud { command } => {
            let cloud = helix_discovery::cloud::Cloud::in_dir(&data_dir);
            let lines = cloud
                .run(command, |what| {
                    read_password_from_stdin(what)
                        .map_err(|e| helix_discovery::cloud::CloudError::Usage(format!("{e:#}")))
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

async fn login(data_dir: &Path, args: LoginArgs) -> anyhow::Result<()> {
    let provider: Provider = args.provider.into();
    let store = CredentialStore::in_dir(data_dir);
    match provider {
        Provider::OpenaiCodex => {
            if args.api_key || args.setup_token || args.run_claude {
                bail!(
                    "openai-codex signs in with ChatGPT in the browser: run `helix-hub login openai-codex` without --api-key/--setup-token"
                );
            }
            let config = load_plain_config(data_dir)?;
            let issuer = &config.providers.openai_codex.issuer;
            let no_browser = args.no_browser;
            let timeout = args.timeout.unwrap_or(helix_hub::oauth::LOGIN_TIMEOUT);
            let tokens = login::login_codex(&store, issuer, args.port, timeout, |url| {
                say("Sign in to ChatGPT in your browser with this URL (waiting for the sign-in):");
                out(url);
                if !no_browser {
                    open_browser(url);
                }
            })
            .await?;
            say(&format!(
                "signed in{}; stored profile openai-codex:default in {}",
                tokens
                    .email
                    .as_deref()
                    .or(tokens.account_id.as_deref())
                    .map(|a| format!(" as {a}"))
                    .unwrap_or_default(),
                store.path().display()
            ));
        }
        Provider::Anthropic if args.setup_token || args.run_claude => {
            let token = if args.run_claude {
                let config = load_plain_config(data_dir)?;
                login::run_claude_setup_token(&config.providers.anthropic.claude_binary, say)
                    .await?
            } else {
                Secret::new(read_secret_from_stdin(
                    "setup-token",
                    "printf %s \"$CLAUDE_SETUP_TOKEN\" | helix-hub login anthropic --setup-token, or let helix-hub run `claude setup-token` and take the token from it: helix-hub login anthropic --run-claude",
                )?)
            };
            if !token.expose().starts_with(login::SETUP_TOKEN_PREFIX) {
                bail!(
                    "that is not a Claude setup-token (they start with {}…); for an API key use --api-key",
                    login::SETUP_TOKEN_PREFIX
                );
            }
            store.set_token(provider, token, None)?;
            say(&format!(
                "stored the Claude setup-token as profile anthropic:default in {}; commands run through Claude Code",
                store.path().display()
            ));
        }
        _ if args.setup_token || args.run_claude => {
            bail!("--setup-token and --run-claude are for anthropic only")
        }
        _ if !args.api_key => bail!(
            "say what to store: `helix-hub login {provider} --api-key` (key on stdin){}",
            if provider == Provider::Anthropic {
                " or `--setup-token` (token on stdin) or `--setup-token --run-claude`"
            } else {
                ""
            }
        ),
        _ => {
            let key = read_secret_from_stdin(
                "API key",
                &format!("printf %s \"$KEY\" | helix-hub login {provider} --api-key"),
            )?;
            store.set_api_key(provider, Secret::new(key))?;
            say(&format!(
                "stored {provider} API key as profile {provider}:default in {}",
                store.path().display()
            ));
        }
    }
    Ok(())
}

/// Opens `url` in the desktop's browser if it can; failing to is not an error.
fn open_browser(url: &str) {
    let opened = std::process::Command::new("xdg-open")
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if opened.is_err() {
        say("(could not open a browser: open the URL above yourself)");
    }
}

async fn auth(data_dir: &Path, action: AuthAction) -> anyhow::Result<ExitCode> {
    let store = CredentialStore::in_dir(data_dir);
    match action {
        AuthAction::Status {
            provider,
            json,
            check,
        } => {
            let rows = login::report(&store, provider.map(Into::into))?;
            print_report(&rows, json);
            if check {
                return Ok(ExitCode::from(login::check_code(&rows, provider.is_some())));
            }
        }
        AuthAction::Refresh { provider } => {
            let provider: Provider = provider.into();
            if provider != Provider::OpenaiCodex {
                bail!(
                    "only openai-codex has a refreshable sign-in; {provider} credentials do not expire this way"
                );
            }
            let config = load_plain_config(data_dir)?;
            let refresher = Refresher::new(store.clone(), &config.providers.openai_codex.issuer);
            let Some((credential, outcome)) = refresher.ensure_fresh(provider, None).await? else {
                bail!(
                    "no {provider} credential is stored: sign in with `helix-hub login {provider}`"
                );
            };
            let until = credential
                .expires_ms()
                .map(|ms| format!("valid until {}", format_ms(ms)))
                .unwrap_or_else(|| "no expiry".to_owned());
            out(&format!(
                "{provider}: {} ({until})",
                match outcome {
                    Outcome::Refreshed => "refreshed",
                    Outcome::AlreadyFresh => "still fresh, not refreshed",
                }
            ));
        }
        AuthAction::ImportOpenclaw { path } => {
            let path = match path.or_else(login::default_openclaw_path) {
                Some(p) => p,
                None => bail!("no home directory: pass the OpenClaw file's path"),
            };
            let ids = login::import_openclaw(&store, &path)?;
            say(&format!(
                "imported {} profile(s) from {} into {}: {}",
                ids.len(),
                path.display(),
                store.path().display(),
                ids.join(", ")
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn format_ms(ms: i64) -> String {
    humantime::format_rfc3339_seconds(ms_to_system_time(ms)).to_string()
}

fn print_report(rows: &[CredentialReport], json: bool) {
    for row in rows {
        if json {
            out(&serde_json::to_string(row).unwrap_or_default());
            continue;
        }
        let Some(kind) = &row.kind else {
            out(&format!("{:<14} no credential", row.provider));
            continue;
        };
        let expiry = match row.expires_ms {
            Some(ms) => format!("expires {}", format_ms(ms)),
            None => "no expiry".to_owned(),
        };
        let health = match row.health {
            login::Health::Ok => "",
            login::Health::Missing => " (missing)",
            login::Health::Expired if row.refreshable => " (expired; refreshes on next use)",
            login::Health::Expired => " (EXPIRED)",
            login::Health::Expiring => " (expiring within 24 h)",
        };
        out(&format!(
            "{:<14} {:<8} {:<28} {expiry}{health}",
            row.provider,
            kind,
            row.account.as_deref().unwrap_or("-"),
        ));
    }
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

/// One secret from stdin (trimmed, no whitespace inside). `example` shows how to pipe it in,
/// for the error when stdin is empty.
fn read_secret_from_stdin(what: &str, example: &str) -> anyhow::Result<String> {
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
        bail!("no {what} on stdin; pipe it in, e.g. {example}");
    }
    if secret.chars().any(char::is_whitespace) {
        bail!("the {what} on stdin contains whitespace; pass exactly one {what}");
    }
    Ok(secret.to_owned())
}

/// A password, code or token from stdin: only the line ending is removed (passwords may
/// contain spaces).
fn read_password_from_stdin(what: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        say(&format!("Enter the {what}, then Enter and Ctrl-D:"));
    }
    let mut text = String::new();
    stdin
        .lock()
        .read_to_string(&mut text)
        .with_context(|| format!("reading the {what} from stdin"))?;
    let secret = text.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        bail!("no {what} on stdin");
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
