//! Providers turn a command into a stream of text.
//!
//! Each provider speaks one vendor's streaming API and classifies its failures, so the
//! executor can decide what to retry without knowing any vendor's details.

pub mod anthropic;
pub mod claude_code;
pub mod codex;
pub mod gemini;
mod http;

use std::{fmt, pin::Pin, sync::Arc, time::Duration};

use futures::Stream;
use helix_mesh::pb::Provider;
use uuid::Uuid;

use crate::{credentials::Credential, history::Turns};

pub use http::{
    MAX_ERROR_BODY, describe_transport, http_client, kind_for_status, kind_for_transport,
    parse_retry_after, retry_after_of, truncate_text,
};

/// Text chunks as they arrive, ending after the last one; an `Err` ends the stream.
pub type OutputStream = Pin<Box<dyn Stream<Item = Result<String, ProviderError>> + Send>>;

/// What a provider needs to run one attempt of a command.
#[derive(Debug, Clone)]
pub struct ProviderRequest {
    pub command_id: Uuid,
    pub content: String,
    pub model: String,
    pub max_tokens: u32,
    pub system: Option<String>,
    /// The earlier completed turns of the command's session, oldest first (empty for a first
    /// turn). Each provider gives them in its API's own shape, before `content`.
    pub history: Turns,
    /// The Claude Code session a command of a named session runs in (Claude Code keeps the
    /// conversation itself, and ignores `history`); `None`: a throwaway one.
    pub cli_session: Option<claude_code::CliSession>,
    pub credential: Credential,
}

/// One vendor's executor.
pub trait ProviderExec: Send + Sync + fmt::Debug {
    /// Starts one attempt. Nothing happens until the stream is polled; dropping the stream
    /// aborts the request.
    fn execute(&self, request: ProviderRequest) -> OutputStream;
}

/// Why an attempt failed, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// 429 or a `rate_limit_error`.
    RateLimited,
    /// 529 or an `overloaded_error`.
    Overloaded,
    /// Other 5xx or an `api_error`.
    Server,
    /// No answer in time.
    Timeout,
    /// The connection failed or broke, or the stream ended early.
    Connection,
    /// The credential was refused (401): a refreshed OAuth token may be accepted.
    Unauthorized,
    /// The credential was accepted but lacks permission for this request (403,
    /// `permission_error`, `PERMISSION_DENIED`): a refreshed token would be refused the same way.
    Forbidden,
    /// The account's quota or credits are used up (`insufficient_quota`): retrying cannot help
    /// until the user adds some.
    QuotaExhausted,
    /// The ChatGPT plan's usage limit is reached (`usage_limit_reached`, sent as a 429): the
    /// plan's usage window reopens hours or days later, so retrying within a command cannot
    /// help.
    UsageLimitReached,
    /// The ChatGPT plan does not include Codex (`usage_not_included`, sent as a 429): only
    /// another plan or another account can fix it.
    NotInPlan,
    /// The request itself was refused (4xx): retrying cannot help.
    InvalidRequest,
    /// Any other error the API reported.
    Api,
    /// The hub has no usable credential for this provider.
    MissingCredential,
    /// This hub cannot run this provider (yet).
    Unsupported,
}

impl ErrorKind {
    /// What the person can do about an error of this kind, when the provider's own message
    /// does not say it (appended to the message by `Display`).
    pub fn advice(self) -> &'static str {
        match self {
            ErrorKind::Forbidden => {
                " (the account or token lacks permission for this request; not retried: check the account's access to this model or API)"
            }
            ErrorKind::QuotaExhausted => {
                " (the account's quota or credits are exhausted; not retried: add credits or raise the plan's limit, then run the command again)"
            }
            ErrorKind::UsageLimitReached => {
                " (the ChatGPT plan's usage limit was reached; not retried: run the command again once the limit resets, or upgrade the plan)"
            }
            ErrorKind::NotInPlan => {
                " (the ChatGPT plan does not include Codex; not retried: upgrade the plan, or sign in with an account whose plan includes Codex: `helix-hub login openai-codex`)"
            }
            _ => "",
        }
    }
}

/// A failed attempt. `Display` is the message followed by the kind's [`ErrorKind::advice`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}{}", kind.advice())]
pub struct ProviderError {
    pub kind: ErrorKind,
    pub message: String,
    /// The provider's `retry-after`, when it sent one.
    pub retry_after: Option<Duration>,
}

impl ProviderError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// Whether trying again may succeed (and repeats nothing the user has seen, which the
    /// executor checks separately).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::RateLimited
                | ErrorKind::Overloaded
                | ErrorKind::Server
                | ErrorKind::Timeout
                | ErrorKind::Connection
        )
    }
}

/// The providers this hub can run, by wire enum.
#[derive(Debug, Clone, Default)]
pub struct Providers {
    anthropic: Option<Arc<dyn ProviderExec>>,
    openai_codex: Option<Arc<dyn ProviderExec>>,
    google_gemini: Option<Arc<dyn ProviderExec>>,
}

impl Providers {
    pub fn with(mut self, provider: Provider, exec: Arc<dyn ProviderExec>) -> Self {
        match provider {
            Provider::Anthropic => self.anthropic = Some(exec),
            Provider::OpenaiCodex => self.openai_codex = Some(exec),
            Provider::GoogleGemini => self.google_gemini = Some(exec),
            Provider::Unspecified => {}
        }
        self
    }

    pub fn get(&self, provider: Provider) -> Option<&Arc<dyn ProviderExec>> {
        match provider {
            Provider::Anthropic => self.anthropic.as_ref(),
            Provider::OpenaiCodex => self.openai_codex.as_ref(),
            Provider::GoogleGemini => self.google_gemini.as_ref(),
            Provider::Unspecified => None,
        }
    }
}

