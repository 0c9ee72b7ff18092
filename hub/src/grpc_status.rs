//! The one place where hub errors become gRPC statuses.

use tonic::Status;
use uuid::Uuid;

use crate::{
    command::InvalidCommand,
    devices::DevicesError,
    executor::{CancelError, SubmitError},
    journal::JournalError,
};

pub fn invalid(e: InvalidCommand) -> Status {
    Status::invalid_argument(e.to_string())
}

pub fn not_found(command_id: Uuid) -> Status {
    Status::not_found(format!("no command {command_id} on this hub"))
}

pub fn journal(e: JournalError) -> Status {
    match e {
        JournalError::UnknownCommand(id) => not_found(id),
        JournalError::Closed => Status::unavailable("the hub is shutting down"),
        other => {
            tracing::error!(error = %other, "journal error");
            Status::internal(other.to_string())
        }
    }
}

pub fn submit(e: SubmitError) -> Status {
    match e {
        SubmitError::AlreadyExists(id) => Status::already_exists(format!(
            "command_id {id} was already used for a different command; use a new id"
        )),
        e @ SubmitError::QueueFull(_) => Status::resource_exhausted(e.to_string()),
        SubmitError::ShuttingDown => {
            Status::unavailable("the hub is shutting down and accepts no new commands")
        }
        SubmitError::Journal(e) => journal(e),
    }
}

pub fn cancel(e: CancelError) -> Status {
    match e {
        CancelError::NotFound(id) => not_found(id),
        e @ CancelError::AlreadyFinished { .. } => Status::failed_precondition(e.to_string()),
        CancelError::Journal(e) => journal(e),
    }
}

/// The device list could not be saved (the admin service's `RevokeDevice`).
pub fn devices(e: DevicesError) -> Status {
    Status::internal(e.to_string())
}
