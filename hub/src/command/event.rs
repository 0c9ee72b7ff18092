//! The events a command goes through, as the journal stores them and the wire carries them.

use helix_mesh::{
    pb::{self, CommandStatus},
    proto_ext::ms_to_timestamp,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One step in a command's life. Stored in the journal (as JSON) and sent as the `kind` of a
/// `CommandEvent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    Queued {
        position: u32,
    },
    Started {
        attempt: u32,
        /// Earlier turns of the session given to the provider with this attempt.
        #[serde(default, skip_serializing_if = "is_zero")]
        history_turns: u32,
        /// Earlier completed turns left out by the agent's history budget (the oldest).
        #[serde(default, skip_serializing_if = "is_zero")]
        history_dropped: u32,
        /// What the person should know about how the session continues; empty: nothing.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        note: String,
    },
    Output {
        text: String,
    },
    Retrying {
        attempt: u32,
        delay_ms: u64,
        reason: String,
    },
    Finished {
        status: FinalStatus,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        error: String,
        attempts: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        executed_at_ms: Option<i64>,
    },
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl EventKind {
    /// The `started` event of `attempt`, for a command without earlier turns.
    pub fn started(attempt: u32) -> Self {
        EventKind::Started {
            attempt,
            history_turns: 0,
            history_dropped: 0,
            note: String::new(),
        }
    }

    /// The command status this event moves the command into, if it changes it.
    pub fn status_change(&self) -> Option<CommandStatus> {
        match self {
            EventKind::Queued { .. } => Some(CommandStatus::Pending),
            EventKind::Started { attempt: 1, .. } => Some(CommandStatus::Executing),
            EventKind::Finished { status, .. } => Some(status.to_status()),
            _ => None,
        }
    }

    /// The journal's short name for the event type.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Queued { .. } => "queued",
            EventKind::Started { .. } => "started",
            EventKind::Output { .. } => "output",
            EventKind::Retrying { .. } => "retrying",
            EventKind::Finished { .. } => "finished",
        }
    }

    fn to_proto(&self) -> pb::command_event::Kind {
        use pb::command_event::Kind;
        match self {
            EventKind::Queued { position } => Kind::Queued(pb::Queued {
                position: *position,
            }),
            EventKind::Started {
                attempt,
                history_turns,
                history_dropped,
                note,
            } => Kind::Started(pb::Started {
                attempt: *attempt,
                history_turns: *history_turns,
                history_dropped: *history_dropped,
                note: note.clone(),
            }),
            EventKind::Output { text } => Kind::Output(pb::Output { text: text.clone() }),
            EventKind::Retrying {
                attempt,
                delay_ms,
                reason,
            } => Kind::Retrying(pb::Retrying {
                attempt: *attempt,
                delay_ms: *delay_ms,
                reason: reason.clone(),
            }),
            EventKind::Finished {
                status,
                error,
                attempts,
                executed_at_ms,
            } => Kind::Finished(pb::Finished {
                status: status.to_status() as i32,
                error: error.clone(),
                attempts: *attempts,
                executed_at: executed_at_ms.map(ms_to_timestamp),
            }),
        }
    }
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalStatus {
    Completed,
    Failed,
    Cancelled,
    Expired,
}

impl FinalStatus {
    pub fn to_status(self) -> CommandStatus {
        match self {
            FinalStatus::Completed => CommandStatus::Completed,
            FinalStatus::Failed => CommandStatus::Failed,
            FinalStatus::Cancelled => CommandStatus::Cancelled,
            FinalStatus::Expired => CommandStatus::Expired,
        }
    }
}

/// An event as the journal stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub command_id: Uuid,
    pub seq: u64,
    pub at_ms: i64,
    pub kind: EventKind,
}

impl StoredEvent {
    pub fn to_proto(&self) -> pb::CommandEvent {
        pb::CommandEvent {
            command_id: self.command_id.to_string(),
            seq: self.seq,
            time: Some(ms_to_timestamp(self.at_ms)),
            kind: Some(self.kind.to_proto()),
        }
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.kind, EventKind::Finished { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_json_round_trips() {
        let kinds = [
            EventKind::Queued { position: 3 },
            EventKind::started(1),
            EventKind::Started {
                attempt: 2,
                history_turns: 4,
                history_dropped: 1,
                note: "1 earlier turn left out".into(),
            },
            EventKind::Output {
                text: "é\n".into()
            },
            EventKind::Finished {
                status: FinalStatus::Failed,
                error: "boom".into(),
                attempts: 2,
                executed_at_ms: Some(5),
            },
        ];
        for k in kinds {
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(serde_json::from_str::<EventKind>(&json).unwrap(), k);
        }
    }

    #[test]
    fn a_started_event_stored_before_sessions_reads_as_one_without_history() {
        let old = r#"{"type":"started","attempt":1}"#;
        assert_eq!(
            serde_json::from_str::<EventKind>(old).unwrap(),
            EventKind::started(1)
        );
        // And one without history is stored as before.
        assert_eq!(serde_json::to_string(&EventKind::started(1)).unwrap(), old);
    }
}
