//! The Helix Mesh spoke: the `helix` CLI.
//!
//! Module map:
//! - [`cli`]: the command line (clap); [`commands`]: the dispatcher, handing each subcommand to
//!   the file of its group:
//!   - [`run`]: `helix run` and `helix attach`; [`chat`]: `helix chat`;
//!   - [`cancel`]: `helix cancel`, on the hub or in the cloud;
//!   - [`queries`]: `helix show` (from the hub, or `--via cloud`) and `helix ls`;
//!   - [`sessions`]: `helix sessions` (and `helix show --session`);
//!   - [`hub_info`]: `helix watch` and `helix info`;
//!   - [`pair`]: `helix pair` and `helix hubs`;
//!   - [`device`]: `helix whoami` and `helix cloud`.
//! - [`client`]: resolving, dialing and connecting to a hub: on this machine (TCP + token) or
//!   over iroh.
//! - [`config`]: this device's key and paired hubs.
//! - [`follow`]: streaming one command to its end: resume after a lost connection, Ctrl-C
//!   cancels on the hub.
//! - [`render`]: stdout (product) and stderr (progress) output, JSON records.
//! - [`route_watch`]: the route a command goes by over iroh as it changes (relay → direct):
//!   progress lines and the `route_history` of the final JSON record.
//! - [`cloud_route`]: the cloud route through the Supabase tables, v2 (send, follow and attach
//!   to any command of the hub, cancel, show); [`fallback`]: when a command takes it instead of
//!   iroh.
//! - [`error`]: the error a subcommand ends with, and the one place that decides its exit code;
//!   [`exit`]: the exit codes.
//!
//! Group files import the shared modules only, never each other or [`commands`].

pub mod cancel;
pub mod chat;
pub mod cli;
pub mod client;
pub mod cloud_route;
pub mod commands;
pub mod config;
pub mod device;
pub mod error;
pub mod exit;
pub mod fallback;
pub mod follow;
pub mod hub_info;
pub mod keeper;
pub mod last_session;
pub mod pair;
pub mod queries;
pub mod render;
pub mod route_watch;
pub mod run;
pub mod sessions;
pub mod settings;
