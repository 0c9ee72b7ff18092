//! The cloud route's handlers, bounded: every claimed, resumed or mirrored command is written to
//! the cloud by one handler task, at most [`MAX_HANDLERS`] at once (a semaphore), each row by one
//! handler at a time ([`RowsInHand`]), all of them tracked so a stopping hub can wait for them.
//!
//! Who waits for room: a mirror waits for a permit (its intake queue is bounded, see `mirror`);
//! a claim round claims only as many rows as there are free permits; an orphan scan resumes only
//! as many rows as there are free permits (the rest wait for the next scan).

use std::{
    collections::HashSet,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Most handlers at once. Each holds one command's cloud writes (its batches of at most 4 MiB
/// of envelopes among them), so this bounds the hub's memory and requests for the cloud; 64 is
/// far more than the executor runs at once by default (5), so it only binds when the cloud is
/// slow or unreachable and handlers pile up retrying.
pub const MAX_HANDLERS: usize = 64;

/// The handlers of one cloud route; cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct Handlers {
    tracker: TaskTracker,
    permits: Arc<Semaphore>,
    in_hand: RowsInHand,
}

/// A permit to run one handler (its slot is free again when this is dropped).
#[derive(Debug)]
pub(super) struct Permit {
    _slot: OwnedSemaphorePermit,
}

impl Handlers {
    pub fn new(max: usize) -> Self {
        Self {
            tracker: TaskTracker::new(),
            permits: Arc::new(Semaphore::new(max)),
            in_hand: RowsInHand::default(),
        }
    }

    /// Up to `n` permits that are free now (maybe none).
    pub fn free_permits(&self, n: usize) -> Vec<Permit> {
        (0..n)
            .map_while(|_| {
                let slot = self.permits.clone().try_acquire_owned().ok()?;
                Some(Permit { _slot: slot })
            })
            .collect()
    }

    /// Waits for a permit; `None` when `cancel` fires first.
    pub async fn permit(&self, cancel: &CancellationToken) -> Option<Permit> {
        tokio::select! {
            _ = cancel.cancelled() => None,
            slot = self.permits.clone().acquire_owned() => slot.ok().map(|slot| Permit { _slot: slot }),
        }
    }

    /// Takes the row of `id` in hand, unless a handler already has it.
    pub fn begin(&self, id: &str) -> Option<RowInHand> {
        self.in_hand.begin(id)
    }

    /// Runs `work` as a handler holding `permit` and `row` until it ends.
    pub fn spawn<F>(&self, permit: Permit, row: RowInHand, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(async move {
            work.await;
            drop(row);
            drop(permit);
        });
    }

    /// Handlers running now.
    #[cfg(test)]
    pub fn running(&self) -> usize {
        self.tracker.len()
    }

    /// Takes no more handlers and waits up to `grace` for those running.
    pub async fn close(&self, grace: Duration) {
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                handlers = self.tracker.len(),
                "cloud route: stopped waiting for commands still writing to the cloud"
            );
        }
    }
}

/// The rows (by command id) a handler of this process is working on: a row is handled by one
/// handler at a time, whether it was claimed, mirrored or is resumed.
#[derive(Debug, Clone, Default)]
pub(super) struct RowsInHand(Arc<Mutex<HashSet<String>>>);

/// A row in hand: its command id is in the set until this is dropped.
#[derive(Debug)]
pub(super) struct RowInHand {
    set: RowsInHand,
    id: String,
}

impl RowsInHand {
    /// Takes the row of `id` in hand, unless a handler already has it.
    pub fn begin(&self, id: &str) -> Option<RowInHand> {
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        set.insert(id.to_owned()).then(|| RowInHand {
            set: self.clone(),
            id: id.to_owned(),
        })
    }
}

impl Drop for RowInHand {
    fn drop(&mut self) {
        let mut set = self.set.0.lock().unwrap_or_else(|e| e.into_inner());
        set.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn at_most_max_handlers_run_and_a_freed_permit_lets_the_next_one_in() {
        let handlers = Handlers::new(3);
        let taken = handlers.free_permits(5);
        assert_eq!(taken.len(), 3, "only as many as there is room for");
        assert!(handlers.free_permits(1).is_empty());

        let release = CancellationToken::new();
        for (n, permit) in taken.into_iter().enumerate() {
            let row = handlers.begin(&n.to_string()).unwrap();
            let release = release.clone();
            handlers.spawn(permit, row, async move { release.cancelled().await });
        }
        assert_eq!(handlers.running(), 3);
        let cancel = CancellationToken::new();
        let waiting = tokio::spawn({
            let handlers = handlers.clone();
            async move { handlers.permit(&cancel).await.is_some() }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "a fourth waits for room");
        release.cancel();
        assert!(waiting.await.unwrap(), "and gets it once a handler ends");
        handlers.close(Duration::from_secs(5)).await;
        assert_eq!(handlers.running(), 0);
    }

    #[tokio::test]
    async fn a_row_is_in_hand_once_and_free_again_when_its_handler_ends() {
        let handlers = Handlers::new(2);
        let row = handlers.begin("a").unwrap();
        assert!(handlers.begin("a").is_none(), "one handler per row");
        let permit = handlers.free_permits(1).pop().unwrap();
        handlers.spawn(permit, row, async {});
        handlers.close(Duration::from_secs(5)).await;
        assert!(handlers.begin("a").is_some());
        assert_eq!(handlers.free_permits(2).len(), 2, "permits returned");
    }

    #[tokio::test]
    async fn waiting_for_a_permit_ends_when_the_route_stops() {
        let handlers = Handlers::new(1);
        let _held = handlers.free_permits(1);
        let cancel = CancellationToken::new();
        cancel.cancel();
        assert!(handlers.permit(&cancel).await.is_none());
    }
}
