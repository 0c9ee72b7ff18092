//! What Supabase's API gateway does in front of `/rest/v1` and `/auth/v1`: CORS for any origin
//! (answering preflights itself) and the API key check (`apikey` header or query parameter,
//! which must be the project's anon key).

use std::sync::Arc;

use axum::{
    Json,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::app::Shared;

/// The request headers supabase-js sends.
pub const ALLOW_HEADERS: &str = "apikey, authorization, x-client-info, content-type, prefer, accept-profile, content-profile, x-supabase-api-version, range, accept";
/// The methods PostgREST and GoTrue take.
pub const ALLOW_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";
/// Response headers a page may read (paging, the API version auth-js checks).
pub const EXPOSE_HEADERS: &str = "content-range, content-location, location, preference-applied, range-unit, x-supabase-api-version";
/// How long a browser may cache a preflight answer, in seconds.
pub const PREFLIGHT_MAX_AGE: &str = "3600";

/// Whether a path is behind the gateway.
fn gated(path: &str) -> bool {
    ["/rest/v1", "/auth/v1"]
        .iter()
        .any(|p| path == *p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
}

fn cors(headers: &mut HeaderMap) {
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE_HEADERS),
    );
}

fn preflight() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    cors(h);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOW_METHODS),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOW_HEADERS),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(PREFLIGHT_MAX_AGE),
    );
    response
}

/// The request's API key: the `apikey` header, else the `apikey` query parameter.
pub fn api_key(request: &Request) -> Option<String> {
    if let Some(key) = request
        .headers()
        .get("apikey")
        .and_then(|v| v.to_str().ok())
    {
        return Some(key.to_owned());
    }
    query_param(request.uri().query().unwrap_or_default(), "apikey")
}

/// A query parameter, percent-decoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| decode_component(value))
    })
}

fn decode_component(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                if let Some(b) = value
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    out.push(b);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `key` is the project's anon key (compared in constant time).
pub fn is_anon_key(shared: &Shared, key: &str) -> bool {
    key.as_bytes().ct_eq(shared.anon_key.as_bytes()).into()
}

/// The middleware: preflights answered, keys checked, CORS headers on every gated answer.
pub async fn gate(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    if !gated(request.uri().path()) {
        return next.run(request).await;
    }
    if request.method() == Method::OPTIONS {
        return preflight();
    }
    let mut response = match api_key(&request) {
        None => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "No API key found in request", "hint": "No `apikey` request header or url param was found."})),
        )
            .into_response(),
        Some(key) if !is_anon_key(&shared, &key) => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Invalid API key", "hint": "Double check your Supabase `anon` or `service_role` API key."})),
        )
            .into_response(),
        Some(_) => next.run(request).await,
    };
    cors(response.headers_mut());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_api_prefixes_are_gated() {
        assert!(gated("/rest/v1") && gated("/rest/v1/cloud_commands") && gated("/auth/v1/token"));
        assert!(!gated("/rest/v10") && !gated("/") && !gated("/realtime/v1/websocket"));
    }

    #[test]
    fn query_parameters_are_decoded() {
        assert_eq!(
            query_param("a=1&apikey=x%2By+z", "apikey").as_deref(),
            Some("x+y z")
        );
        assert_eq!(query_param("vsn=2.0.0", "apikey"), None);
    }
}
