//! A background task with an owner: the token that asks it to stop and a handle that aborts it
//! when dropped, so a hub that is dropped instead of shut down leaves nothing running.

use std::future::Future;

use tokio_util::{sync::CancellationToken, task::AbortOnDropHandle};

/// A spawned task and its stop token. Dropping it aborts the task; [`BackgroundTask::stop`]
/// asks it to finish and waits.
///
/// The handle is tokio-util's [`AbortOnDropHandle`], the type iroh's `n0_future::task`
/// re-exports (and its `Router` holds its accept loop in).
#[derive(Debug)]
#[must_use = "dropping a BackgroundTask aborts the task"]
pub struct BackgroundTask {
    cancel: CancellationToken,
    task: AbortOnDropHandle<()>,
}

impl BackgroundTask {
    /// Spawns `run(cancel)`: the task should return soon after `cancel` is cancelled.
    pub fn spawn<F>(cancel: CancellationToken, run: impl FnOnce(CancellationToken) -> F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let task = AbortOnDropHandle::new(tokio::spawn(run(cancel.clone())));
        Self { cancel, task }
    }

    /// Cancels the task's token and waits for it to return.
    pub async fn stop(self) {
        self.cancel.cancel();
        // A task that panicked has nothing more to stop.
        let _ = self.task.await;
    }
}
