//! Following a command to its end: submit (or attach), print each event once, reconnect and
//! resume from the last printed seq when the connection drops, cancel on Ctrl-C.

use std::time::Duration;

use helix_mesh::pb::{self, CommandStatus, command_event::Kind};
use tokio::{
    signal::unix::{SignalKind, signal},
    time::Instant,
};

use helix_mesh::iroh_grpc::refusal;

use crate::{
    client::{ConnectError, Connected, HubStatus, Link, Spoke, Target},
    exit::Exit,
    render::{Printer, event_record},
    route_watch::{RouteLog, Routes},
};

/// How long the CLI keeps trying to get back to a hub that went away mid-stream.
pub const RECONNECT_WINDOW: Duration = Duration::from_secs(30);
/// First pause between reconnect attempts; doubles up to [`RECONNECT_MAX_PAUSE`].
const RECONNECT_FIRST_PAUSE: Duration = Duration::from_millis(100);
const RECONNECT_MAX_PAUSE: Duration = Duration::from_secs(2);

/// Following a command over iroh (or the local listener) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FollowError {
    #[error("installing the Ctrl-C handler: {0}")]
    CtrlC(#[source] std::io::Error),
    /// The hub answered with an error.
    #[error(transparent)]
    Status(#[from] HubStatus),
    /// The hub closed the connection on purpose (revoked, not paired), saying why.
    #[error("{0}")]
    Refused(String),
    /// Reconnecting failed in a way waiting cannot fix (the hub refuses this device).
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(
        "lost the hub and could not resume within {}s ({})",
        RECONNECT_WINDOW.as_secs(),
        .0.message()
    )]
    NotResumed(#[source] tonic::Status),
    #[error(
        "lost the hub and could not reconnect within {}s: {source}",
        RECONNECT_WINDOW.as_secs()
    )]
    NotReconnected {
        #[source]
        source: ConnectError,
    },
}

/// How a follow begins.
#[derive(Debug, Clone)]
pub enum Start {
    /// Submit this command (idempotent: a retry of the same request attaches).
    Execute(Box<pb::ExecuteRequest>),
    /// Attach to an existing command.
    Attach { command_id: String, after_seq: u64 },
}

/// How far a command is followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// To its end: the exit code is the command's.
    Finished,
    /// Until the hub (or the cloud) has it: its id goes to stdout and `helix` returns
    /// (`--detach`).
    Accepted,
}

impl Until {
    /// What `--detach` asks for.
    pub fn detached(detach: bool) -> Self {
        if detach {
            Until::Accepted
        } else {
            Until::Finished
        }
    }
}

impl Start {
    fn command_id(&self) -> &str {
        match self {
            Start::Execute(r) => &r.command_id,
            Start::Attach { command_id, .. } => command_id,
        }
    }
}

