//! The Helix Mesh hub: the desktop service that keeps the credentials and runs commands.
//!
//! Module map:
//! - [`hub`]: a running hub (journal + executor + gRPC listeners), its builder and its staged
//!   shutdown; [`context`]: what its command paths share; [`background`]: a task with an
//!   owner (stopped by its token, aborted on drop).
//! - [`tunnel`]: the iroh endpoint: gRPC over QUIC for paired devices, the pairing exchange;
//!   [`devices`]: paired devices and pairing tickets; [`admin`]: the loopback admin service;
//!   [`presence`]: the presence heartbeat when the cloud route runs; [`cloud_route`]: the
//!   hub's side of the cloud route (commands through the Supabase tables, readable by every
//!   paired device, and every other command mirrored there).
//! - [`service`]: the `RemoteExecution` gRPC service; [`grpc_status`] maps errors to
//!   `tonic::Status`.
//! - [`executor`]: bounded FIFO queue (a session's commands one at a time), workers, retries,
//!   cancel, expiry.
//! - [`journal`]: the SQLite journal of commands and events (its writer thread, its SQL, its
//!   queries).
//! - [`bus`]: live fan-out of committed events to streams and watchers.
//! - [`command`]: the command model and request validation; [`history`]: a session's earlier
//!   turns as a command's provider gets them, and the budget that bounds them.
//! - [`provider`]: provider executors ([`provider::anthropic`], [`provider::claude_code`],
//!   [`provider::codex`], [`provider::gemini`]); [`sse`] parses their streams; [`retry`]
//!   decides delays.
//! - [`credentials`]: `auth-profiles.json`; [`oauth`]: ChatGPT sign-in (PKCE) and token
//!   refresh; [`refresh`]: race-free refresh across processes; [`bearer`]: the TCP
//!   listener's token.
//! - [`config`]: `config.toml` + env; [`cli`]: the `helix-hub` command line; [`login`]: the
//!   sign-in flows, OpenClaw import and credential report behind it.

pub mod admin;
pub mod background;
pub mod bearer;
pub mod bus;
pub mod cli;
pub mod cloud_pairing;
pub mod cloud_route;
pub mod command;
pub mod config;
pub mod context;
pub mod credentials;
pub mod desktop_service;
pub mod devices;
pub mod doctor;
pub mod executor;
pub mod grpc_status;
pub mod history;
pub mod hub;
pub mod journal;
pub mod login;
pub mod oauth;
pub mod pairing;
pub mod presence;
pub mod provider;
pub mod refresh;
pub mod retry;
pub mod service;
pub mod sse;
pub mod tunnel;

pub use config::HubConfig;
pub use hub::{Hub, HubError, RuntimeInfo};
