//! The `helix` subcommands about this device: `whoami` (its id) and `cloud` (its optional
//! cloud sign-in: login, status, logout).

use std::io::{IsTerminal, Read};

use helix_discovery::cloud::{Cloud, CloudCommand, CloudError};

use crate::{client::Spoke, config::ConfigError, exit::Exit, render::Printer};

/// `helix whoami` or `helix cloud` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// This device's key could not be read or created.
    #[error(transparent)]
    Key(#[from] ConfigError),
    #[error(transparent)]
    Cloud(#[from] CloudError),
}

/// Runs `helix whoami`: this device's id (its public key) as the last stdout line.
pub fn whoami(spoke: &Spoke, quiet: bool) -> Result<Exit, DeviceError> {
    let key = spoke.config.secret_key()?;
    Printer::new(false, quiet).out_line(&key.public().to_string());
    Ok(Exit::Ok)
}

/// Runs `helix cloud …`, reading secrets from stdin.
pub async fn cloud(spoke: &Spoke, command: CloudCommand, quiet: bool) -> Result<Exit, DeviceError> {
    let cloud = Cloud::in_dir(spoke.config.path());
    let lines = cloud.run(command, read_secret).await?;
    let mut printer = Printer::new(false, quiet);
    for line in lines {
        printer.out_line(&line);
    }
    Ok(Exit::Ok)
}

/// One secret from stdin (a prompt on stderr when it is a terminal).
fn read_secret(what: &str) -> Result<String, CloudError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("helix: enter the {what}, then Enter and Ctrl-D\n").as_bytes(),
        );
    }
    let mut text = String::new();
    stdin
        .lock()
        .read_to_string(&mut text)
        .map_err(|e| CloudError::Usage(format!("reading the {what} from stdin: {e}")))?;
    // Only the line ending goes: passwords may contain spaces.
    let secret = text.trim_end_matches(['\r', '\n']).to_owned();
    if secret.is_empty() {
        return Err(CloudError::Usage(format!("no {what} on stdin")));
    }
    Ok(secret)
}
