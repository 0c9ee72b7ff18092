//! `/`: the web app's static build (`--web-dir`), with the page's security headers. A path that
//! names no file and has no extension is an app route and gets `index.html` (the SPA fallback);
//! a missing file with an extension is a 404.

use std::{
    path::{Component, Path, PathBuf},
    sync::Arc,
};

use axum::{
    body::Body,
    extract::State,
    http::{HeaderValue, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};

use crate::app::Shared;

/// The page's Content-Security-Policy: everything from this origin, nothing inline.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; worker-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; object-src 'none'";

/// The MIME type of a file, by its extension.
pub fn mime(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("webmanifest") => "application/manifest+json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("woff") => "font/woff",
        Some("ttf") => "font/ttf",
        Some("txt") => "text/plain; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("xml") => "application/xml",
        _ => "application/octet-stream",
    }
}

/// `%XX` escapes decoded; `None` for invalid UTF-8 or a bad escape.
fn percent_decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = path.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The file under `root` a request path names, if the path stays inside it.
pub fn resolve(root: &Path, uri_path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(uri_path)?;
    let mut path = root.to_path_buf();
    for part in Path::new(decoded.trim_start_matches('/')).components() {
        match part {
            Component::Normal(p) => path.push(p),
            Component::CurDir => {}
            // `..`, a root or a prefix: never outside the web dir.
            _ => return None,
        }
    }
    Some(path)
}

/// Whether a path's last segment looks like a file (has an extension).
fn looks_like_file(uri_path: &str) -> bool {
    uri_path
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains('.'))
}

fn with_page_headers(mut response: Response, no_cache: bool) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if no_cache {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    response
}

fn plain(status: StatusCode, text: String) -> Response {
    let response = (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response();
    with_page_headers(response, true)
}

async fn file(path: &Path) -> Option<Response> {
    let meta = tokio::fs::metadata(path).await.ok()?;
    if !meta.is_file() {
        return None;
    }
    let bytes = tokio::fs::read(path).await.ok()?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let no_cache = matches!(name, "index.html" | "sw.js");
    let response = ([(header::CONTENT_TYPE, mime(path))], Body::from(bytes)).into_response();
    Some(with_page_headers(response, no_cache))
}

/// The fallback route: a file of the web dir, or `index.html`.
pub async fn serve(State(shared): State<Arc<Shared>>, method: Method, uri: Uri) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only\n".into());
    }
    let Some(root) = shared.web_dir.as_deref() else {
        return plain(
            StatusCode::NOT_FOUND,
            "no web app is served: pass --web-dir\n".into(),
        );
    };
    let path = uri.path();
    let Some(target) = resolve(root, path) else {
        return plain(StatusCode::NOT_FOUND, "not found\n".into());
    };
    let target = if path.ends_with('/') {
        target.join("index.html")
    } else {
        target
    };
    if let Some(response) = file(&target).await {
        return response;
    }
    let index = root.join("index.html");
    if !looks_like_file(path)
        && let Some(response) = file(&index).await
    {
        return response;
    }
    if !tokio::fs::try_exists(&index).await.unwrap_or(false) {
        return plain(
            StatusCode::NOT_FOUND,
            format!(
                "no web app in {}: build it (cd web && npm run build) or pass --web-dir\n",
                root.display()
            ),
        );
    }
    plain(StatusCode::NOT_FOUND, "not found\n".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_web_dir() {
        let root = Path::new("/srv/web");
        assert_eq!(
            resolve(root, "/assets/app.js"),
            Some(PathBuf::from("/srv/web/assets/app.js"))
        );
        assert_eq!(resolve(root, "/../etc/passwd"), None);
        assert_eq!(resolve(root, "/a/%2e%2e/%2e%2e/etc"), None);
        assert_eq!(resolve(root, "/%zz"), None);
        assert_eq!(resolve(root, "/"), Some(PathBuf::from("/srv/web")));
    }

    #[test]
    fn types_and_file_looking_paths() {
        assert_eq!(
            mime(Path::new("a/manifest.webmanifest")),
            "application/manifest+json"
        );
        assert_eq!(mime(Path::new("x.JS")), "text/javascript; charset=utf-8");
        assert!(looks_like_file("/assets/x.css"));
        assert!(!looks_like_file("/pair/abc"));
    }
}