/// The server-sent events of a successful streaming response, as they arrive. A body that
/// breaks, or ends before the provider said it was done (`done_marker` names what was
/// expected), ends the stream with an error; the caller stops polling once it has seen the end.
fn sse_events(
    provider: &'static str,
    response: reqwest::Response,
    done_marker: &'static str,
) -> impl futures::Stream<Item = Result<crate::sse::SseEvent, ProviderError>> + Send {
    async_stream::stream! {
        use futures::StreamExt;
        let mut bytes = response.bytes_stream();
        let mut parser = crate::sse::SseParser::new();
        let mut events = Vec::new();
        loop {
            let chunk = match bytes.next().await {
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => {
                    yield Err(ProviderError::new(
                        kind_for_transport(&e),
                        format!("{provider}: stream broke: {}", describe_transport(&e)),
                    ));
                    return;
                }
                None => {
                    yield Err(ProviderError::new(
                        ErrorKind::Connection,
                        format!("{provider}: stream ended before {done_marker}"),
                    ));
                    return;
                }
            };
            if parser.feed(&chunk, &mut events).is_err() {
                yield Err(ProviderError::new(ErrorKind::Api, format!("{provider}: event stream line too long")));
                return;
            }
            for event in events.drain(..) {
                yield Ok(event);
            }
        }
    }
}

/// How a provider reads the body of an HTTP error: a message, and the kind when the body says
/// more than the status does (e.g. a 429 that is not a rate limit but an exhausted quota).
pub type DescribeError = fn(&str) -> (Option<ErrorKind>, String);

/// Sends a streaming request. A transport failure or a non-success status becomes the
/// provider's classified error (with `retry-after` honoured and the error body read by
/// `describe`), so each provider only handles its stream.
async fn send_streaming(
    provider: &'static str,
    request: reqwest::RequestBuilder,
    describe: DescribeError,
) -> Result<reqwest::Response, ProviderError> {
    let response = request.send().await.map_err(|e| {
        ProviderError::new(
            kind_for_transport(&e),
            format!("{provider}: request failed: {}", describe_transport(&e)),
        )
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = retry_after_of(&response);
    let text = response.text().await.unwrap_or_default();
    let (body_kind, detail) = describe(&text);
    Err(ProviderError::new(
        body_kind.unwrap_or_else(|| kind_for_status(status.as_u16())),
        format!("{provider}: HTTP {}: {detail}", status.as_u16()),
    )
    .with_retry_after(retry_after))
}

/// What one server-sent event means for a provider's output.
#[derive(Debug)]
pub enum SseStep {
    /// Nothing to show (pings, bookkeeping events).
    Skip,
    /// More text.
    Text(String),
    /// The answer is complete.
    Done,
    /// The last text; the answer is complete.
    Last(String),
    /// The provider reported a failure.
    Fail(ProviderError),
}

/// The output of a provider that answers with server-sent events: sends `request`
/// ([`send_streaming`]), reads the events ([`sse_events`]) and lets `step` say what each one
/// means, until it says the answer is done or failed.
pub fn sse_output(
    provider: &'static str,
    request: reqwest::RequestBuilder,
    describe: DescribeError,
    done_marker: &'static str,
    step: fn(&crate::sse::SseEvent) -> SseStep,
) -> OutputStream {
    Box::pin(async_stream::stream! {
        use futures::StreamExt;
        let response = match send_streaming(provider, request, describe).await {
            Ok(response) => response,
            Err(e) => {
                yield Err(e);
                return;
            }
        };
        let events = sse_events(provider, response, done_marker);
        futures::pin_mut!(events);
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    yield Err(e);
                    return;
                }
            };
            match step(&event) {
                SseStep::Skip => {}
                SseStep::Text(text) => {
                    if !text.is_empty() {
                        yield Ok(text);
                    }
                }
                SseStep::Done => return,
                SseStep::Last(text) => {
                    if !text.is_empty() {
                        yield Ok(text);
                    }
                    return;
                }
                SseStep::Fail(e) => {
                    yield Err(e);
                    return;
                }
            }
        }
    })
}

/// An output that is only this error (a request refused before anything was sent).
pub fn refused(error: ProviderError) -> OutputStream {
    Box::pin(futures::stream::once(async move { Err(error) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_seconds() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn statuses_classify() {
        assert!(ProviderError::new(kind_for_status(529), "x").is_retryable());
        assert!(ProviderError::new(kind_for_status(429), "x").is_retryable());
        assert!(ProviderError::new(kind_for_status(503), "x").is_retryable());
        assert!(!ProviderError::new(kind_for_status(400), "x").is_retryable());
        assert!(!ProviderError::new(kind_for_status(401), "x").is_retryable());
        // Only a 401 asks for a refreshed token; a 403 says the account may not do this.
        assert_eq!(kind_for_status(401), ErrorKind::Unauthorized);
        assert_eq!(kind_for_status(403), ErrorKind::Forbidden);
        assert!(!ProviderError::new(kind_for_status(403), "x").is_retryable());
    }

    #[test]
    fn display_adds_the_advice_of_the_kind() {
        let e = ProviderError::new(ErrorKind::Forbidden, "p: HTTP 403: no");
        assert_eq!(e.message, "p: HTTP 403: no");
        assert!(
            e.to_string()
                .starts_with("p: HTTP 403: no (the account or token lacks permission"),
            "{e}"
        );
        assert_eq!(
            ProviderError::new(ErrorKind::RateLimited, "p").to_string(),
            "p"
        );
    }
}
