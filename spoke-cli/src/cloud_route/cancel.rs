//! Cancelling in the cloud: `cancel_cloud_command` makes a `pending` or `executing` row
//! `cancelled` with this device's reason; the hub notices (its next append is refused, or its
//! status read of a silent command) and stops the command in its executor.

use helix_discovery::rest::Rest;
use serde_json::{Value, json};

use super::{CANCEL_REASON, CloudRouteError, command_id, row, signed_in};
use crate::{client::Spoke, exit::Exit, render::Printer};

/// `helix cancel` through the cloud. Prints the status the command has now (stdout) as the
/// iroh route does.
pub async fn cancel(
    spoke: &Spoke,
    command_id_text: &str,
    printer: &mut Printer,
) -> Result<Exit, CloudRouteError> {
    let id = command_id(command_id_text)?;
    let rest = signed_in(spoke).await?;
    match cancel_row(&rest, &id, CANCEL_REASON).await? {
        Cancelled::Now { claimed: false } => printer.progress(&format!(
            "cancelled {id} in the cloud before the hub claimed it"
        )),
        Cancelled::Now { claimed: true } => printer.progress(&format!(
            "cancelled {id} in the cloud; the hub stops it when it notices"
        )),
        Cancelled::Already(status) => {
            printer.note(&format!("{id} ended {status} before the cancel reached it"));
            printer.out_line(&status);
            return Ok(Exit::Ok);
        }
    }
    printer.out_line("cancelled");
    Ok(Exit::Ok)
}

/// What cancelling a row found.
pub(super) enum Cancelled {
    /// The row is `cancelled` now; whether a hub had claimed it.
    Now { claimed: bool },
    /// It had already ended with this status.
    Already(String),
}

/// Cancels the row of `command_id` (a parsed UUID) with `reason`.
pub(super) async fn cancel_row(
    rest: &Rest,
    command_id: &str,
    reason: &str,
) -> Result<Cancelled, CloudRouteError> {
    let args = json!({"p_command_id": command_id, "p_reason": reason});
    match rest.rpc::<Value>("cancel_cloud_command", &args).await {
        Ok(row) => Ok(Cancelled::Now {
            claimed: !row["claimed_at"].is_null(),
        }),
        // `command <id> already ended <status>`.
        Err(e) if e.code() == Some("55000") => {
            let status = row::command(rest, command_id, false)
                .await?
                .map(|r| crate::render::printable(&r.status))
                .unwrap_or_else(|| "already".to_owned());
            Ok(Cancelled::Already(status))
        }
        Err(e) if e.code() == Some("P0002") => {
            Err(CloudRouteError::UnknownCommand(command_id.to_owned()))
        }
        Err(e) => Err(e.into()),
    }
}
