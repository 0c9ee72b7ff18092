//! Google Gemini with an API key:
//! `POST {base}/v1beta/models/{model}:streamGenerateContent?alt=sse`, header `x-goog-api-key`.
//!
//! Each `data:` event is a whole `GenerateContentResponse`; its text is
//! `candidates[0].content.parts[*].text` (parts marked `thought` are not the answer). The
//! stream has no end event: the last chunk carries `finishReason`. A stream that ends without
//! one is incomplete; a finish reason other than `STOP`/`MAX_TOKENS` (e.g. `SAFETY`), a
//! `promptFeedback.blockReason`, or an `error` object ends the answer with an error.

use std::time::Duration;

use serde_json::{Value, json};

use super::{
    ErrorKind, OutputStream, ProviderError, ProviderExec, ProviderRequest, SseStep, http_client,
    kind_for_status, refused, sse_output, truncate_text,
};
use crate::{credentials::Credential, history::Turn};

/// The default API base URL.
pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com";
/// The model used when neither the command nor its agent names one.
pub const DEFAULT_MODEL: &str = "gemini-2.5-flash";

/// Gemini API client.
#[derive(Debug, Clone)]
pub struct Gemini {
    http: reqwest::Client,
    base_url: String,
}

impl Gemini {
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

/// What one chunk means.
#[derive(Debug, PartialEq, Eq)]
enum Chunk {
    Text(String, bool),
    Fail(ProviderError),
}

fn kind_for_google_status(status: &str, code: u16) -> ErrorKind {
    match status {
        "RESOURCE_EXHAUSTED" => ErrorKind::RateLimited,
        "UNAVAILABLE" | "INTERNAL" => ErrorKind::Server,
        "DEADLINE_EXCEEDED" => ErrorKind::Timeout,
        "UNAUTHENTICATED" => ErrorKind::Unauthorized,
        "PERMISSION_DENIED" => ErrorKind::Forbidden,
        "INVALID_ARGUMENT" | "NOT_FOUND" | "FAILED_PRECONDITION" => ErrorKind::InvalidRequest,
        _ if code != 0 => kind_for_status(code),
        _ => ErrorKind::Api,
    }
}

/// An error body as a message: Google's `error.message`, else the text itself.
fn describe_google_error_body(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.get("error").map(google_error))
        .map(|e| e.message)
        .unwrap_or_else(|| truncate_text(text).to_owned())
}

fn google_error(error: &Value) -> ProviderError {
    let status = error.get("status").and_then(Value::as_str).unwrap_or("");
    let code = error
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .unwrap_or(0);
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("error");
    ProviderError::new(
        kind_for_google_status(status, code),
        format!("google-gemini: {status} {message}").replace("  ", " "),
    )
}

/// Text of one chunk and whether it finished the answer.
fn interpret(data: &str) -> Chunk {
    let Ok(v) = serde_json::from_str::<Value>(data) else {
        return Chunk::Fail(ProviderError::new(
            ErrorKind::Api,
            "google-gemini: a chunk is not JSON",
        ));
    };
    if let Some(error) = v.get("error") {
        return Chunk::Fail(google_error(error));
    }
    if let Some(reason) = v
        .get("promptFeedback")
        .and_then(|f| f.get("blockReason"))
        .and_then(Value::as_str)
    {
        return Chunk::Fail(ProviderError::new(
            ErrorKind::InvalidRequest,
            format!("google-gemini: the prompt was blocked ({reason})"),
        ));
    }
    let candidate = v.get("candidates").and_then(|c| c.get(0));
    let text: String = candidate
        .and_then(|c| c.get("content")?.get("parts")?.as_array())
        .map(|parts| {
            parts
                .iter()
                .filter(|p| !p.get("thought").and_then(Value::as_bool).unwrap_or(false))
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    match candidate
        .and_then(|c| c.get("finishReason"))
        .and_then(Value::as_str)
    {
        None | Some("FINISH_REASON_UNSPECIFIED") => Chunk::Text(text, false),
        Some("STOP" | "MAX_TOKENS") => Chunk::Text(text, true),
        Some(other) => Chunk::Fail(ProviderError::new(
            ErrorKind::Api,
            format!("google-gemini: the answer was stopped ({other})"),
        )),
    }
}

/// The request's `contents`: each earlier turn as a `user` and a `model` entry, then the
/// prompt.
pub fn contents(history: &[Turn], prompt: &str) -> Value {
    let entry = |role: &str, text: &str| json!({"role": role, "parts": [{"text": text}]});
    let mut contents = Vec::with_capacity(history.len() * 2 + 1);
    for turn in history {
        contents.push(entry("user", &turn.prompt));
        contents.push(entry("model", &turn.answer));
    }
    contents.push(entry("user", prompt));
    Value::Array(contents)
}

impl ProviderExec for Gemini {
    fn execute(&self, request: ProviderRequest) -> OutputStream {
        let key = match &request.credential {
            Credential::ApiKey(key) => key,
            other => {
                return refused(ProviderError::new(
                    ErrorKind::MissingCredential,
                    format!(
                        "google-gemini needs an API key, not a {} credential: run `helix-hub login google-gemini --api-key`",
                        other.kind()
                    ),
                ));
            }
        };
        let mut body = json!({
            "contents": contents(&request.history, &request.content),
        });
        if let Some(system) = &request.system {
            body["systemInstruction"] = json!({"parts": [{"text": system}]});
        }
        let http_request = self
            .http
            .post(format!(
                "{}/v1beta/models/{}:streamGenerateContent?alt=sse",
                self.base_url, request.model
            ))
            .header("x-goog-api-key", key.expose())
            .header("accept", "text/event-stream")
            .json(&body);
        sse_output(
            "google-gemini",
            http_request,
            |text| (None, describe_google_error_body(text)),
            "a finishReason",
            |event| interpret(&event.data).into(),
        )
    }
}

impl From<Chunk> for SseStep {
    fn from(chunk: Chunk) -> Self {
        match chunk {
            Chunk::Text(text, false) => SseStep::Text(text),
            Chunk::Text(text, true) => SseStep::Last(text),
            Chunk::Fail(e) => SseStep::Fail(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earlier_turns_are_user_and_model_contents_before_the_prompt() {
        let history = [Turn {
            prompt: "my name is Ada".into(),
            answer: "Hello Ada".into(),
        }];
        assert_eq!(
            contents(&history, "what is my name?"),
            json!([
                {"role": "user", "parts": [{"text": "my name is Ada"}]},
                {"role": "model", "parts": [{"text": "Hello Ada"}]},
                {"role": "user", "parts": [{"text": "what is my name?"}]},
            ])
        );
    }

    #[test]
    fn chunks_are_interpreted() {
        assert_eq!(
            interpret(
                r#"{"candidates":[{"content":{"parts":[{"text":"a"},{"text":"x","thought":true},{"text":"b"}],"role":"model"}}]}"#
            ),
            Chunk::Text("ab".into(), false)
        );
        assert_eq!(
            interpret(
                r#"{"candidates":[{"content":{"parts":[{"text":"!"}]},"finishReason":"STOP"}]}"#
            ),
            Chunk::Text("!".into(), true)
        );
        match interpret(r#"{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED"}}"#)
        {
            Chunk::Fail(e) => {
                assert_eq!(e.kind, ErrorKind::RateLimited);
                assert_eq!(e.message, "google-gemini: RESOURCE_EXHAUSTED quota");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            interpret(r#"{"candidates":[{"finishReason":"SAFETY"}]}"#),
            Chunk::Fail(_)
        ));
    }
}
