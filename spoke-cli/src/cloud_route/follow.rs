//! Following one command through the cloud: wait until the hub has published it (its row has
//! a prompt, and this device a content key), unwrap the key, then read the events in pages by
//! seq cursor, open each as exactly the event expected next, print it, until `finished` or
//! the row ends.

use std::time::Duration;

use helix_discovery::rest::Rest;
use helix_mesh::pb::{CommandStatus, command_event::Kind};
use iroh::{PublicKey, SecretKey};
use tokio::{signal::unix::Signal, time::Instant};

use super::{
    CTRL_C_REASON, CloudRouteError, ROUTE_CLOUD, Refusal,
    cancel::cancel_row,
    open::{Opener, check_hub, unwrap_key},
    row::{self, CommandRow},
    wakeups::Wakeups,
};
use crate::{
    exit::Exit,
    follow::show_event,
    render::{Printer, printable},
    route_watch::RouteLog,
};

/// Following one command sent through (or mirrored to) the cloud.
pub(super) struct Follow<'a> {
    pub(super) rest: &'a Rest,
    pub(super) secret: &'a SecretKey,
    /// The paired hub: only its signatures are accepted.
    pub(super) hub: PublicKey,
    /// A parsed UUID, in the form the hub binds its envelopes to.
    pub(super) command_id: &'a str,
    /// This device cancelled the command with Ctrl-C.
    pub(super) cancel_requested: bool,
    /// How long to wait while nothing new comes from the hub, counted from the last event
    /// (the command's expiry also ends it): a long answer that keeps streaming is followed to
    /// its end.
    pub(super) silence: Duration,
}

/// What one look at the cloud found.
enum Step {
    /// Look again at once (a full page, or the key just arrived).
    Again,
    /// Nothing new: wait for a wake-up or the poll ([`Wakeups::next`]).
    Wait,
    /// The command is over for this device.
    Done(Exit),
}

