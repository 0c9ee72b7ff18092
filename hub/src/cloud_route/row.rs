//! The cloud calls of one command's row (`cloud_commands`): publish its prompt and keys, append
//! its events, complete it, read its status. Each hub call carries the hub's id and claim token
//! ([`HubCaller`]). Publishing, appending and completing must get through, so a failure that may pass (no answer,
//! a 5xx, 408, 429, or a 401 from an expired session, which is refreshed first) is retried
//! with exponential backoff and jitter ([`RETRY_FIRST`] doubling up to [`RETRY_MAX`]), sending
//! exactly the same arguments again (a re-sealed event would differ from the stored one and be
//! refused), until the call succeeds, the cloud refuses it, the command's expiry passes, or
//! the hub stops. A refusal (any other answer, e.g. a conflict or a row that is not
//! `executing`, whatever its HTTP status; see [`is_transient`]) is never retried: it is for
//! the caller to act on.

use std::time::Duration;

use helix_discovery::{
    cloud::Cloud,
    rest::{Rest, RestError},
};
use helix_mesh::proto_ext::now_ms;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::claim_token::HubCaller;
use crate::config::RetryConfig;

/// The first wait before a failed call is sent again (with jitter: between half of it and all).
pub const RETRY_FIRST: Duration = Duration::from_millis(250);
/// The longest wait between two tries: a cloud that comes back is noticed within this long,
/// while a long outage costs one request per command every few seconds.
pub const RETRY_MAX: Duration = Duration::from_secs(10);

/// Why a call was given up; each carries the last error.
#[derive(Debug)]
pub(super) enum GaveUp {
    /// The cloud refused it; sending it again would not change that.
    Refused(RestError),
    /// It kept failing until the command expired.
    Expired(RestError),
    /// The hub is stopping.
    Stopping(RestError),
}

/// Whether a failed call may succeed when sent again unchanged.
pub(super) fn is_transient(error: &RestError) -> bool {
    let RestError::Api { status, code, .. } = error else {
        // No answer, a broken one, or one we could not read: the call may or may not have
        // been applied, and sending the same arguments again is safe either way.
        return true;
    };
    match code.as_deref() {
        // The database answered. PostgREST sends many of its answers as HTTP 500 (e.g. P0002
        // "not executing", 55000 "already ended"), so the SQLSTATE decides: only a lost
        // connection (08), a transaction conflict (40), a lack of resources (53) or an
        // operator's intervention (57, e.g. a restart) may pass.
        Some(sqlstate) if is_sqlstate(sqlstate) => {
            matches!(sqlstate.get(..2), Some("08" | "40" | "53" | "57"))
        }
        // PostgREST's own errors (`PGRST…`, e.g. no database connection or an expired JWT),
        // or a proxy's: by the HTTP status.
        _ => *status >= 500 || matches!(status, 401 | 408 | 429),
    }
}

/// A PostgreSQL error code: five digits or upper-case letters (PostgREST's are longer).
fn is_sqlstate(code: &str) -> bool {
    code.len() == 5
        && code
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
}

/// The wait before retry number `retry` (1 for the first).
pub(super) fn backoff(retry: u32) -> Duration {
    let config = RetryConfig {
        max_retries: 0,
        base_delay: RETRY_FIRST,
        max_delay: RETRY_MAX,
    };
    crate::retry::delay(&config, retry, None)
}

/// One command's row in the cloud.
#[derive(Debug)]
pub(super) struct Row<'a> {
    pub cloud: &'a Cloud,
    pub rest: &'a Rest,
    pub caller: &'a HubCaller,
    pub command_id: &'a str,
    /// Retries stop when this passes (ms since the Unix epoch): the command's expiry.
    pub deadline_ms: i64,
    /// The cloud route worker's token: retries stop when the hub stops (the first try still goes).
    pub cancel: &'a CancellationToken,
}

