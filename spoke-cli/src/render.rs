//! What the person sees: output on stdout exactly as the provider produced it (or one JSON
//! object per event with `--json`), progress and errors on stderr.

use std::io::{self, IsTerminal, Write};

use helix_mesh::{
    pb::{self, CommandStatus, Provider, command_event::Kind},
    proto_ext::{ms_to_system_time, timestamp_to_ms},
};
use serde_json::{Value, json};

use crate::route_watch::RouteLog;

/// `text` from the cloud (a row's reason, a hub's name in its presence row) without the
/// characters that would act on a terminal instead of showing: control characters (C0, DEL,
/// C1, so no escape sequences) and the bidirectional overrides and isolates that reorder what
/// follows. Supabase rows are written by anyone holding a session of the account.
pub fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| {
            !c.is_control() && !matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect()
}

/// Formats a protobuf time as RFC 3339 (UTC, milliseconds), or `null`.
pub fn time_json(ts: Option<&prost_types::Timestamp>) -> Value {
    match ts {
        Some(ts) => Value::String(time_text(ts)),
        None => Value::Null,
    }
}

pub fn time_text(ts: &prost_types::Timestamp) -> String {
    humantime::format_rfc3339_millis(ms_to_system_time(timestamp_to_ms(ts))).to_string()
}

pub fn status_name(raw: i32) -> &'static str {
    CommandStatus::try_from(raw)
        .unwrap_or(CommandStatus::Unspecified)
        .name()
}

pub fn provider_name(raw: i32) -> &'static str {
    Provider::try_from(raw)
        .unwrap_or(Provider::Unspecified)
        .name()
}

/// One event as a JSON object.
pub fn event_json(ev: &pb::CommandEvent, route: &str) -> Value {
    let mut v = json!({
        "command_id": ev.command_id,
        "seq": ev.seq,
        "time": time_json(ev.time.as_ref()),
        "route": route,
    });
    let extra = match &ev.kind {
        Some(Kind::Queued(q)) => json!({"type": "queued", "position": q.position}),
        Some(Kind::Started(s)) => {
            let mut started = json!({"type": "started", "attempt": s.attempt});
            // Only for a command that continues a session, so other records stay as they were.
            if s.history_turns > 0 || s.history_dropped > 0 {
                started["history_turns"] = s.history_turns.into();
                started["history_dropped"] = s.history_dropped.into();
            }
            if !s.note.is_empty() {
                started["note"] = s.note.clone().into();
            }
            started
        }
        Some(Kind::Output(o)) => json!({"type": "output", "text": o.text}),
        Some(Kind::Retrying(r)) => json!({
            "type": "retrying", "attempt": r.attempt, "delay_ms": r.delay_ms, "reason": r.reason
        }),
        Some(Kind::Finished(f)) => json!({
            "type": "finished",
            "status": status_name(f.status),
            "error": f.error,
            "attempts": f.attempts,
            "executed_at": time_json(f.executed_at.as_ref()),
        }),
        None => json!({"type": "unknown"}),
    };
    if let (Some(obj), Value::Object(extra)) = (v.as_object_mut(), extra) {
        obj.extend(extra);
    }
    v
}

/// One event as its `--json` record: [`event_json`] with the route the command is on now, and
/// on `finished` the routes it went by (`route_history`, [`RouteLog::json`]).
pub fn event_record(ev: &pb::CommandEvent, routes: &RouteLog) -> Value {
    let mut v = event_json(ev, routes.now());
    if matches!(ev.kind, Some(Kind::Finished(_)))
        && let Some(obj) = v.as_object_mut()
    {
        obj.insert("route_history".into(), routes.json());
    }
    v
}

/// One command as a JSON object.
pub fn command_json(c: &pb::Command) -> Value {
    let result = c.result.as_ref();
    json!({
        "command_id": c.command_id,
        "status": status_name(c.status),
        "provider": provider_name(c.provider),
        "agent_id": c.agent_id,
        "session_id": c.session_id,
        "channel_id": c.channel_id,
        "model": c.model,
        "source_device_id": c.source_device_id,
        "source_user_id": c.source_user_id,
        "content": c.content,
        "created_at": time_json(c.created_at.as_ref()),
        "expires_at": time_json(c.expires_at.as_ref()),
        "executed_at": time_json(result.and_then(|r| r.executed_at.as_ref())),
        "attempts": result.map(|r| r.attempts).unwrap_or(0),
        "error": result.map(|r| r.error.as_str()).unwrap_or(""),
        "output": result.map(|r| r.output.as_str()),
        "last_seq": c.last_seq,
    })
}

