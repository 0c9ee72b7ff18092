//! Names, parsing and conversions for the generated protocol types.
//!
//! The command line, the config file, the journal and the docs all spell providers and
//! statuses the same way (`openai-codex`, `executing`); this module is the one place that
//! maps those names to and from the wire enums.

use std::{
    fmt,
    str::FromStr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::pb::{CommandStatus, Provider};

/// A provider name that is not one of [`Provider::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown provider {0:?} (expected one of: anthropic, openai-codex, google-gemini)")]
pub struct UnknownProvider(pub String);

/// A status name that is not one of the command statuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown status {0:?} (expected one of: pending, executing, completed, failed, cancelled, expired)"
)]
pub struct UnknownStatus(pub String);

impl Provider {
    /// Every real provider, in display order.
    pub const ALL: [Provider; 3] = [
        Provider::Anthropic,
        Provider::OpenaiCodex,
        Provider::GoogleGemini,
    ];

    /// The name used on the command line, in config files and in credential ids.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Unspecified => "unspecified",
            Provider::Anthropic => "anthropic",
            Provider::OpenaiCodex => "openai-codex",
            Provider::GoogleGemini => "google-gemini",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Provider {
    type Err = UnknownProvider;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Provider::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownProvider(s.to_owned()))
    }
}

impl CommandStatus {
    /// Every real status, in lifecycle order.
    pub const ALL: [CommandStatus; 6] = [
        CommandStatus::Pending,
        CommandStatus::Executing,
        CommandStatus::Completed,
        CommandStatus::Failed,
        CommandStatus::Cancelled,
        CommandStatus::Expired,
    ];

    /// Lower-case name, as stored in the journal and shown by the CLI.
    pub fn name(self) -> &'static str {
        match self {
            CommandStatus::Unspecified => "unspecified",
            CommandStatus::Pending => "pending",
            CommandStatus::Executing => "executing",
            CommandStatus::Completed => "completed",
            CommandStatus::Failed => "failed",
            CommandStatus::Cancelled => "cancelled",
            CommandStatus::Expired => "expired",
        }
    }

    /// Whether nothing more will happen to a command in this status.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            CommandStatus::Completed
                | CommandStatus::Failed
                | CommandStatus::Cancelled
                | CommandStatus::Expired
        )
    }
}

impl fmt::Display for CommandStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CommandStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CommandStatus::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// Milliseconds since the Unix epoch, the journal's unit of time.
pub fn now_ms() -> i64 {
    system_time_to_ms(SystemTime::now())
}

/// A `SystemTime` as milliseconds since the Unix epoch (negative before 1970).
pub fn system_time_to_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// Milliseconds since the Unix epoch as a protobuf `Timestamp`.
pub fn ms_to_timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

/// A protobuf `Timestamp` as milliseconds since the Unix epoch (sub-millisecond part dropped).
pub fn timestamp_to_ms(ts: &prost_types::Timestamp) -> i64 {
    ts.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(ts.nanos.clamp(0, 999_999_999)) / 1_000_000)
}

/// Milliseconds since the Unix epoch as a `SystemTime`.
pub fn ms_to_system_time(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

/// Longest session title (`SessionSummary.title`), in characters.
pub const SESSION_TITLE_CHARS: usize = 120;

/// A session's title from its first prompt: the first line, at most
/// [`SESSION_TITLE_CHARS`] characters (cut with `…`).
pub fn session_title(prompt: &str) -> String {
    let line = prompt
        .trim_start()
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end();
    if line.chars().count() <= SESSION_TITLE_CHARS {
        return line.to_owned();
    }
    let mut cut: String = line.chars().take(SESSION_TITLE_CHARS - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_title_is_the_first_line_cut_short() {
        assert_eq!(session_title("  hello\nworld"), "hello");
        let t = session_title(&"x".repeat(200));
        assert_eq!(t.chars().count(), SESSION_TITLE_CHARS);
        assert!(t.ends_with('…'));
    }

    #[test]
    fn provider_names_round_trip() {
        for p in Provider::ALL {
            assert_eq!(p.name().parse::<Provider>(), Ok(p));
        }
        let err = "claude".parse::<Provider>().unwrap_err();
        assert!(err.to_string().contains("openai-codex"), "{err}");
    }

    #[test]
    fn status_names_round_trip_and_terminality() {
        for s in CommandStatus::ALL {
            assert_eq!(s.name().parse::<CommandStatus>(), Ok(s));
        }
        assert!(!CommandStatus::Pending.is_terminal());
        assert!(!CommandStatus::Executing.is_terminal());
        assert!(CommandStatus::Expired.is_terminal());
    }

    #[test]
    fn timestamps_round_trip_including_before_epoch() {
        for ms in [0, 1, 999, 1000, 1_732_456_789_123, -1, -1001] {
            let ts = ms_to_timestamp(ms);
            assert!((0..1_000_000_000).contains(&ts.nanos));
            assert_eq!(timestamp_to_ms(&ts), ms);
            assert_eq!(system_time_to_ms(ms_to_system_time(ms)), ms);
        }
    }
}
