//! What the cloud route's v2 envelopes carry inside: JSON a browser reads with `JSON.parse`
//! (docs/protocol.md, "Payloads v2"; golden vectors in `proto/vectors/payload-v2.json`).
//!
//! - [`CommandPayload`]: a command. Sealed by a device to its hub (kind `command`), and, with
//!   the hub's defaults filled in and the sender's key, the command's prompt (content kind
//!   `prompt`) that every device reads for its history.
//! - [`EventPayload`]: one event of a command (content kind `event`). It carries no command id:
//!   the envelope's header binds it to its command and seq.
//! - [`PairingRequest`] (sealed kind `pairing_request`) and [`PairingAnswer`]
//!   (`pairing_answer`): pairing a device through the cloud.
//!
//! Times are ms since the Unix epoch. Absent optional fields are left out, not `null`.

use prost_types::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{
    pb::{self, CommandStatus, Provider, command_event::Kind},
    proto_ext::{ms_to_timestamp, timestamp_to_ms},
};

/// A payload that does not parse, or does not fit the event it must be.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    #[error("malformed payload: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("malformed payload: provider {0:?} is not anthropic, openai-codex or google-gemini")]
    UnknownProvider(String),
    #[error("malformed payload: status {0:?} is not completed, failed, cancelled or expired")]
    UnknownStatus(String),
    /// A payload JSON parses but is not exactly one thing (two event kinds, say).
    #[error("malformed payload: {0}")]
    Shape(String),
}

/// The event kinds' keys: an event carries exactly one.
const EVENT_KIND_KEYS: [&str; 5] = ["queued", "started", "output", "retrying", "finished"];

/// Refuses integers a JavaScript reader cannot hold exactly (over 2^53 − 1), anywhere in
/// `value`.
fn check_safe_integers(value: &serde_json::Value) -> Result<(), PayloadError> {
    match value {
        serde_json::Value::Number(n) => match n.as_u64() {
            Some(v) if v > crate::envelope_v2::MAX_SAFE_INTEGER => Err(PayloadError::Shape(
                format!("{v} is over 2^53 - 1 (the largest integer both sides read exactly)"),
            )),
            _ => Ok(()),
        },
        serde_json::Value::Array(items) => items.iter().try_for_each(check_safe_integers),
        serde_json::Value::Object(map) => map.values().try_for_each(check_safe_integers),
        _ => Ok(()),
    }
}

/// A command, as a device sends it or as the hub accepted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandPayload {
    pub command_id: String,
    /// The prompt.
    pub content: String,
    /// `anthropic`, `openai-codex` or `google-gemini`; absent: the agent's provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The device that sent it (in a prompt; a hub takes it from the envelope's signer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
}

/// The provider's name in payloads (as in the CLI and the hub's config).
pub fn provider_name(provider: Provider) -> Option<&'static str> {
    match provider {
        Provider::Anthropic => Some("anthropic"),
        Provider::OpenaiCodex => Some("openai-codex"),
        Provider::GoogleGemini => Some("google-gemini"),
        Provider::Unspecified => None,
    }
}

