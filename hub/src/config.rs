//! Hub configuration: `<data-dir>/config.toml`, then environment, then command-line flags
//! (each later source wins). Every field has a safe default, so no file is needed.
//!
//! ```toml
//! name = "desk"                   # how the hub introduces itself (default: the host name)
//! grpc_addr = "127.0.0.1:50051"   # loopback TCP listener (grpcurl, local spokes); loopback only
//! max_concurrent = 5              # commands running at once
//! queue_capacity = 4096           # commands waiting; beyond this: RESOURCE_EXHAUSTED
//! drain_timeout = "30s"           # on shutdown, how long running commands may finish
//!
//! [retry]
//! max_retries = 3
//! base_delay = "1s"
//! max_delay = "30s"
//!
//! [providers.anthropic]
//! base_url = "https://api.anthropic.com"   # env ANTHROPIC_BASE_URL wins over this
//! model = "claude-sonnet-4-5"
//! max_tokens = 8192
//! connect_timeout = "10s"
//! idle_timeout = "120s"            # longest silence inside a streaming answer
//! claude_binary = "claude"      # runs setup-token credentials (Claude Code, headless)
//! # workdir = "/home/me/agent"  # Claude Code's working dir (default: a new empty one per command)
//! # allowed_tools = ["Read", "Grep"]       # its --allowedTools (default: none)
//! # permission_mode = "default"  # its --permission-mode: default, acceptEdits, plan, dontAsk, auto, bypassPermissions
//!
//! [providers.openai_codex]
//! base_url = "https://chatgpt.com"        # env HELIX_CODEX_BASE_URL wins over this
//! issuer = "https://auth.openai.com"      # env HELIX_OPENAI_ISSUER wins over this
//! model = "gpt-5-codex"
//!
//! [providers.google_gemini]
//! base_url = "https://generativelanguage.googleapis.com"   # env HELIX_GEMINI_BASE_URL
//! model = "gemini-2.5-flash"
//!
//! [iroh]
//! enabled = true                  # serve over iroh QUIC (peer-to-peer)
//! relay = "n0"                    # "n0" (public relays), "none", or a relay URL
//! mdns = true                     # LAN discovery
//! n0_discovery = true             # publish/resolve the hub's address via n0's DNS
//! # udp_addr = "0.0.0.0:7777"     # fixed UDP address (default: all interfaces, random port)
//! portmapper = true               # UPnP/PCP/NAT-PMP port mapping
//!
//! [agents.main]
//! provider = "anthropic"
//! model = "claude-opus-4-1"       # overrides the provider's model for this agent
//! system = "You are terse."
//! history_turns = 100             # earlier turns of a session its commands are given (0: none)
//! history_bytes = 262144          # and most bytes of their prompts and answers (oldest left out first)
//! ```

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use helix_mesh::pb::Provider;
use serde::{Deserialize, Serialize};

use helix_mesh::fsutil;

use crate::oauth;

mod duration_text;
mod endpoint;
mod providers;

pub use endpoint::IrohConfig;
pub use providers::{
    AnthropicConfig, CODEX_BASE_URL_ENV, CodexConfig, GEMINI_BASE_URL_ENV, GeminiConfig,
    PermissionMode, ProvidersConfig,
};

/// The config file's name inside the data dir.
pub const FILE_NAME: &str = "config.toml";

/// The default loopback gRPC address.
pub const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:50051";

