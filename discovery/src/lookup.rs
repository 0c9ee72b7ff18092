//! An iroh address lookup backed by hub presence rows (`cloud_presence`): a spoke signed in to
//! the cloud can dial a hub by its key alone; the row gives the relay URL and direct addresses
//! the hub last announced. Hubs publish through their heartbeat ([`crate::presence`]), not
//! through this.

use std::net::SocketAddr;

use iroh::{
    EndpointId, RelayUrl,
    address_lookup::{AddressLookup, EndpointData, EndpointInfo, Error as LookupError, Item},
};
use n0_future::boxed::BoxStream;

use crate::{presence::Presence, rest::Rest};

/// The provenance iroh records for addresses found here.
pub const PROVENANCE: &str = "helix-presence";

/// The presence table: one row per (user, hub), written only by the hub.
pub const TABLE: &str = "cloud_presence";

/// Resolves hub keys through `cloud_presence` (the signed-in user's rows only).
#[derive(Debug, Clone)]
pub struct PresenceLookup {
    rest: Rest,
}

impl PresenceLookup {
    pub fn new(rest: Rest) -> Self {
        Self { rest }
    }
}

fn not_found(id: EndpointId) -> LookupError {
    LookupError::from_err(
        PROVENANCE,
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no presence row for {}", id.fmt_short()),
        ),
    )
}

impl AddressLookup for PresenceLookup {
    fn resolve(&self, endpoint_id: EndpointId) -> Option<BoxStream<Result<Item, LookupError>>> {
        let rest = self.rest.clone();
        let lookup = async move {
            let rows: Vec<Presence> = rest
                .select(TABLE, &format!("hub_id=eq.{endpoint_id}&select=*"))
                .await
                .map_err(|e| {
                    LookupError::from_err(PROVENANCE, std::io::Error::other(e.to_string()))
                })?;
            let row = rows
                .into_iter()
                .next()
                .ok_or_else(|| not_found(endpoint_id))?;
            let mut data = EndpointData::new(vec![]);
            if let Some(url) = row
                .relay_url
                .as_deref()
                .and_then(|u| u.parse::<RelayUrl>().ok())
            {
                data.add_relay_url(url);
            }
            data.add_ip_addrs(
                row.direct_addrs
                    .iter()
                    .filter_map(|a| a.parse::<SocketAddr>().ok())
                    .collect(),
            );
            Ok(Item::new(
                EndpointInfo::from_parts(endpoint_id, data),
                PROVENANCE,
                None,
            ))
        };
        Some(Box::pin(n0_future::stream::once_future(lookup)))
    }
}