fn provider_from_name(name: &str) -> Result<Provider, PayloadError> {
    match name {
        "anthropic" => Ok(Provider::Anthropic),
        "openai-codex" => Ok(Provider::OpenaiCodex),
        "google-gemini" => Ok(Provider::GoogleGemini),
        other => Err(PayloadError::UnknownProvider(other.to_owned())),
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

fn ms(t: Option<&Timestamp>) -> Option<u64> {
    t.and_then(|t| u64::try_from(timestamp_to_ms(t)).ok())
}

fn timestamp(ms: Option<u64>) -> Option<Timestamp> {
    ms.and_then(|ms| i64::try_from(ms).ok())
        .map(ms_to_timestamp)
}

impl CommandPayload {
    /// The payload of a request (a device's command).
    pub fn from_request(request: &pb::ExecuteRequest) -> Self {
        Self {
            command_id: request.command_id.clone(),
            content: request.content.clone(),
            provider: provider_name(request.provider()).map(str::to_owned),
            agent_id: non_empty(&request.agent_id),
            session_id: non_empty(&request.session_id),
            channel_id: request.channel_id.as_deref().and_then(non_empty),
            model: request.model.as_deref().and_then(non_empty),
            source_device_id: non_empty(&request.source_device_id),
            created_at_ms: ms(request.created_at.as_ref()),
            expires_at_ms: ms(request.expires_at.as_ref()),
        }
    }

    /// The request this payload asks for.
    pub fn into_request(self) -> Result<pb::ExecuteRequest, PayloadError> {
        let provider = match self.provider.as_deref() {
            Some(name) => provider_from_name(name)?,
            None => Provider::Unspecified,
        };
        Ok(pb::ExecuteRequest {
            command_id: self.command_id,
            source_device_id: self.source_device_id.unwrap_or_default(),
            source_user_id: String::new(),
            agent_id: self.agent_id.unwrap_or_default(),
            provider: provider.into(),
            content: self.content,
            session_id: self.session_id.unwrap_or_default(),
            channel_id: self.channel_id,
            created_at: timestamp(self.created_at_ms),
            expires_at: timestamp(self.expires_at_ms),
            model: self.model,
        })
    }

    /// The JSON text (serializing these fields cannot fail; the error is `serde_json`'s).
    pub fn to_json(&self) -> Result<Vec<u8>, PayloadError> {
        serde_json::to_vec(self).map_err(PayloadError::Malformed)
    }

    /// Reads a command; its times must be within 2^53 − 1.
    pub fn from_json(bytes: &[u8]) -> Result<Self, PayloadError> {
        // Typed first (duplicate and unknown fields refused), then the integers' bounds.
        let command = serde_json::from_slice(bytes).map_err(PayloadError::Malformed)?;
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(PayloadError::Malformed)?;
        check_safe_integers(&value)?;
        Ok(command)
    }
}

/// One event of a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPayload {
    pub seq: u64,
    /// When the hub's journal stored it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_ms: Option<u64>,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened; exactly one key beside `seq` and `time_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Queued {
        position: u32,
    },
    Started {
        attempt: u32,
        /// Earlier turns of the session given to the provider (absent: none).
        #[serde(default, skip_serializing_if = "is_zero")]
        history_turns: u32,
        /// Earlier completed turns left out by the history budget (absent: none).
        #[serde(default, skip_serializing_if = "is_zero")]
        history_dropped: u32,
        /// What the person should know about how the session continues (absent: nothing).
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
        /// `completed`, `failed`, `cancelled` or `expired`.
        status: String,
        #[serde(default)]
        error: String,
        #[serde(default)]
        attempts: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        executed_at_ms: Option<u64>,
    },
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl EventKind {
    /// A `started` event of `attempt` with no history and no note.
    pub fn started(attempt: u32) -> Self {
        EventKind::Started {
            attempt,
            history_turns: 0,
            history_dropped: 0,
            note: String::new(),
        }
    }
}

/// The payload name of a final status (`None` for pending, executing or unspecified).
pub fn status_name(status: CommandStatus) -> Option<&'static str> {
    match status {
        CommandStatus::Completed => Some("completed"),
        CommandStatus::Failed => Some("failed"),
        CommandStatus::Cancelled => Some("cancelled"),
        CommandStatus::Expired => Some("expired"),
        _ => None,
    }
}

fn status_from_name(name: &str) -> Result<CommandStatus, PayloadError> {
    match name {
        "completed" => Ok(CommandStatus::Completed),
        "failed" => Ok(CommandStatus::Failed),
        "cancelled" => Ok(CommandStatus::Cancelled),
        "expired" => Ok(CommandStatus::Expired),
        other => Err(PayloadError::UnknownStatus(other.to_owned())),
    }
}

