//! The web pairing link: what `helix-hub pair --web` prints (and shows as a QR code) for a
//! browser or a phone to pair through the cloud.
//!
//! `<app URL>#pair=1&hub=<hub key>&secret=<one-time secret>&url=<Supabase URL>&anon=<anon
//! key>&exp=<ms>`: everything after `#` is the URL's fragment, which a browser never sends to
//! the server hosting the app (nor puts in a `Referer`), so the secret reaches only the app's
//! script, which removes it from the address bar and history at once. Values are
//! percent-encoded like `application/x-www-form-urlencoded` (what `URLSearchParams` reads).
//! Format and golden vectors: docs/protocol.md, "The web pairing link", and
//! `proto/vectors/web-pairing-link.json`.

use std::fmt;

use crate::{ticket::PairingSecret, urlenc::percent_encode};

/// The link format's version (`pair=1`).
pub const WEB_LINK_VERSION: u32 = 1;

/// Everything a web spoke needs to pair with a hub through the cloud. `Debug` hides the
/// secret.
#[derive(Clone, PartialEq, Eq)]
pub struct WebPairingLink {
    /// Where the web app is served, e.g. `https://helix.example.com/`.
    pub app_url: String,
    /// The hub's key, 64 lower-case hex digits.
    pub hub: String,
    pub secret: PairingSecret,
    /// The Supabase project URL and its anon (publishable) key.
    pub supabase_url: String,
    pub anon_key: String,
    /// When the secret expires, ms since the Unix epoch.
    pub expires_at_ms: i64,
}

impl fmt::Debug for WebPairingLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebPairingLink")
            .field("app_url", &self.app_url)
            .field("hub", &self.hub)
            .field("secret", &self.secret)
            .field("supabase_url", &self.supabase_url)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish_non_exhaustive()
    }
}

/// An app URL the link cannot be built on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadAppUrl {
    #[error(
        "the web app URL must start with https:// (or http://localhost, http://127.0.0.1: browsers give an http page on other hosts no WebCrypto)"
    )]
    NotSecure,
    #[error("the web app URL must not carry a fragment (#…): the link puts the pairing there")]
    HasFragment,
    #[error("the web app URL has no host")]
    NoHost,
}

/// Checks that browsers will run the app at `url` in a secure context (WebCrypto needs one).
pub fn check_app_url(url: &str) -> Result<(), BadAppUrl> {
    if url.contains('#') {
        return Err(BadAppUrl::HasFragment);
    }
    let rest = if let Some(rest) = url.strip_prefix("https://") {
        rest
    } else if let Some(rest) = url.strip_prefix("http://") {
        let host = host_of(rest);
        let loopback = host == "localhost"
            || host.ends_with(".localhost")
            || host == "[::1]"
            || host.starts_with("127.");
        if !loopback {
            return Err(BadAppUrl::NotSecure);
        }
        rest
    } else {
        return Err(BadAppUrl::NotSecure);
    };
    if host_of(rest).is_empty() {
        return Err(BadAppUrl::NoHost);
    }
    Ok(())
}

/// The host of `authority/path…` (without the port).
fn host_of(rest: &str) -> &str {
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map_or(authority, |end| &authority[..=end]);
    }
    authority.split(':').next().unwrap_or_default()
}

impl WebPairingLink {
    /// The link's text. The app URL must pass [`check_app_url`].
    pub fn to_url(&self) -> Result<String, BadAppUrl> {
        check_app_url(&self.app_url)?;
        Ok(format!(
            "{}#pair={WEB_LINK_VERSION}&hub={}&secret={}&url={}&anon={}&exp={}",
            self.app_url,
            self.hub,
            self.secret.to_hex(),
            percent_encode(&self.supabase_url),
            percent_encode(&self.anon_key),
            self.expires_at_ms
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors() -> serde_json::Value {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("proto/vectors/web-pairing-link.json"),
        )
        .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn builds_each_golden_link_exactly() {
        let vectors = vectors();
        let links = vectors["links"].as_array().unwrap();
        assert!(!links.is_empty());
        for v in links {
            let link = WebPairingLink {
                app_url: v["app_url"].as_str().unwrap().into(),
                hub: v["hub"].as_str().unwrap().into(),
                secret: PairingSecret::from_hex(v["secret"].as_str().unwrap()).unwrap(),
                supabase_url: v["supabase_url"].as_str().unwrap().into(),
                anon_key: v["anon_key"].as_str().unwrap().into(),
                expires_at_ms: v["expires_at_ms"].as_i64().unwrap(),
            };
            assert_eq!(
                link.to_url().unwrap(),
                v["link"].as_str().unwrap(),
                "{}",
                v["name"]
            );
        }
    }

    #[test]
    fn refuses_app_urls_without_a_secure_context() {
        for ok in [
            "https://helix.example.com/",
            "https://helix.example.com/app/",
            "http://localhost:5173/",
            "http://127.0.0.1:54321/",
            "http://[::1]:8080/",
            "http://phone.localhost/",
        ] {
            assert_eq!(check_app_url(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            check_app_url("http://192.168.1.5:8080/"),
            Err(BadAppUrl::NotSecure)
        );
        assert_eq!(
            check_app_url("http://localhost.evil.com/"),
            Err(BadAppUrl::NotSecure)
        );
        assert_eq!(check_app_url("ftp://x/"), Err(BadAppUrl::NotSecure));
        assert_eq!(check_app_url("https://x/#a"), Err(BadAppUrl::HasFragment));
        assert_eq!(check_app_url("https:///path"), Err(BadAppUrl::NoHost));
    }

    #[test]
    fn debug_hides_the_secret_and_the_key() {
        let link = WebPairingLink {
            app_url: "https://a/".into(),
            hub: "00".repeat(32),
            secret: PairingSecret([0x5a; 32]),
            supabase_url: "https://p.supabase.co".into(),
            anon_key: "anon-key-text".into(),
            expires_at_ms: 1,
        };
        let debug = format!("{link:?}");
        assert!(!debug.contains("5a5a"), "{debug}");
        assert!(!debug.contains("anon-key-text"), "{debug}");
    }
}
