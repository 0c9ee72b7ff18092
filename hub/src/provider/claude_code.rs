//! Anthropic with a setup-token (a Claude plan's OAuth token): through the official Claude Code
//! CLI in headless mode, since those tokens may only be used by Claude Code itself.
//!
//! `claude -p --output-format stream-json --verbose --include-partial-messages -- PROMPT`, with
//! the token in `CLAUDE_CODE_OAUTH_TOKEN` (never argv), `ANTHROPIC_BASE_URL` from the hub's
//! config, `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`, and a throwaway `HOME` (also the
//! working directory unless `workdir` is set) so the person's own Claude Code settings and
//! files are not touched. Of the hub's environment only an allow-list is passed on
//! ([`ENV_ALLOWED`]); `allowed_tools` and `permission_mode` become `--allowedTools` and
//! `--permission-mode`.
//!
//! stdout is one JSON object per line: `system`, `stream_event` (a Messages API SSE event;
//! `content_block_delta`/`text_delta` carries the text token by token), `assistant` (the
//! whole turn, not shown again), `result` (`subtype`, `is_error`, `result`,
//! `api_error_status`). Dropping the stream kills the child.
//!
//! A command of a named session runs in a Claude Code session of its own that continues the
//! conversation (`--session-id`, `--resume … --fork-session`), in a `HOME` kept for the
//! session: see `session`.

use std::{path::Path, process::Stdio, time::Duration};

use async_stream::stream;
use serde_json::Value;
use tokio::{
    io::AsyncWriteExt,
    process::{Child, ChildStdin},
};

mod output;
mod session;

pub use self::session::{ClaudeSessions, CliPlan, CliSession, Past, exists, remove};

use self::output::{ChildOutput, without_result};
use super::{
    ErrorKind, OutputStream, ProviderError, ProviderExec, ProviderRequest, kind_for_status,
};
use crate::credentials::{Credential, Secret};

/// How long a child that has sent its `result` may take to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// The hub's environment variables Claude Code is given (everything else, e.g. other
/// programs' tokens and keys in the hub's environment, is not): what finding programs,
/// language, time zone, temporary files, TLS roots and proxies need.
const ENV_ALLOWED: &[&str] = &[
    "PATH",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "USER",
    "LOGNAME",
    "SHELL",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Whether the hub's variable `name` is passed on to Claude Code ([`ENV_ALLOWED`] and the
/// locale's `LC_*`).
fn env_allowed(name: &str) -> bool {
    ENV_ALLOWED.contains(&name) || name.starts_with("LC_")
}

/// What Claude Code may do, from `[providers.anthropic]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaudeCodePolicy {
    /// Its working directory; `None`: the command's throwaway `HOME`.
    pub workdir: Option<std::path::PathBuf>,
    /// `--allowedTools`.
    pub allowed_tools: Vec<String>,
    /// `--permission-mode`.
    pub permission_mode: Option<crate::config::PermissionMode>,
}

/// Runs the Claude Code CLI.
#[derive(Debug, Clone)]
pub struct ClaudeCode {
    binary: String,
    base_url: String,
    idle_timeout: Duration,
    policy: ClaudeCodePolicy,
}

impl ClaudeCode {
    /// `binary`: a name on PATH or a path; `base_url`: passed on as `ANTHROPIC_BASE_URL`;
    /// `idle_timeout`: longest silence on the child's stdout.
    pub fn new(binary: &str, base_url: &str, idle_timeout: Duration) -> Self {
        Self {
            binary: binary.to_owned(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            idle_timeout,
            policy: ClaudeCodePolicy::default(),
        }
    }

    /// With its working directory and tool policy.
    pub fn with_policy(mut self, policy: ClaudeCodePolicy) -> Self {
        self.policy = policy;
        self
    }
}

/// What one stdout line means.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    Text(String),
    Success,
    Failed(ErrorKind, String),
    Nothing,
}

