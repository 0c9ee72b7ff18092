//! Connecting to a hub: find it, dial it, and attach the bearer token to every call.

use std::{path::Path, time::Duration};

use helix_discovery::local::LocalHub;
use helix_mesh::pb::remote_execution_client::RemoteExecutionClient;
use tonic::{
    Request, Status,
    metadata::AsciiMetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, Endpoint},
};

use crate::exit::{CliError, Exit};

/// How long dialing the hub may take before the CLI says it is unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The route that carries the calls (`--json` records and progress lines name it).
pub const ROUTE_LOCAL: &str = "local";

/// Adds `authorization: Bearer <token>` (marked sensitive, so it is never logged).
#[derive(Clone)]
pub struct AddBearer(AsciiMetadataValue);

impl std::fmt::Debug for AddBearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AddBearer(<redacted>)")
    }
}

impl Interceptor for AddBearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert(helix_mesh::AUTHORIZATION_HEADER, self.0.clone());
        Ok(request)
    }
}

pub type HubClient = RemoteExecutionClient<InterceptedService<Channel, AddBearer>>;

/// A connected hub.
#[derive(Debug, Clone)]
pub struct Connected {
    pub client: HubClient,
    pub hub: LocalHub,
    pub route: &'static str,
}

/// Finds the hub through its data dir and dials it.
pub async fn connect_local(dir: &Path) -> Result<Connected, CliError> {
    let hub = LocalHub::find(dir).map_err(|e| CliError::new(Exit::Unreachable, e.to_string()))?;
    let addr = hub.info.grpc_addr;
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| CliError::new(Exit::Unreachable, format!("bad hub address {addr}: {e}")))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    let channel = endpoint.connect().await.map_err(|e| {
        CliError::new(
            Exit::Unreachable,
            format!(
                "the hub at {addr} (pid {}, from {}) is not answering ({}): is it still running? Start it with `helix-hub serve`",
                hub.info.pid,
                dir.join(helix_discovery::local::RUNTIME_FILE).display(),
                error_chain(&e),
            ),
        )
    })?;
    let mut value: AsciiMetadataValue =
        format!("Bearer {}", hub.token()).parse().map_err(|_| {
            CliError::new(
                Exit::Unreachable,
                format!("the token in {} is not valid text", dir.display()),
            )
        })?;
    value.set_sensitive(true);
    let client = RemoteExecutionClient::with_interceptor(channel, AddBearer(value))
        .max_decoding_message_size(helix_mesh::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(helix_mesh::MAX_MESSAGE_BYTES);
    Ok(Connected {
        client,
        hub,
        route: ROUTE_LOCAL,
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}
