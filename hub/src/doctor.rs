//! `helix-hub doctor`: every check of a hub's health, each with ok/warn/fail and a next step.
//!
//! The checks read the data dir and ask what they must (the running hub's listener, the
//! cloud's REST endpoint); none changes anything. Each is one function returning [`Check`]s,
//! so the binary only prints them. Exit codes are the `auth status --check` ones
//! ([`crate::login::CHECK_OK`], `CHECK_FAILED`, `CHECK_WARNINGS`): never 2, clap's usage error.
//!
//! Files: `local` (data dir, files' modes, free disk, journal, credentials, the Claude Code
//! CLI, paired devices), `remote` (the listener, the cloud).

use serde::Serialize;

mod local;
mod remote;

pub use local::{claude_code, credentials, data_dir, devices, free_disk, journal};
pub use remote::{cloud, listener};

use crate::login::{CHECK_FAILED, CHECK_OK, CHECK_WARNINGS};

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

/// One check: what was looked at, what was found, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
    /// What to do next (empty when nothing is needed).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub next: String,
}

impl Check {
    pub fn ok(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(name, Status::Ok, detail, "")
    }

    pub fn warn(
        name: impl Into<String>,
        detail: impl Into<String>,
        next: impl Into<String>,
    ) -> Self {
        Self::new(name, Status::Warn, detail, next)
    }

    pub fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        next: impl Into<String>,
    ) -> Self {
        Self::new(name, Status::Fail, detail, next)
    }

    fn new(
        name: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
        next: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            status,
            detail: detail.into(),
            next: next.into(),
        }
    }
}

/// The worst status among `checks` (ok when there are none).
pub fn overall(checks: &[Check]) -> Status {
    checks.iter().map(|c| c.status).max().unwrap_or(Status::Ok)
}

/// The exit code for `checks`: 0 all ok, 1 a failure, 3 warnings only.
pub fn exit_code(checks: &[Check]) -> u8 {
    match overall(checks) {
        Status::Ok => CHECK_OK,
        Status::Warn => CHECK_WARNINGS,
        Status::Fail => CHECK_FAILED,
    }
}

/// Every check, in the order a person reads them: the data dir first, the network last.
pub async fn run_all(dir: &std::path::Path, config: &crate::config::HubConfig) -> Vec<Check> {
    let mut checks = Vec::new();
    checks.extend(data_dir(dir));
    checks.push(free_disk(dir));
    let running = listener(dir).await;
    // Only a hub that answers holds the journal; a stale or missing one leaves it checkable.
    let hub_runs = helix_discovery::local::is_running(dir);
    checks.push(running);
    checks.push(journal(dir, hub_runs));
    checks.extend(credentials(dir));
    checks.extend(claude_code(dir, &config.providers.anthropic.claude_binary).await);
    checks.push(devices(dir));
    checks.extend(cloud(dir).await);
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_check_decides_the_exit_code() {
        let ok = Check::ok("a", "fine");
        let warn = Check::warn("b", "meh", "do x");
        let fail = Check::fail("c", "bad", "do y");
        assert_eq!(exit_code(&[]), 0);
        assert_eq!(exit_code(std::slice::from_ref(&ok)), 0);
        assert_eq!(exit_code(&[ok.clone(), warn.clone()]), 3);
        assert_eq!(exit_code(&[warn, fail, ok]), 1);
    }

    #[test]
    fn json_has_no_empty_next_step() {
        let text = serde_json::to_string(&Check::ok("a", "fine")).unwrap();
        assert_eq!(text, r#"{"name":"a","status":"ok","detail":"fine"}"#);
        let text = serde_json::to_string(&Check::fail("a", "bad", "fix it")).unwrap();
        assert!(text.contains(r#""status":"fail""#) && text.contains(r#""next":"fix it""#));
    }
}
