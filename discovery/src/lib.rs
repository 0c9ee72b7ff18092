//! How a spoke finds its hub.
//!
//! - [`local`]: a hub on this machine, found through its data directory (`hub.json` + token).
//!
//! Supabase presence rows, the iroh address lookup and the table relay come next (see the
//! project's issues); they will live here as further modules.

pub mod local;
