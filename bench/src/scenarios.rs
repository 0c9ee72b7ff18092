//! The scenarios, each filling its rows of the report.

pub mod hub;
pub mod link;
pub mod relay;
pub mod transports;
pub mod wan;
