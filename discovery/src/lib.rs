//! How a spoke finds its hub.
//!
//! - [`local`]: a hub on this machine, found through its data directory (`hub.json` + token).
//! - [`rest`]: a typed client for Supabase's PostgREST API; [`presence`]: hub presence rows;
//!   [`auth`]: Supabase auth sessions (password, email code, access token; locked refresh);
//!   [`cloud`]: a side's cloud settings and session, and the `cloud` subcommands;
//!   [`lookup`]: an iroh address lookup backed by presence rows.
//! - [`realtime`]: a Supabase Realtime client that wakes a hub when a cloud command for it is
//!   inserted (a signal only; the rows and a safety poll carry correctness).
//!
//! The cloud route itself (sending commands and following their events through the
//! `cloud_commands` table) lives in the hub (`helix_hub::cloud_route`) and the spoke
//! (`helix_spoke::cloud_route`); this crate gives both the REST client, sessions and wake-ups.

pub mod auth;
pub mod cloud;
pub mod local;
pub mod lookup;
pub mod presence;
pub mod realtime;
pub mod rest;
