//! Realtime wake-ups while a device follows a command: a `postgres_changes` subscription to
//! UPDATEs of that command's `cloud_commands` row. The hub updates the row whenever it
//! publishes the command, appends events (`last_seq`) or ends it, so an UPDATE means "look
//! now". The row is read anyway every [`SAFETY_POLL`] while the channel is joined (a lost
//! wake-up costs at most that), and every [`EVENT_POLL`] while it is not (no Realtime, a
//! refused join, a dropped socket): Realtime only ever makes following cheaper, never
//! required.
//!
//! Why row UPDATEs and not a Broadcast from a trigger: the row is already in the
//! `supabase_realtime` publication for the hub's INSERT wake-ups, Realtime checks the row's
//! RLS policy for each subscriber (only the user's own devices are woken), and a Broadcast
//! would need a trigger and a channel authorization policy of its own.

use std::time::Duration;

use helix_discovery::{
    realtime::{self, RealtimeConfig, Watch},
    rest::SupabaseConfig,
};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::EVENT_POLL;

/// How often the rows are read while Realtime is joined and silent.
pub const SAFETY_POLL: Duration = Duration::from_secs(5);

/// The wake-ups of one followed command; dropping it closes the Realtime socket.
pub(super) struct Wakeups {
    wake: mpsc::Receiver<()>,
    /// Whether the channel is joined now (always `false` without Realtime).
    joined: watch::Receiver<bool>,
    _stop: Option<DropGuard>,
}

impl Wakeups {
    /// Subscribes to the row of `command_id` on the project's Realtime, as the signed-in user
    /// (`access_token`). A project URL Realtime cannot be derived from leaves only the poll.
    pub(super) fn start(supabase: &SupabaseConfig, access_token: String, command_id: &str) -> Self {
        let (tx, wake) = mpsc::channel(1);
        let config = match RealtimeConfig::for_command(
            supabase,
            command_id,
            vec![Watch::command_row(command_id, tx)],
        ) {
            Ok(config) => config,
            Err(error) => {
                tracing::debug!(%error, "no Realtime wake-ups; reading the rows every {EVENT_POLL:?}");
                return Self::none();
            }
        };
        let stop = CancellationToken::new();
        let (_task, joined) =
            realtime::spawn_with_health(config, watch::channel(access_token).1, stop.clone());
        Self {
            wake,
            joined,
            _stop: Some(stop.drop_guard()),
        }
    }

    /// Only the poll.
    pub(super) fn none() -> Self {
        let (_tx, wake) = mpsc::channel(1);
        Self {
            wake,
            joined: watch::channel(false).1,
            _stop: None,
        }
    }

    /// Whether the channel is joined now.
    pub(super) fn joined(&self) -> bool {
        *self.joined.borrow()
    }

    /// Waits until it is time to read the rows again: a change of the row, the channel joined
    /// (changes before the join were not delivered) or lost, or the poll interval.
    pub(super) async fn next(&mut self) {
        let poll = match self.joined() {
            true => SAFETY_POLL,
            false => EVENT_POLL,
        };
        tokio::select! {
            Some(()) = self.wake.recv() => {}
            Ok(()) = self.joined.changed() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}
