//! The `[providers.*]` sections: each provider's endpoint, model and timeouts.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration_text;
use crate::{
    oauth,
    provider::{anthropic, codex, gemini},
};

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvidersConfig {
    pub anthropic: AnthropicConfig,
    pub openai_codex: CodexConfig,
    pub google_gemini: GeminiConfig,
}

/// Environment variable that replaces `providers.openai_codex.base_url`.
pub const CODEX_BASE_URL_ENV: &str = "HELIX_CODEX_BASE_URL";
/// Environment variable that replaces `providers.google_gemini.base_url`.
pub const GEMINI_BASE_URL_ENV: &str = "HELIX_GEMINI_BASE_URL";

/// The ChatGPT-account Codex backend (Responses API) and its OAuth issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CodexConfig {
    pub base_url: String,
    pub issuer: String,
    pub model: String,
    #[serde(with = "duration_text")]
    pub connect_timeout: Duration,
    #[serde(with = "duration_text")]
    pub idle_timeout: Duration,
}

impl Default for CodexConfig {
    fn default() -> Self {
        Self {
            base_url: codex::DEFAULT_BASE_URL.into(),
            issuer: oauth::DEFAULT_ISSUER.into(),
            model: codex::DEFAULT_MODEL.into(),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// The Gemini API with an API key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeminiConfig {
    pub base_url: String,
    pub model: String,
    #[serde(with = "duration_text")]
    pub connect_timeout: Duration,
    #[serde(with = "duration_text")]
    pub idle_timeout: Duration,
}

impl Default for GeminiConfig {
    fn default() -> Self {
        Self {
            base_url: gemini::DEFAULT_BASE_URL.into(),
            model: gemini::DEFAULT_MODEL.into(),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnthropicConfig {
    pub base_url: String,
    pub model: String,
    pub max_tokens: u32,
    #[serde(with = "duration_text")]
    pub connect_timeout: Duration,
    /// Longest silence inside a streaming answer before the attempt counts as timed out.
    #[serde(with = "duration_text")]
    pub idle_timeout: Duration,
    /// The Claude Code CLI that runs setup-token credentials (a name on PATH or a path).
    pub claude_binary: String,
    /// Claude Code's working directory: what its tools (Read, Edit, Bash…) work in. Unset:
    /// a new empty directory for each command, removed after it.
    pub workdir: Option<std::path::PathBuf>,
    /// Tools Claude Code may use without asking (its `--allowedTools`, e.g. `"Read"`,
    /// `"Bash(git status)"`). Headless, a tool that would ask is refused instead.
    pub allowed_tools: Vec<String>,
    /// Claude Code's `--permission-mode`; unset: its own default.
    pub permission_mode: Option<PermissionMode>,
}

/// Claude Code's permission modes (`claude --help`, 2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PermissionMode {
    /// Asks for anything not allowed (headless: refuses it).
    Default,
    /// File edits without asking.
    AcceptEdits,
    /// Plans only: no edits, no commands.
    Plan,
    /// Refuses whatever would ask.
    DontAsk,
    /// Claude Code decides.
    Auto,
    /// Every tool without asking: the agent can do on the desktop whatever this user can.
    BypassPermissions,
}

impl PermissionMode {
    /// The name Claude Code takes.
    pub fn as_arg(self) -> &'static str {
        match self {
            PermissionMode::Default => "default",
            PermissionMode::AcceptEdits => "acceptEdits",
            PermissionMode::Plan => "plan",
            PermissionMode::DontAsk => "dontAsk",
            PermissionMode::Auto => "auto",
            PermissionMode::BypassPermissions => "bypassPermissions",
        }
    }
}

impl Default for AnthropicConfig {
    fn default() -> Self {
        Self {
            base_url: anthropic::DEFAULT_BASE_URL.into(),
            model: "claude-sonnet-4-5".into(),
            max_tokens: 8192,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            claude_binary: "claude".into(),
            workdir: None,
            allowed_tools: Vec::new(),
            permission_mode: None,
        }
    }
}
