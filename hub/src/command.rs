//! The command model: what a spoke submits, the events a command goes through, and the checks
//! a request must pass before anything is stored.

use helix_mesh::{
    MAX_CONTENT_BYTES,
    pb::{self, Provider},
    proto_ext::{now_ms, timestamp_to_ms},
};
use uuid::Uuid;

mod event;

pub use event::{EventKind, FinalStatus, StoredEvent};

/// How long a command may wait to start when the spoke gives no `expires_at`.
pub const DEFAULT_TTL_MS: i64 = 60 * 60 * 1000;

/// The agent used when a request names none.
pub const DEFAULT_AGENT: &str = "main";

/// Longest id, agent, session, channel or model name accepted (they are stored and echoed).
pub const MAX_NAME_BYTES: usize = 256;

/// A request that failed validation; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct InvalidCommand {
    pub field: &'static str,
    pub problem: String,
}

fn invalid(field: &'static str, problem: impl Into<String>) -> InvalidCommand {
    InvalidCommand {
        field,
        problem: problem.into(),
    }
}

/// A validated command, ready for the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCommand {
    pub command_id: Uuid,
    pub source_device_id: String,
    pub source_user_id: String,
    pub agent_id: String,
    pub provider: Provider,
    pub content: String,
    pub session_id: String,
    pub channel_id: Option<String>,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub model: Option<String>,
}

/// The latest time a command may carry (2^53 − 1 ms): what a JavaScript device reads exactly.
const MAX_SAFE_TIME_MS: i64 = (1 << 53) - 1;

impl NewCommand {
    /// Validates a wire request. `default_provider` resolves `PROVIDER_UNSPECIFIED` (it comes
    /// from the agent's config); `device_override` replaces the claimed source device with an
    /// authenticated one (the iroh peer key) when there is one.
    pub fn from_request(
        req: pb::ExecuteRequest,
        default_provider: impl FnOnce(&str) -> Provider,
        device_override: Option<String>,
    ) -> Result<Self, InvalidCommand> {
        let command_id = parse_command_id(&req.command_id)?;
        if req.content.trim().is_empty() {
            return Err(invalid("content", "must not be empty"));
        }
        if req.content.len() > MAX_CONTENT_BYTES {
            return Err(invalid(
                "content",
                format!(
                    "is {} bytes, more than the limit of {} bytes (1 MiB)",
                    req.content.len(),
                    MAX_CONTENT_BYTES
                ),
            ));
        }
        let agent_id = if req.agent_id.is_empty() {
            DEFAULT_AGENT.to_owned()
        } else {
            check_name("agent_id", req.agent_id)?
        };
        let provider = match Provider::try_from(req.provider) {
            Ok(Provider::Unspecified) => default_provider(&agent_id),
            Ok(p) => p,
            Err(_) => {
                return Err(invalid(
                    "provider",
                    format!(
                        "unknown value {} (expected ANTHROPIC, OPENAI_CODEX or GOOGLE_GEMINI)",
                        req.provider
                    ),
                ));
            }
        };
        let source_device_id = match device_override {
            Some(d) => d,
            None if req.source_device_id.is_empty() => "local".to_owned(),
            None => check_name("source_device_id", req.source_device_id)?,
        };
        let source_user_id = if req.source_user_id.is_empty() {
            String::new()
        } else {
            check_name("source_user_id", req.source_user_id)?
        };
        let session_id = if req.session_id.is_empty() {
            command_id.to_string()
        } else {
            check_name("session_id", req.session_id)?
        };
        let channel_id = req
            .channel_id
            .map(|c| check_name("channel_id", c))
            .transpose()?;
        let model = match req.model {
            Some(m) if m.is_empty() => None,
            Some(m) => Some(check_name("model", m)?),
            None => None,
        };
        let created_at_ms = req
            .created_at
            .as_ref()
            .map(timestamp_to_ms)
            .unwrap_or_else(now_ms);
        let expires_at_ms = match req.expires_at.as_ref().map(timestamp_to_ms) {
            Some(e) if e < created_at_ms => {
                return Err(invalid("expires_at", "is before created_at"));
            }
            // Every device must read the time exactly (JavaScript's largest safe integer).
            Some(e) if e > MAX_SAFE_TIME_MS => {
                return Err(invalid(
                    "expires_at",
                    "is too far ahead (at most 2^53 - 1 ms after the Unix epoch)",
                ));
            }
            Some(e) => e,
            None => created_at_ms.saturating_add(DEFAULT_TTL_MS),
        };
        Ok(NewCommand {
            command_id,
            source_device_id,
            source_user_id,
            agent_id,
            provider,
            content: req.content,
            session_id,
            channel_id,
            created_at_ms,
            expires_at_ms,
            model,
        })
    }

    /// A valid command for unit tests: Anthropic, never expiring.
    #[cfg(test)]
    pub(crate) fn for_test(command_id: Uuid) -> Self {
        NewCommand {
            command_id,
            source_device_id: "device".into(),
            source_user_id: "user".into(),
            agent_id: DEFAULT_AGENT.into(),
            provider: Provider::Anthropic,
            content: "hi".into(),
            session_id: "session".into(),
            channel_id: None,
            created_at_ms: now_ms(),
            // The latest time a JavaScript reader holds exactly (2^53 - 1 ms), as the cloud
            // payloads require: some 285,000 years away.
            expires_at_ms: MAX_SAFE_TIME_MS,
            model: None,
        }
    }

