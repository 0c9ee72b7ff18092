//! The `helix` command line (clap derive; the doc comments are the help text).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use helix_mesh::pb::{CommandStatus, Provider};

/// Helix Mesh: run AI-agent prompts on your hub and watch the output stream back live.
///
/// Exit codes: 0 completed; 1 the command failed; 2 usage error; 3 hub unreachable; 4 the
/// command was cancelled; 5 it expired before it could start; 6 the hub refused the request;
/// 130 interrupted by Ctrl-C (the command was cancelled on the hub).
#[derive(Debug, Parser)]
#[command(name = "helix", version, propagate_version = true)]
pub struct Cli {
    /// The hub's data directory, where a hub on this machine records its address and token.
    /// Default: the platform data dir, e.g. ~/.local/share/helix-hub.
    #[arg(long, global = true, env = helix_discovery::local::HUB_DIR_ENV, value_name = "DIR")]
    pub hub_dir: Option<PathBuf>,

    /// A hub to reach over iroh: a name from `helix hubs`, a hub id, or a ticket. Default: the
    /// hub on this machine, else the only paired hub.
    #[arg(long, global = true, value_name = "HUB")]
    pub hub: Option<String>,

    /// This device's config directory (its key and paired hubs). Default: e.g. ~/.config/helix.
    #[arg(long, global = true, env = crate::config::CONFIG_DIR_ENV, value_name = "DIR")]
    pub config_dir: Option<PathBuf>,

    /// Use this iroh relay server instead of n0's public relays.
    #[arg(long, global = true, value_name = "URL", conflicts_with = "no_relay")]
    pub relay_url: Option<String>,

    /// Use no relay: direct connections only.
    #[arg(long, global = true)]
    pub no_relay: bool,

    /// Do not look for hubs on the local network (mDNS).
    #[arg(long, global = true)]
    pub no_mdns: bool,

    /// Do not resolve hub ids through n0's DNS (a hub is then found by its saved or ticket
    /// addresses, the relay, mDNS or the cloud's presence rows).
    #[arg(long, global = true)]
    pub no_n0_discovery: bool,

    /// A PEM file of extra root certificates to trust for the relay (a self-hosted relay with
    /// its own CA).
    #[arg(long, global = true, value_name = "PATH")]
    pub relay_ca: Option<PathBuf>,

    /// How long to try to reach a hub over iroh before giving up (and to wait for its answer to
    /// a pairing request), e.g. 10s.
    #[arg(long, global = true, default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub connect_timeout: std::time::Duration,

    /// Through the cloud route: how long to keep following a command while nothing new comes
    /// from the hub, e.g. 30m (the command's expiry also ends the wait).
    #[arg(long, global = true, alias = "relay-silence", default_value = "1h", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub cloud_silence: std::time::Duration,

    /// Diagnostics and tests: no UDP of our own, relays only.
    #[arg(long, global = true, hide = true)]
    pub relay_only: bool,

    /// Stay on this machine: UDP on 127.0.0.1, no n0 DNS, no mDNS, and no relay unless
    /// --relay-url names one (for trying things out, and for tests).
    #[arg(long, global = true)]
    pub local_only: bool,

    /// Neither use nor start the keeper: a background helix that keeps this device's
    /// connection to a hub warm for 10 minutes after a command (`keep_warm` in config.toml),
    /// so the next command skips the handshake.
    #[arg(long, global = true)]
    pub no_keeper: bool,