fn interpret(line: &[u8]) -> Line {
    let Ok(v) = serde_json::from_slice::<Value>(line) else {
        // Not ours to show (e.g. a warning printed to stdout); the result line decides.
        return Line::Nothing;
    };
    match v.get("type").and_then(Value::as_str) {
        // Subagents stream too; only the main turn (no parent tool use) is the answer.
        Some("stream_event") if v.get("parent_tool_use_id").is_none_or(Value::is_null) => {
            let event = &v["event"];
            if event["type"] == "content_block_delta" && event["delta"]["type"] == "text_delta" {
                match event["delta"]["text"].as_str() {
                    Some(t) if !t.is_empty() => Line::Text(t.to_owned()),
                    _ => Line::Nothing,
                }
            } else if event["type"] == "error" {
                let message = event["error"]["message"].as_str().unwrap_or("error event");
                Line::Failed(
                    ErrorKind::Api,
                    format!("anthropic (claude code): {message}"),
                )
            } else {
                Line::Nothing
            }
        }
        Some("result") => {
            let is_error = v["is_error"].as_bool().unwrap_or(false);
            let subtype = v["subtype"].as_str().unwrap_or("");
            if !is_error && subtype == "success" {
                return Line::Success;
            }
            let kind = v["api_error_status"]
                .as_u64()
                .and_then(|s| u16::try_from(s).ok())
                .map_or(ErrorKind::Api, kind_for_status);
            let detail = v["result"]
                .as_str()
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .unwrap_or_else(|| subtype.to_owned());
            Line::Failed(kind, format!("anthropic (claude code): {detail}"))
        }
        _ => Line::Nothing,
    }
}

fn failure(kind: ErrorKind, message: String) -> ProviderError {
    ProviderError::new(kind, message)
}

/// The token Claude Code is started with: a setup-token or an OAuth access token.
fn token_of(credential: &Credential) -> Result<Secret, ProviderError> {
    match credential {
        Credential::Token { token, .. } => Ok(token.clone()),
        Credential::OAuth { access, .. } => Ok(access.clone()),
        Credential::ApiKey(_) => Err(failure(
            ErrorKind::Unsupported,
            "anthropic: API keys use the Messages API, not Claude Code".into(),
        )),
    }
}

impl ClaudeCode {
    /// Starts the CLI for `request`, with `token` in its environment and `home` as its `HOME`
    /// and working directory; all three pipes open.
    fn spawn(
        &self,
        request: &ProviderRequest,
        token: &Secret,
        home: &Path,
    ) -> Result<Child, ProviderError> {
        let mut cmd = tokio::process::Command::new(&self.binary);
        cmd.args([
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--include-partial-messages",
        ])
        .arg("--model")
        .arg(&request.model);
        if let Some(session) = &request.cli_session {
            cmd.arg("--session-id").arg(session.id.to_string());
            if let Some(previous) = session.resume {
                cmd.arg("--resume")
                    .arg(previous.to_string())
                    .arg("--fork-session");
            }
        }
        if let Some(system) = &request.system {
            cmd.arg("--append-system-prompt").arg(system);
        }
        if !self.policy.allowed_tools.is_empty() {
            cmd.arg("--allowedTools")
                .arg(self.policy.allowed_tools.join(","));
        }
        if let Some(mode) = self.policy.permission_mode {
            cmd.arg("--permission-mode").arg(mode.as_arg());
        }
        // Only the allowed part of the hub's environment: nothing else it holds (other
        // programs' keys and tokens) reaches the agent or the tools it runs.
        cmd.env_clear()
            .envs(std::env::vars_os().filter(|(name, _)| name.to_str().is_some_and(env_allowed)));
        // The prompt goes on stdin, not argv: argv is capped (128 KiB per argument on
        // Linux, below the 1 MiB prompt limit) and visible to every user in `ps`.
        cmd.env("CLAUDE_CODE_OAUTH_TOKEN", token.expose())
            .env("ANTHROPIC_BASE_URL", &self.base_url)
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("HOME", home)
            .current_dir(self.policy.workdir.as_deref().unwrap_or(home))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Never log `cmd` itself: its Debug output includes the environment.
        tracing::debug!(command_id = %request.command_id, binary = %self.binary, "starting claude code");
        cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                failure(ErrorKind::Unsupported, format!(
                    "anthropic: the Claude Code CLI ({}) was not found; setup-tokens run through it: install it (npm install -g @anthropic-ai/claude-code) or set providers.anthropic.claude_binary",
                    self.binary
                ))
            } else {
                failure(ErrorKind::Api, format!("anthropic: starting {}: {e}", self.binary))
            }
        })
    }
}

