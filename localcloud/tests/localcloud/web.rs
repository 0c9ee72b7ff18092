//! `/`: the web app's files with the page's security headers, the SPA fallback, MIME types and
//! caching.

use std::fs;

use crate::support::{cloud, http};

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; worker-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; object-src 'none'";

#[tokio::test]
async fn files_headers_and_the_spa_fallback() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("index.html"),
        "<!doctype html><title>helix</title>",
    )
    .unwrap();
    fs::write(
        dir.path().join("sw.js"),
        "self.addEventListener('fetch', () => {});",
    )
    .unwrap();
    fs::write(dir.path().join("manifest.webmanifest"), "{}").unwrap();
    fs::create_dir(dir.path().join("assets")).unwrap();
    fs::write(dir.path().join("assets/app-1234.js"), "console.log(1)").unwrap();
    let cloud = cloud(Some(dir.path().to_owned())).await;
    let get = |path: &str| {
        let url = format!("{}{path}", cloud.url());
        async move { http().get(url).send().await.unwrap() }
    };

    let index = get("/").await;
    assert_eq!(index.status().as_u16(), 200);
    let h = index.headers().clone();
    assert_eq!(h["content-security-policy"], CSP);
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(
        index.text().await.unwrap(),
        "<!doctype html><title>helix</title>"
    );

    // An app route is index.html; a missing file is not.
    let route = get("/pair/some-ticket").await;
    assert_eq!(route.status().as_u16(), 200);
    assert_eq!(route.headers()["content-security-policy"], CSP);
    assert_eq!(
        route.text().await.unwrap(),
        "<!doctype html><title>helix</title>"
    );
    let missing = get("/assets/missing.js").await;
    assert_eq!(missing.status().as_u16(), 404);
    // A traversal hidden from URL normalization by encoded slashes.
    assert_eq!(
        get("/assets/..%2f..%2f..%2fetc%2fpasswd")
            .await
            .status()
            .as_u16(),
        404
    );

    let script = get("/assets/app-1234.js").await;
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(script.headers().get("cache-control").is_none());
    assert_eq!(script.headers()["x-content-type-options"], "nosniff");
    let worker = get("/sw.js").await;
    assert_eq!(worker.headers()["cache-control"], "no-cache");
    let manifest = get("/manifest.webmanifest").await;
    assert_eq!(
        manifest.headers()["content-type"],
        "application/manifest+json"
    );

    // The API paths are not the app's.
    let api = get("/rest/v1/").await;
    assert_eq!(api.status().as_u16(), 401);
    cloud.shutdown().await;
}
