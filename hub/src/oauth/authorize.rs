//! The sign-in request: the PKCE verifier and its challenge, the redirect URI and the
//! authorize URL.

use data_encoding::BASE64URL_NOPAD;
use sha2::{Digest, Sha256};

use super::{CLIENT_ID, SCOPE};
use crate::credentials::Secret;

/// Random bytes in the PKCE verifier (64 bytes → 86 base64url characters, as Codex does).
const VERIFIER_BYTES: usize = 64;

/// A PKCE verifier and its S256 challenge.
#[derive(Debug)]
pub struct Pkce {
    pub verifier: Secret,
    pub challenge: String,
}

impl Pkce {
    pub fn generate() -> Self {
        let verifier = BASE64URL_NOPAD.encode(&random_bytes(VERIFIER_BYTES));
        let challenge = s256(&verifier);
        Self {
            verifier: Secret::new(verifier),
            challenge,
        }
    }
}

/// `BASE64URL(SHA256(verifier))`, without padding (RFC 7636 S256).
pub fn s256(verifier: &str) -> String {
    BASE64URL_NOPAD.encode(&Sha256::digest(verifier.as_bytes()))
}

pub(super) fn random_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|_| rand::random::<u8>()).collect()
}

/// The redirect URI for a callback port (exactly what the client id has registered).
pub fn redirect_uri(port: u16) -> String {
    format!("http://localhost:{port}/auth/callback")
}

/// The authorize URL with every parameter Codex sends.
pub fn authorize_url(issuer: &str, redirect_uri: &str, challenge: &str, state: &str) -> String {
    let params = [
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("redirect_uri", redirect_uri),
        ("scope", SCOPE),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
        ("id_token_add_organizations", "true"),
        ("codex_cli_simplified_flow", "true"),
        ("state", state),
    ];
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", helix_mesh::urlenc::percent_encode(v)))
        .collect();
    format!(
        "{}/oauth/authorize?{}",
        issuer.trim_end_matches('/'),
        query.join("&")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_is_base64url_sha256_without_padding() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mJ92IgxwUi5Gt0bC0Y2zJgIVe9nqVM"),
            // Computed independently (Python hashlib + urlsafe_b64encode).
            "pgmbB64Vi0plZPDwdbvOdbqy6zZs9oHko1aQNh5WDSc"
        );
        let p = Pkce::generate();
        assert_eq!(p.verifier.expose().len(), 86);
        assert_eq!(p.challenge, s256(p.verifier.expose()));
    }

    #[test]
    fn authorize_url_has_the_codex_parameters() {
        let url = authorize_url("https://auth.example/", &redirect_uri(1455), "ch", "st");
        assert!(url.starts_with("https://auth.example/oauth/authorize?response_type=code&client_id=app_EMoamEEZ73f0CkXaXp7hrann&redirect_uri=http%3A%2F%2Flocalhost%3A1455%2Fauth%2Fcallback&scope=openid%20profile%20email%20offline_access&code_challenge=ch&code_challenge_method=S256&id_token_add_organizations=true&codex_cli_simplified_flow=true&state=st"), "{url}");
    }
}