/// Claude Code's `HOME` for one attempt: the Helix session's directory, kept for its next
/// turns, or for a command without a session a temporary one, deleted afterwards.
enum Home {
    Kept(std::path::PathBuf),
    Temporary(tempfile::TempDir),
}

impl Home {
    fn for_request(request: &ProviderRequest) -> Result<Self, String> {
        match &request.cli_session {
            Some(session) => {
                helix_mesh::fsutil::ensure_private_dir(&session.home)
                    .map_err(|e| format!("preparing the session's HOME: {e}"))?;
                Ok(Home::Kept(session.home.clone()))
            }
            None => tempfile::Builder::new()
                .prefix("helix-claude-home-")
                .tempdir()
                .map(Home::Temporary)
                .map_err(|e| format!("creating a temporary HOME: {e}")),
        }
    }

    fn path(&self) -> &Path {
        match self {
            Home::Kept(path) => path,
            Home::Temporary(dir) => dir.path(),
        }
    }
}

/// Writes the prompt from a task of its own, so a large prompt cannot deadlock against the
/// child's output; closing stdin tells the child the prompt is complete.
fn write_prompt(mut stdin: ChildStdin, prompt: String) {
    tokio::spawn(async move {
        let _ = stdin.write_all(prompt.as_bytes()).await;
        let _ = stdin.shutdown().await;
    });
}

impl ProviderExec for ClaudeCode {
    fn execute(&self, request: ProviderRequest) -> OutputStream {
        let this = self.clone();
        Box::pin(stream! {
            let token = match token_of(&request.credential) {
                Ok(token) => token,
                Err(e) => {
                    yield Err(e);
                    return;
                }
            };
            // Anything the child says is scrubbed of the token before it reaches an error.
            let scrub = |text: &str| text.replace(token.expose(), "<redacted>");
            let home = match Home::for_request(&request) {
                Ok(h) => h,
                Err(e) => {
                    yield Err(failure(ErrorKind::Api, format!("anthropic (claude code): {e}")));
                    return;
                }
            };
            let mut child = match this.spawn(&request, &token, home.path()) {
                Ok(child) => child,
                Err(e) => {
                    yield Err(e);
                    return;
                }
            };
            let (Some(stdin), Some(stdout), Some(stderr)) =
                (child.stdin.take(), child.stdout.take(), child.stderr.take())
            else {
                yield Err(failure(ErrorKind::Api, "anthropic (claude code): no pipes to the child".into()));
                return;
            };
            write_prompt(stdin, request.content.clone());
            let mut output = ChildOutput::new(stdout, stderr, this.idle_timeout);
            let outcome = loop {
                let line = match output.next_line().await {
                    Ok(Some(line)) => interpret(line),
                    Ok(None) => break None,
                    Err(e) => {
                        yield Err(e);
                        return;
                    }
                };
                match line {
                    Line::Text(t) => yield Ok(t),
                    Line::Success => break Some(Ok(())),
                    Line::Failed(kind, message) => break Some(Err(failure(kind, scrub(&message)))),
                    Line::Nothing => {}
                }
            };
            let status = tokio::time::timeout(EXIT_GRACE, child.wait()).await;
            match outcome {
                Some(Ok(())) => {}
                Some(Err(e)) => yield Err(e),
                None => {
                    let tail = scrub(String::from_utf8_lossy(&output.err_tail).trim());
                    yield Err(without_result(status, &tail));
                }
            }
            drop(home);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_interpreted() {
        assert_eq!(
            interpret(br#"{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}},"parent_tool_use_id":null}"#),
            Line::Text("Hel".into())
        );
        assert_eq!(
            interpret(
                br#"{"type":"assistant","message":{"content":[{"type":"text","text":"Hello"}]}}"#
            ),
            Line::Nothing
        );
        assert_eq!(
            interpret(
                br#"{"type":"result","subtype":"success","is_error":false,"result":"Hello"}"#
            ),
            Line::Success
        );
        assert_eq!(
            interpret(br#"{"type":"result","subtype":"success","is_error":true,"api_error_status":401,"result":"Not logged in"}"#),
            Line::Failed(ErrorKind::Unauthorized, "anthropic (claude code): Not logged in".into())
        );
        assert_eq!(interpret(b"not json"), Line::Nothing);
    }
}
