//! The optional cloud (Supabase) settings and session of a spoke or a hub, kept in its own
//! directory (the spoke's config dir, the hub's data dir):
//! - `cloud.json`: the project URL, anon key and an optional REST base override;
//! - `cloud-session.json`: the signed-in session (0600; see [`crate::auth`]).
//!
//! `HELIX_SUPABASE_URL`, `HELIX_SUPABASE_ANON_KEY` and `HELIX_SUPABASE_REST_URL` override the
//! file. The `cloud` subcommands of both binaries are defined here.

use std::path::{Path, PathBuf};

use helix_mesh::fsutil::{self, FsError};
use serde::{Deserialize, Serialize};

use crate::{
    auth::{Auth, AuthError, Session, SessionStore, session_from_access_token},
    rest::{Rest, SupabaseConfig},
};

/// The settings file's name.
pub const SETTINGS_FILE: &str = "cloud.json";
/// The session file's name.
pub const SESSION_FILE: &str = "cloud-session.json";

/// `cloud` subcommands (the same for `helix` and `helix-hub`).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum CloudCommand {
    /// Sign in to your Supabase project. The password, email code or access token is read
    /// from stdin, never from a flag.
    Login {
        /// The project URL, e.g. https://<ref>.supabase.co (env HELIX_SUPABASE_URL).
        #[arg(long, env = "HELIX_SUPABASE_URL")]
        url: String,
        /// The project's anon (publishable) key (env HELIX_SUPABASE_ANON_KEY).
        #[arg(long, env = "HELIX_SUPABASE_ANON_KEY")]
        anon_key: String,
        /// Sign in as this user (password on stdin, or an emailed code with --otp).
        #[arg(
            long,
            conflicts_with = "access_token",
            required_unless_present = "access_token"
        )]
        email: Option<String>,
        /// Sign in with a one-time code sent to --email instead of a password.
        #[arg(long, requires = "email")]
        otp: bool,
        /// Use an access token (a user JWT) read from stdin: pass `-`. For service accounts.
        #[arg(long, value_name = "-")]
        access_token: Option<String>,
    },
    /// Whether this side is signed in, as whom, and until when.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Forget the session.
    Logout,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CloudError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(
        "cloud settings {path} are corrupt ({problem}): run `helix cloud login` (on the hub: `helix-hub cloud login`) again"
    )]
    Corrupt { path: PathBuf, problem: String },
    #[error(transparent)]
    Rest(#[from] crate::rest::RestError),
    #[error("{0}")]
    Usage(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Settings {
    url: String,
    anon_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rest_url: Option<String>,
}

/// The cloud side of one directory.
#[derive(Debug, Clone)]
pub struct Cloud {
    dir: PathBuf,
}

impl Cloud {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    pub fn sessions(&self) -> SessionStore {
        SessionStore::new(self.dir.join(SESSION_FILE))
    }

    /// The project settings (file, then environment), if configured.
    pub fn config(&self) -> Result<Option<SupabaseConfig>, CloudError> {
        let path = self.dir.join(SETTINGS_FILE);
        let file: Option<Settings> = match fsutil::read_optional(&path)? {
            None => None,
            Some(bytes) => {
                Some(
                    serde_json::from_slice(&bytes).map_err(|e| CloudError::Corrupt {
                        path: path.clone(),
                        problem: e.to_string(),
                    })?,
                )
            }
        };
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let url = env("HELIX_SUPABASE_URL").or_else(|| file.as_ref().map(|f| f.url.clone()));
        let anon_key =
            env("HELIX_SUPABASE_ANON_KEY").or_else(|| file.as_ref().map(|f| f.anon_key.clone()));
        let rest_url = env("HELIX_SUPABASE_REST_URL").or_else(|| file.and_then(|f| f.rest_url));
        Ok(match (url, anon_key) {
            (Some(url), Some(anon_key)) => Some(SupabaseConfig {
                url,
                anon_key,
                rest_url,
            }),
            _ => None,
        })
    }

    /// A REST client for the signed-in user, with a fresh session; `None` without cloud.
    pub async fn rest(&self) -> Result<Option<(Rest, Session)>, CloudError> {
        let Some(config) = self.config()? else {
            return Ok(None);
        };
        let auth = Auth::new(&config)?;
        let Some(session) = self.sessions().fresh(&auth).await? else {
            return Ok(None);
        };
        let rest = Rest::new(&config, session.access_token.clone())?;
        Ok(Some((rest, session)))
    }

    /// Runs a `cloud` subcommand. `read_secret` reads one secret from stdin with a prompt.
    /// Returns the lines to print on stdout.
    pub async fn run(
        &self,
        command: CloudCommand,
        read_secret: impl Fn(&str) -> Result<String, CloudError>,
    ) -> Result<Vec<String>, CloudError> {
        match command {
            CloudCommand::Login {
                url,
                anon_key,
                email,
                otp,
                access_token,
            } => {
                let rest_url = std::env::var("HELIX_SUPABASE_REST_URL")
                    .ok()
                    .filter(|v| !v.is_empty());
                let config = SupabaseConfig {
                    url: url.clone(),
                    anon_key: anon_key.clone(),
                    rest_url: rest_url.clone(),
                };
                let auth = Auth::new(&config)?;
                let session = match (email, access_token) {
                    (_, Some(dash)) if dash == "-" => {
                        session_from_access_token(&read_secret("access token")?)?
                    }
                    (_, Some(_)) => {
                        return Err(CloudError::Usage(
                            "--access-token takes `-` and reads the token from stdin".into(),
                        ));
                    }
                    (Some(email), None) if otp => {
                        auth.send_otp(&email).await?;
                        auth.verify_otp(&email, &read_secret(&format!("code emailed to {email}"))?)
                            .await?
                    }
                    (Some(email), None) => {
                        auth.sign_in_password(&email, &read_secret("password")?)
                            .await?
                    }
                    (None, None) => {
                        return Err(CloudError::Usage("pass --email or --access-token -".into()));
                    }
                };
                fsutil::ensure_private_dir(&self.dir)?;
                let settings = Settings {
                    url,
                    anon_key,
                    rest_url,
                };
                let bytes = serde_json::to_vec_pretty(&settings).unwrap_or_default();
                fsutil::write_private_atomic(&self.dir.join(SETTINGS_FILE), &bytes)?;
                self.sessions().save(&session)?;
                Ok(vec![format!(
                    "signed in as {} (user {})",
                    session.email.as_deref().unwrap_or("-"),
                    session.user_id
                )])
            }
            CloudCommand::Status { json } => {
                let config = self.config()?;
                let session = self.sessions().load()?;
                if json {
                    return Ok(vec![
                        serde_json::json!({
                            "configured": config.is_some(),
                            "url": config.as_ref().map(|c| c.url.clone()),
                            "signed_in": session.is_some(),
                            "user_id": session.as_ref().map(|s| s.user_id.clone()),
                            "email": session.as_ref().and_then(|s| s.email.clone()),
                            "expires_at": session.as_ref().map(|s| s.expires_at),
                            "refreshable": session.as_ref().map(|s| !s.refresh_token.is_empty()),
                        })
                        .to_string(),
                    ]);
                }
                Ok(match (config, session) {
                    (None, _) => vec!["cloud: not configured (run `helix cloud login` (on the hub: `helix-hub cloud login`))".into()],
                    (Some(c), None) => vec![format!(
                        "cloud: {} (not signed in: run `helix cloud login` (on the hub: `helix-hub cloud login`))",
                        c.url
                    )],
                    (Some(c), Some(s)) => vec![format!(
                        "cloud: {} as {} (user {}){}",
                        c.url,
                        s.email.as_deref().unwrap_or("-"),
                        s.user_id,
                        if s.refresh_token.is_empty() {
                            " (access token only: no refresh)"
                        } else {
                            ""
                        }
                    )],
                })
            }
            CloudCommand::Logout => Ok(vec![if self.sessions().clear()? {
                "signed out".into()
            } else {
                "was not signed in".into()
            }]),
        }
    }
}