/// The environment variable that may stand for `--data-dir`.
pub const DATA_DIR_ENV: &str = helix_discovery::local::HUB_DIR_ENV;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error(transparent)]
    Fs(#[from] fsutil::FsError),
    #[error("config file {path} is invalid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{what} is invalid: {message}")]
    Invalid { what: String, message: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubConfig {
    /// How the hub introduces itself to devices that pair (default: the host name).
    pub name: Option<String>,
    pub grpc_addr: SocketAddr,
    pub max_concurrent: u32,
    pub queue_capacity: u32,
    #[serde(with = "duration_text")]
    pub drain_timeout: Duration,
    pub retry: RetryConfig,
    pub providers: ProvidersConfig,
    pub iroh: IrohConfig,
    pub cloud: CloudSettings,
    pub agents: BTreeMap<String, AgentConfig>,
}

/// The cloud route's timing and retention (the cloud itself is set up with
/// `helix-hub cloud login`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloudSettings {
    /// How often the hub checks for cloud commands while Realtime wake-ups cannot arrive.
    #[serde(with = "duration_text")]
    pub poll_interval: Duration,
    /// How often it checks anyway while Realtime listens (at least `poll_interval`); rows a
    /// previous run left `executing` are looked for at start and every three of these.
    #[serde(with = "duration_text")]
    pub safety_poll: Duration,
    /// How often the hub announces its presence (devices count it offline 5 minutes after
    /// the last announce, so at most 4 minutes).
    #[serde(with = "duration_text")]
    pub presence_interval: Duration,
    /// Finished commands (and their keys and events) are deleted from the cloud this many days
    /// after they ended (1 to 3650).
    pub retention_days: u32,
}

impl CloudSettings {
    /// The claim poll while Realtime listens.
    pub fn realtime_poll(&self) -> Duration {
        self.safety_poll.max(self.poll_interval)
    }

    /// How often a running hub looks for rows it left `executing` that nothing works on.
    pub fn orphan_scan(&self) -> Duration {
        self.safety_poll.saturating_mul(3)
    }
}

/// The longest `[cloud] presence_interval`: a minute under the readers' `ONLINE_WITHIN`.
pub const MAX_PRESENCE_INTERVAL: Duration = Duration::from_secs(240);

/// The fewest and most days `[cloud] retention_days` may be (what `prune_cloud` accepts).
pub const RETENTION_DAYS: std::ops::RangeInclusive<u32> = 1..=3650;

impl Default for CloudSettings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(15),
            safety_poll: Duration::from_secs(300),
            presence_interval: helix_discovery::presence::HEARTBEAT,
            retention_days: 30,
        }
    }
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            name: None,
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            max_concurrent: 5,
            queue_capacity: 4096,
            drain_timeout: Duration::from_secs(30),
            retry: RetryConfig::default(),
            providers: ProvidersConfig::default(),
            iroh: IrohConfig::default(),
            cloud: CloudSettings::default(),
            agents: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    pub max_retries: u32,
    #[serde(with = "duration_text")]
    pub base_delay: Duration,
    #[serde(with = "duration_text")]
    pub max_delay: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: 3,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        }
    }
}

/// A named agent profile.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Provider used when a command does not name one (`anthropic` when unset).
    pub provider: Option<String>,
    pub model: Option<String>,
    pub system: Option<String>,
    /// Most earlier turns of a session its commands are given (default
    /// [`crate::history::DEFAULT_HISTORY_TURNS`]; 0: every command is a single turn).
    pub history_turns: Option<u32>,
    /// Most bytes of those turns' prompts and answers (default
    /// [`crate::history::DEFAULT_HISTORY_BYTES`]). The oldest turns are left out first.
    pub history_bytes: Option<u64>,
}

impl HubConfig {
    /// Reads `<data_dir>/config.toml`; a missing file gives the defaults. A relative
    /// `[iroh] relay_ca` is taken relative to `data_dir`.
    pub fn load(data_dir: &Path) -> Result<Self, ConfigError> {
        let path = data_dir.join(FILE_NAME);
        let Some(bytes) = fsutil::read_optional(&path)? else {
            return Ok(Self::default());
        };
        let text = String::from_utf8(bytes).map_err(|_| ConfigError::Parse {
            path: path.clone(),
            message: "not UTF-8".into(),
        })?;
        let mut config: HubConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if let Some(ca) = config.iroh.relay_ca.as_mut()
            && ca.is_relative()
        {
            *ca = data_dir.join(&*ca);
        }
        config.validate()?;
        Ok(config)
    }

