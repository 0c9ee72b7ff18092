//! How a hub is started: [`Hub::bind`] for the common case (the config's address, the config's
//! providers), [`Hub::builder`] when a caller brings its own listener or providers.

use std::path::{Path, PathBuf};

use tokio::net::TcpListener;

use super::{Hub, HubError, data_dir::lock_data_dir};
use crate::{config::HubConfig, provider::Providers};

/// A hub to start; see [`Hub::builder`].
#[derive(Debug)]
#[must_use = "a HubBuilder starts nothing until `start` is awaited"]
pub struct HubBuilder {
    data_dir: PathBuf,
    config: HubConfig,
    listener: Option<TcpListener>,
    providers: Option<Providers>,
}

impl Hub {
    /// Starts a hub on `config.grpc_addr` with the providers the config describes.
    pub async fn bind(data_dir: &Path, config: HubConfig) -> Result<Hub, HubError> {
        Self::builder(data_dir, config).start().await
    }

    /// A hub on `data_dir` with `config`, to be started with [`HubBuilder::start`].
    pub fn builder(data_dir: &Path, config: HubConfig) -> HubBuilder {
        HubBuilder {
            data_dir: data_dir.to_owned(),
            config,
            listener: None,
            providers: None,
        }
    }
}

impl HubBuilder {
    /// Serves gRPC on this already-bound listener instead of binding `config.grpc_addr` (tests
    /// bind port 0).
    pub fn listener(mut self, listener: TcpListener) -> Self {
        self.listener = Some(listener);
        self
    }

    /// Runs commands with these providers instead of those built from the config (benchmarks
    /// use an instant local provider).
    pub fn providers(mut self, providers: Providers) -> Self {
        self.providers = Some(providers);
        self
    }

    /// Takes the data dir's lock, binds the listener if none was given, and starts the hub.
    pub async fn start(self) -> Result<Hub, HubError> {
        let lock = lock_data_dir(&self.data_dir)?;
        let listener = match self.listener {
            Some(listener) => listener,
            None => TcpListener::bind(self.config.grpc_addr)
                .await
                .map_err(|source| HubError::Bind {
                    addr: self.config.grpc_addr,
                    source,
                })?,
        };
        Hub::start(&self.data_dir, self.config, listener, lock, self.providers).await
    }
}
