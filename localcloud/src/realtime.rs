//! The Realtime stand-in (`/realtime/v1/websocket`): Phoenix channels carrying
//! `postgres_changes`, both serializer versions, with changes that really happen in the
//! database.
//!
//! Where changes come from: `sql/realtime.sql` (applied by this binary only, never a migration)
//! puts an AFTER trigger on every table of the `supabase_realtime` publication that sends each
//! row change with `pg_notify`; [`listen`] LISTENs on one connection and fans each change out
//! through the [`registry`] to the channels whose binding matches (event, schema, table,
//! filter) and whose token's `sub` is the row's `user_id` (standing in for Realtime's RLS
//! check). [`upgrade`] answers the handshake, [`socket`] serves one socket, [`phoenix`] is the
//! wire, [`binding`] the subscriptions.
//!
//! What differs from Supabase's Realtime, on purpose: a NOTIFY payload must stay under 8000
//! bytes, so a change whose row does not fit (a command's 1.5 MB envelope, say) carries only the
//! columns whose value is at most 64 bytes and `errors: ["Error 413: Payload Too Large"]`, the
//! answer Realtime gives rows over its own (1 MiB) limit; `old_record` holds the primary key
//! (replica identity default); `commit_timestamp` is the transaction's start. Broadcast and
//! presence are not served.

use std::time::Duration;

use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::jwt::Secret;

pub mod binding;
pub mod listen;
pub mod phoenix;
pub mod registry;
pub mod socket;
pub mod upgrade;

pub use registry::Registry;

/// Sockets open at once; past this an upgrade gets 503. Far more than a developer's browser
/// tabs and test clients, few enough that a runaway client loop is noticed.
pub const MAX_SOCKETS: usize = 256;
/// Channels one socket may join (Realtime's default `max_channels_per_client`).
pub const MAX_CHANNELS_PER_SOCKET: usize = 100;
/// Messages waiting for one socket: a burst of changes a client may lag behind before it is
/// disconnected (`1013`) rather than let the queue grow.
pub const OUTBOX_CAPACITY: usize = 256;
/// The largest frame a client may send: joins and tokens are a few KiB.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;
/// A socket silent this long is closed (Phoenix's server-side timeout; clients beat every 25 s,
/// realtime-js every 25 s too).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a closing socket waits for its close frame to go out and the client's to come.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// The NOTIFY channel of `sql/realtime.sql`.
pub const NOTIFY_CHANNEL: &str = "helix_localcloud_changes";

/// The state every socket shares.
#[derive(Debug)]
pub struct Realtime {
    pub registry: Registry,
    pub secret: Secret,
    /// Cancelled at shutdown: every socket sends `1001 going away` and ends.
    pub stop: CancellationToken,
    /// Owns the socket tasks.
    pub tracker: TaskTracker,
}
