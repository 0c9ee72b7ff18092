//! The `[iroh]` section: how the hub's iroh endpoint is set up.

use std::{net::SocketAddr, path::PathBuf};

use helix_mesh::transport::{EndpointOptions, RelayChoice};
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The iroh side of the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IrohConfig {
    pub enabled: bool,
    /// `n0`, `none`, or a relay URL.
    pub relay: String,
    pub mdns: bool,
    pub n0_discovery: bool,
    pub udp_addr: Option<SocketAddr>,
    pub portmapper: bool,
    /// A PEM file of extra root certificates for a self-hosted relay with its own CA.
    pub relay_ca: Option<PathBuf>,
}

impl Default for IrohConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            relay: "n0".into(),
            mdns: true,
            n0_discovery: true,
            udp_addr: None,
            portmapper: true,
            relay_ca: None,
        }
    }
}

impl IrohConfig {
    /// Settings that keep everything on this machine (tests): no n0 services, no mDNS, no
    /// portmapper, UDP on 127.0.0.1, and the given relay (`none` or a local URL).
    pub fn loopback(relay: &str) -> Self {
        Self {
            enabled: true,
            relay: relay.into(),
            mdns: false,
            n0_discovery: false,
            udp_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            portmapper: false,
            relay_ca: None,
        }
    }

    pub fn endpoint_options(&self) -> Result<EndpointOptions, ConfigError> {
        let relay = match self.relay.as_str() {
            "n0" | "default" => RelayChoice::N0,
            "none" | "" => RelayChoice::Disabled,
            url => RelayChoice::Custom(vec![url.parse().map_err(|e| ConfigError::Invalid {
                what: "iroh.relay".into(),
                message: format!("{url:?} is not \"n0\", \"none\" or a relay URL: {e}"),
            })?]),
        };
        if let Some(path) = &self.relay_ca {
            helix_mesh::transport::load_relay_ca(path).map_err(|e| ConfigError::Invalid {
                what: "iroh.relay_ca".into(),
                message: e.to_string(),
            })?;
        }
        Ok(EndpointOptions {
            relay,
            n0_discovery: self.n0_discovery,
            mdns: self.mdns,
            udp_addr: self.udp_addr,
            ip_transports: true,
            portmapper: self.portmapper,
            relay_ca: self.relay_ca.clone(),
        })
    }
}
