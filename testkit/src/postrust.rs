//! A PostgREST-compatible server (`postrust-server`, installed by scripts/test) in front of a
//! test database, in PostgREST compat mode on a free loopback port, and HS256 JWTs for users.

use std::{process::Stdio, time::Duration};

use data_encoding::BASE64URL_NOPAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::process::{Child, Command};

use crate::pg::TestDb;

/// The JWT secret the server checks (at least 32 characters).
pub const JWT_SECRET: &str = "helix-test-jwt-secret-0123456789abcdef";

/// An HS256 JWT for a Supabase user, valid for an hour.
pub fn jwt_for(user: &str) -> String {
    let header = BASE64URL_NOPAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let payload = BASE64URL_NOPAD.encode(
        format!(r#"{{"sub":"{user}","role":"authenticated","aud":"authenticated","exp":{exp}}}"#)
            .as_bytes(),
    );
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(JWT_SECRET.as_bytes()).unwrap();
    mac.update(format!("{header}.{payload}").as_bytes());
    let signature = BASE64URL_NOPAD.encode(&mac.finalize().into_bytes());
    format!("{header}.{payload}.{signature}")
}

/// Whether the `postrust` binary can be found (without panicking).
pub fn installed() -> bool {
    let path = binary();
    std::path::Path::new(&path).exists()
        || std::env::var_os("PATH")
            .is_some_and(|dirs| std::env::split_paths(&dirs).any(|dir| dir.join(&path).is_file()))
}

/// The `postrust` binary: `HELIX_TEST_POSTRUST`, else `postrust` on PATH or in ~/.cargo/bin.
fn binary() -> String {
    if let Ok(path) = std::env::var("HELIX_TEST_POSTRUST") {
        return path;
    }
    let cargo_bin = dirs_home().join(".cargo/bin/postrust");
    if cargo_bin.exists() {
        return cargo_bin.display().to_string();
    }
    "postrust".into()
}

fn dirs_home() -> std::path::PathBuf {
    std::env::var_os("HOME")
        .map(Into::into)
        .unwrap_or_else(|| "/root".into())
}

/// The install command a person runs when `postrust` is missing.
pub const INSTALL_HINT: &str = "cargo install postrust-server --version 3.1.0";

/// How long a started server may take to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running server; killed when dropped.
#[derive(Debug)]
pub struct PostRust {
    pub url: String,
    child: Child,
}

impl PostRust {
    pub async fn start(db: &TestDb) -> Self {
        Self::try_start(db, JWT_SECRET)
            .await
            .unwrap_or_else(|e| panic!("{e}: scripts/test installs it"))
    }

    /// [`start`](Self::start) without panicking, checking JWTs against `jwt_secret` (at least
    /// 32 characters). The error is a message for a person.
    pub async fn try_start(db: &TestDb, jwt_secret: &str) -> Result<Self, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|socket| socket.local_addr())
            .map_err(|e| format!("finding a free port for postrust: {e}"))?
            .port();
        let mut child = Command::new(binary())
            .env("DATABASE_URL", db.authenticator_url())
            .env("PGRST_DB_ANON_ROLE", "anon")
            .env("PGRST_DB_SCHEMAS", "public")
            .env("PGRST_JWT_SECRET", jwt_secret)
            .env("PGRST_SERVER_HOST", "127.0.0.1")
            .env("PGRST_SERVER_PORT", port.to_string())
            .env("PGRST_COMPAT_MODE", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                format!("postrust-server is not installed ({e}): install it with `{INSTALL_HINT}`")
            })?;
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        while client.get(&url).send().await.is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "postrust exited before answering on {url} ({status}); run it by hand with DATABASE_URL and the PGRST_* variables to see why"
                ));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "postrust did not answer on {url} within {START_TIMEOUT:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self { url, child })
    }

    /// Kills the server and waits for it to exit.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