impl Row<'_> {
    /// Publishes the command: `publication` holds `p_command_id`, `p_source_device_id`,
    /// `p_prompt`, `p_keys` and `p_expires_at`, sealed once (a retry sends the same).
    pub async fn publish(&self, publication: &Value) -> Result<(), GaveUp> {
        let args = self.caller.args(publication.clone());
        self.call::<Value>("publish_cloud_command", &args)
            .await
            .map(drop)
    }

    /// Appends a batch of sealed events (`{"seq", "envelope"}`), retried as a whole.
    pub async fn append(&self, batch: &[Value]) -> Result<(), GaveUp> {
        let args = self
            .caller
            .args(json!({"p_command_id": self.command_id, "p_events": batch}));
        self.call::<Value>("append_cloud_events", &args)
            .await
            .map(drop)
    }

    /// Ends the row with `status` (idempotent, so retried like an append). A failure is
    /// logged: there is nothing else to do about it.
    pub async fn complete(&self, status: &str, reason: Option<String>) {
        let args = self
            .caller
            .args(json!({"p_command_id": self.command_id, "p_status": status, "p_reason": reason}));
        let command_id = self.command_id;
        match self.call::<Value>("complete_cloud_command", &args).await {
            Ok(_) => {}
            Err(GaveUp::Refused(error)) => {
                tracing::warn!(%command_id, %status, %error, "the cloud refused to complete a command's row");
            }
            Err(GaveUp::Expired(error) | GaveUp::Stopping(error)) => {
                tracing::warn!(%command_id, %status, %error, "gave up completing a command's row");
            }
        }
    }

    /// The row's status, read once (`None` when the read fails).
    pub async fn status(&self) -> Option<String> {
        let query = format!("command_id=eq.{}&select=status", self.command_id);
        match self.rest.select::<Value>("cloud_commands", &query).await {
            Ok(rows) => rows.first()?["status"].as_str().map(str::to_owned),
            Err(error) => {
                tracing::debug!(command_id = %self.command_id, %error, "reading a command's row failed");
                None
            }
        }
    }

    /// Calls `function` with `args` until it gets through, is refused, or is given up.
    async fn call<T: DeserializeOwned>(&self, function: &str, args: &Value) -> Result<T, GaveUp> {
        let command_id = self.command_id;
        let mut retry = 0u32;
        loop {
            let error = match self.rest.rpc(function, args).await {
                Ok(answer) => return Ok(answer),
                Err(error) => error,
            };
            if !is_transient(&error) {
                return Err(GaveUp::Refused(error));
            }
            if self.cancel.is_cancelled() {
                tracing::warn!(%command_id, function, %error, "a cloud route call failed while the hub stops; not retried");
                return Err(GaveUp::Stopping(error));
            }
            let left = self.deadline_ms.saturating_sub(now_ms());
            if left <= 0 {
                tracing::warn!(%command_id, function, %error, "a cloud route call kept failing until the command expired; gave up");
                return Err(GaveUp::Expired(error));
            }
            retry = retry.saturating_add(1);
            let wait = backoff(retry).min(Duration::from_millis(left.unsigned_abs()));
            tracing::warn!(%command_id, function, %error, retry, delay_ms = wait.as_millis() as u64, "a cloud route call failed; sending it again");
            if matches!(error, RestError::Api { status: 401, .. }) {
                self.refresh_session().await;
            }
            tokio::select! {
                _ = self.cancel.cancelled() => {
                    tracing::warn!(%command_id, function, "the hub stops; gave up a failing cloud route call");
                    return Err(GaveUp::Stopping(error));
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Puts a fresh access token in the client (the session refreshes when it is near expiry).
    async fn refresh_session(&self) {
        match self.cloud.rest().await {
            Ok(Some((_, session))) => self.rest.set_token(session.access_token).await,
            Ok(None) => tracing::warn!("cloud route: the hub is no longer signed in to the cloud"),
            Err(error) => {
                tracing::warn!(%error, "cloud route: refreshing the cloud session failed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: Option<&str>) -> RestError {
        RestError::Api {
            what: "calling f".into(),
            status,
            code: code.map(str::to_owned),
            message: "m".into(),
        }
    }

    #[test]
    fn only_failures_that_may_pass_are_retried() {
        for transient in [
            api(500, None),
            api(502, None),
            api(503, Some("PGRST000")),
            api(503, Some("PGRST001")),
            api(504, Some("PGRST003")),
            api(504, None),
            api(408, None),
            api(429, None),
            api(401, Some("PGRST301")),
            api(503, Some("08006")),
            api(500, Some("40001")),
            api(503, Some("53300")),
            api(503, Some("57P01")),
            RestError::Transport {
                what: "calling f".into(),
                message: "connection refused".into(),
            },
            RestError::Decode {
                what: "calling f".into(),
                message: "expected value".into(),
            },
        ] {
            assert!(is_transient(&transient), "{transient}");
        }
        for refused in [
            api(409, Some("23505")),
            // What PostgREST (and postrust) send for the functions' own refusals.
            api(500, Some("P0002")),
            api(500, Some("55000")),
            api(404, Some("P0002")),
            api(400, Some("22023")),
            api(400, Some("55000")),
            api(401, Some("42501")),
            api(403, Some("42501")),
        ] {
            assert!(!is_transient(&refused), "{refused}");
        }
    }

    #[test]
    fn backoff_doubles_from_250ms_up_to_10s() {
        for _ in 0..50 {
            let first = backoff(1);
            assert!(
                (RETRY_FIRST / 2..=RETRY_FIRST).contains(&first),
                "{first:?}"
            );
            let third = backoff(3);
            assert!(
                (Duration::from_millis(500)..=Duration::from_millis(1000)).contains(&third),
                "{third:?}"
            );
            let late = backoff(30);
            assert!((RETRY_MAX / 2..=RETRY_MAX).contains(&late), "{late:?}");
        }
    }
}
