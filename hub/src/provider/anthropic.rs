//! Anthropic Messages API, streaming (`POST {base}/v1/messages` with `"stream": true`).
//!
//! Server-sent events: `message_start`, `content_block_start`, `content_block_delta` (a
//! `text_delta` carries text), `content_block_stop`, `message_delta`, `message_stop`, `ping`,
//! and `error`, which can arrive after HTTP 200 and after some text. A stream that ends before
//! `message_stop` is an error: the answer is incomplete.
//!
//! Setup-tokens (and other Claude plan OAuth tokens) are not sent to the API by the hub: they
//! run through the Claude Code CLI ([`super::claude_code`]) when one is configured.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::claude_code::ClaudeCode;
use crate::sse::SseEvent;

use super::{
    ErrorKind, OutputStream, ProviderError, ProviderExec, ProviderRequest, SseStep,
    describe_transport, refused, sse_output,
};
use crate::{credentials::Credential, history::Turn};

/// The API version header value this client speaks.
pub const API_VERSION: &str = "2023-06-01";

/// The default API base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";

/// Most bytes of an error body quoted in an error message.
const MAX_ERROR_BODY: usize = 2048;

/// Messages API client.
#[derive(Debug, Clone)]
pub struct Anthropic {
    http: reqwest::Client,
    base_url: String,
    claude_code: Option<ClaudeCode>,
}

impl Anthropic {
    /// `base_url` without the `/v1/messages` path, e.g. `https://api.anthropic.com`.
    pub fn new(
        base_url: &str,
        connect_timeout: Duration,
        idle_timeout: Duration,
    ) -> Result<Self, ProviderError> {
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .read_timeout(idle_timeout)
            .user_agent(concat!("helix-hub/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::new(ErrorKind::Connection, describe_transport(&e)))?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            claude_code: None,
        })
    }

    /// Runs token credentials through `claude_code`.
    pub fn with_claude_code(mut self, claude_code: ClaudeCode) -> Self {
        self.claude_code = Some(claude_code);
        self
    }
}

#[derive(Deserialize)]
struct Delta {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: String,
}

#[derive(Deserialize)]
struct ContentBlockDelta {
    delta: Delta,
}

#[derive(Deserialize)]
struct ApiErrorBody {
    error: ApiError,
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

fn kind_for_error_type(t: &str) -> ErrorKind {
    match t {
        "overloaded_error" => ErrorKind::Overloaded,
        "rate_limit_error" => ErrorKind::RateLimited,
        "api_error" => ErrorKind::Server,
        "authentication_error" => ErrorKind::Unauthorized,
        "permission_error" => ErrorKind::Forbidden,
        "invalid_request_error" | "not_found_error" | "request_too_large" => {
            ErrorKind::InvalidRequest
        }
        _ => ErrorKind::Api,
    }
}

/// An error body (JSON `{"type":"error","error":{…}}` or anything else) as a message.
fn describe_error_body(body: &str) -> (Option<ErrorKind>, String) {
    match serde_json::from_str::<ApiErrorBody>(body) {
        Ok(b) => (
            Some(kind_for_error_type(&b.error.kind)),
            format!("{}: {}", b.error.kind, b.error.message),
        ),
        Err(_) => {
            let mut end = body.len().min(MAX_ERROR_BODY);
            while !body.is_char_boundary(end) {
                end -= 1;
            }
            (None, body[..end].trim().to_owned())
        }
    }
}

impl ProviderExec for Anthropic {
    fn execute(&self, request: ProviderRequest) -> OutputStream {
        if let (Credential::Token { .. } | Credential::OAuth { .. }, Some(cc)) =
            (&request.credential, &self.claude_code)
        {
            return cc.execute(request);
        }
        let key = match &request.credential {
            Credential::ApiKey(key) => key.clone(),
            other => {
                return refused(ProviderError::new(
                    ErrorKind::Unsupported,
                    format!(
                        "anthropic: a {} credential runs through the Claude Code CLI, which is not configured; set providers.anthropic.claude_binary or store an API key with `helix-hub login anthropic --api-key`",
                        other.kind()
                    ),
                ));
            }
        };
        let mut body = json!({
            "model": request.model,
            "max_tokens": request.max_tokens,
            "stream": true,
            "messages": messages(&request.history, &request.content),
        });
        if let Some(system) = &request.system {
            body["system"] = json!(system);
        }
        let http_request = self
            .http
            .post(format!("{}/v1/messages", self.base_url))
            .header("x-api-key", key.expose())
            .header("anthropic-version", API_VERSION)
            .header("accept", "text/event-stream")
            .json(&body);
        sse_output(
            "anthropic",
            http_request,
            // The status classifies an HTTP error; the body only describes it.
            |text| (None, describe_error_body(text).1),
            "message_stop",
            step,
        )
    }
}

/// The Messages API's `messages`: each earlier turn as a user and an assistant message, then
/// the prompt; roles alternate, starting and ending with the user.
pub fn messages(history: &[Turn], prompt: &str) -> Value {
    let mut messages = Vec::with_capacity(history.len() * 2 + 1);
    for turn in history {
        messages.push(json!({"role": "user", "content": turn.prompt}));
        messages.push(json!({"role": "assistant", "content": turn.answer}));
    }
    messages.push(json!({"role": "user", "content": prompt}));
    Value::Array(messages)
}

/// What one Messages API event means for the output.
fn step(event: &SseEvent) -> SseStep {
    match event.event.as_str() {
        "content_block_delta" => match serde_json::from_str::<ContentBlockDelta>(&event.data) {
            Ok(d) if d.delta.kind == "text_delta" => SseStep::Text(d.delta.text),
            // thinking_delta, input_json_delta, signature_delta: not text.
            Ok(_) => SseStep::Skip,
            Err(e) => SseStep::Fail(ProviderError::new(
                ErrorKind::Api,
                format!("anthropic: malformed content_block_delta: {e}"),
            )),
        },
        "message_stop" => SseStep::Done,
        "error" => {
            let (kind, detail) = describe_error_body(&event.data);
            SseStep::Fail(ProviderError::new(
                kind.unwrap_or(ErrorKind::Api),
                format!("anthropic: {detail}"),
            ))
        }
        // message_start, content_block_start/stop, message_delta, ping, and event types added
        // later: nothing to show.
        _ => SseStep::Skip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earlier_turns_alternate_user_and_assistant_before_the_prompt() {
        let history = [
            Turn {
                prompt: "my name is Ada".into(),
                answer: "Hello Ada".into(),
            },
            Turn {
                prompt: "I like tea".into(),
                answer: "Noted".into(),
            },
        ];
        assert_eq!(
            messages(&history, "what is my name?"),
            json!([
                {"role": "user", "content": "my name is Ada"},
                {"role": "assistant", "content": "Hello Ada"},
                {"role": "user", "content": "I like tea"},
                {"role": "assistant", "content": "Noted"},
                {"role": "user", "content": "what is my name?"},
            ])
        );
        assert_eq!(
            messages(&[], "hi"),
            json!([{"role": "user", "content": "hi"}])
        );
    }

    #[test]
    fn error_bodies_are_classified() {
        let (kind, msg) = describe_error_body(
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert_eq!(kind, Some(ErrorKind::Overloaded));
        assert_eq!(msg, "overloaded_error: Overloaded");
        let (kind, msg) = describe_error_body("<html>bad gateway</html>");
        assert_eq!(kind, None);
        assert_eq!(msg, "<html>bad gateway</html>");
    }
}
