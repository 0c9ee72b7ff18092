//! How the journal writer thread waits for its next operation.

use std::time::{Duration, Instant};

use tokio::sync::mpsc::{self, error::TryRecvError};

/// How long the writer keeps checking its inbox after a batch before it parks its thread.
/// Waking a parked thread costs more than a commit, and the next operation often follows
/// within this window: a new command's first output right after its submit, the next command
/// of a burst, a provider's next chunk. Each check yields the core to any other runnable
/// thread, so it takes no time from real work; an idle hub parks after one window.
pub(super) const SPIN_BEFORE_PARK: Duration = Duration::from_micros(150);

/// The next item: checked for during [`SPIN_BEFORE_PARK`], then waited for with the thread
/// parked. `None` once every sender is gone and nothing is left. Blocking: call it from a
/// dedicated thread, never from async code.
pub(super) fn next<T>(rx: &mut mpsc::Receiver<T>) -> Option<T> {
    let until = Instant::now() + SPIN_BEFORE_PARK;
    loop {
        match rx.try_recv() {
            Ok(item) => return Some(item),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) if Instant::now() < until => std::thread::yield_now(),
            Err(TryRecvError::Empty) => return rx.blocking_recv(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_what_waits_then_parks_for_what_comes_late_then_ends() {
        let (tx, mut rx) = mpsc::channel(4);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert_eq!(next(&mut rx), Some(1));
        assert_eq!(next(&mut rx), Some(2));
        // Sent long after the spin window: the parked receiver must still get it.
        let late = std::thread::spawn(move || {
            std::thread::sleep(SPIN_BEFORE_PARK * 20);
            tx.blocking_send(3).unwrap();
        });
        assert_eq!(next(&mut rx), Some(3));
        late.join().unwrap();
        // Every sender gone, nothing left.
        assert_eq!(next(&mut rx), None);
    }

    #[test]
    fn items_left_after_the_senders_are_gone_are_still_delivered() {
        let (tx, mut rx) = mpsc::channel(4);
        tx.try_send("last").unwrap();
        drop(tx);
        assert_eq!(next(&mut rx), Some("last"));
        assert_eq!(next(&mut rx), None);
    }
}
