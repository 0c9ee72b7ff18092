//! `helix-hub auth`: the credential report, a locked token refresh, the OpenClaw import.

use std::{path::Path, process::ExitCode};

use anyhow::bail;
use helix_hub::{
    cli::AuthAction,
    credentials::CredentialStore,
    login::{self, CredentialReport},
    refresh::{Outcome, Refresher},
};
use helix_mesh::{pb::Provider, proto_ext::ms_to_system_time};

use crate::{
    load_plain_config,
    terminal::{out, say},
};

pub(crate) async fn auth(data_dir: &Path, action: AuthAction) -> anyhow::Result<ExitCode> {
    let store = CredentialStore::in_dir(data_dir);
    match action {
        AuthAction::Status {
            provider,
            json,
            check,
        } => {
            let rows = login::report(&store, provider.map(Into::into))?;
            print_report(&rows, json);
            if check {
                return Ok(ExitCode::from(login::check_code(&rows, provider.is_some())));
            }
        }
        AuthAction::Refresh { provider } => {
            let provider: Provider = provider.into();
            if provider != Provider::OpenaiCodex {
                bail!(
                    "only openai-codex has a refreshable sign-in; {provider} credentials do not expire this way"
                );
            }
            let config = load_plain_config(data_dir)?;
            let refresher = Refresher::new(store.clone(), &config.providers.openai_codex.issuer);
            let Some((credential, outcome)) = refresher.ensure_fresh(provider, None).await? else {
                bail!(
                    "no {provider} credential is stored: sign in with `helix-hub login {provider}`"
                );
            };
            let until = credential
                .expires_ms()
                .map(|ms| format!("valid until {}", format_ms(ms)))
                .unwrap_or_else(|| "no expiry".to_owned());
            out(&format!(
                "{provider}: {} ({until})",
                match outcome {
                    Outcome::Refreshed => "refreshed",
                    Outcome::AlreadyFresh => "still fresh, not refreshed",
                }
            ));
        }
        AuthAction::ImportOpenclaw { path } => {
            let path = match path.or_else(login::default_openclaw_path) {
                Some(p) => p,
                None => bail!("no home directory: pass the OpenClaw file's path"),
            };
            let ids = login::import_openclaw(&store, &path)?;
            say(&format!(
                "imported {} profile(s) from {} into {}: {}",
                ids.len(),
                path.display(),
                store.path().display(),
                ids.join(", ")
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn format_ms(ms: i64) -> String {
    humantime::format_rfc3339_seconds(ms_to_system_time(ms)).to_string()
}

fn print_report(rows: &[CredentialReport], json: bool) {
    for row in rows {
        if json {
            out(&serde_json::to_string(row).unwrap_or_default());
            continue;
        }
        let Some(kind) = &row.kind else {
            out(&format!("{:<14} no credential", row.provider));
            continue;
        };
        let expiry = match row.expires_ms {
            Some(ms) => format!("expires {}", format_ms(ms)),
            None => "no expiry".to_owned(),
        };
        let health = match row.health {
            login::Health::Ok => "",
            login::Health::Missing => " (missing)",
            login::Health::Expired if row.refreshable => " (expired; refreshes on next use)",
            login::Health::Expired => " (EXPIRED)",
            login::Health::Expiring => " (expiring within 24 h)",
        };
        out(&format!(
            "{:<14} {:<8} {:<28} {expiry}{health}",
            row.provider,
            kind,
            row.account.as_deref().unwrap_or("-"),
        ));
    }
}
