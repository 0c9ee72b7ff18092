//! OpenAI Codex with a ChatGPT sign-in: the Responses API of the Codex backend
//! (`POST {base}/backend-api/codex/responses`, `text/event-stream`).
//!
//! Events (the `type` field of each `data:` JSON): `response.output_text.delta` carries text in
//! `delta`; `response.completed` ends the answer; `response.failed` and `error` end it with an
//! error; everything else (`response.created`, `response.output_item.added`, …) shows nothing.
//! A stream that ends before `response.completed` is incomplete: an error.
//!
//! `insufficient_quota` (the account's credits are used up), `usage_limit_reached` (the
//! ChatGPT plan's usage window is spent) and `usage_not_included` (the ChatGPT plan does not
//! include Codex; the Codex CLI ends the turn on both) are not rate limits even when they come
//! as HTTP 429: they fail at once, in the body of an HTTP error or in a `response.failed`. A usage limit's message says when it resets when the error says so
//! (`resets_at`, Unix seconds, or the older `resets_in_seconds`).

use std::time::{Duration, UNIX_EPOCH};

use helix_mesh::proto_ext::now_ms;

use serde_json::{Value, json};

use super::{
    ErrorKind, OutputStream, ProviderError, ProviderExec, ProviderRequest, SseStep, http_client,
    refused, sse_output, truncate_text,
};
use crate::{credentials::Credential, history::Turn};

/// The default backend base URL.
pub const DEFAULT_BASE_URL: &str = "https://chatgpt.com";
/// The model used when neither the command nor its agent names one.
pub const DEFAULT_MODEL: &str = "gpt-5-codex";
/// Instructions sent when the agent has no system prompt (the API requires some).
pub const DEFAULT_INSTRUCTIONS: &str = "You are a helpful assistant.";

/// Codex Responses API client.
#[derive(Debug, Clone)]
pub struct Codex {
    http: reqwest::Client,
    base_url: String,
}

impl Codex {
    /// `base_url` without the path, e.g. `https://chatgpt.com`.
    pub fn new(
        base_url: &str,
        connect_timeout: Duration,
        idle_timeout: Duration,
    ) -> Result<Self, ProviderError> {
        Ok(Self {
            http: http_client(connect_timeout, idle_timeout)?,
            base_url: base_url.trim_end_matches('/').to_owned(),
        })
    }
}

/// The request body, shaped like the Codex CLI's.
pub fn request_body(request: &ProviderRequest) -> Value {
    json!({
        "model": request.model,
        "instructions": request.system.as_deref().unwrap_or(DEFAULT_INSTRUCTIONS),
        "input": input(&request.history, &request.content),
        "stream": true,
        "store": false,
    })
}

/// The Responses `input`: with `store: false` the backend keeps nothing between requests, so
/// each earlier turn is sent again, as the Codex CLI sends its history: the user's message
/// (`input_text`) and the assistant's (`output_text`), then the prompt.
pub fn input(history: &[Turn], prompt: &str) -> Value {
    let user = |text: &str| json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]});
    let mut input = Vec::with_capacity(history.len() * 2 + 1);
    for turn in history {
        input.push(user(&turn.prompt));
        input.push(json!({
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": turn.answer}],
        }));
    }
    input.push(user(prompt));
    Value::Array(input)
}

/// The error code (or type) of a spent ChatGPT plan usage limit.
const USAGE_LIMIT_REACHED: &str = "usage_limit_reached";
/// The error code (or type) of a ChatGPT plan that does not include Codex.
const USAGE_NOT_INCLUDED: &str = "usage_not_included";

fn kind_for_code(code: &str) -> ErrorKind {
    match code {
        "rate_limit_exceeded" => ErrorKind::RateLimited,
        USAGE_LIMIT_REACHED => ErrorKind::UsageLimitReached,
        USAGE_NOT_INCLUDED => ErrorKind::NotInPlan,
        "insufficient_quota" => ErrorKind::QuotaExhausted,
        "server_error" | "server_is_overloaded" => ErrorKind::Server,
        "context_length_exceeded" | "invalid_prompt" | "invalid_request_error" => {
            ErrorKind::InvalidRequest
        }
        _ => ErrorKind::Api,
    }
}

/// The `code` of an error object, else its `type` (the API fills one or both). A usage limit
/// or a plan without Codex is named by either (the Codex CLI reads `type`).
fn code_of(object: Option<&Value>) -> &str {
    let field = |name| object.and_then(|e| e.get(name)).and_then(Value::as_str);
    for final_type in [USAGE_LIMIT_REACHED, USAGE_NOT_INCLUDED] {
        if field("type") == Some(final_type) {
            return final_type;
        }
    }
    field("code")
        .filter(|c| !c.is_empty())
        .or_else(|| field("type"))
        .unwrap_or("")
}

