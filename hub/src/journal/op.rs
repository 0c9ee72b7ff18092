//! The journal's operations and their replies: what a caller asks of the writer ([`Op`]), and
//! what applying one leaves until its batch commits ([`Applied`]), when the reply is sent.

use std::collections::HashMap;

use rusqlite::Connection;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::{
    JournalError, SubmitOutcome, TurnEnd,
    sql::{Isolation, LiveCommand, Stored, append_event, isolated, submit},
};
use crate::{
    bus::{Bus, StatusEvent},
    command::{EventKind, NewCommand, StoredEvent},
};

pub(super) enum Op {
    Submit {
        cmd: Box<NewCommand>,
        position: u32,
        start: bool,
        reply: oneshot::Sender<Result<SubmitOutcome, JournalError>>,
    },
    Append {
        command_id: Uuid,
        kind: EventKind,
        /// For a `finished` event: what the executor knows of the command's turn (boxed:
        /// only a command's last event carries one, and every queued operation is this size).
        turn: Option<Box<TurnEnd>>,
        reply: Option<oneshot::Sender<Result<StoredEvent, JournalError>>>,
    },
}

/// The result of one applied operation, held until its batch commits.
pub(super) enum Applied {
    Submitted {
        reply: oneshot::Sender<Result<SubmitOutcome, JournalError>>,
        outcome: SubmitOutcome,
        status: Option<StatusEvent>,
        /// The `started` event stored with it, if it was asked to start.
        started: Option<(StoredEvent, Option<StatusEvent>)>,
    },
    Appended {
        reply: Option<oneshot::Sender<Result<StoredEvent, JournalError>>>,
        event: StoredEvent,
        status: Option<StatusEvent>,
    },
    Failed {
        reply: Reply,
        error: JournalError,
        /// The command an append was for.
        command_id: Option<Uuid>,
    },
}

impl Applied {
    /// After its batch committed: publishes what it stored, then answers its caller.
    pub(super) fn publish_and_reply(self, bus: &Bus) {
        match self {
            Applied::Submitted {
                reply,
                outcome,
                status,
                started,
            } => {
                if let SubmitOutcome::Created(event) = &outcome {
                    bus.publish(event, status);
                }
                if let Some((event, status)) = started {
                    bus.publish(&event, status);
                }
                let _ = reply.send(Ok(outcome));
            }
            Applied::Appended {
                reply,
                event,
                status,
            } => {
                bus.publish(&event, status);
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(event));
                }
            }
            Applied::Failed { reply, error, .. } => reply.send_err(error),
        }
    }

    /// The command of an append nobody waits an answer for (a streamed output): if it is not
    /// stored, only the journal knows, and it must tell the executor
    /// ([`super::writer::LostWrites`]).
    pub(super) fn unanswered_append(&self) -> Option<Uuid> {
        match self {
            Applied::Appended {
                reply: None, event, ..
            } => Some(event.command_id),
            Applied::Failed {
                reply: Reply::Append(None),
                command_id,
                ..
            } => *command_id,
            _ => None,
        }
    }

    /// Its caller's reply, for when its batch did not commit and nothing of it is stored.
    pub(super) fn into_reply(self) -> Reply {
        match self {
            Applied::Submitted { reply, .. } => Reply::Submit(reply),
            Applied::Appended { reply, .. } => Reply::Append(reply),
            Applied::Failed { reply, .. } => reply,
        }
    }
}

/// Where the answer to an operation goes.
pub(super) enum Reply {
    Submit(oneshot::Sender<Result<SubmitOutcome, JournalError>>),
    Append(Option<oneshot::Sender<Result<StoredEvent, JournalError>>>),
}

impl Reply {
    pub(super) fn send_err(self, error: JournalError) {
        match self {
            Reply::Submit(r) => {
                let _ = r.send(Err(error));
            }
            Reply::Append(Some(r)) => {
                let _ = r.send(Err(error));
            }
            Reply::Append(None) => {
                tracing::error!(%error, "journal append failed");
            }
        }
    }
}

/// Applies one operation inside its batch's transaction `tx`.
pub(super) fn apply_op(
    tx: &Connection,
    live: &mut HashMap<Uuid, LiveCommand>,
    op: Op,
    isolation: Isolation,
) -> Applied {
    match op {
        Op::Submit {
            cmd,
            position,
            start,
            reply,
        } => match submit(tx, live, *cmd, position, start, isolation) {
            Ok(Stored {
                outcome,
                status,
                started,
            }) => Applied::Submitted {
                reply,
                outcome,
                status,
                started,
            },
            Err(error) => Applied::Failed {
                reply: Reply::Submit(reply),
                error,
                command_id: None,
            },
        },
        Op::Append {
            command_id,
            kind,
            turn,
            reply,
        } => match isolated(tx, live, isolation, |tx, live| {
            append_event(tx, live, command_id, kind, turn)
        }) {
            Ok((event, status)) => Applied::Appended {
                reply,
                event,
                status,
            },
            Err(error) => Applied::Failed {
                reply: Reply::Append(reply),
                error,
                command_id: Some(command_id),
            },
        },
    }
}
