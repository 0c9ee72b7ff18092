//! The spoke's side of the cloud route (route `cloud`: the Supabase tables, v2).
//!
//! - [`send`]: the command as JSON sealed to the hub (envelope v2), inserted into
//!   `cloud_commands`;
//! - [`follow`]: wait until the hub publishes the command, unwrap this device's content key,
//!   read the events in pages and print them, each opened as exactly the event expected next
//!   ([`open`]); any refusal ends `helix` with a message naming the seq and nothing of that
//!   event printed;
//! - [`cancel`]: `cancel_cloud_command`; the first Ctrl-C while following does that and keeps
//!   following until the row or the command ends, a second leaves at once;
//! - [`show`]: one command as the cloud has it (`helix show --via cloud`), prompt included;
//! - [`row`]: the rows read; [`error`]: what goes wrong.
//!
//! Any paired device follows any command of the hub this way, whichever device sent it and
//! whether it came through the cloud or was mirrored by the hub from iroh.

mod cancel;
mod error;
mod follow;
mod list;
mod open;
mod row;
mod send;
mod show;
mod wakeups;

use std::time::Duration;

use helix_discovery::{cloud::Cloud, rest::Rest};
use helix_mesh::pb;
use iroh::PublicKey;
use tokio::signal::unix::{Signal, SignalKind, signal};

use self::{follow::Follow, wakeups::Wakeups};
use crate::{client::Spoke, exit::Exit, follow::Until, render::Printer};

pub use self::{
    cancel::cancel,
    error::{CloudRouteError, Refusal},
    list::{ListFilter, MAX_LIST, Prompt, list},
    send::MAX_TTL,
    show::show,
    wakeups::SAFETY_POLL,
};

/// Events read per request: a page of envelopes stays well under the REST client's
/// `MAX_RESPONSE_BYTES` (an event envelope is at most 1.5 MB), and a long answer is read in
/// several requests instead of one unbounded one.
const EVENT_PAGE: usize = 32;

/// The route name of the cloud route.
pub const ROUTE_CLOUD: &str = "cloud";
/// How often the rows are read while a command runs and Realtime is not joined.
pub const EVENT_POLL: Duration = Duration::from_millis(250);
/// The row's reason when this device's Ctrl-C cancels a command sent through the cloud.
pub const CTRL_C_REASON: &str = "cancelled with Ctrl-C on the device";
/// The row's reason when `helix cancel` cancels a command in the cloud.
pub const CANCEL_REASON: &str = "cancelled with `helix cancel`";

/// Whether this device is signed in to the cloud (the cloud route is possible).
pub async fn available(spoke: &Spoke) -> bool {
    matches!(Cloud::in_dir(spoke.config.path()).rest().await, Ok(Some(_)))
}

async fn signed_in(spoke: &Spoke) -> Result<Rest, CloudRouteError> {
    Ok(signed_in_with_wakeups(spoke).await?.0)
}

/// The REST client and a way to wake up on changes of a command's row (Realtime, as the same
/// user, with the same session).
async fn signed_in_with_wakeups(
    spoke: &Spoke,
) -> Result<(Rest, impl FnOnce(&str) -> Wakeups), CloudRouteError> {
    let cloud = Cloud::in_dir(spoke.config.path());
    let (rest, session) = cloud.rest().await?.ok_or(CloudRouteError::SignedOut)?;
    let supabase = cloud.config()?.ok_or(CloudRouteError::SignedOut)?;
    let wakeups =
        move |command_id: &str| Wakeups::start(&supabase, session.access_token, command_id);
    Ok((rest, wakeups))
}

/// The command id as the hub binds its envelopes to it (a UUID in its lower-case hyphenated
/// form); anything else is refused before it reaches a query.
fn command_id(text: &str) -> Result<String, CloudRouteError> {
    uuid::Uuid::parse_str(text)
        .map(|id| id.to_string())
        .map_err(|_| CloudRouteError::NotAUuid(text.to_owned()))
}

/// Sends `request` to `hub` through the cloud and follows it to its end (or, with
/// [`Until::Accepted`], prints its id and returns).
pub async fn run(
    spoke: &Spoke,
    hub: PublicKey,
    request: pb::ExecuteRequest,
    printer: &mut Printer,
    until: Until,
) -> Result<Exit, CloudRouteError> {
    let secret = spoke.config.secret_key().map_err(CloudRouteError::Key)?;
    let row = send::command_row(&secret, &hub, &request)?;
    let (rest, wakeups) = signed_in_with_wakeups(spoke).await?;
    // Before the row exists, so a Ctrl-C from then on cancels it rather than killing `helix`.
    let interrupts = match until {
        Until::Accepted => None,
        Until::Finished => Some(interrupts()?),
    };
    let command_id = request.command_id.clone();
    // Subscribed before the row exists: the hub's first update can come at once.
    let wakeups = match until {
        Until::Accepted => Wakeups::none(),
        Until::Finished => wakeups(&command_id),
    };
    send::insert(&rest, &hub, row).await?;
    let Some(interrupts) = interrupts else {
        printer.progress(&format!(
            "sent through the cloud (route {ROUTE_CLOUD}); follow it with `helix attach --via cloud {command_id}`"
        ));
        printer.out_line(&command_id);
        return Ok(Exit::Ok);
    };
    printer.progress(&format!(
        "sent through the cloud (route {ROUTE_CLOUD}); waiting for the hub…"
    ));
    let follow = Follow {
        rest: &rest,
        secret: &secret,
        hub,
        command_id: &command_id,
        cancel_requested: false,
        silence: spoke.cloud_silence,
    };
    follow.events(interrupts, wakeups, 0, printer).await
}

/// Follows the events of a command of `hub` in the cloud after `after_seq` (`helix attach
/// --via cloud`): one this device sent, another device sent, or the hub mirrored.
pub async fn attach(
    spoke: &Spoke,
    hub: PublicKey,
    command_id_text: &str,
    after_seq: u64,
    printer: &mut Printer,
) -> Result<Exit, CloudRouteError> {
    let id = command_id(command_id_text)?;
    let (rest, wakeups) = signed_in_with_wakeups(spoke).await?;
    let wakeups = wakeups(&id);
    let secret = spoke.config.secret_key().map_err(CloudRouteError::Key)?;
    let follow = Follow {
        rest: &rest,
        secret: &secret,
        hub,
        command_id: &id,
        cancel_requested: false,
        silence: spoke.cloud_silence,
    };
    follow
        .events(interrupts()?, wakeups, after_seq, printer)
        .await
}

fn interrupts() -> Result<Signal, CloudRouteError> {
    signal(SignalKind::interrupt()).map_err(CloudRouteError::CtrlC)
}
