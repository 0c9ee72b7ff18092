//! What the hub's command paths share: built once when a hub starts, then handed (behind an
//! `Arc`) to the gRPC service and the cloud route instead of each taking the pieces one by one.

use std::sync::Arc;

use crate::{
    bus::Bus, cloud_route::MirrorFeed, config::HubConfig, credentials::CredentialStore,
    devices::Devices, executor::Executor, journal::Journal, provider::Providers,
};

/// The running hub's shared parts; every field is a cheap handle onto state with one owner.
///
/// The hub's secret key is not here: only the iroh side and the cloud route hold it.
#[derive(Debug)]
pub struct HubContext {
    /// The hub's public key, as text.
    pub hub_id: String,
    pub config: Arc<HubConfig>,
    pub journal: Journal,
    pub bus: Bus,
    pub executor: Executor,
    pub credentials: CredentialStore,
    pub providers: Providers,
    pub devices: Arc<Devices>,
    /// Where the gRPC service offers every new command it accepts, for the cloud route to
    /// mirror (goes nowhere without a cloud route).
    pub mirror: MirrorFeed,
}
