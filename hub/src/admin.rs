//! The `HubAdmin` gRPC service: pairing tickets and devices of a running hub. Served only on
//! the loopback TCP listener, behind the bearer token.

use std::{sync::Arc, time::Duration};

use helix_mesh::{
    pb::{self, hub_admin_server::HubAdmin},
    proto_ext::{ms_to_timestamp, now_ms},
    transport::CLOSE_REVOKED,
};
use iroh::EndpointId;
use tonic::{Request, Response, Status};

use crate::{
    devices::{Devices, Pairings},
    grpc_status,
    tunnel::Tunnel,
};

/// Pairing ticket lifetime when the request gives none.
pub const DEFAULT_PAIRING_TTL: Duration = Duration::from_secs(600);
/// Longest pairing ticket lifetime.
pub const MAX_PAIRING_TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone)]
pub struct AdminService {
    pub devices: Arc<Devices>,
    pub pairings: Arc<Pairings>,
    pub tunnel: Arc<Tunnel>,
}

fn parse_device(raw: &str) -> Result<EndpointId, Status> {
    raw.trim()
        .parse()
        .map_err(|_| Status::invalid_argument(format!("device_id: {raw:?} is not a device id")))
}

#[tonic::async_trait]
impl HubAdmin for AdminService {
    async fn create_pairing(
        &self,
        request: Request<pb::CreatePairingRequest>,
    ) -> Result<Response<pb::PairingTicket>, Status> {
        let ttl = match request.into_inner().ttl_seconds {
            0 => DEFAULT_PAIRING_TTL,
            s => Duration::from_secs(u64::from(s)),
        };
        if ttl > MAX_PAIRING_TTL {
            return Err(Status::invalid_argument(
                "ttl_seconds: at most 86400 (24 h)",
            ));
        }
        let secret = self.pairings.create(ttl);
        let ticket = self.tunnel.pairing_ticket(secret).await;
        let expires = now_ms() + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        tracing::info!(ttl_s = ttl.as_secs(), "pairing ticket created");
        Ok(Response::new(pb::PairingTicket {
            ticket: ticket.encode(),
            expires_at: Some(ms_to_timestamp(expires)),
        }))
    }

    async fn list_devices(
        &self,
        _request: Request<pb::ListDevicesRequest>,
    ) -> Result<Response<pb::ListDevicesResponse>, Status> {
        let devices = self
            .devices
            .list()
            .into_iter()
            .map(|(id, record)| pb::Device {
                device_id: id.to_string(),
                name: record.name,
                paired_at: Some(ms_to_timestamp(record.paired_at_ms)),
                live_connections: u32::try_from(self.tunnel.tracker().count(id))
                    .unwrap_or(u32::MAX),
            })
            .collect();
        Ok(Response::new(pb::ListDevicesResponse { devices }))
    }

    async fn revoke_device(
        &self,
        request: Request<pb::RevokeDeviceRequest>,
    ) -> Result<Response<pb::RevokeDeviceResponse>, Status> {
        let raw = request.into_inner().device_id;
        let id = parse_device(&raw)?;
        let found = self.devices.remove(&id).map_err(grpc_status::devices)?;
        if !found {
            return Err(Status::not_found(format!("no paired device {raw}")));
        }
        let closed =
            self.tunnel
                .tracker()
                .close_peer(id, CLOSE_REVOKED, crate::tunnel::REVOKED_REASON);
        tracing::info!(device = %id, closed, "device revoked");
        Ok(Response::new(pb::RevokeDeviceResponse {
            closed_connections: u32::try_from(closed).unwrap_or(u32::MAX),
        }))
    }

    async fn get_ticket(
        &self,
        _request: Request<pb::GetTicketRequest>,
    ) -> Result<Response<pb::HubTicket>, Status> {
        let ticket = self.tunnel.ticket().await;
        Ok(Response::new(pb::HubTicket {
            ticket: ticket.encode(),
            hub_id: self.tunnel.endpoint().id().to_string(),
        }))
    }
}
