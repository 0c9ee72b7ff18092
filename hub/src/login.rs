//! The library side of `helix-hub login`, `helix-hub auth …`: sign-in flows, the OpenClaw
//! import and the credential report. The binary only reads flags and prints.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use helix_mesh::{pb::Provider, proto_ext::now_ms};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{
    credentials::{
        AuthProfiles, CredentialError, CredentialStore, Profile, Secret, default_profile_id,
    },
    oauth::{CodexLogin, OAuthError, Tokens},
};

/// Where OpenClaw keeps its main agent's credentials, under the home directory.
pub const OPENCLAW_RELATIVE_PATH: &str = ".openclaw/agents/main/agent/auth-profiles.json";
/// How a Claude setup-token starts.
pub const SETUP_TOKEN_PREFIX: &str = "sk-ant-oat";
/// A credential expiring sooner than this is reported as expiring by `auth status --check`.
pub const EXPIRING_WITHIN: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError {
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    #[error(transparent)]
    Store(#[from] CredentialError),
    #[error("the OpenClaw file {0} does not exist")]
    NoOpenClawFile(PathBuf),
    #[error("running `{binary} setup-token`: {source}")]
    RunClaude {
        binary: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{binary} setup-token` ended ({status}) without printing a setup-token")]
    NoSetupToken { binary: String, status: String },
}

/// The default OpenClaw file (`~/.openclaw/agents/main/agent/auth-profiles.json`).
pub fn default_openclaw_path() -> Option<PathBuf> {
    dirs::home_dir().map(|h| h.join(OPENCLAW_RELATIVE_PATH))
}

/// Signs in to ChatGPT for `openai-codex` and stores `openai-codex:default`. `on_url` gets
/// the authorize URL once the callback port is bound (to print it and open a browser).
pub async fn login_codex(
    store: &CredentialStore,
    issuer: &str,
    port: u16,
    timeout: Duration,
    on_url: impl FnOnce(&str),
) -> Result<Tokens, LoginError> {
    // A corrupt store is reported before the person signs in, not after.
    store.load()?;
    let login = CodexLogin::start(issuer, port).await?;
    on_url(login.authorize_url());
    let tokens = login.finish(timeout).await?;
    let mut profile = Profile::new("oauth", Provider::OpenaiCodex);
    profile.access = Some(tokens.access.clone());
    profile.refresh = tokens.refresh.clone();
    profile.expires = tokens.expires_ms;
    profile.account_id = tokens.account_id.clone();
    profile.email = tokens.email.clone();
    store.set_profile(&default_profile_id(Provider::OpenaiCodex), profile)?;
    Ok(tokens)
}

/// The first setup-token in `text`, if any.
pub fn find_setup_token(text: &str) -> Option<&str> {
    let start = text.find(SETUP_TOKEN_PREFIX)?;
    let rest = &text[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// Runs `claude setup-token` (the person completes it in their browser) and returns the token
/// it prints. Its other stdout lines go to `on_line` with any token replaced.
pub async fn run_claude_setup_token(
    binary: &str,
    mut on_line: impl FnMut(&str),
) -> Result<Secret, LoginError> {
    let run_error = |source| LoginError::RunClaude {
        binary: binary.to_owned(),
        source,
    };
    let mut child = tokio::process::Command::new(binary)
        .arg("setup-token")
        .stdin(Stdio::inherit())
        .stderr(Stdio::inherit())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(run_error)?;
    let mut token = None;
    if let Some(stdout) = child.stdout.take() {
        let mut lines = BufReader::new(stdout).lines();
        while let Some(line) = lines.next_line().await.map_err(run_error)? {
            match find_setup_token(&line) {
                Some(t) => {
                    on_line(&line.replace(t, "<setup-token, hidden>"));
                    token = Some(Secret::new(t));
                }
                None => on_line(&line),
            }
        }
    }
    let status = child.wait().await.map_err(run_error)?;
    token.ok_or_else(|| LoginError::NoSetupToken {
        binary: binary.to_owned(),
        status: status.to_string(),
    })
}

/// Imports every profile of an OpenClaw `auth-profiles.json` into `store`. A corrupt source
/// is reported with its path; neither file is changed then.
pub fn import_openclaw(store: &CredentialStore, path: &Path) -> Result<Vec<String>, LoginError> {
    if !path.exists() {
        return Err(LoginError::NoOpenClawFile(path.to_owned()));
    }
    let source: AuthProfiles = CredentialStore::at(path).load()?;
    Ok(store.import(&source)?)
}

/// How a provider's credential stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Ok,
    Missing,
    Expired,
    /// Expires within [`EXPIRING_WITHIN`].
    Expiring,
}

/// One line of `helix-hub auth status`. Holds no secret.
#[derive(Debug, Clone, Serialize)]
pub struct CredentialReport {
    pub provider: String,
    pub profile: Option<String>,
    pub kind: Option<String>,
    pub account: Option<String>,
    pub expires_ms: Option<i64>,
    /// Whether an OAuth profile has a refresh token (an expired access token then renews).
    pub refreshable: bool,
    pub health: Health,
}

/// The report for each provider (or just `only`).
pub fn report(
    store: &CredentialStore,
    only: Option<Provider>,
) -> Result<Vec<CredentialReport>, CredentialError> {
    let now = now_ms();
    let soon = i64::try_from(EXPIRING_WITHIN.as_millis()).unwrap_or(i64::MAX);
    let mut rows = Vec::new();
    for provider in Provider::ALL {
        if only.is_some_and(|o| o != provider) {
            continue;
        }
        let profile = store.profile_for(provider)?;
        // Validates the profile (an incomplete one is an error, as at execution time).
        let credential = store.credential_for(provider)?;
        let (profile_id, profile) = match profile {
            Some((id, p)) => (Some(id), Some(p)),
            None => (None, None),
        };
        let expires_ms = credential.as_ref().and_then(|c| c.expires_ms());
        let health = match (&credential, expires_ms) {
            (None, _) => Health::Missing,
            (Some(_), Some(e)) if e <= now => Health::Expired,
            (Some(_), Some(e)) if e - now < soon => Health::Expiring,
            _ => Health::Ok,
        };
        rows.push(CredentialReport {
            provider: provider.name().to_owned(),
            profile: profile_id,
            kind: credential.as_ref().map(|c| c.kind().to_owned()),
            account: profile
                .as_ref()
                .and_then(|p| p.email.clone().or_else(|| p.account_id.clone())),
            expires_ms,
            refreshable: profile
                .as_ref()
                .is_some_and(|p| p.refresh.as_ref().is_some_and(|r| !r.expose().is_empty())),
            health,
        });
    }
    Ok(rows)
}

/// The exit codes of a check (`auth status --check`, and every check command after it): all
/// fine, something failed, or only warnings. Not 2: that is clap's usage error, and a script
/// must tell "expiring soon" from "you typed it wrong".
pub const CHECK_OK: u8 = 0;
pub const CHECK_FAILED: u8 = 1;
pub const CHECK_WARNINGS: u8 = 3;

/// `auth status --check`'s exit code: [`CHECK_OK`], [`CHECK_FAILED`] (missing or expired),
/// [`CHECK_WARNINGS`] (expiring within 24 h). Without a provider filter, providers with no
/// credential do not count, but having none at all does.
pub fn check_code(rows: &[CredentialReport], filtered: bool) -> u8 {
    let considered: Vec<&CredentialReport> = rows
        .iter()
        .filter(|r| filtered || r.health != Health::Missing)
        .collect();
    if considered.is_empty()
        || considered
            .iter()
            .any(|r| matches!(r.health, Health::Missing | Health::Expired))
    {
        CHECK_FAILED
    } else if considered.iter().any(|r| r.health == Health::Expiring) {
        CHECK_WARNINGS
    } else {
        CHECK_OK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_token_is_found_in_claude_output() {
        assert_eq!(
            find_setup_token("Your token: sk-ant-oat01-AbC_d-9 (keep it safe)"),
            Some("sk-ant-oat01-AbC_d-9")
        );
        assert_eq!(find_setup_token("nothing here"), None);
    }

    #[test]
    fn check_codes() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::in_dir(dir.path());
        assert_eq!(check_code(&report(&store, None).unwrap(), false), 1);
        store
            .set_api_key(Provider::Anthropic, Secret::new("k"))
            .unwrap();
        assert_eq!(check_code(&report(&store, None).unwrap(), false), 0);
        let only_gemini = report(&store, Some(Provider::GoogleGemini)).unwrap();
        assert_eq!(check_code(&only_gemini, true), 1);
        store
            .set_token(
                Provider::GoogleGemini,
                Secret::new("t"),
                Some(now_ms() + 3_600_000),
            )
            .unwrap();
        assert_eq!(
            check_code(&report(&store, None).unwrap(), false),
            CHECK_WARNINGS
        );
        assert_ne!(CHECK_WARNINGS, 2, "2 is clap's usage error");
        store
            .set_token(Provider::GoogleGemini, Secret::new("t"), Some(now_ms() - 1))
            .unwrap();
        assert_eq!(check_code(&report(&store, None).unwrap(), false), 1);
    }
}
