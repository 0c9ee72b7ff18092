//! `helix-hub doctor [--json]`: every check of `helix_hub::doctor`, one line each (and its
//! next step under it), or one JSON document; the exit code says how it went.

use std::{path::Path, process::ExitCode};

use helix_hub::{
    config::HubConfig,
    doctor::{self, Status},
};

use crate::terminal::out;

pub(crate) async fn doctor(data_dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    // A config file that does not load is itself a finding: the checks run with the defaults.
    let (config, config_check) = match HubConfig::load(data_dir) {
        Ok(config) => (config, None),
        Err(e) => (
            HubConfig::default(),
            Some(doctor::Check::fail(
                "config",
                e.to_string(),
                "fix config.toml (the hub will not start with it)",
            )),
        ),
    };
    let mut checks: Vec<_> = config_check.into_iter().collect();
    checks.extend(doctor::run_all(data_dir, &config).await);
    let code = doctor::exit_code(&checks);
    if json {
        out(&serde_json::json!({
            "status": doctor::overall(&checks),
            "checks": checks,
        })
        .to_string());
        return Ok(ExitCode::from(code));
    }
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for check in &checks {
        let status = match check.status {
            Status::Ok => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        out(&format!(
            "{status}  {:width$}  {}",
            check.name, check.detail
        ));
        if !check.next.is_empty() {
            out(&format!("      {:width$}  → {}", "", check.next));
        }
    }
    let count = |s| checks.iter().filter(|c| c.status == s).count();
    out(&format!(
        "{} ok, {} warning(s), {} failure(s)",
        count(Status::Ok),
        count(Status::Warn),
        count(Status::Fail)
    ));
    Ok(ExitCode::from(code))
}
