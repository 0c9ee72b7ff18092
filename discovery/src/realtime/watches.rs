//! What a Realtime channel listens for: `postgres_changes` subscriptions, each with the channel
//! it wakes. A hub watches the commands and pairing requests inserted for it; a device watches
//! the row of the command it follows.

use serde_json::{Value, json};
use tokio::sync::mpsc;

/// A kind of row change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Insert,
    Update,
}

impl Change {
    /// The name Realtime uses (`event` in a subscription, `data.type` in a change).
    pub fn name(self) -> &'static str {
        match self {
            Self::Insert => "INSERT",
            Self::Update => "UPDATE",
        }
    }
}

/// One subscription: changes of `event` on `public.<table>` matching `filter` send `()` on
/// `wake` (with `try_send`: a wake-up already waiting covers later changes).
#[derive(Debug, Clone)]
pub struct Watch {
    pub event: Change,
    pub table: &'static str,
    /// A Realtime filter, `column=eq.value`.
    pub filter: String,
    pub wake: mpsc::Sender<()>,
}

impl Watch {
    /// Commands inserted for hub `hub_id` (`cloud_commands`).
    pub fn hub_commands(hub_id: &str, wake: mpsc::Sender<()>) -> Self {
        Self {
            event: Change::Insert,
            table: "cloud_commands",
            filter: format!("hub_id=eq.{hub_id}"),
            wake,
        }
    }

    /// Pairing requests inserted for hub `hub_id` (`cloud_pairings`).
    pub fn hub_pairings(hub_id: &str, wake: mpsc::Sender<()>) -> Self {
        Self {
            event: Change::Insert,
            table: "cloud_pairings",
            filter: format!("hub_id=eq.{hub_id}"),
            wake,
        }
    }

    /// Updates of one command's row (the hub published it, appended events, ended it).
    pub fn command_row(command_id: &str, wake: mpsc::Sender<()>) -> Self {
        Self {
            event: Change::Update,
            table: "cloud_commands",
            filter: format!("command_id=eq.{command_id}"),
            wake,
        }
    }

    /// The subscription in a join's `postgres_changes`.
    pub(super) fn subscription(&self) -> Value {
        json!({
            "event": self.event.name(),
            "schema": "public",
            "table": self.table,
            "filter": self.filter,
        })
    }

    /// Whether a change (`data` of a `postgres_changes` frame) is this watch's.
    pub(super) fn matches(&self, data: &Value) -> bool {
        data.get("table").and_then(Value::as_str) == Some(self.table)
            && data.get("type").and_then(Value::as_str) == Some(self.event.name())
    }
}

/// Resolves once every watch's receiver is gone (nobody listens any more).
pub(super) async fn all_closed(watches: &[Watch]) {
    futures::future::join_all(watches.iter().map(|w| w.wake.closed())).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_wakes_only_the_watch_of_its_table_and_kind() {
        let (tx, _rx) = mpsc::channel(1);
        let hub = "ab".repeat(32);
        let commands = Watch::hub_commands(&hub, tx.clone());
        let pairings = Watch::hub_pairings(&hub, tx.clone());
        let row = Watch::command_row("c1", tx);
        let insert = json!({"table": "cloud_commands", "type": "INSERT"});
        let update = json!({"table": "cloud_commands", "type": "UPDATE"});
        assert!(commands.matches(&insert) && !commands.matches(&update));
        assert!(!pairings.matches(&insert));
        assert!(row.matches(&update) && !row.matches(&insert));
        assert_eq!(
            commands.subscription(),
            json!({"event": "INSERT", "schema": "public", "table": "cloud_commands", "filter": format!("hub_id=eq.{hub}")})
        );
        assert_eq!(row.subscription()["filter"], "command_id=eq.c1");
    }
}
