//! Fixtures shared by the end-to-end tests (`tests/`) and the benchmark (`bench/`): local
//! stand-ins for the cloud services the mesh talks to. Not part of the product; a fixture that
//! cannot do its job panics, which fails the test or the benchmark run that uses it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod pg;
pub mod postrust;
pub mod realtime;
