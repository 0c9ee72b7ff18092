//! Mirroring: every command the hub accepts another way than the cloud (over iroh, or on the
//! local listener) is published to the cloud too, streamed and completed there, so every paired
//! device sees one history. The cloud route's own commands (claimed from `cloud_commands`) never
//! come through here: the hook is the gRPC service's submit path, which the cloud route does
//! not use.
//!
//! The submit path only offers the command id to a bounded queue ([`MIRROR_QUEUE`]) with
//! `try_send`: it never waits, whatever the cloud does. The cloud route takes one request at a
//! time, waits for a free handler (at most `MAX_HANDLERS` run at once) and hands it the command;
//! the handler publishes it (creating the row, origin `hub`), streams its events and completes
//! it, retrying while the cloud fails until the command's expiry (see the `row` module). While
//! the cloud is unreachable the handlers fill up, then the queue; once the queue is full a new
//! command is not mirrored at all (a warning says so): its history stays on the hub, and iroh
//! and the local listener are never slowed down.

use helix_discovery::rest::Rest;
use helix_mesh::proto_ext::now_ms;
use iroh::PublicKey;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    CloudRoute,
    publish::NotPublished,
    row::{Row, backoff},
};

/// Commands waiting for a mirror handler. With every handler busy (a cloud that is down, or
/// 64 commands streaming at once) this many more are remembered, a few minutes of heavy use;
/// past that, mirrors are skipped rather than queued without bound.
pub const MIRROR_QUEUE: usize = 256;

/// One command to mirror.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MirrorRequest {
    pub command_id: Uuid,
    /// The iroh peer that sent it; `None` for the local listener (the row then names the hub
    /// itself as the source device).
    pub peer: Option<PublicKey>,
}

/// The submit path's end of the mirror queue; cheap to clone. Offers go nowhere when the hub
/// runs no cloud route.
#[derive(Debug, Clone)]
pub struct MirrorFeed(mpsc::Sender<MirrorRequest>);

/// The cloud route's end of the mirror queue.
#[derive(Debug)]
pub struct MirrorIntake(mpsc::Receiver<MirrorRequest>);

/// A new mirror queue.
pub fn mirror_queue() -> (MirrorFeed, MirrorIntake) {
    let (tx, rx) = mpsc::channel(MIRROR_QUEUE);
    (MirrorFeed(tx), MirrorIntake(rx))
}

impl MirrorFeed {
    /// Offers a command just accepted (new, not a re-submission) for mirroring. Never waits.
    pub fn offer(&self, command_id: Uuid, peer: Option<PublicKey>) {
        match self.0.try_send(MirrorRequest { command_id, peer }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => tracing::warn!(
                %command_id,
                queued = MIRROR_QUEUE,
                "cloud route: too many commands wait to be mirrored (is the cloud reachable?); this one is not mirrored to the cloud"
            ),
            // No cloud route (none configured, or it stopped).
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

impl CloudRoute {
    /// Hands each offered command to a handler as one becomes free, until `cancel`.
    pub(super) async fn mirror_until(&self, intake: MirrorIntake, cancel: &CancellationToken) {
        let MirrorIntake(mut intake) = intake;
        loop {
            let request = tokio::select! {
                _ = cancel.cancelled() => return,
                request = intake.recv() => match request {
                    Some(request) => request,
                    None => return,
                },
            };
            let Some(permit) = self.handlers.permit(cancel).await else {
                return;
            };
            let id = request.command_id.to_string();
            let Some(row) = self.handlers.begin(&id) else {
                continue;
            };
            let route = self.clone();
            let cancel = cancel.clone();
            self.handlers.spawn(permit, row, async move {
                route.mirror(request, &cancel).await;
            });
        }
    }

    /// Publishes, streams and completes one command accepted another way.
    async fn mirror(&self, request: MirrorRequest, cancel: &CancellationToken) {
        let id = request.command_id;
        let command_id = id.to_string();
        let record = match self.ctx.journal.command(id).await {
            Ok(Some(record)) => record,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%command_id, %error, "reading a command to mirror failed");
                return;
            }
        };
        let deadline_ms = record.command.expires_at_ms;
        let Some(rest) = self.rest_until(deadline_ms, cancel).await else {
            tracing::warn!(%command_id, "no cloud session before the command expired; not mirrored");
            return;
        };
        let source = request
            .peer
            .map_or_else(|| self.caller.hub_id.clone(), |peer| peer.to_string());
        let cloud_row = Row {
            cloud: &self.cloud,
            rest: &rest,
            caller: &self.caller,
            command_id: &command_id,
            deadline_ms,
            cancel,
        };
        let key = match self.publish(&cloud_row, &record.command, &source).await {
            Ok(key) => key,
            // Logged where it happened; without a published row there is nothing to stream.
            Err(NotPublished::Refused(_) | NotPublished::GaveUp) => return,
        };
        tracing::debug!(%command_id, "mirroring a command to the cloud");
        self.stream_back(&cloud_row, id, &key, 0).await;
    }

    /// A REST client with a fresh session, tried again with backoff until `deadline_ms` or
    /// `cancel` (`None` then, or when the hub is signed out).
    pub(super) async fn rest_until(
        &self,
        deadline_ms: i64,
        cancel: &CancellationToken,
    ) -> Option<Rest> {
        let mut failures = 0u32;
        loop {
            match self.cloud.rest().await {
                Ok(Some((rest, _))) => return Some(rest),
                Ok(None) => return None,
                Err(error) => {
                    failures = failures.saturating_add(1);
                    if failures == 1 {
                        tracing::warn!(%error, "cloud route: no usable cloud session; trying again");
                    }
                }
            }
            let left = deadline_ms.saturating_sub(now_ms());
            if left <= 0 {
                return None;
            }
            let wait = backoff(failures).min(std::time::Duration::from_millis(left.unsigned_abs()));
            tokio::select! {
                _ = cancel.cancelled() => return None,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
