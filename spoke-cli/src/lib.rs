//! The Helix Mesh spoke: the `helix` CLI.
//!
//! Module map:
//! - [`cli`]: the command line (clap); [`commands`]: what each subcommand does.
//! - [`client`]: finding and dialing the hub, with its bearer token.
//! - [`follow`]: streaming one command to its end: resume after a lost connection, Ctrl-C
//!   cancels on the hub.
//! - [`render`]: stdout (product) and stderr (progress) output, JSON records.
//! - [`exit`]: exit codes.

pub mod cli;
pub mod client;
pub mod commands;
pub mod exit;
pub mod follow;
pub mod render;
