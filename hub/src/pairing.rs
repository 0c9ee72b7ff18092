//! Redeeming a pairing ticket's secret, the same whichever way the request came: iroh's
//! `helix/pair/1` (the device's key is the connection's) or the cloud (the key that signed the
//! sealed request). One-time secrets, expiry and the throttle on wrong attempts are
//! [`Pairings`]'; the device's name is cleaned the same way for both.

use std::sync::Arc;

use helix_mesh::ticket::PairingSecret;
use iroh::EndpointId;

use crate::devices::{Devices, MAX_DEVICE_NAME, Pairings};

/// Where pairing requests are answered.
#[derive(Debug, Clone)]
pub struct PairingDesk {
    pub devices: Arc<Devices>,
    pub pairings: Arc<Pairings>,
    /// What an accepted device is told the hub is called.
    pub hub_name: String,
}

impl PairingDesk {
    /// Pairs `device` when `secret_hex` is an outstanding secret; the refusal's text otherwise
    /// (it reaches the device).
    pub fn answer(&self, device: EndpointId, secret_hex: &str, name: &str) -> Result<(), String> {
        let Some(secret) = PairingSecret::from_hex(secret_hex) else {
            return Err("the pairing ticket's secret is malformed".into());
        };
        if let Err(e) = self.pairings.redeem(&secret, &device) {
            tracing::warn!(peer = %device, error = %e, "pairing refused");
            return Err(e.to_string());
        }
        let name = device_name(name, &device);
        match self.devices.add(device, &name) {
            Ok(()) => {
                tracing::info!(peer = %device, %name, "device paired");
                Ok(())
            }
            Err(e) => Err(format!("the hub could not save the pairing: {e}")),
        }
    }
}

/// The name a device asked for without control characters and cut to [`MAX_DEVICE_NAME`]
/// characters; its short id when nothing is left.
fn device_name(asked: &str, device: &EndpointId) -> String {
    let name: String = asked
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_DEVICE_NAME)
        .collect();
    if name.trim().is_empty() {
        device.fmt_short().to_string()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_name_is_cleaned_or_replaced_by_its_id() {
        let id = iroh::SecretKey::from_bytes(&[7; 32]).public();
        assert_eq!(device_name("pho\u{1b}[2Jne", &id), "pho[2Jne");
        assert_eq!(device_name(" \n ", &id), id.fmt_short().to_string());
        assert_eq!(device_name(&"x".repeat(100), &id).len(), MAX_DEVICE_NAME);
    }
}
