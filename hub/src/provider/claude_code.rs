//! Anthropic with a setup-token (a Claude plan's OAuth token): through the official Claude Code
//! CLI in headless mode, since those tokens may only be used by Claude Code itself.
//!
//! `claude -p --output-format stream-json --verbose --include-partial-messages -- PROMPT`, with
//! the token in `CLAUDE_CODE_OAUTH_TOKEN` (never argv), `ANTHROPIC_BASE_URL` from the hub's
//! config, `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`, and a throwaway `HOME` (also the
//! working directory) so the person's own Claude Code settings and files are not touched.
//!
//! stdout is one JSON object per line: `system`, `stream_event` (a Messages API SSE event;
//! `content_block_delta`/`text_delta` carries the text token by token), `assistant` (the
//! whole turn, not shown again), `result` (`subtype`, `is_error`, `result`,
//! `api_error_status`). Dropping the stream kills the child.

use std::{process::Stdio, time::Duration};

use async_stream::stream;
use serde_json::Value;
use tokio::io::AsyncReadExt;

use super::{
    ErrorKind, OutputStream, ProviderError, ProviderExec, ProviderRequest, kind_for_status,
};
use crate::{credentials::Credential, sse::MAX_LINE_BYTES};

/// How much of the child's stderr is kept to explain a failure.
const STDERR_TAIL_BYTES: usize = 4096;
/// How long a child that has sent its `result` may take to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(5);
/// Bytes read from a pipe at a time.
const READ_CHUNK: usize = 16 * 1024;

/// Runs the Claude Code CLI.
#[derive(Debug, Clone)]
pub struct ClaudeCode {
    binary: String,
    base_url: String,
    idle_timeout: Duration,
}

