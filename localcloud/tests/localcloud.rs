//! The local cloud's integration tests: one binary, areas in `localcloud/`, helpers in
//! `localcloud/support.rs`. Each test starts a real local cloud (a fresh database, postrust, the
//! stand-ins) on port 0; they need PostgreSQL and postrust-server, as scripts/test sets up.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "localcloud/auth.rs"]
mod auth;
#[path = "localcloud/process.rs"]
mod process;
#[path = "localcloud/realtime.rs"]
mod realtime;
#[path = "localcloud/rest.rs"]
mod rest;
#[path = "localcloud/support.rs"]
mod support;
#[path = "localcloud/web.rs"]
mod web;