/// Writes product output to stdout and progress to stderr.
#[derive(Debug)]
pub struct Printer {
    pub json: bool,
    pub quiet: bool,
    stdout_tty: bool,
    /// Whether the last byte written to stdout was a newline (or nothing was written).
    at_line_start: bool,
}

impl Printer {
    pub fn new(json: bool, quiet: bool) -> Self {
        Self {
            json,
            quiet,
            stdout_tty: io::stdout().is_terminal(),
            at_line_start: true,
        }
    }

    /// Product output, exactly these bytes, flushed at once.
    pub fn out(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        let mut stdout = io::stdout().lock();
        // A closed stdout (e.g. `| head`) is not our error to report.
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
        self.at_line_start = text.ends_with('\n');
    }

    /// One line of product output.
    pub fn out_line(&mut self, line: &str) {
        self.out(&format!("{line}\n"));
    }

    /// A progress line on stderr (not with --quiet).
    pub fn progress(&mut self, line: &str) {
        if !self.quiet {
            self.note(line);
        }
    }

    /// A line on stderr, always.
    pub fn note(&mut self, line: &str) {
        // Keep a progress line from gluing onto unfinished output on a shared terminal.
        if self.stdout_tty && !self.at_line_start {
            self.out("\n");
        }
        let _ = writeln!(io::stderr().lock(), "helix: {line}");
    }

    /// Ends the output with a newline on a terminal, so the shell prompt starts on its own line.
    /// Never changes what a pipe receives.
    pub fn finish_output(&mut self) {
        if self.stdout_tty && !self.at_line_start {
            self.out("\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use helix_mesh::proto_ext::ms_to_timestamp;

    #[test]
    fn cloud_text_loses_what_would_act_on_a_terminal() {
        assert_eq!(
            printable("desk\u{1b}]0;owned\u{7}\u{1b}[2J \u{202e}gnp.exe\r\n\u{9b}31m"),
            "desk]0;owned[2J gnp.exe31m"
        );
        assert_eq!(printable("Büro-PC 🖥"), "Büro-PC 🖥");
    }

    #[test]
    fn event_json_has_stable_fields() {
        let ev = pb::CommandEvent {
            command_id: "c".into(),
            seq: 3,
            time: Some(ms_to_timestamp(1_700_000_000_123)),
            kind: Some(Kind::Retrying(pb::Retrying {
                attempt: 2,
                delay_ms: 1500,
                reason: "overloaded".into(),
            })),
        };
        insta::assert_snapshot!(event_json(&ev, "local").to_string(), @r#"{"attempt":2,"command_id":"c","delay_ms":1500,"reason":"overloaded","route":"local","seq":3,"time":"2023-11-14T22:13:20.123Z","type":"retrying"}"#);
    }

    #[test]
    fn the_finished_record_carries_the_routes_the_command_went_by() {
        let mut routes = RouteLog::new("iroh-relay");
        let event = |seq, kind| pb::CommandEvent {
            command_id: "c".into(),
            seq,
            time: Some(ms_to_timestamp(1_700_000_000_123)),
            kind: Some(kind),
        };
        let output = event(3, Kind::Output(pb::Output { text: "hi".into() }));
        insta::assert_snapshot!(event_record(&output, &routes).to_string(), @r#"{"command_id":"c","route":"iroh-relay","seq":3,"text":"hi","time":"2023-11-14T22:13:20.123Z","type":"output"}"#);
        routes.record("direct", std::time::Duration::from_millis(412));
        let finished = event(
            4,
            Kind::Finished(pb::Finished {
                status: CommandStatus::Completed as i32,
                attempts: 1,
                ..Default::default()
            }),
        );
        insta::assert_snapshot!(event_record(&finished, &routes).to_string(), @r#"{"attempts":1,"command_id":"c","error":"","executed_at":null,"route":"direct","route_history":{"at_end":"direct","at_start":"iroh-relay","changes":[{"after_ms":412,"from":"iroh-relay","to":"direct"}]},"seq":4,"status":"completed","time":"2023-11-14T22:13:20.123Z","type":"finished"}"#);
    }
}
