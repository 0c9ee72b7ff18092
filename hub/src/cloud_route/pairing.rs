//! Pairing requests through the cloud: devices seal a pairing ticket's secret to this hub in a
//! `cloud_pairings` row; the hub answers each at its [`PairingDesk`]
//! (`crate::cloud_pairing`).
//!
//! When it looks: at once on a Realtime INSERT into `cloud_pairings` for this hub (so a request
//! with an expired or used ticket is answered too, with why), and while a pairing secret issued
//! (used or not) is unexpired or expired less than [`PAIRING_GRACE`] ago (`helix-hub pair`
//! ran) every [`PAIRING_POLL`] while Realtime is down, every [`PAIRING_SAFETY_POLL`] while it
//! listens. An idle hub that issued no secret lately makes no request for pairing.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::CloudRoute;
use crate::pairing::PairingDesk;

/// How often the hub reads its pairing requests after it issued a pairing secret, while
/// Realtime wake-ups cannot arrive.
pub const PAIRING_POLL: Duration = Duration::from_secs(2);
/// The same while Realtime listens: a missed wake-up costs this much (an unused ticket costs
/// about 40 requests over its 10 minutes and the grace after).
pub const PAIRING_SAFETY_POLL: Duration = Duration::from_secs(30);
/// How long after a secret expired the hub still looks (a request row lives at most 10
/// minutes): a device that comes late hears that its ticket expired.
pub const PAIRING_GRACE: Duration = Duration::from_secs(10 * 60);

impl CloudRoute {
    /// Answers pairing requests on every wake-up, and every poll while a secret is
    /// outstanding, until `cancel`. `realtime` says whether wake-ups can arrive.
    pub(super) async fn pair_until(
        &self,
        desk: PairingDesk,
        mut wake: mpsc::Receiver<()>,
        realtime: watch::Receiver<bool>,
        cancel: &CancellationToken,
    ) {
        let mut open = true;
        loop {
            let poll = match *realtime.borrow() {
                true => PAIRING_SAFETY_POLL,
                false => PAIRING_POLL,
            };
            let woken = tokio::select! {
                _ = cancel.cancelled() => return,
                woken = wake.recv(), if open => {
                    open = woken.is_some();
                    open
                }
                _ = tokio::time::sleep(poll) => false,
            };
            if !woken && !desk.pairings.issued_within(PAIRING_GRACE) {
                continue;
            }
            let rest = match self.cloud.rest().await {
                Ok(Some((rest, _))) => rest,
                Ok(None) => continue,
                Err(error) => {
                    tracing::debug!(%error, "no cloud session to answer pairing requests with");
                    continue;
                }
            };
            match crate::cloud_pairing::answer_waiting(
                &rest,
                &self.secret,
                self.caller.token(),
                &desk,
            )
            .await
            {
                Ok(0) => {}
                Ok(answered) => {
                    tracing::info!(answered, "answered pairing requests through the cloud")
                }
                Err(error) => {
                    tracing::warn!(%error, "reading pairing requests from the cloud failed")
                }
            }
        }
    }
}
