//! Live fan-out of committed events: per-command channels for `Execute`/`Attach` streams, and
//! one hub-wide channel of status changes for `Watch`.
//!
//! Publishing never waits: the channels are `tokio::sync::broadcast` rings. A receiver that
//! falls behind is told it lagged; command streams then catch up from the journal (everything
//! is stored there), and `Watch` streams are cut off. Execution is never slowed by a watcher.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use helix_mesh::{
    pb::{self, CommandStatus, Provider},
    proto_ext::ms_to_timestamp,
};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::command::{EventKind, StoredEvent};

/// Events buffered per command for live subscribers. A subscriber more than this many events
/// behind re-reads from the journal instead; so this only needs to cover short stalls.
pub const COMMAND_CHANNEL_CAPACITY: usize = 1024;

/// Status changes buffered for `Watch` streams. 1,000 commands starting at once make about
/// 3,000 changes in a burst; a watcher further behind than this is cut off.
pub const STATUS_CHANNEL_CAPACITY: usize = 8192;

/// A command's status changed (the payload of `Watch`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEvent {
    pub command_id: Uuid,
    pub status: CommandStatus,
    pub at_ms: i64,
    pub session_id: String,
    pub provider: Provider,
    pub source_device_id: String,
    pub error: String,
    pub seq: u64,
}

impl StatusEvent {
    /// The change `kind` (stored, or about to be published, at `seq`) makes to its command's
    /// status, if any; `error` is the `finished` event's.
    pub fn for_event(
        command_id: Uuid,
        kind: &EventKind,
        seq: u64,
        at_ms: i64,
        session_id: &str,
        provider: Provider,
        source_device_id: &str,
    ) -> Option<StatusEvent> {
        kind.status_change().map(|status| StatusEvent {
            command_id,
            status,
            at_ms,
            session_id: session_id.to_owned(),
            provider,
            source_device_id: source_device_id.to_owned(),
            error: match kind {
                EventKind::Finished { error, .. } => error.clone(),
                _ => String::new(),
            },
            seq,
        })
    }

    pub fn to_proto(&self) -> pb::StatusChange {
        pb::StatusChange {
            command_id: self.command_id.to_string(),
            status: self.status as i32,
            time: Some(ms_to_timestamp(self.at_ms)),
            session_id: self.session_id.clone(),
            provider: self.provider as i32,
            source_device_id: self.source_device_id.clone(),
            error: self.error.clone(),
            seq: self.seq,
        }
    }
}

/// The fan-out hub; cheap to clone.
#[derive(Debug, Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    commands: Mutex<HashMap<Uuid, broadcast::Sender<Arc<StoredEvent>>>>,
    status: broadcast::Sender<Arc<StatusEvent>>,
}

impl Default for Bus {
    fn default() -> Self {
        Self::new()
    }
}

impl Bus {
    pub fn new() -> Self {
        let (status, _) = broadcast::channel(STATUS_CHANNEL_CAPACITY);
        Self {
            inner: Arc::new(Inner {
                commands: Mutex::new(HashMap::new()),
                status,
            }),
        }
    }

    /// Live events of one command from now on. Subscribe before reading the journal's history,
    /// then skip what the history already gave.
    pub fn subscribe_command(&self, command_id: Uuid) -> CommandSubscription {
        let rx = match self.inner.commands.lock() {
            Ok(mut map) => map
                .entry(command_id)
                .or_insert_with(|| broadcast::channel(COMMAND_CHANNEL_CAPACITY).0)
                .subscribe(),
            // A poisoned map means a publisher panicked; give a receiver that sees nothing
            // live, so the caller still serves history from the journal.
            Err(_) => broadcast::channel(1).1,
        };
        CommandSubscription {
            rx,
            command_id,
            bus: self.clone(),
        }
    }

    /// Every status change from now on.
    pub fn subscribe_status(&self) -> broadcast::Receiver<Arc<StatusEvent>> {
        self.inner.status.subscribe()
    }

    /// Called by the journal writer after the event's batch committed.
    pub(crate) fn publish(&self, event: &StoredEvent, status: Option<StatusEvent>) {
        if let Ok(mut map) = self.inner.commands.lock() {
            let drop_sender = match map.get(&event.command_id) {
                Some(tx) if tx.receiver_count() > 0 => {
                    let _ = tx.send(Arc::new(event.clone()));
                    event.is_finished()
                }
                Some(_) => true,
                None => false,
            };
            // After `finished` nothing more comes: dropping the sender ends the receivers once
            // they have read what is buffered.
            if drop_sender {
                map.remove(&event.command_id);
            }
        }
        if let Some(status) = status {
            // No receivers is fine: nobody is watching.
            let _ = self.inner.status.send(Arc::new(status));
        }
    }

    fn release(&self, command_id: Uuid) {
        if let Ok(mut map) = self.inner.commands.lock()
            && map
                .get(&command_id)
                .is_some_and(|tx| tx.receiver_count() == 0)
        {
            map.remove(&command_id);
        }
    }

    #[cfg(test)]
    fn live_channels(&self) -> usize {
        self.inner.commands.lock().map(|m| m.len()).unwrap_or(0)
    }
}

/// A live subscription to one command; removes its channel when the last one goes away.
#[derive(Debug)]
pub struct CommandSubscription {
    rx: broadcast::Receiver<Arc<StoredEvent>>,
    command_id: Uuid,
    bus: Bus,
}

impl CommandSubscription {
    pub async fn recv(&mut self) -> Result<Arc<StoredEvent>, broadcast::error::RecvError> {
        self.rx.recv().await
    }
}

impl Drop for CommandSubscription {
    fn drop(&mut self) {
        // Our receiver still counts until this returns: drop it first by swapping in a dummy.
        let (_, dummy) = broadcast::channel(1);
        drop(std::mem::replace(&mut self.rx, dummy));
        self.bus.release(self.command_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::EventKind;

    fn event(id: Uuid, seq: u64, kind: EventKind) -> StoredEvent {
        StoredEvent {
            command_id: id,
            seq,
            at_ms: 0,
            kind,
        }
    }

    #[tokio::test]
    async fn subscribers_get_events_and_channels_are_cleaned_up() {
        let bus = Bus::new();
        let id = Uuid::new_v4();
        let mut sub = bus.subscribe_command(id);
        bus.publish(&event(id, 1, EventKind::Output { text: "a".into() }), None);
        bus.publish(
            &event(
                id,
                2,
                EventKind::Finished {
                    status: crate::command::FinalStatus::Completed,
                    error: String::new(),
                    attempts: 1,
                    executed_at_ms: None,
                },
            ),
            None,
        );
        assert_eq!(sub.recv().await.unwrap().seq, 1);
        assert_eq!(sub.recv().await.unwrap().seq, 2);
        assert!(sub.recv().await.is_err(), "closed after finished");
        assert_eq!(bus.live_channels(), 0);

        let other = Uuid::new_v4();
        let sub = bus.subscribe_command(other);
        assert_eq!(bus.live_channels(), 1);
        drop(sub);
        assert_eq!(
            bus.live_channels(),
            0,
            "released when the last subscriber leaves"
        );
    }
}
