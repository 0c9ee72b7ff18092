//! End-to-end tests: real hubs (in-process and as processes), real gRPC over loopback TCP, a
//! local HTTP server speaking the Anthropic streaming format, and the `helix` CLI binary.
//!
//! One test binary for the whole workspace (package `helix-e2e`, fast builds); each area is a module of
//! `suite/`, and `support/` holds the shared helpers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod suite;
mod support;
