//! The `helix` subcommands about this device: `whoami` (its id) and `cloud` (its optional
//! cloud sign-in: login, status, logout).

use helix_discovery::cloud::{Cloud, CloudCommand, CloudError};
use helix_mesh::{
    iroh_grpc::error_chain,
    secret_input::{SecretRequest, Shape},
};

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

/// One secret from stdin (a prompt on stderr when it is a terminal); only the line ending goes.
fn read_secret(what: &str) -> Result<String, CloudError> {
    helix_mesh::secret_input::read_secret(&SecretRequest {
        what,
        prompt: &format!("helix: enter the {what}, then Enter and Ctrl-D"),
        shape: Shape::Passphrase,
    })
    .map_err(|e| CloudError::Usage(error_chain(&e)))
}
