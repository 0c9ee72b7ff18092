//! Why sending, following or cancelling through the cloud route failed, and why one event (or
//! the content key) was refused. `crate::error` decides the exit codes.

use std::time::Duration;

use helix_discovery::{cloud::CloudError, rest::RestError};
use helix_mesh::{cloud_payload::PayloadError, envelope_v2::EnvelopeError};

use crate::config::ConfigError;

/// Sending, following or cancelling a command through the cloud route failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CloudRouteError {
    /// The cloud settings or session could not be read or refreshed.
    #[error("cloud route: {0}")]
    Cloud(#[from] CloudError),
    #[error("the cloud route needs the cloud: run `helix cloud login`")]
    SignedOut,
    /// A table read or write failed.
    #[error("cloud route: {0}")]
    Rest(#[from] RestError),
    #[error("cloud route: sealing the command: {0}")]
    Seal(#[source] EnvelopeError),
    #[error("cloud route: writing the command: {0}")]
    Payload(#[source] PayloadError),
    /// This device's key could not be read or created.
    #[error(transparent)]
    Key(ConfigError),
    #[error("installing the Ctrl-C handler: {0}")]
    CtrlC(#[source] std::io::Error),
    /// The insert's foreign key (23503): the hub never registered under this account.
    #[error(
        "hub {hub} has not connected to the cloud under this account: on the hub run `helix-hub cloud login` with the same account, then restart it"
    )]
    HubNotRegistered { hub: String },
    /// A per-account cap of the cloud (54000); the text is the server's.
    #[error(
        "the cloud refused the command: {message} (wait for the hub to take them, or cancel some with `helix cancel --via cloud ID`)"
    )]
    CloudFull { message: String },
    #[error(
        "the cloud route keeps a command at most 24h, not {}: pass --ttl 24h or less",
        humantime::format_duration(*ttl)
    )]
    TtlTooLong { ttl: Duration },
    /// A bound of a column (23514): in practice `expires_at`, when this device's clock is
    /// ahead of the cloud's.
    #[error(
        "the cloud refused the command ({message}): it may expire at most 24h after the cloud's clock; is this device's clock right?"
    )]
    ExpiryRefused { message: String },
    /// Row-level security or a grant refused this session's write (42501).
    #[error(
        "the cloud does not let this session send commands ({message}): sign in with `helix cloud login` to the account the hub uses"
    )]
    NotAllowed { message: String },
    #[error("no command {0} in the cloud")]
    UnknownCommand(String),
    #[error(
        "no session {0:?} among the hub's newest commands in the cloud that this device can read"
    )]
    NoSession(String),
    #[error("command_id: {0:?} is not a UUID")]
    NotAUuid(String),
    /// The row names another hub than the paired one this device checks signatures against.
    #[error(
        "command {command_id} is for hub {row_hub}, not for hub {hub}: pass --hub with its hub"
    )]
    OtherHub {
        command_id: String,
        row_hub: String,
        hub: String,
    },
    #[error(
        "this device has no key for command {command_id}: it was paired after the command started, or it is revoked"
    )]
    NoKey { command_id: String },
    #[error("cloud route: refused the content key of {command_id}: {source}")]
    RefusedKey {
        command_id: String,
        #[source]
        source: EnvelopeError,
    },
    #[error("cloud route: refused the prompt of {command_id}: {why}")]
    RefusedPrompt {
        command_id: String,
        #[source]
        why: Refusal,
    },
    #[error(
        "cloud route: refused event {seq} of {command_id}: {why} (nothing of it was printed, nor anything after it)"
    )]
    RefusedEvent {
        seq: u64,
        command_id: String,
        #[source]
        why: Refusal,
    },
    #[error(
        "cloud route: nothing from the hub for {} (--cloud-silence); the command may still run (follow it again with `helix attach --via cloud {command_id}`)",
        humantime::format_duration(*silence)
    )]
    Silent {
        silence: Duration,
        command_id: String,
    },
}

/// Why the event a device expected next was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// Not this command's, not this seq's, not an event, not the hub's, or does not open.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// Signed by the hub for this seq, but the event inside says another.
    #[error("the event inside says seq {found}")]
    PayloadSeq { found: u64 },
    /// The page skips it: the next stored event is a later one.
    #[error("it is missing from the cloud (the next event stored is {next})")]
    Missing { next: u64 },
    /// The command ended at a later seq, but no more events are stored.
    #[error("it is missing from the cloud (the command's row ends at event {last_seq})")]
    Truncated { last_seq: u64 },
    /// The command's row says it completed, yet no `finished` event follows.
    #[error("it is missing from the cloud (the command completed, but its events end before it)")]
    NoFinish,
    /// The cloud returned an event it had already given.
    #[error("the cloud returned event {found} again in its place")]
    Repeated { found: u64 },
}
