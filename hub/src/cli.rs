//! The `helix-hub` command line (clap derive; the doc comments are the help text).

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use helix_mesh::pb::Provider;

/// Helix Mesh hub: keeps your AI-agent credentials on this machine and runs prompts sent by
/// your devices, streaming the output back live.
#[derive(Debug, Parser)]
#[command(name = "helix-hub", version, propagate_version = true)]
pub struct Cli {
    /// The hub's data directory (journal, credentials, token). Default: the platform data dir,
    /// e.g. ~/.local/share/helix-hub.
    #[arg(long, global = true, env = crate::config::DATA_DIR_ENV, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// More logging (-v debug, -vv trace). HELIX_LOG=<filter> sets it precisely.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub until SIGINT or SIGTERM (a second signal stops it at once).
    Serve(ServeArgs),
    /// Sign in or store a provider credential: `openai-codex` signs in with ChatGPT in the
    /// browser; keys and setup-tokens are read from stdin, never from a flag.
    Login(LoginArgs),
    /// Inspect, refresh and import credentials.
    Auth {
        #[command(subcommand)]
        action: AuthAction,
    },
    /// Remove the stored credentials of a provider.
    Logout {
        #[arg(value_enum)]
        provider: ProviderArg,
    },
    /// Print a one-time pairing ticket for a new device (the hub must be running). The ticket
    /// is the last stdout line; on a terminal a QR code comes first.
    Pair {
        /// How long the ticket stays valid, e.g. 10m, 1h (at most 24h).
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
        /// One JSON object (ticket, expires_at; with --web also link) instead of text.
        #[arg(long)]
        json: bool,
        /// Pair a browser or phone through the cloud: print a link to the web app (and a QR
        /// code on a terminal) whose fragment carries the pairing. Needs `helix-hub cloud login`.
        #[arg(long)]
        web: bool,
        /// Where the web app is served (https://…, or http://localhost / 127.0.0.1); default
        /// $HELIX_WEB_APP_URL.
        #[arg(long, value_name = "URL", requires = "web", env = "HELIX_WEB_APP_URL")]
        app_url: Option<String>,
    },
    /// List or revoke paired devices.
    Devices {
        #[command(subcommand)]
        action: Option<DevicesAction>,
    },
    /// Print the hub's address ticket (for dialing; it grants nothing by itself).
    Ticket,
    /// The optional cloud (Supabase): sign in (the hub then announces its presence), status,
    /// sign out.
    Cloud {
        #[command(subcommand)]
        command: helix_discovery::cloud::CloudCommand,
    },
    /// Check everything a working hub needs, each with ok/warn/fail and what to do next: the
    /// data dir and its files, free disk, the journal, credentials, the Claude Code CLI, the
    /// running hub, paired devices, the cloud and the clock. Exit 0 all ok, 1 a failure, 3
    /// warnings only (2 stays a usage error).
    Doctor {
        /// One JSON document (`status`, `checks`) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show where the hub keeps its files, whether it runs, and which credentials it has.
    Status {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run the hub as a service of this user: a systemd user unit on Linux, a LaunchAgent on
    /// macOS, started at login and restarted after a failure.
    Service {
        #[command(subcommand)]
        action: ServiceAction,
    },
    /// Print a shell completion script, e.g. `helix-hub completions bash >
    /// ~/.local/share/bash-completion/completions/helix-hub`.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `shell`'s completion script for `helix-hub`, made in memory (clap_complete panics on a
/// failed write, so the caller writes it and handles a closed pipe).
pub fn completion_script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut command = <Cli as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "helix-hub", &mut script);
    script
}

#[derive(Debug, Clone, Subcommand)]
pub enum DevicesAction {
    /// The paired devices (the default).
    List {
        /// One JSON object per device instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Forget a device; its live connections are closed at once.
    Revoke {
        /// The device id (from `helix-hub devices` or `helix whoami`).
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Loopback address of the gRPC listener (config: grpc_addr).
    #[arg(long, value_name = "ADDR")]
    pub grpc_addr: Option<SocketAddr>,

    /// Commands run at once (config: max_concurrent; default 5).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_concurrent: Option<u32>,

    /// Use this iroh relay server instead of n0's public relays (config: iroh.relay).
    #[arg(long, value_name = "URL", conflicts_with = "no_relay")]
    pub relay_url: Option<String>,

    /// Use no relay: devices must reach the hub directly (config: iroh.relay = "none").
    #[arg(long)]
    pub no_relay: bool,

    /// Do not announce or look for peers on the local network (config: iroh.mdns).
    #[arg(long)]
    pub no_mdns: bool,

    /// Bind iroh's UDP socket to this address (config: iroh.udp_addr), e.g. 0.0.0.0:7777.
    #[arg(long, value_name = "ADDR")]
    pub udp_addr: Option<SocketAddr>,

    /// Do not serve over iroh at all, only on the loopback TCP listener (config: iroh.enabled).
    #[arg(long)]
    pub no_iroh: bool,

    /// Keep iroh on this machine: UDP on 127.0.0.1, no n0 DNS, no mDNS, no port mapping, and
    /// no relay unless --relay-url names one (for trying things out, and for tests).
    #[arg(long)]
    pub local_only: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ServiceAction {
    /// Write the service file for this binary and data dir, and enable and start it.
    Install {
        /// Print the file (and where it would go) instead of writing it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Stop and disable the service, and remove its file.
    Uninstall,
    /// Whether the service file is installed, enabled and running.
    Status,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AuthAction {
    /// Per provider: the credential kind, account and expiry. Exit codes with --check: 0 ok,
    /// 1 missing or expired, 3 expiring within 24 h (without PROVIDER: over the providers
    /// that have a credential, and 1 if none has); 2 stays a usage error.
    Status {
        /// Only this provider.
        #[arg(value_enum)]
        provider: Option<ProviderArg>,
        /// One JSON object per provider instead of a table.
        #[arg(long)]
        json: bool,
        /// Set the exit code from the credentials' state.
        #[arg(long)]
        check: bool,
    },
    /// Refresh an OAuth token now if it has expired or expires within 5 minutes (safe to run
    /// from several processes at once: only one refreshes).
    Refresh {
        #[arg(value_enum)]
        provider: ProviderArg,
    },
    /// Copy the profiles of an OpenClaw auth-profiles.json into this hub's store.
    ImportOpenclaw {
        /// Default: ~/.openclaw/agents/main/agent/auth-profiles.json.
        path: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    #[arg(value_enum)]
    pub provider: ProviderArg,

    /// Store an API key read from stdin (anthropic, google-gemini), e.g.
    /// `printf %s "$KEY" | helix-hub login anthropic --api-key`.
    #[arg(long, conflicts_with_all = ["setup_token", "run_claude"])]
    pub api_key: bool,

    /// anthropic: store a Claude setup-token (from `claude setup-token`) read from stdin.
    #[arg(long)]
    pub setup_token: bool,

    /// anthropic: run `claude setup-token` and store the token it prints.
    #[arg(long)]
    pub run_claude: bool,

    /// openai-codex: print the sign-in URL without opening a browser.
    #[arg(long)]
    pub no_browser: bool,

    /// openai-codex: loopback port for the sign-in callback (the redirect URI uses it).
    #[arg(long, default_value_t = crate::oauth::DEFAULT_CALLBACK_PORT)]
    pub port: u16,

    /// openai-codex: how long to wait for the sign-in to complete (default
    /// `oauth::LOGIN_TIMEOUT`, 3 minutes).
    #[arg(long, hide = true, value_parser = humantime::parse_duration)]
    pub timeout: Option<std::time::Duration>,
}

/// Providers as spelled on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderArg {
    Anthropic,
    OpenaiCodex,
    GoogleGemini,
}

impl From<ProviderArg> for Provider {
    fn from(p: ProviderArg) -> Self {
        match p {
            ProviderArg::Anthropic => Provider::Anthropic,
            ProviderArg::OpenaiCodex => Provider::OpenaiCodex,
            ProviderArg::GoogleGemini => Provider::GoogleGemini,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let cli = Cli::try_parse_from([
            "helix-hub",
            "--data-dir",
            "/tmp/h",
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--max-concurrent",
            "3",
        ])
        .unwrap();
        assert_eq!(cli.data_dir, Some(PathBuf::from("/tmp/h")));
        match cli.command {
            Command::Serve(a) => {
                assert_eq!(a.max_concurrent, Some(3));
                assert_eq!(a.grpc_addr, Some("127.0.0.1:0".parse().unwrap()));
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["helix-hub", "pair", "--ttl", "5m", "--json"]).unwrap();
        assert!(matches!(cli.command, Command::Pair { json: true, .. }));
        let cli = Cli::try_parse_from(["helix-hub", "devices", "revoke", "abc"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Devices {
                action: Some(DevicesAction::Revoke { .. })
            }
        ));
        let cli = Cli::try_parse_from(["helix-hub", "devices"]).unwrap();
        assert!(matches!(cli.command, Command::Devices { action: None }));
        assert!(
            Cli::try_parse_from([
                "helix-hub",
                "serve",
                "--no-relay",
                "--relay-url",
                "http://x"
            ])
            .is_err()
        );
        let cli = Cli::try_parse_from(["helix-hub", "login", "anthropic", "--api-key"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Login(LoginArgs {
                provider: ProviderArg::Anthropic,
                api_key: true,
                ..
            })
        ));
        let cli = Cli::try_parse_from([
            "helix-hub",
            "login",
            "openai-codex",
            "--no-browser",
            "--port",
            "0",
            "--timeout",
            "2s",
        ])
        .unwrap();
        match cli.command {
            Command::Login(a) => {
                assert!(a.no_browser);
                assert_eq!(a.port, 0);
                assert_eq!(a.timeout, Some(std::time::Duration::from_secs(2)));
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["helix-hub", "login", "openai-codex"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Login(LoginArgs { port: 1455, .. })
        ));
        let cli = Cli::try_parse_from(["helix-hub", "auth", "status", "--check"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Auth {
                action: AuthAction::Status {
                    check: true,
                    provider: None,
                    ..
                }
            }
        ));
        let cli = Cli::try_parse_from(["helix-hub", "auth", "import-openclaw"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Auth {
                action: AuthAction::ImportOpenclaw { path: None }
            }
        ));
    }

    #[test]
    fn secrets_are_not_flag_values_and_bad_values_are_refused() {
        // --api-key takes no value: a key typed after it is an unexpected argument.
        assert!(
            Cli::try_parse_from(["helix-hub", "login", "anthropic", "--api-key", "sk-x"]).is_err()
        );
        assert!(Cli::try_parse_from(["helix-hub", "serve", "--max-concurrent", "0"]).is_err());
        assert!(Cli::try_parse_from(["helix-hub", "login", "claude", "--api-key"]).is_err());
        assert!(
            Cli::try_parse_from([
                "helix-hub",
                "login",
                "anthropic",
                "--setup-token",
                "sk-ant-oat01-x"
            ])
            .is_err()
        );
        assert!(
            Cli::try_parse_from([
                "helix-hub",
                "login",
                "anthropic",
                "--api-key",
                "--setup-token"
            ])
            .is_err()
        );
    }
}