    /// Applies environment overrides through `get` (so tests need not touch the process env).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        if let Some(url) = get("ANTHROPIC_BASE_URL").filter(|u| !u.is_empty()) {
            self.providers.anthropic.base_url = url;
        }
        if let Some(url) = get(CODEX_BASE_URL_ENV).filter(|u| !u.is_empty()) {
            self.providers.openai_codex.base_url = url;
        }
        if let Some(url) = get(oauth::ISSUER_ENV).filter(|u| !u.is_empty()) {
            self.providers.openai_codex.issuer = url;
        }
        if let Some(url) = get(GEMINI_BASE_URL_ENV).filter(|u| !u.is_empty()) {
            self.providers.google_gemini.base_url = url;
        }
    }

    /// The history budget of `agent_id`'s commands: its own settings, else the defaults.
    pub fn history_budget(&self, agent_id: &str) -> crate::history::HistoryBudget {
        let agent = self.agents.get(agent_id);
        let default = crate::history::HistoryBudget::default();
        crate::history::HistoryBudget {
            max_turns: agent
                .and_then(|a| a.history_turns)
                .unwrap_or(default.max_turns),
            max_bytes: agent
                .and_then(|a| a.history_bytes)
                .unwrap_or(default.max_bytes),
        }
    }

    /// The model a provider uses when neither the command nor its agent names one.
    pub fn default_model(&self, provider: Provider) -> &str {
        match provider {
            Provider::OpenaiCodex => &self.providers.openai_codex.model,
            Provider::GoogleGemini => &self.providers.google_gemini.model,
            _ => &self.providers.anthropic.model,
        }
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |what: &str, message: &str| ConfigError::Invalid {
            what: what.into(),
            message: message.into(),
        };
        if self.max_concurrent == 0 {
            return Err(invalid("max_concurrent", "must be at least 1"));
        }
        if !self.grpc_addr.ip().is_loopback() {
            return Err(invalid(
                "grpc_addr",
                "must be a loopback address (the TCP listener is for this machine; other devices reach the hub over iroh)",
            ));
        }
        if self.queue_capacity == 0 {
            return Err(invalid("queue_capacity", "must be at least 1"));
        }
        if !RETENTION_DAYS.contains(&self.cloud.retention_days) {
            return Err(invalid(
                "cloud.retention_days",
                "must be 1 to 3650 (days a finished command stays in the cloud)",
            ));
        }
        for (what, interval) in [
            ("cloud.poll_interval", self.cloud.poll_interval),
            ("cloud.safety_poll", self.cloud.safety_poll),
            ("cloud.presence_interval", self.cloud.presence_interval),
        ] {
            if interval.is_zero() {
                return Err(invalid(what, "must be longer than 0s"));
            }
        }
        if self.cloud.presence_interval > MAX_PRESENCE_INTERVAL {
            return Err(invalid(
                "cloud.presence_interval",
                "must be at most 4m: devices count a hub offline 5 minutes after its last announce",
            ));
        }
        let anthropic = &self.providers.anthropic;
        if let Some(dir) = &anthropic.workdir
            && !(dir.is_absolute() && dir.is_dir())
        {
            return Err(invalid(
                "providers.anthropic.workdir",
                &format!(
                    "{} is not an existing directory given by its absolute path",
                    dir.display()
                ),
            ));
        }
        if let Some(tool) = anthropic
            .allowed_tools
            .iter()
            .find(|t| t.trim().is_empty() || t.contains(','))
        {
            return Err(invalid(
                "providers.anthropic.allowed_tools",
                &format!(
                    "{tool:?}: give one tool (or tool pattern) per entry, e.g. [\"Read\", \"Bash(git status)\"]"
                ),
            ));
        }
        for (name, agent) in &self.agents {
            if let Some(p) = &agent.provider {
                p.parse::<Provider>().map_err(|e| ConfigError::Invalid {
                    what: format!("agents.{name}.provider"),
                    message: e.to_string(),
                })?;
            }
        }
        self.iroh.endpoint_options()?;
        let urls = [
            (
                "providers.anthropic.base_url",
                &self.providers.anthropic.base_url,
            ),
            (
                "providers.openai_codex.base_url",
                &self.providers.openai_codex.base_url,
            ),
            (
                "providers.openai_codex.issuer",
                &self.providers.openai_codex.issuer,
            ),
            (
                "providers.google_gemini.base_url",
                &self.providers.google_gemini.base_url,
            ),
        ];
        for (what, base) in urls {
            if !(base.starts_with("http://") || base.starts_with("https://")) {
                return Err(invalid(what, "must start with http:// or https://"));
            }
        }
        Ok(())
    }

    /// The provider an agent uses when a command names none.
    pub fn default_provider(&self, agent_id: &str) -> Provider {
        self.agents
            .get(agent_id)
            .and_then(|a| a.provider.as_deref())
            .and_then(|p| p.parse().ok())
            .unwrap_or(Provider::Anthropic)
    }
}

