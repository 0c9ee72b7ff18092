//! Fixtures shared by the end-to-end tests (`tests/`) and the benchmark (`bench/`): local
//! stand-ins for the cloud services the mesh talks to, local iroh relays, one with its own CA
//! ([`relay`]), and `helix` processes timed as a person feels them ([`timed`]). Not
//! part of the product; a fixture that cannot do its job panics, which fails the test or the
//! benchmark run that uses it ([`timed`] returns its errors: a benchmark reports them).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod pg;
pub mod postrust;
pub mod realtime;
pub mod relay;
pub mod timed;
