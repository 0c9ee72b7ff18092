//! A network lab on one machine, for the tests and the benchmark: network namespaces joined
//! by veth pairs into two sites behind NAT routers and a WAN between them, where a relay can
//! run, with a delay line on the WAN (a TUN device and a Rust program holding each packet:
//! this kernel has no `netem`).
//!
//! ```text
//!   site a: host ── router (NAT) ──┐                 ┌── router (NAT) ── host :site b
//!   192.168.1.2     192.168.1.1    │  wan (delay)    │    192.168.2.1    192.168.2.2
//!                   10.99.1.2 ── 10.99.1.1  10.99.2.1 ── 10.99.2.2
//!                                      10.99.3.1
//!                                          │
//!                                    relay 10.99.3.2
//! ```
//!
//! Everything stays inside the namespaces the lab makes: none of them has a route to this
//! machine's own network, and they are all deleted on drop (and a later run deletes what a
//! killed one left). It needs root (`CAP_NET_ADMIN` and `CAP_SYS_ADMIN`), iproute2's `ip` and
//! nftables' `nft`; [`require_root`] says when it has none, and every error names the command
//! that failed.

mod delay;
mod forward;
mod netns;
mod run;
mod topology;

pub use delay::DelayLine;
pub use forward::Forward;
pub use netns::{Netns, NsRuntime};
pub use topology::{Lab, Nat, Site, SiteSpec, TwoSites};

/// What the lab could not do, in words that say which command or call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("network lab: {0}")]
pub struct LabError(String);

impl LabError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// `Ok` when this process may build a lab; otherwise why not, e.g. for a test to say why it
/// did not run.
pub fn require_root() -> Result<(), LabError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        Ok(())
    } else {
        Err(LabError::new(format!(
            "needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) to make network namespaces; running as uid {euid}"
        )))
    }
}

#[cfg(test)]
mod tests;