    /// Whether the command's session is named after the command itself (the default for a
    /// request without a session): then it is the session's first turn, with no history
    /// (a later command may continue it by naming it).
    pub fn is_own_session(&self) -> bool {
        let mut buf = Uuid::encode_buffer();
        self.session_id == *self.command_id.hyphenated().encode_lower(&mut buf)
    }

    /// Whether `other` asks for the same work, so a re-submission may attach to it. Times and
    /// the sending device may differ between retries of one command; the work may not.
    pub fn same_work(&self, other: &NewCommand) -> bool {
        self.command_id == other.command_id
            && self.content == other.content
            && self.provider == other.provider
            && self.agent_id == other.agent_id
            && self.session_id == other.session_id
            && self.channel_id == other.channel_id
            && self.model == other.model
    }
}

/// Parses a command id, naming the field on failure.
pub fn parse_command_id(raw: &str) -> Result<Uuid, InvalidCommand> {
    if raw.is_empty() {
        return Err(invalid("command_id", "is required (a UUID)"));
    }
    Uuid::parse_str(raw).map_err(|_| {
        invalid(
            "command_id",
            format!("{:?} is not a UUID", truncate_for_message(raw)),
        )
    })
}

fn check_name(field: &'static str, value: String) -> Result<String, InvalidCommand> {
    if value.len() > MAX_NAME_BYTES {
        return Err(invalid(
            field,
            format!("is longer than {MAX_NAME_BYTES} bytes"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(value)
}

fn truncate_for_message(s: &str) -> String {
    const SHOWN: usize = 64;
    if s.len() <= SHOWN {
        return s.to_owned();
    }
    let mut end = SHOWN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use helix_mesh::proto_ext::ms_to_timestamp;

    fn request(content: &str) -> pb::ExecuteRequest {
        pb::ExecuteRequest {
            command_id: Uuid::new_v4().to_string(),
            content: content.to_owned(),
            provider: Provider::Anthropic as i32,
            ..Default::default()
        }
    }

    fn validate(req: pb::ExecuteRequest) -> Result<NewCommand, InvalidCommand> {
        NewCommand::from_request(req, |_| Provider::Anthropic, None)
    }

    #[test]
    fn defaults_fill_agent_session_device_and_expiry() {
        let cmd = validate(request("hi")).unwrap();
        assert_eq!(cmd.agent_id, "main");
        assert_eq!(cmd.session_id, cmd.command_id.to_string());
        assert!(cmd.is_own_session());
        let named = validate(pb::ExecuteRequest {
            session_id: "s1".into(),
            ..request("hi")
        })
        .unwrap();
        assert!(!named.is_own_session());
        let far = validate(pb::ExecuteRequest {
            expires_at: Some(prost_types::Timestamp {
                seconds: 9_007_199_254_741,
                nanos: 0,
            }),
            ..request("hi")
        })
        .unwrap_err();
        assert!(far.to_string().contains("expires_at"), "{far}");
        assert_eq!(cmd.source_device_id, "local");
        assert_eq!(cmd.expires_at_ms - cmd.created_at_ms, DEFAULT_TTL_MS);
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases: Vec<(pb::ExecuteRequest, &str)> = vec![
            (request(""), "content: must not be empty"),
            (request("  \n"), "content: must not be empty"),
            (
                request(&"x".repeat(MAX_CONTENT_BYTES + 1)),
                "content: is 1048577",
            ),
            (
                pb::ExecuteRequest {
                    provider: 42,
                    ..request("hi")
                },
                "provider: unknown value 42",
            ),
            (
                pb::ExecuteRequest {
                    command_id: "not-a-uuid".into(),
                    ..request("hi")
                },
                "command_id: \"not-a-uuid\" is not a UUID",
            ),
            (
                pb::ExecuteRequest {
                    command_id: String::new(),
                    ..request("hi")
                },
                "command_id: is required",
            ),
            (
                pb::ExecuteRequest {
                    session_id: "a\nb".into(),
                    ..request("hi")
                },
                "session_id: must not contain control characters",
            ),
            (
                pb::ExecuteRequest {
                    created_at: Some(ms_to_timestamp(10_000)),
                    expires_at: Some(ms_to_timestamp(5_000)),
                    ..request("hi")
                },
                "expires_at: is before created_at",
            ),
        ];
        for (req, expected) in cases {
            let err = validate(req).unwrap_err().to_string();
            assert!(
                err.starts_with(expected),
                "{err:?} should start with {expected:?}"
            );
        }
    }

    #[test]
    fn content_of_exactly_the_limit_is_accepted() {
        assert!(validate(request(&"x".repeat(MAX_CONTENT_BYTES))).is_ok());
    }

    #[test]
    fn unspecified_provider_takes_the_agents_default() {
        let req = pb::ExecuteRequest {
            provider: 0,
            agent_id: "coder".into(),
            ..request("hi")
        };
        let cmd = NewCommand::from_request(
            req,
            |agent| {
                assert_eq!(agent, "coder");
                Provider::OpenaiCodex
            },
            None,
        )
        .unwrap();
        assert_eq!(cmd.provider, Provider::OpenaiCodex);
    }

    #[test]
    fn same_work_ignores_times_but_not_content() {
        let a = validate(request("hi")).unwrap();
        let mut b = a.clone();
        b.created_at_ms += 5;
        b.source_device_id = "other".into();
        assert!(a.same_work(&b));
        b.content = "bye".into();
        assert!(!a.same_work(&b));
    }
}
