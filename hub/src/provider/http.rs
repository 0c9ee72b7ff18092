//! What every HTTP provider shares: the client, status and transport error classes,
//! `retry-after`, and quoting error bodies.

use std::time::Duration;

use super::{ErrorKind, ProviderError};

/// Parses an HTTP `retry-after` value: delay-seconds (what these APIs send) only.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

/// Classifies an HTTP error status the same way for every provider.
pub fn kind_for_status(status: u16) -> ErrorKind {
    match status {
        429 => ErrorKind::RateLimited,
        529 => ErrorKind::Overloaded,
        408 | 504 => ErrorKind::Timeout,
        401 => ErrorKind::Unauthorized,
        403 => ErrorKind::Forbidden,
        500..=599 => ErrorKind::Server,
        _ => ErrorKind::InvalidRequest,
    }
}

/// Most bytes of an error body quoted in an error message.
pub const MAX_ERROR_BODY: usize = 2048;

/// An HTTP client for a streaming provider: bounded connect time and silence between bytes.
pub fn http_client(
    connect_timeout: Duration,
    idle_timeout: Duration,
) -> Result<reqwest::Client, ProviderError> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .read_timeout(idle_timeout)
        .user_agent(concat!("helix-hub/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ProviderError::new(ErrorKind::Connection, describe_transport(&e)))
}

/// At most [`MAX_ERROR_BODY`] bytes of `text`, cut at a character boundary and trimmed.
pub fn truncate_text(text: &str) -> &str {
    let mut end = text.len().min(MAX_ERROR_BODY);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].trim()
}

/// The `retry-after` header of a response, if it is delay-seconds.
pub fn retry_after_of(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// Classifies a transport error from reqwest.
pub fn kind_for_transport(e: &reqwest::Error) -> ErrorKind {
    if e.is_timeout() {
        ErrorKind::Timeout
    } else {
        ErrorKind::Connection
    }
}

/// A transport error as one line, with its causes. (Only the URL of the request appears in
/// it; credentials travel in headers.)
pub fn describe_transport(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}
