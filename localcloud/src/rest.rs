//! `/rest/v1/*`: a reverse proxy to the postrust child, as Supabase's gateway strips the prefix
//! before PostgREST. The request body is read whole (bounded), the answer streams back; status,
//! headers (less hop-by-hop ones) and bytes pass unchanged.

use std::{sync::Arc, time::Duration};

use axum::{
    Json,
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderName, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;
use tracing::warn;

use crate::app::Shared;

/// The largest request body passed on: `append_cloud_events` takes up to 4 MiB of envelopes
/// per call, which JSON escaping can grow; anything past this is refused with 413.
pub const MAX_BODY: usize = 32 * 1024 * 1024;
/// How long one proxied request may take, end to end.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(300);

/// The proxy's client and where postrust listens.
#[derive(Debug, Clone)]
pub struct RestProxy {
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>`, no trailing slash.
    upstream: String,
}

impl RestProxy {
    pub fn new(upstream: String) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(UPSTREAM_TIMEOUT)
            .build()?;
        Ok(Self { http, upstream })
    }
}

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1), and `host`.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !hop_by_hop(name) {
            to.append(name.clone(), value.clone());
        }
    }
}

fn gateway_error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({"message": message}))).into_response()
}

/// Any method on `/rest/v1` and below.
pub async fn proxy(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let rest = path.strip_prefix("/rest/v1").unwrap_or(path);
    let rest = if rest.is_empty() { "/" } else { rest };
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{}", unquote_columns(q)))
        .unwrap_or_default();
    let url = format!("{}{rest}{query}", shared.rest.upstream);
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return gateway_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body over {MAX_BODY} bytes"),
            );
        }
    };
    let mut headers = HeaderMap::new();
    copy_headers(&parts.headers, &mut headers);
    let sent = shared
        .rest
        .http
        .request(parts.method.clone(), url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    let upstream = match sent {
        Ok(r) => r,
        Err(e) => {
            // The URL is postrust's loopback one: no secret in it.
            warn!(error = %e.without_url(), method = %parts.method, path = rest, "postrust did not answer");
            return gateway_error(
                StatusCode::BAD_GATEWAY,
                "the local PostgREST stand-in (postrust) did not answer".into(),
            );
        }
    };
    let mut response = Response::builder().status(upstream.status());
    if let Some(out) = response.headers_mut() {
        copy_headers(upstream.headers(), out);
        if let Some(len) = upstream.headers().get(header::CONTENT_LENGTH) {
            out.insert(header::CONTENT_LENGTH, len.clone());
        }
    }
    response
        .body(Body::from_stream(upstream.bytes_stream()))
        .unwrap_or_else(|e| gateway_error(StatusCode::BAD_GATEWAY, e.to_string()))
}

/// supabase-js sends an array insert's columns quoted (`columns="a","b"`, percent-encoded),
/// which PostgREST reads and postrust does not: the quotes are taken off column names that
/// need none (letters, digits, `_`).
fn unquote_columns(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.strip_prefix("columns=") {
            Some(value) => {
                let plain = value
                    .replace("%22", "\"")
                    .replace("%2C", ",")
                    .replace("%2c", ",");
                let names: Vec<&str> = plain
                    .split(',')
                    .map(|name| {
                        let bare = name.trim_matches('"');
                        if !bare.is_empty()
                            && bare.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                        {
                            bare
                        } else {
                            name
                        }
                    })
                    .collect();
                format!("columns={}", names.join(",").replace('"', "%22"))
            }
            None => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::unquote_columns;

    #[test]
    fn quoted_column_names_are_unquoted_for_postrust() {
        assert_eq!(
            unquote_columns("columns=%22pairing_id%22,%22hub_id%22&select=*"),
            "columns=pairing_id,hub_id&select=*"
        );
        assert_eq!(unquote_columns("columns=\"a\",\"b\""), "columns=a,b");
        // As URLSearchParams writes it.
        assert_eq!(
            unquote_columns("columns=%22command_id%22%2C%22hub_id%22"),
            "columns=command_id,hub_id"
        );
        // A name that needs its quotes keeps them; other parameters are untouched.
        assert_eq!(
            unquote_columns("columns=%22odd%20name%22&x=%22y%22"),
            "columns=%22odd%20name%22&x=%22y%22"
        );
    }
}
