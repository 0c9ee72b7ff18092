//! `helix-hub login` and `helix-hub logout`: storing and removing a provider's credential.

use std::path::Path;

use anyhow::bail;
use helix_hub::{
    cli::LoginArgs,
    credentials::{CredentialStore, Secret},
    login,
};
use helix_mesh::pb::Provider;

use crate::{
    load_plain_config,
    terminal::{out, read_secret_from_stdin, say},
};

pub(crate) async fn login(data_dir: &Path, args: LoginArgs) -> anyhow::Result<()> {
    let provider: Provider = args.provider.into();
    let store = CredentialStore::in_dir(data_dir);
    match provider {
        Provider::OpenaiCodex => {
            if args.api_key || args.setup_token || args.run_claude {
                bail!(
                    "openai-codex signs in with ChatGPT in the browser: run `helix-hub login openai-codex` without --api-key/--setup-token"
                );
            }
            let config = load_plain_config(data_dir)?;
            let issuer = &config.providers.openai_codex.issuer;
            let no_browser = args.no_browser;
            let timeout = args.timeout.unwrap_or(helix_hub::oauth::LOGIN_TIMEOUT);
            let tokens = login::login_codex(&store, issuer, args.port, timeout, |url| {
                say("Sign in to ChatGPT in your browser with this URL (waiting for the sign-in):");
                out(url);
                if !no_browser {
                    open_browser(url);
                }
            })
            .await?;
            say(&format!(
                "signed in{}; stored profile openai-codex:default in {}",
                tokens
                    .email
                    .as_deref()
                    .or(tokens.account_id.as_deref())
                    .map(|a| format!(" as {a}"))
                    .unwrap_or_default(),
                store.path().display()
            ));
        }
        Provider::Anthropic if args.setup_token || args.run_claude => {
            let token = if args.run_claude {
                let config = load_plain_config(data_dir)?;
                login::run_claude_setup_token(&config.providers.anthropic.claude_binary, say)
                    .await?
            } else {
                Secret::new(read_secret_from_stdin(
                    "setup-token",
                    "printf %s \"$CLAUDE_SETUP_TOKEN\" | helix-hub login anthropic --setup-token, or let helix-hub run `claude setup-token` and take the token from it: helix-hub login anthropic --run-claude",
                )?)
            };
            if !token.expose().starts_with(login::SETUP_TOKEN_PREFIX) {
                bail!(
                    "that is not a Claude setup-token (they start with {}…); for an API key use --api-key",
                    login::SETUP_TOKEN_PREFIX
                );
            }
            store.set_token(provider, token, None)?;
            say(&format!(
                "stored the Claude setup-token as profile anthropic:default in {}; commands run through Claude Code",
                store.path().display()
            ));
        }
        _ if args.setup_token || args.run_claude => {
            bail!("--setup-token and --run-claude are for anthropic only")
        }
        _ if !args.api_key => bail!(
            "say what to store: `helix-hub login {provider} --api-key` (key on stdin){}",
            if provider == Provider::Anthropic {
                " or `--setup-token` (token on stdin) or `--setup-token --run-claude`"
            } else {
                ""
            }
        ),
        _ => {
            let key = read_secret_from_stdin(
                "API key",
                &format!("printf %s \"$KEY\" | helix-hub login {provider} --api-key"),
            )?;
            store.set_api_key(provider, Secret::new(key))?;
            say(&format!(
                "stored {provider} API key as profile {provider}:default in {}",
                store.path().display()
            ));
        }
    }
    Ok(())
}

/// Opens `url` in the desktop's browser if it can; failing to is not an error.
fn open_browser(url: &str) {
    let opened = std::process::Command::new("xdg-open")
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if opened.is_err() {
        say("(could not open a browser: open the URL above yourself)");
    }
}

pub(crate) fn logout(data_dir: &Path, provider: Provider) -> anyhow::Result<()> {
    let store = CredentialStore::in_dir(data_dir);
    match store.remove_provider(provider)? {
        0 => say(&format!("no {provider} credential was stored")),
        n => say(&format!(
            "removed {n} {provider} profile(s) from {}",
            store.path().display()
        )),
    }
    Ok(())
}