impl Follow<'_> {
    /// Prints the events after `after_seq` until the command or its row ends, looking again
    /// when `wakeups` says; Ctrl-C (from `interrupts`) cancels it.
    pub(super) async fn events(
        mut self,
        mut interrupts: Signal,
        mut wakeups: Wakeups,
        after_seq: u64,
        printer: &mut Printer,
    ) -> Result<Exit, CloudRouteError> {
        let mut opener: Option<Opener> = None;
        let mut last = after_seq;
        // The row had ended at this seq when the events after `last` were last read.
        let mut ended_at: Option<u64> = None;
        let mut heard = Instant::now();
        loop {
            let looked = tokio::select! {
                _ = interrupts.recv() => {
                    if let Some(exit) = self.interrupted(printer).await {
                        return Ok(exit);
                    }
                    continue;
                }
                looked = self.look(&mut opener, &mut last, &mut ended_at, after_seq, printer) => looked?,
            };
            match looked {
                Step::Done(exit) => return Ok(exit),
                Step::Again => {
                    heard = Instant::now();
                    continue;
                }
                Step::Wait => {}
            }
            if heard.elapsed() > self.silence {
                return Err(CloudRouteError::Silent {
                    silence: self.silence,
                    command_id: self.command_id.to_owned(),
                });
            }
            tokio::select! {
                _ = interrupts.recv() => {
                    if let Some(exit) = self.interrupted(printer).await {
                        return Ok(exit);
                    }
                }
                _ = wakeups.next() => {}
            }
        }
    }

    /// One look: before the key, at the row; with it, at the next page of events, and at the
    /// row when there are none.
    async fn look(
        &self,
        opener: &mut Option<Opener>,
        last: &mut u64,
        ended_at: &mut Option<u64>,
        after_seq: u64,
        printer: &mut Printer,
    ) -> Result<Step, CloudRouteError> {
        let Some(open) = opener.as_ref() else {
            let row = self.row(true).await?;
            if row.prompt.is_some() {
                *opener = Some(self.key().await?);
                return Ok(Step::Again);
            }
            if row.ended() {
                // Ended before the hub published it: refused, expired unclaimed, cancelled.
                return Ok(Step::Done(self.row_ending(&row, printer)));
            }
            return Ok(Step::Wait);
        };
        let page = row::events(self.rest, self.command_id, *last).await?;
        // The cloud route does not change on the way.
        let routes = RouteLog::new(ROUTE_CLOUD);
        for stored in &page {
            let event = open.event(stored, *last + 1)?;
            *last = event.seq;
            if let Some(exit) = show_event(printer, &event, &routes, self.cancel_requested) {
                return Ok(Step::Done(exit));
            }
        }
        if !page.is_empty() {
            return Ok(Step::Again);
        }
        // No event after `last`. A row that had ended past it when that read started has
        // lost events; one that ends now may have gained some since: read once more first.
        if let Some(last_seq) = *ended_at {
            return Err(self.refused(*last + 1, Refusal::Truncated { last_seq }));
        }
        let row = self.row(false).await?;
        if !row.ended() {
            return Ok(Step::Wait);
        }
        if row.last_seq > *last {
            *ended_at = Some(row.last_seq);
            return Ok(Step::Again);
        }
        // `--after-seq` skipped the last event: if it is `finished`, it says how the command ended.
        if *last == after_seq
            && after_seq > 0
            && let Some(exit) = self.skipped_finish(open, after_seq).await?
        {
            printer.finish_output();
            return Ok(Step::Done(exit));
        }
        if row.status == "completed" {
            return Err(self.refused(*last + 1, Refusal::NoFinish));
        }
        Ok(Step::Done(self.row_ending(&row, printer)))
    }

    /// The command's row (it must exist, and be for the paired hub).
    async fn row(&self, with_prompt: bool) -> Result<CommandRow, CloudRouteError> {
        let row = row::command(self.rest, self.command_id, with_prompt)
            .await?
            .ok_or_else(|| CloudRouteError::UnknownCommand(self.command_id.to_owned()))?;
        check_hub(&row, &self.hub, self.command_id)?;
        Ok(row)
    }

    /// This device's content key: the hub published the command, so there is one unless the
    /// device was not paired when it started.
    async fn key(&self) -> Result<Opener, CloudRouteError> {
        let device = self.secret.public().to_string();
        let envelope = row::key(self.rest, self.command_id, &device)
            .await?
            .ok_or_else(|| CloudRouteError::NoKey {
                command_id: self.command_id.to_owned(),
            })?;
        unwrap_key(self.secret, self.hub, self.command_id, &envelope)
    }

    /// The exit code event `seq` means if it is a `finished` event (opened as event `seq` of
    /// this command, like any other), without printing it again.
    async fn skipped_finish(
        &self,
        open: &Opener,
        seq: u64,
    ) -> Result<Option<Exit>, CloudRouteError> {
        let Some(stored) = row::events(self.rest, self.command_id, seq - 1)
            .await?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        let event = open.event(&stored, seq)?;
        let Some(Kind::Finished(finished)) = event.kind else {
            return Ok(None);
        };
        Ok(Some(
            match CommandStatus::try_from(finished.status).unwrap_or(CommandStatus::Failed) {
                CommandStatus::Completed => Exit::Ok,
                CommandStatus::Cancelled if self.cancel_requested => Exit::Interrupted,
                CommandStatus::Cancelled => Exit::Cancelled,
                CommandStatus::Expired => Exit::Expired,
                _ => Exit::Failed,
            },
        ))
    }

    fn refused(&self, seq: u64, why: Refusal) -> CloudRouteError {
        CloudRouteError::RefusedEvent {
            seq,
            command_id: self.command_id.to_owned(),
            why,
        }
    }

    /// A row that ended without a `finished` event to read: its reason (cloud text, so only
    /// what prints as text) and the exit code of the same end over iroh.
    fn row_ending(&self, row: &CommandRow, printer: &mut Printer) -> Exit {
        printer.finish_output();
        let reason = row.reason.as_deref().unwrap_or("no reason given");
        let status = printable(&row.status);
        printer.note(&format!("command {status}: {}", printable(reason)));
        match row.status.as_str() {
            "expired" => Exit::Expired,
            "cancelled" if self.cancel_requested => Exit::Interrupted,
            "cancelled" => Exit::Cancelled,
            _ => Exit::Failed,
        }
    }

    /// Ctrl-C: the first cancels the row (and following goes on until it shows), a second
    /// leaves at once.
    async fn interrupted(&mut self, printer: &mut Printer) -> Option<Exit> {
        let command_id = self.command_id;
        if self.cancel_requested {
            printer.note("interrupted again; leaving without waiting (the command is cancelled in the cloud)");
            return Some(Exit::Interrupted);
        }
        self.cancel_requested = true;
        printer.note(&format!(
            "cancelling command {command_id} through the cloud… (Ctrl-C again to leave at once)"
        ));
        match cancel_row(self.rest, command_id, CTRL_C_REASON).await {
            // Following shows the end (or the command's own, if it ended first).
            Ok(_) => None,
            Err(e) => {
                printer.note(&format!("could not cancel through the cloud: {e}"));
                Some(Exit::Interrupted)
            }
        }
    }
}
