//! The Helix Mesh spoke: the `helix` CLI.
//!
//! Module map:
//! - [`cli`]: the command line (clap); [`commands`]: what each subcommand does; [`cancel`]:
//!   `helix cancel`, on the hub or in the cloud.
//! - [`client`]: resolving and dialing a hub: on this machine (TCP + token) or over iroh.
//! - [`config`]: this device's key and paired hubs; [`pair`]: pairing and `helix hubs`.
//! - [`follow`]: streaming one command to its end: resume after a lost connection, Ctrl-C
//!   cancels on the hub.
//! - [`render`]: stdout (product) and stderr (progress) output, JSON records.
//! - [`relay`]: the Supabase table relay route (send, follow, cancel); [`fallback`]: when a
//!   command takes it instead of iroh.
//! - [`exit`]: exit codes.

pub mod cancel;
pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod exit;
pub mod fallback;
pub mod follow;
pub mod pair;
pub mod queries;
pub mod relay;
pub mod render;
