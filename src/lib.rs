//! The Helix Mesh wire, shared by hub and spoke (and depending on neither).
//!
//! - [`pb`]: generated protobuf messages and the tonic `RemoteExecution` client and server.
//! - [`proto_ext`]: names, parsing and conversions for the generated enums and times.
//! - [`transport`]: ALPNs, close codes, iroh endpoint options, keys, routes.
//! - [`iroh_grpc`]: gRPC over iroh QUIC (server acceptor, client connector).
//! - [`ticket`]: address and pairing tickets, and the pairing exchange; [`web_link`]: the
//!   link that pairs a browser through the cloud.
//! - [`envelope_v2`]: end-to-end-encrypted, signed envelopes for the cloud route (Supabase
//!   tables): commands and content keys sealed to one key, content under a per-command key;
//!   [`cloud_payload`]: the JSON inside them.
//! - [`fsutil`]: private files written atomically (keys, stores); [`hex`]: hex text of keys
//!   and secrets; [`secret_input`]: secrets read from stdin, for both binaries.
//! - constants: protocol version, header names, limits that both sides must agree on.

pub mod cloud_payload;
pub mod envelope_v2;
pub mod fsutil;
pub mod hex;
pub mod hub_channel;
pub mod iroh_grpc;
pub mod proto_ext;
pub mod secret_input;
pub mod ticket;
pub mod transport;
pub mod urlenc;
pub mod web_link;

/// Generated code for package `helix.remote.v1`.
#[allow(clippy::all, missing_debug_implementations)]
pub mod pb {
    tonic::include_proto!("helix.remote.v1");

    /// The encoded `FileDescriptorSet` of the protocol, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("helix_remote_v1_descriptor");
}

/// Wire protocol version; bumped only for a change old peers cannot understand.
pub const PROTOCOL_VERSION: u32 = 1;

/// The fully qualified gRPC service name (for health checks and reflection).
pub const SERVICE_NAME: &str = "helix.remote.v1.RemoteExecution";

/// The admin service's name (loopback TCP only).
pub const ADMIN_SERVICE_NAME: &str = "helix.remote.v1.HubAdmin";

/// Largest prompt the hub accepts, in bytes of UTF-8. Bigger prompts are refused with
/// `INVALID_ARGUMENT` rather than truncated.
pub const MAX_CONTENT_BYTES: usize = 1 << 20;

/// Largest gRPC message either side decodes. Above [`MAX_CONTENT_BYTES`] plus the other fields,
/// so an oversized prompt reaches validation and gets a precise error.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// The metadata key carrying the bearer token on the TCP listener.
pub const AUTHORIZATION_HEADER: &str = "authorization";
