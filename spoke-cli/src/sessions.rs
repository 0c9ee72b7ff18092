//! `helix sessions [SESSION] [--json]` (and `helix show --session SESSION`): the hub's
//! conversations, or one conversation's turns (`ListSessions`, `GetSession`).

use helix_mesh::pb;

mod from_cloud;
use serde_json::json;

use crate::{
    cli::Via,
    client::{HubStatus, ReachError, Spoke, Target},
    exit::Exit,
    queries::QueryError,
    render::{Printer, printable, provider_name, status_name, time_json, time_text},
};

/// Lists the hub's sessions, or with `session` that session's turns; `--via cloud` reads them
/// from the cloud's history instead of asking the hub.
pub async fn sessions(
    spoke: &Spoke,
    hub: Option<&str>,
    session: Option<String>,
    json: bool,
    via: Via,
) -> Result<Exit, QueryError> {
    let mut printer = Printer::new(json, false);
    if via == Via::Cloud {
        let Target::Remote { addr, .. } = spoke.resolve(hub).map_err(ReachError::from)? else {
            return Err(QueryError::ViaCloudWithoutHub);
        };
        return Ok(match session {
            None => print_list(&mut printer, json, &from_cloud::list(spoke, addr.id).await?),
            Some(id) => print_session(
                &mut printer,
                json,
                &from_cloud::session(spoke, addr.id, &id).await?,
            ),
        });
    }
    let mut conn = spoke.connect_quietly(hub).await?;
    let Some(session_id) = session else {
        let sessions = conn
            .client
            .list_sessions(pb::ListSessionsRequest { page_size: 0 })
            .await
            .map_err(HubStatus)?
            .into_inner()
            .sessions;
        return Ok(print_list(&mut printer, json, &sessions));
    };
    let session = conn
        .client
        .get_session(pb::GetSessionRequest {
            session_id,
            max_turns: 0,
        })
        .await
        .map_err(HubStatus)?
        .into_inner();
    Ok(print_session(&mut printer, json, &session))
}

/// The list, as a table or JSON lines.
fn print_list(printer: &mut Printer, json: bool, sessions: &[pb::SessionSummary]) -> Exit {
    if json {
        // One JSON object per session, newest first (a stream of lines, like `helix ls`).
        for s in sessions {
            printer.out_line(
                &json!({
                    "session_id": s.session_id,
                    "title": s.title,
                    "turns": s.turns,
                    "last_activity": time_json(s.last_activity.as_ref()),
                    "provider": provider_name(s.provider),
                })
                .to_string(),
            );
        }
        return Exit::Ok;
    }
    if sessions.is_empty() {
        printer.note("no sessions yet: `helix run --session NAME \"…\"` starts one");
        return Exit::Ok;
    }
    printer.out_line(&format!(
        "{:<24} {:>5}  {:<24} {:<14} TITLE",
        "SESSION", "TURNS", "LAST ACTIVITY", "PROVIDER"
    ));
    for s in sessions {
        printer.out_line(&format!(
            "{:<24} {:>5}  {:<24} {:<14} {}",
            printable(&s.session_id),
            s.turns,
            s.last_activity.as_ref().map(time_text).unwrap_or_default(),
            provider_name(s.provider),
            printable(&s.title)
        ));
    }
    Exit::Ok
}

/// One session, as a transcript or one JSON document.
fn print_session(printer: &mut Printer, json: bool, session: &pb::Session) -> Exit {
    if json {
        // One document: the session and its turns.
        let turns: Vec<_> = session
            .turns
            .iter()
            .map(|t| {
                json!({
                    "command_id": t.command_id,
                    "status": status_name(t.status),
                    "prompt": t.prompt,
                    "answer": t.answer,
                    "error": t.error,
                    "provider": provider_name(t.provider),
                    "model": t.model,
                    "source_device_id": t.source_device_id,
                    "finished_at": time_json(t.finished_at.as_ref()),
                })
            })
            .collect();
        printer.out_line(
            &json!({
                "session_id": session.session_id,
                "total_turns": session.total_turns,
                "turns": turns,
            })
            .to_string(),
        );
        return Exit::Ok;
    }
    let shown = session.turns.len();
    let total = session.total_turns as usize;
    printer.out_line(&format!(
        "session {}: {total} turn(s){}",
        printable(&session.session_id),
        if shown < total {
            format!(", the newest {shown} shown")
        } else {
            String::new()
        }
    ));
    for (i, t) in session.turns.iter().enumerate() {
        let number = total - shown + i + 1;
        let when = t.finished_at.as_ref().map(time_text).unwrap_or_default();
        printer.out_line(&format!(
            "\n[{number}] {} · {} · {when} · {}",
            status_name(t.status),
            provider_name(t.provider),
            t.command_id
        ));
        printer.out_line(&format!("> {}", printable(&t.prompt).replace('\n', "\n> ")));
        if !t.answer.is_empty() {
            printer.out(&t.answer);
            if !t.answer.ends_with('\n') {
                printer.out("\n");
            }
        } else if !t.error.is_empty() {
            printer.out_line(&format!("({})", printable(&t.error)));
        }
    }
    Exit::Ok
}