/// Follows a command until its `finished` event and returns the exit code it means.
/// With [`Until::Accepted`], returns after the hub has accepted the command, printing its id.
pub async fn follow(
    spoke: &Spoke,
    target: &Target,
    mut conn: Connected,
    start: Start,
    printer: &mut Printer,
    until: Until,
) -> Result<Exit, FollowError> {
    let command_id = start.command_id().to_owned();
    let mut last_seq = match &start {
        Start::Attach { after_seq, .. } => *after_seq,
        Start::Execute(_) => 0,
    };
    let mut submitted = matches!(start, Start::Attach { .. });
    let mut interrupts = signal(SignalKind::interrupt()).map_err(FollowError::CtrlC)?;
    let mut cancel_requested = false;
    let mut lost_since: Option<Instant> = None;
    // Watches the connection's path while the command streams; stops when this returns.
    let mut routes = Routes::start(&conn);

    loop {
        let opened = match (&start, submitted) {
            (Start::Execute(req), false) => conn.client.execute((**req).clone()).await,
            _ => {
                conn.client
                    .attach(pb::AttachRequest {
                        command_id: command_id.clone(),
                        after_seq: last_seq,
                    })
                    .await
            }
        };
        let mut stream = match opened {
            Ok(response) => response.into_inner(),
            Err(status) if is_connection_loss(&status) => {
                refused_by_hub(&conn)?;
                conn = reconnect(spoke, target, &mut lost_since, printer, &status).await?;
                routes.reconnected(&conn, printer);
                continue;
            }
            Err(status) => return Err(HubStatus(status).into()),
        };
        if lost_since.take().is_some() {
            printer.progress(&format!("reconnected; resuming after event {last_seq}"));
        }
        loop {
            let message = tokio::select! {
                _ = interrupts.recv() => {
                    if cancel_requested {
                        printer.note("interrupted again; leaving without waiting (the hub still cancels the command)");
                        return Ok(Exit::Interrupted);
                    }
                    cancel_requested = true;
                    printer.note(&format!("cancelling command {command_id} on the hub… (Ctrl-C again to leave at once)"));
                    let mut client = conn.client.clone();
                    let id = command_id.clone();
                    tokio::spawn(async move {
                        let _ = client.cancel(pb::CancelRequest { command_id: id }).await;
                    });
                    continue;
                }
                seen = routes.changed() => {
                    routes.seen(seen, printer);
                    continue;
                }
                m = stream.message() => m,
            };
            let event = match message {
                Ok(Some(event)) => event,
                // The stream ended without `finished`: either the command had already finished
                // before `after_seq` (nothing more will come), or the stream broke.
                Ok(None) => {
                    if let Some(exit) = finished_before(&mut conn, &command_id, printer).await {
                        return Ok(exit);
                    }
                    conn = reconnect(
                        spoke,
                        target,
                        &mut lost_since,
                        printer,
                        &tonic::Status::unavailable("the stream ended early"),
                    )
                    .await?;
                    routes.reconnected(&conn, printer);
                    break;
                }
                Err(status) if is_connection_loss(&status) => {
                    refused_by_hub(&conn)?;
                    conn = reconnect(spoke, target, &mut lost_since, printer, &status).await?;
                    routes.reconnected(&conn, printer);
                    break;
                }
                Err(status) => return Err(HubStatus(status).into()),
            };
            submitted = true;
            if event.seq <= last_seq {
                continue;
            }
            last_seq = event.seq;
            if until == Until::Accepted {
                printer.progress(&format!(
                    "submitted; follow it with `helix attach {command_id}`"
                ));
                printer.out_line(&command_id);
                return Ok(Exit::Ok);
            }
            routes.catch_up(printer);
            if let Some(exit) = show_event(printer, &event, routes.log(), cancel_requested) {
                return Ok(exit);
            }
        }
    }
}

/// Prints one event, by the routes `routes` says the command went; returns the exit code once
/// the command has finished.
pub(crate) fn show_event(
    printer: &mut Printer,
    event: &pb::CommandEvent,
    routes: &RouteLog,
    cancel_requested: bool,
) -> Option<Exit> {
    let route = routes.now();
    if printer.json {
        printer.out_line(&event_record(event, routes).to_string());
    }
    match &event.kind {
        Some(Kind::Queued(q)) => {
            printer.progress(&format!(
                "queued #{} on the hub (route {route})",
                q.position
            ));
            None
        }
        Some(Kind::Started(s)) => {
            if s.attempt > 1 {
                printer.progress(&format!("attempt {} started", s.attempt));
            }
            // How the session continues (turns left out, a Claude Code session started
            // afresh): said once, on the first attempt.
            if s.attempt == 1 && !s.note.is_empty() {
                printer.progress(&s.note);
            }
            None
        }
        Some(Kind::Output(o)) => {
            if !printer.json {
                printer.out(&o.text);
            }
            None
        }
        Some(Kind::Retrying(r)) => {
            printer.progress(&format!(
                "retrying in {:.1}s (attempt {}): {}",
                r.delay_ms as f64 / 1000.0,
                r.attempt,
                r.reason
            ));
            None
        }
        Some(Kind::Finished(f)) => {
            printer.finish_output();
            let status = CommandStatus::try_from(f.status).unwrap_or(CommandStatus::Unspecified);
            Some(match status {
                CommandStatus::Completed => Exit::Ok,
                CommandStatus::Cancelled if cancel_requested => {
                    printer.note("cancelled");
                    Exit::Interrupted
                }
                CommandStatus::Cancelled => {
                    printer.note(&format!("command was cancelled: {}", f.error));
                    Exit::Cancelled
                }
                CommandStatus::Expired => {
                    printer.note(&format!("command expired: {}", f.error));
                    Exit::Expired
                }
                _ => {
                    printer.note(&format!("command failed: {}", f.error));
                    Exit::Failed
                }
            })
        }
        None => None,
    }
}