impl ClaudeCode {
    /// `binary`: a name on PATH or a path; `base_url`: passed on as `ANTHROPIC_BASE_URL`;
    /// `idle_timeout`: longest silence on the child's stdout.
    pub fn new(binary: &str, base_url: &str, idle_timeout: Duration) -> Self {
        Self {
            binary: binary.to_owned(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            idle_timeout,
        }
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

impl ProviderExec for ClaudeCode {
    fn execute(&self, request: ProviderRequest) -> OutputStream {
        let this = self.clone();
        Box::pin(stream! {
            let token = match &request.credential {
                Credential::Token { token, .. } => token.clone(),
                Credential::OAuth { access, .. } => access.clone(),
                Credential::ApiKey(_) => {
                    yield Err(failure(ErrorKind::Unsupported, "anthropic: API keys use the Messages API, not Claude Code".into()));
                    return;
                }
            };
            // Anything the child says is scrubbed of the token before it reaches an error.
            let scrub = |text: &str| text.replace(token.expose(), "<redacted>");
            let home = match tempfile::Builder::new().prefix("helix-claude-home-").tempdir() {
                Ok(h) => h,
                Err(e) => {
                    yield Err(failure(ErrorKind::Api, format!("anthropic (claude code): creating a temporary HOME: {e}")));
                    return;
                }
            };
            let mut cmd = tokio::process::Command::new(&this.binary);
            cmd.args(["-p", "--output-format", "stream-json", "--verbose", "--include-partial-messages"])
                .arg("--model")
                .arg(&request.model);
            if let Some(system) = &request.system {
                cmd.arg("--append-system-prompt").arg(system);
            }
            // The prompt goes on stdin, not argv: argv is capped (128 KiB per argument on
            // Linux, below the 1 MiB prompt limit) and visible to every user in `ps`.
            cmd.env_remove("ANTHROPIC_API_KEY")
                .env_remove("ANTHROPIC_AUTH_TOKEN")
                .env_remove("CLAUDE_CONFIG_DIR")
                .env("CLAUDE_CODE_OAUTH_TOKEN", token.expose())
                .env("ANTHROPIC_BASE_URL", &this.base_url)
                .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
                .env("HOME", home.path())
                .current_dir(home.path())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            // Never log `cmd` itself: its Debug output includes the environment.
            tracing::debug!(command_id = %request.command_id, binary = %this.binary, "starting claude code");
            let mut child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    yield Err(failure(ErrorKind::Unsupported, format!(
                        "anthropic: the Claude Code CLI ({}) was not found; setup-tokens run through it: install it (npm install -g @anthropic-ai/claude-code) or set providers.anthropic.claude_binary",
                        this.binary
                    )));
                    return;
                }
                Err(e) => {
                    yield Err(failure(ErrorKind::Api, format!("anthropic: starting {}: {e}", this.binary)));
                    return;
                }
            };
            let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
                (child.stdin.take(), child.stdout.take(), child.stderr.take())
            else {
                yield Err(failure(ErrorKind::Api, "anthropic (claude code): no pipes to the child".into()));
                return;
            };
            // Written by its own task so a large prompt cannot deadlock against the child's
            // output; closing stdin tells the child the prompt is complete.
            let prompt = request.content.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ = stdin.write_all(prompt.as_bytes()).await;
                let _ = stdin.shutdown().await;
            });
            let mut line = Vec::new();
            let mut buf = vec![0u8; READ_CHUNK];
            let mut err_buf = vec![0u8; READ_CHUNK];
            let mut err_tail: Vec<u8> = Vec::new();
            let mut stderr_open = true;
            let mut outcome: Option<Result<(), ProviderError>> = None;
            while outcome.is_none() {
                let read = tokio::select! {
                    r = tokio::time::timeout(this.idle_timeout, stdout.read(&mut buf)) => r,
                    r = stderr.read(&mut err_buf), if stderr_open => {
                        match r {
                            Ok(0) | Err(_) => stderr_open = false,
                            Ok(n) => {
                                err_tail.extend_from_slice(&err_buf[..n]);
                                let excess = err_tail.len().saturating_sub(STDERR_TAIL_BYTES);
                                err_tail.drain(..excess);
                            }
                        }
                        continue;
                    }
                };
                let n = match read {
                    Err(_) => {
                        yield Err(failure(ErrorKind::Timeout, format!(
                            "anthropic (claude code): no output for {}",
                            humantime::format_duration(this.idle_timeout)
                        )));
                        return;
                    }
                    Ok(Err(e)) => {
                        yield Err(failure(ErrorKind::Connection, format!("anthropic (claude code): reading its output: {e}")));
                        return;
                    }
                    Ok(Ok(0)) => break,
                    Ok(Ok(n)) => n,
                };
                let mut rest = &buf[..n];
                while let Some(pos) = rest.iter().position(|b| *b == b'\n') {
                    line.extend_from_slice(&rest[..pos]);
                    rest = &rest[pos + 1..];
                    match interpret(&line) {
                        Line::Text(t) => yield Ok(t),
                        Line::Success => outcome = Some(Ok(())),
                        Line::Failed(kind, message) => outcome = Some(Err(failure(kind, scrub(&message)))),
                        Line::Nothing => {}
                    }
                    line.clear();
                    if outcome.is_some() {
                        break;
                    }
                }
                if line.len() + rest.len() > MAX_LINE_BYTES {
                    yield Err(failure(ErrorKind::Api, "anthropic (claude code): an output line is too long".into()));
                    return;
                }
                line.extend_from_slice(rest);
            }
            let status = tokio::time::timeout(EXIT_GRACE, child.wait()).await;
            match outcome {
                Some(Ok(())) => {}
                Some(Err(e)) => yield Err(e),
                None => {
                    let status = match status {
                        Ok(Ok(s)) => s.to_string(),
                        _ => "no exit status".to_owned(),
                    };
                    let tail = scrub(String::from_utf8_lossy(&err_tail).trim());
                    yield Err(failure(ErrorKind::Api, format!(
                        "anthropic (claude code): it ended ({status}) without a result{}{tail}",
                        if tail.is_empty() { "" } else { ": " }
                    )));
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