    /// No progress lines on stderr (errors are still printed).
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send a prompt to the hub and stream the output to stdout.
    Run(RunArgs),
    /// Stream a command's events: what was missed, then live until it finishes.
    Attach {
        /// The command id (from `helix run --detach` or `helix ls`).
        id: String,
        /// Skip events up to and including this seq.
        #[arg(long, value_name = "N", default_value_t = 0)]
        after_seq: u64,
        /// One JSON object per event on stdout instead of the output text.
        #[arg(long)]
        json: bool,
        /// `cloud` reads the command from the cloud: any command of the hub --hub names, sent
        /// through the cloud by any paired device or mirrored there by the hub.
        #[arg(long, value_enum, default_value = "auto")]
        via: Via,
    },
    /// Cancel a queued or running command.
    Cancel {
        id: String,
        /// `iroh` asks the hub; `cloud` cancels a command sent through the cloud route in the
        /// cloud (the hub then stops it); `auto` asks the hub, and uses the cloud when no iroh
        /// route comes up within 3 s or the hub does not have the command (still in the table),
        /// if this device is signed in to the cloud.
        #[arg(long, value_enum, default_value = "auto")]
        via: Via,
    },
    /// Show one command: status, times, error and output (with --session: a session's turns).
    Show {
        #[arg(required_unless_present = "session")]
        id: Option<String>,
        /// Show this session's turns instead (as `helix sessions SESSION`).
        #[arg(long, conflicts_with_all = ["id", "via"])]
        session: Option<String>,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// `cloud` reads it from the cloud (any command of the hub --hub names, whichever
        /// device sent it); `auto` and `iroh` ask the hub.
        #[arg(long, value_enum, default_value = "auto")]
        via: Via,
    },
    /// List commands, newest first.
    Ls(LsArgs),
    /// A conversation in the terminal: each line a turn of one session, streamed as it comes.
    /// Ctrl-C cancels the running turn; at the prompt Ctrl-C or Ctrl-D leaves. /new, /model M,
    /// /provider P, /help.
    Chat {
        /// Continue this session (default: a new one, named chat-…).
        #[arg(long)]
        session: Option<String>,
        /// Agent profile configured on the hub.
        #[arg(long, default_value = "main")]
        agent: String,
    },
    /// List the hub's sessions (conversations), the most recently active first; with SESSION,
    /// its turns: each prompt and answer, oldest first.
    Sessions {
        session: Option<String>,
        /// JSON: one object per session (a stream of lines), or one document for SESSION.
        #[arg(long)]
        json: bool,
        /// `cloud` reads them from the cloud's history (the hub's newest 500 commands this
        /// device can read; needs --hub); `auto` and `iroh` ask the hub.
        #[arg(long, value_enum, default_value = "auto")]
        via: Via,
    },
    /// Stream every command's status changes on the hub.
    Watch {
        /// One JSON object per change instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Pair this device with a hub, using a ticket from `helix-hub pair` on the hub.
    ///
    /// The ticket holds a one-time secret: give it on stdin (`-` or no argument, e.g.
    /// `helix pair < ticket.txt`, or paste it) or with --ticket-file to keep it out of the
    /// process list and the shell's history.
    Pair {
        /// The pairing ticket (starts with helixpair); `-` or none reads it from stdin.
        ticket: Option<String>,
        /// Read the pairing ticket from this file.
        #[arg(long, value_name = "PATH", conflicts_with = "ticket")]
        ticket_file: Option<PathBuf>,
        /// The name to remember the hub by (default: the hub's own name).
        #[arg(long)]
        name: Option<String>,
        /// How this device introduces itself to the hub (default: this host's name).
        #[arg(long)]
        device_name: Option<String>,
        /// Route: `iroh` (the hub's pairing protocol), `cloud` (a request row through Supabase,
        /// for a device that cannot reach the hub; both sides signed in to the same account), or
        /// `auto` (iroh, then the cloud when no iroh route comes up and this device is signed in).
        #[arg(long, value_enum, default_value = "auto")]
        via: Via,
    },
    /// List the paired hubs, whether they are reachable now, and by which route.
    Hubs {
        /// One JSON object per hub instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print this device's id (its public key) as the last stdout line.
    Whoami,
    /// Print a shell completion script, e.g. `helix completions zsh > ~/.zfunc/_helix` or
    /// `helix completions fish > ~/.config/fish/completions/helix.fish`.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The keeper itself (started by helix; see --no-keeper).
    #[command(hide = true)]
    Keeper {
        /// Hub tickets to dial at once.
        #[arg(long)]
        hub: Vec<String>,
        /// Leave after this long without a command.
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        idle: std::time::Duration,
    },
    /// The optional cloud (Supabase): sign in, status, sign out.
    Cloud {
        #[command(subcommand)]
        command: helix_discovery::cloud::CloudCommand,
    },
    /// Show the hub's version, id, providers and limits.
    Info {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The prompt, or `-` to read it from stdin.
    pub prompt: String,

    /// Provider to run it with (default: the agent's provider, normally anthropic).
    #[arg(long, value_enum)]
    pub provider: Option<ProviderArg>,

    /// Agent profile configured on the hub.
    #[arg(long, default_value = "main")]
    pub agent: String,

    /// The session (conversation) this prompt is a turn of: the hub gives the provider its
    /// earlier turns (default: a new session, named after the command).
    #[arg(long)]
    pub session: Option<String>,

    /// Continue this device's most recent session on this hub (that of its last `helix run`).
    #[arg(long = "continue", conflicts_with = "session")]
    pub continue_session: bool,

    /// Model override.
    #[arg(long)]
    pub model: Option<String>,

    /// How long the command may wait on the hub before it expires unstarted (e.g. 10m, 2h).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: std::time::Duration,

    /// One JSON object per event on stdout instead of the output text.
    #[arg(long)]
    pub json: bool,

    /// Submit, print the command id as the last stdout line, and return at once.
    #[arg(long)]
    pub detach: bool,

    /// Route: `iroh` (direct or relay), `cloud` (the cloud route, through the Supabase tables),
    /// or `auto` (iroh, falling back to the cloud route when no iroh route comes up within 3 s
    /// and this device is signed in to the cloud).
    #[arg(long, value_enum, default_value = "auto")]
    pub via: Via,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Via {
    Auto,
    Iroh,
    Cloud,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only commands in this status.
    #[arg(long, value_enum)]
    pub status: Option<StatusArg>,
    /// Only commands of this session.
    #[arg(long)]
    pub session: Option<String>,
    /// At most this many.
    #[arg(long, short = 'n', default_value_t = 20)]
    pub limit: u32,
    /// One JSON object per command instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Where to read the list: `iroh` (the hub itself; also `auto`) or `cloud` (the history
    /// the cloud holds for every paired device, readable without reaching the hub; needs
    /// `--hub` or a single paired hub).
    #[arg(long, value_enum, default_value = "auto")]
    pub via: Via,
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusArg {
    Pending,
    Executing,
    Completed,
    Failed,
    Cancelled,
    Expired,
}

impl From<StatusArg> for CommandStatus {
    fn from(s: StatusArg) -> Self {
        match s {
            StatusArg::Pending => CommandStatus::Pending,
            StatusArg::Executing => CommandStatus::Executing,
            StatusArg::Completed => CommandStatus::Completed,
            StatusArg::Failed => CommandStatus::Failed,
            StatusArg::Cancelled => CommandStatus::Cancelled,
            StatusArg::Expired => CommandStatus::Expired,
        }
    }
}

/// `shell`'s completion script for `helix`, made in memory (clap_complete panics on a
/// failed write, so the caller writes it and handles a closed pipe).
pub fn completion_script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut command = <Cli as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "helix", &mut script);
    script
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cloud_silence_keeps_its_old_name_as_a_hidden_alias() {
        for flag in ["--cloud-silence", "--relay-silence"] {
            let cli = Cli::try_parse_from(["helix", flag, "90s", "hubs"]).unwrap();
            assert_eq!(
                cli.cloud_silence,
                std::time::Duration::from_secs(90),
                "{flag}"
            );
        }
        let cli = Cli::try_parse_from(["helix", "hubs"]).unwrap();
        assert_eq!(cli.cloud_silence, std::time::Duration::from_secs(3600));
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("--cloud-silence"), "{help}");
        assert!(!help.contains("relay-silence"), "{help}");
    }

    #[test]
    fn run_with_every_documented_flag() {
        let cli = Cli::try_parse_from([
            "helix",
            "--hub-dir",
            "/h",
            "run",
            "--provider",
            "openai-codex",
            "--agent",
            "a",
            "--session",
            "s",
            "--model",
            "m",
            "--json",
            "--detach",
            "--ttl",
            "10m",
            "-",
        ])
        .unwrap();
        assert_eq!(cli.hub_dir, Some(PathBuf::from("/h")));
        let Command::Run(run) = cli.command else {
            panic!()
        };
        assert_eq!(run.prompt, "-");
        assert_eq!(run.provider, Some(ProviderArg::OpenaiCodex));
        assert_eq!(
            (
                run.agent.as_str(),
                run.session.as_deref(),
                run.model.as_deref()
            ),
            ("a", Some("s"), Some("m"))
        );
        assert!(run.json && run.detach);
        assert_eq!(run.ttl, std::time::Duration::from_secs(600));
    }

    #[test]
    fn other_subcommands_parse() {
        let cli = Cli::try_parse_from(["helix", "attach", "x", "--after-seq", "7"]).unwrap();
        assert!(matches!(cli.command, Command::Attach { after_seq: 7, .. }));
        let cli = Cli::try_parse_from(["helix", "ls", "--status", "failed", "-n", "3"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Ls(LsArgs {
                status: Some(StatusArg::Failed),
                limit: 3,
                ..
            })
        ));
        for args in [["helix", "cancel", "x"], ["helix", "show", "x"]] {
            assert!(Cli::try_parse_from(args).is_ok());
        }
        let cli = Cli::try_parse_from(["helix", "show", "--via", "cloud", "x"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Show {
                via: Via::Cloud,
                ..
            }
        ));
        let cli = Cli::try_parse_from(["helix", "cancel", "--via", "cloud", "x"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Cancel {
                via: Via::Cloud,
                ..
            }
        ));
        assert!(Cli::try_parse_from(["helix", "watch"]).is_ok());
        let cli = Cli::try_parse_from([
            "helix",
            "--config-dir",
            "/c",
            "pair",
            "helixpairabc",
            "--name",
            "desk",
        ])
        .unwrap();
        assert!(matches!(cli.command, Command::Pair { .. }));
        let cli =
            Cli::try_parse_from(["helix", "run", "--hub", "desk", "--no-relay", "hi"]).unwrap();
        assert_eq!(cli.hub.as_deref(), Some("desk"));
        assert!(cli.no_relay);
        assert!(
            Cli::try_parse_from(["helix", "--relay-url", "http://r", "--no-relay", "hubs"])
                .is_err()
        );
        assert!(Cli::try_parse_from(["helix", "whoami"]).is_ok());
        let cli = Cli::try_parse_from([
            "helix",
            "cloud",
            "login",
            "--url",
            "https://x.supabase.co",
            "--anon-key",
            "k",
            "--email",
            "a@b.c",
            "--otp",
        ])
        .unwrap();
        assert!(matches!(cli.command, Command::Cloud { .. }));
        // Secrets are never flag values: --access-token only takes `-`; a password flag does not exist.
        assert!(
            Cli::try_parse_from([
                "helix",
                "cloud",
                "login",
                "--url",
                "u",
                "--anon-key",
                "k",
                "--email",
                "e",
                "--password",
                "p"
            ])
            .is_err()
        );
        assert!(
            Cli::try_parse_from(["helix", "cloud", "login", "--url", "u", "--anon-key", "k"])
                .is_err()
        );
        assert!(Cli::try_parse_from(["helix", "run", "--provider", "claude", "hi"]).is_err());
        assert!(Cli::try_parse_from(["helix", "run"]).is_err());
    }
}