/// Errors that mean "the connection is gone", as opposed to the hub's answer.
fn is_connection_loss(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown
    ) || (status.code() == tonic::Code::Internal && status.message().contains("h2 protocol error"))
}

/// When a stream ends without `finished`: if the command is in fact over, its exit code.
async fn finished_before(
    conn: &mut Connected,
    command_id: &str,
    printer: &mut Printer,
) -> Option<Exit> {
    let command = conn
        .client
        .get_command(pb::GetCommandRequest {
            command_id: command_id.to_owned(),
        })
        .await
        .ok()?
        .into_inner();
    let status = CommandStatus::try_from(command.status).ok()?;
    if !status.is_terminal() {
        return None;
    }
    printer.finish_output();
    let error = command.result.map(|r| r.error).unwrap_or_default();
    Some(match status {
        CommandStatus::Completed => Exit::Ok,
        CommandStatus::Cancelled => Exit::Cancelled,
        CommandStatus::Expired => Exit::Expired,
        _ => {
            printer.note(&format!("command failed: {error}"));
            Exit::Failed
        }
    })
}

/// Whether the hub closed our connection on purpose (revoked, not paired): then reconnecting
/// cannot help.
fn refused_by_hub(conn: &Connected) -> Result<(), FollowError> {
    if let Link::Iroh { conn, .. } = &conn.link
        && let Some(reason) = conn.close_reason().as_ref().and_then(refusal)
        && reason != "the hub closed the connection: the hub dropped the connection"
        && !reason.contains("shutting down")
    {
        return Err(FollowError::Refused(reason));
    }
    Ok(())
}

/// Reconnects to the hub (a local hub may have restarted elsewhere: `hub.json` is read
/// again), pausing with backoff, until [`RECONNECT_WINDOW`] has passed since the loss.
async fn reconnect(
    spoke: &Spoke,
    target: &Target,
    lost_since: &mut Option<Instant>,
    printer: &mut Printer,
    why: &tonic::Status,
) -> Result<Connected, FollowError> {
    let since = *lost_since.get_or_insert_with(|| {
        printer.progress(&format!(
            "connection to the hub lost ({}); reconnecting…",
            why.message()
        ));
        Instant::now()
    });
    let mut pause = RECONNECT_FIRST_PAUSE;
    loop {
        // Bounded whatever fails: connecting, or calls on a hub that keeps refusing (e.g.
        // one that is draining and accepts no new commands).
        if since.elapsed() >= RECONNECT_WINDOW {
            return Err(FollowError::NotResumed(why.clone()));
        }
        tokio::time::sleep(pause).await;
        match spoke.connect(target).await {
            Ok(conn) => return Ok(conn),
            // The hub refuses this device: waiting will not change that.
            Err(e) if e.refused_by_hub() => return Err(e.into()),
            Err(source) if since.elapsed() >= RECONNECT_WINDOW => {
                return Err(FollowError::NotReconnected { source });
            }
            Err(_) => pause = (pause * 2).min(RECONNECT_MAX_PAUSE),
        }
    }
}