/// For a usage limit: the plan and when the limit resets, as far as the error says, e.g.
/// ` (plan plus; resets at 2026-11-24T20:00:00Z, in 1h 5m)`; empty for other errors.
fn usage_limit_note(code: &str, object: Option<&Value>, now_ms: i64) -> String {
    if code != USAGE_LIMIT_REACHED {
        return String::new();
    }
    let field = |name| object.and_then(|e| e.get(name));
    let reset_ms = field("resets_at")
        .and_then(Value::as_i64)
        .map(|s| s.saturating_mul(1000))
        .or_else(|| {
            field("resets_in_seconds")
                .and_then(Value::as_i64)
                .map(|s| now_ms.saturating_add(s.saturating_mul(1000)))
        });
    let mut parts = Vec::new();
    if let Some(plan) = field("plan_type").and_then(Value::as_str) {
        parts.push(format!("plan {}", truncate_text(plan)));
    }
    if let Some(at_ms) = reset_ms.filter(|ms| *ms > 0) {
        let at = UNIX_EPOCH + Duration::from_millis(at_ms.unsigned_abs());
        let mut reset = format!("resets at {}", humantime::format_rfc3339_seconds(at));
        if at_ms > now_ms {
            // Whole minutes past an hour, whole seconds below: enough to plan by.
            let secs = (at_ms - now_ms).unsigned_abs() / 1000;
            let secs = if secs >= 3600 { secs / 60 * 60 } else { secs };
            let left = humantime::format_duration(Duration::from_secs(secs));
            reset.push_str(&format!(", in {left}"));
        }
        parts.push(reset);
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join("; "))
    }
}

/// The body of an HTTP error: `{"error":{"code"/"type":…,"message":…}}` as `code: message`
/// (anything else quoted, shortened). The status classifies it, except an exhausted quota, a
/// spent usage limit or a plan without Codex, which the backend sends as a 429 but which no
/// retry can fix.
fn describe_http_error(text: &str) -> (Option<ErrorKind>, String) {
    describe_http_error_at(text, now_ms())
}

fn describe_http_error_at(text: &str, now_ms: i64) -> (Option<ErrorKind>, String) {
    let parsed = serde_json::from_str::<Value>(text).ok();
    let object = parsed.as_ref().and_then(|v| v.get("error"));
    let code = code_of(object);
    let kind = Some(kind_for_code(code)).filter(|k| {
        matches!(
            k,
            ErrorKind::QuotaExhausted | ErrorKind::UsageLimitReached | ErrorKind::NotInPlan
        )
    });
    let message = object
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str);
    let detail = match (code, message) {
        ("", None) => truncate_text(text).to_owned(),
        (c, None) => c.to_owned(),
        (c, Some(m)) => code_and_message(c, truncate_text(m)),
    };
    (kind, detail + &usage_limit_note(code, object, now_ms))
}

/// `code: message`, or the message alone when there is no code.
fn code_and_message(code: &str, message: &str) -> String {
    if code.is_empty() {
        message.to_owned()
    } else {
        format!("{code}: {message}")
    }
}

/// An error object (`{"code":…,"message":…}`) as a classified error.
fn error_from(object: Option<&Value>, fallback: &str) -> ProviderError {
    let code = code_of(object);
    let message = object
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .unwrap_or(fallback);
    ProviderError::new(
        kind_for_code(code),
        format!(
            "openai-codex: {}{}",
            code_and_message(code, message),
            usage_limit_note(code, object, now_ms())
        ),
    )
}

/// What one event means for the answer.
enum Step {
    Text(String),
    Done,
    Fail(ProviderError),
    Nothing,
}

fn interpret(data: &str) -> Step {
    let Ok(event) = serde_json::from_str::<Value>(data) else {
        return Step::Fail(ProviderError::new(
            ErrorKind::Api,
            "openai-codex: an event is not JSON",
        ));
    };
    match event.get("type").and_then(Value::as_str).unwrap_or("") {
        "response.output_text.delta" => match event.get("delta").and_then(Value::as_str) {
            Some(d) if !d.is_empty() => Step::Text(d.to_owned()),
            _ => Step::Nothing,
        },
        "response.completed" => Step::Done,
        "response.failed" => Step::Fail(error_from(
            event.get("response").and_then(|r| r.get("error")),
            "the response failed",
        )),
        "response.incomplete" => Step::Fail(ProviderError::new(
            ErrorKind::Api,
            "openai-codex: the response ended incomplete",
        )),
        "error" => Step::Fail(error_from(
            Some(event.get("error").unwrap_or(&event)),
            "error event",
        )),
        _ => Step::Nothing,
    }
}

impl ProviderExec for Codex {
    fn execute(&self, request: ProviderRequest) -> OutputStream {
        let (access, account_id) = match &request.credential {
            Credential::OAuth {
                access, account_id, ..
            } => (access, account_id),
            other => {
                return refused(ProviderError::new(
                    ErrorKind::MissingCredential,
                    format!(
                        "openai-codex needs a ChatGPT sign-in, not a {} credential: run `helix-hub login openai-codex`",
                        other.kind()
                    ),
                ));
            }
        };
        let mut http_request = self
            .http
            .post(format!("{}/backend-api/codex/responses", self.base_url))
            .bearer_auth(access.expose())
            .header("accept", "text/event-stream")
            .header("OpenAI-Beta", "responses=experimental")
            .json(&request_body(&request));
        if let Some(account) = account_id {
            http_request = http_request.header("chatgpt-account-id", account);
        }
        sse_output(
            "openai-codex",
            http_request,
            describe_http_error,
            "response.completed",
            |event| interpret(&event.data).into(),
        )
    }
}

impl From<Step> for SseStep {
    fn from(step: Step) -> Self {
        match step {
            Step::Text(text) => SseStep::Text(text),
            Step::Done => SseStep::Done,
            Step::Fail(e) => SseStep::Fail(e),
            Step::Nothing => SseStep::Skip,
        }
    }
}

#[cfg(test)]
mod tests;
