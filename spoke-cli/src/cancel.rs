//! `helix cancel`: ask the hub (iroh, or the local listener), or cancel a command in the cloud
//! (`cancel_cloud_command` makes its row `cancelled`; the hub stops the command when it
//! notices). With `--via auto`, the cloud is used when this device is signed in and either no
//! iroh route comes up in time ([`crate::fallback`]) or the hub does not have the command (it
//! may still wait in the table, unclaimed).
//!
//! Either way stdout gets the command's status after the cancel (`cancelled`, or the status it
//! ended with first) and the exit code is 0.

use helix_mesh::pb::{self, CommandStatus};

use crate::{
    cli::Via,
    client::{ConnectError, HubStatus, ResolveError, Spoke},
    cloud_route::{self, CloudRouteError},
    exit::Exit,
    fallback::{Route, hub_or_cloud, no_route},
    render::Printer,
};

/// `helix cancel` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CancelError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The hub answered with an error.
    #[error(transparent)]
    Status(#[from] HubStatus),
    #[error(transparent)]
    Cloud(#[from] CloudRouteError),
}

/// Runs `helix cancel ID`.
pub async fn cancel(
    spoke: &Spoke,
    hub: Option<&str>,
    id: String,
    via: Via,
    quiet: bool,
) -> Result<Exit, CancelError> {
    let mut printer = Printer::new(false, quiet);
    if via == Via::Cloud {
        return Ok(cloud_route::cancel(spoke, &id, &mut printer).await?);
    }
    let target = spoke.resolve(hub)?;
    let (mut conn, cloud) = if via == Via::Auto {
        match hub_or_cloud(spoke.connect(&target), cloud_route::available(spoke)).await? {
            Route::Hub { conn, cloud } => (conn, cloud),
            Route::Cloud => {
                printer.progress(&no_route("cancelling through the cloud"));
                return Ok(cloud_route::cancel(spoke, &id, &mut printer).await?);
            }
        }
    } else {
        (spoke.connect(&target).await?, false)
    };
    let answer = match conn
        .client
        .cancel(pb::CancelRequest {
            command_id: id.clone(),
        })
        .await
    {
        Ok(answer) => answer.into_inner(),
        Err(status) if cloud && status.code() == tonic::Code::NotFound => {
            printer.progress("the hub does not have it; cancelling it in the cloud");
            return Ok(cloud_route::cancel(spoke, &id, &mut printer).await?);
        }
        Err(status) => return Err(HubStatus(status).into()),
    };
    let status = CommandStatus::try_from(answer.status).unwrap_or(CommandStatus::Unspecified);
    match (status, answer.was_queued) {
        (CommandStatus::Cancelled, true) => {
            printer.progress(&format!("cancelled {id} before it started"))
        }
        (CommandStatus::Cancelled, false) => {
            printer.progress(&format!("cancelled {id} while it ran"))
        }
        (other, _) => printer.note(&format!("{id} ended {other} before the cancel reached it")),
    }
    printer.out_line(status.name());
    Ok(Exit::Ok)
}