/// The platform's data directory for the hub (`~/.local/share/helix-hub` on Linux).
pub fn default_data_dir() -> PathBuf {
    helix_discovery::local::default_hub_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_gives_defaults_and_defaults_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let config = HubConfig::load(dir.path()).unwrap();
        assert_eq!(config, HubConfig::default());
        let text = toml::to_string(&config).unwrap();
        assert_eq!(toml::from_str::<HubConfig>(&text).unwrap(), config);
    }

    #[test]
    fn file_then_env_precedence() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE_NAME),
            "max_concurrent = 2\n[providers.anthropic]\nbase_url = \"http://file\"\n[agents.coder]\nprovider = \"openai-codex\"\n",
        )
        .unwrap();
        let mut config = HubConfig::load(dir.path()).unwrap();
        assert_eq!(config.max_concurrent, 2);
        assert_eq!(config.providers.anthropic.base_url, "http://file");
        config.apply_env(|k| {
            matches!(
                k,
                "ANTHROPIC_BASE_URL"
                    | "HELIX_CODEX_BASE_URL"
                    | "HELIX_OPENAI_ISSUER"
                    | "HELIX_GEMINI_BASE_URL"
            )
            .then(|| format!("http://env/{k}"))
        });
        assert_eq!(
            config.providers.anthropic.base_url,
            "http://env/ANTHROPIC_BASE_URL"
        );
        assert_eq!(
            config.providers.openai_codex.base_url,
            "http://env/HELIX_CODEX_BASE_URL"
        );
        assert_eq!(
            config.providers.openai_codex.issuer,
            "http://env/HELIX_OPENAI_ISSUER"
        );
        assert_eq!(
            config.providers.google_gemini.base_url,
            "http://env/HELIX_GEMINI_BASE_URL"
        );
        assert_eq!(config.default_provider("coder"), Provider::OpenaiCodex);
        assert_eq!(config.default_provider("main"), Provider::Anthropic);
    }

    #[test]
    fn each_agent_has_a_history_budget_with_defaults_for_what_it_leaves_unset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE_NAME),
            "[agents.short]\nhistory_turns = 2\n[agents.none]\nhistory_turns = 0\nhistory_bytes = 10\n",
        )
        .unwrap();
        let config = HubConfig::load(dir.path()).unwrap();
        let defaults = crate::history::HistoryBudget::default();
        assert_eq!(config.history_budget("main"), defaults);
        assert_eq!(config.history_budget("short").max_turns, 2);
        assert_eq!(config.history_budget("short").max_bytes, defaults.max_bytes);
        assert_eq!(
            config.history_budget("none"),
            crate::history::HistoryBudget {
                max_turns: 0,
                max_bytes: 10
            }
        );
    }

    #[test]
    fn the_claude_code_policy_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let write = |body: &str| {
            std::fs::write(
                dir.path().join(FILE_NAME),
                format!("[providers.anthropic]\n{body}"),
            )
            .unwrap();
        };
        write(&format!(
            "workdir = {:?}\nallowed_tools = [\"Read\", \"Bash(git status)\"]\npermission_mode = \"acceptEdits\"\n",
            work.path()
        ));
        let config = HubConfig::load(dir.path()).unwrap();
        config.validate().unwrap();
        let a = &config.providers.anthropic;
        assert_eq!(a.workdir.as_deref(), Some(work.path()));
        assert_eq!(a.allowed_tools, ["Read", "Bash(git status)"]);
        assert_eq!(a.permission_mode, Some(PermissionMode::AcceptEdits));
        assert_eq!(PermissionMode::AcceptEdits.as_arg(), "acceptEdits");

        for (body, expected) in [
            (
                "workdir = \"relative/dir\"\n",
                "providers.anthropic.workdir",
            ),
            (
                "workdir = \"/no/such/dir/here\"\n",
                "providers.anthropic.workdir",
            ),
            (
                "allowed_tools = [\"Read,Edit\"]\n",
                "providers.anthropic.allowed_tools",
            ),
            (
                "allowed_tools = [\" \"]\n",
                "providers.anthropic.allowed_tools",
            ),
        ] {
            write(body);
            let err = HubConfig::load(dir.path())
                .and_then(|c| c.validate())
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{body}: {err}");
        }
        write("permission_mode = \"yolo\"\n");
        let err = HubConfig::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("permission_mode") || err.contains("yolo"),
            "{err}"
        );
    }

    #[test]
    fn bad_file_names_itself_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "max_concurent = 2\n").unwrap();
        let err = HubConfig::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("config.toml"), "{err}");
        assert!(err.contains("max_concurent"), "{err}");

        std::fs::write(
            dir.path().join(FILE_NAME),
            "grpc_addr = \"0.0.0.0:50051\"\n",
        )
        .unwrap();
        let err = HubConfig::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.starts_with("grpc_addr is invalid: must be a loopback address"),
            "{err}"
        );

        std::fs::write(dir.path().join(FILE_NAME), "max_concurrent = 0\n").unwrap();
        let err = HubConfig::load(dir.path()).unwrap_err().to_string();
        assert_eq!(err, "max_concurrent is invalid: must be at least 1");

        for days in [0, 3651] {
            std::fs::write(
                dir.path().join(FILE_NAME),
                format!("[cloud]\nretention_days = {days}\n"),
            )
            .unwrap();
            let err = HubConfig::load(dir.path()).unwrap_err().to_string();
            assert_eq!(
                err,
                "cloud.retention_days is invalid: must be 1 to 3650 (days a finished command stays in the cloud)"
            );
        }

        std::fs::write(
            dir.path().join(FILE_NAME),
            "[cloud]\npresence_interval = \"5m\"\n",
        )
        .unwrap();
        let err = HubConfig::load(dir.path()).unwrap_err().to_string();
        assert_eq!(
            err,
            "cloud.presence_interval is invalid: must be at most 4m: devices count a hub offline 5 minutes after its last announce"
        );
        std::fs::write(
            dir.path().join(FILE_NAME),
            "[cloud]\nsafety_poll = \"0s\"\n",
        )
        .unwrap();
        let err = HubConfig::load(dir.path()).unwrap_err().to_string();
        assert_eq!(err, "cloud.safety_poll is invalid: must be longer than 0s");
    }

    #[test]
    fn a_relay_ca_is_found_next_to_the_config_and_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE_NAME),
            "[iroh]\nrelay_ca = \"ca.pem\"\n",
        )
        .unwrap();
        let ca = dir.path().join("ca.pem");
        let err = HubConfig::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "iroh.relay_ca is invalid: reading the relay CA {}: ",
                ca.display()
            )),
            "{err}"
        );
        std::fs::write(
            &ca,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = HubConfig::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.ends_with(
                "no certificate in it: it must be a PEM file with one or more CERTIFICATE blocks"
            ),
            "{err}"
        );
        let cert = rcgen::generate_simple_self_signed(vec!["relay.test".into()]).unwrap();
        std::fs::write(&ca, cert.cert.pem()).unwrap();
        let config = HubConfig::load(dir.path()).unwrap();
        assert_eq!(config.iroh.relay_ca, Some(ca.clone()));
        assert_eq!(config.iroh.endpoint_options().unwrap().relay_ca, Some(ca));
    }

    #[test]
    fn the_idle_cloud_schedule_defaults_to_minutes() {
        let cloud = HubConfig::default().cloud;
        assert_eq!(
            (
                cloud.poll_interval,
                cloud.safety_poll,
                cloud.presence_interval
            ),
            (
                Duration::from_secs(15),
                Duration::from_secs(300),
                Duration::from_secs(120)
            )
        );
    }

    #[test]
    fn retention_defaults_to_30_days_and_takes_the_bounds() {
        assert_eq!(HubConfig::default().cloud.retention_days, 30);
        let dir = tempfile::tempdir().unwrap();
        for days in [1, 3650] {
            std::fs::write(
                dir.path().join(FILE_NAME),
                format!("[cloud]\nretention_days = {days}\npoll_interval = \"2s\"\n"),
            )
            .unwrap();
            let config = HubConfig::load(dir.path()).unwrap();
            assert_eq!(config.cloud.retention_days, days);
            assert_eq!(config.cloud.poll_interval, Duration::from_secs(2));
        }
    }
}