impl EventPayload {
    /// The payload of an event; `None` for an event without a kind (the journal never stores
    /// one).
    pub fn from_event(event: &pb::CommandEvent) -> Option<Self> {
        let kind = match event.kind.as_ref()? {
            Kind::Queued(q) => EventKind::Queued {
                position: q.position,
            },
            Kind::Started(s) => EventKind::Started {
                attempt: s.attempt,
                history_turns: s.history_turns,
                history_dropped: s.history_dropped,
                note: s.note.clone(),
            },
            Kind::Output(o) => EventKind::Output {
                text: o.text.clone(),
            },
            Kind::Retrying(r) => EventKind::Retrying {
                attempt: r.attempt,
                delay_ms: r.delay_ms,
                reason: r.reason.clone(),
            },
            Kind::Finished(f) => EventKind::Finished {
                status: status_name(f.status()).unwrap_or("failed").to_owned(),
                error: f.error.clone(),
                attempts: f.attempts,
                executed_at_ms: ms(f.executed_at.as_ref()),
            },
        };
        Some(Self {
            seq: event.seq,
            time_ms: ms(event.time.as_ref()),
            kind,
        })
    }

    /// The event of `command_id` this payload describes.
    pub fn into_event(self, command_id: &str) -> Result<pb::CommandEvent, PayloadError> {
        let kind = match self.kind {
            EventKind::Queued { position } => Kind::Queued(pb::Queued { position }),
            EventKind::Started {
                attempt,
                history_turns,
                history_dropped,
                note,
            } => Kind::Started(pb::Started {
                attempt,
                history_turns,
                history_dropped,
                note,
            }),
            EventKind::Output { text } => Kind::Output(pb::Output { text }),
            EventKind::Retrying {
                attempt,
                delay_ms,
                reason,
            } => Kind::Retrying(pb::Retrying {
                attempt,
                delay_ms,
                reason,
            }),
            EventKind::Finished {
                status,
                error,
                attempts,
                executed_at_ms,
            } => Kind::Finished(pb::Finished {
                status: status_from_name(&status)?.into(),
                error,
                attempts,
                executed_at: timestamp(executed_at_ms),
            }),
        };
        Ok(pb::CommandEvent {
            command_id: command_id.to_owned(),
            seq: self.seq,
            time: timestamp(self.time_ms),
            kind: Some(kind),
        })
    }

    /// The JSON text (serializing these fields cannot fail; the error is `serde_json`'s).
    pub fn to_json(&self) -> Result<Vec<u8>, PayloadError> {
        serde_json::to_vec(self).map_err(PayloadError::Malformed)
    }

    /// Reads an event: exactly one kind, integers within 2^53 − 1 (as the TypeScript reader
    /// refuses them: serde alone would take the first kind of two and any u64).
    pub fn from_json(bytes: &[u8]) -> Result<Self, PayloadError> {
        // Typed first (what serde refuses), then what it lets through.
        let event = serde_json::from_slice(bytes).map_err(PayloadError::Malformed)?;
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(PayloadError::Malformed)?;
        if let Some(map) = value.as_object() {
            let kinds = EVENT_KIND_KEYS
                .iter()
                .filter(|k| map.contains_key(**k))
                .count();
            if kinds > 1 {
                return Err(PayloadError::Shape(format!(
                    "an event has exactly one kind, this one has {kinds}"
                )));
            }
        }
        check_safe_integers(&value)?;
        Ok(event)
    }
}

/// A device asks to pair: the one-time secret of the hub's pairing ticket, and its name.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairingRequest {
    /// The ticket's secret, hex.
    pub secret: String,
    pub device_name: String,
}

impl std::fmt::Debug for PairingRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PairingRequest")
            .field("secret", &"<redacted>")
            .field("device_name", &self.device_name)
            .finish()
    }
}

/// The hub's answer to a pairing request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairingAnswer {
    pub accepted: bool,
    /// The hub's name, when accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_name: Option<String>,
    /// Why not, when refused (the same words as pairing over iroh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

macro_rules! json_payload {
    ($($t:ty),*) => {$(
        impl $t {
            /// The JSON text.
            pub fn to_json(&self) -> Result<Vec<u8>, PayloadError> {
                serde_json::to_vec(self).map_err(PayloadError::Malformed)
            }

            pub fn from_json(bytes: &[u8]) -> Result<Self, PayloadError> {
                serde_json::from_slice(bytes).map_err(PayloadError::Malformed)
            }
        }
    )*};
}
json_payload!(PairingRequest, PairingAnswer);

#[cfg(test)]
mod tests;
