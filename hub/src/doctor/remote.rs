//! The checks that ask something over a connection: the running hub's listener, and the
//! cloud (session, REST, the clock against the server's, a Realtime join).

use std::{path::Path, time::Duration};

use helix_discovery::{
    cloud::Cloud,
    local::{LocalHub, LocalHubError},
};
use helix_mesh::pb::{self, remote_execution_client::RemoteExecutionClient};

use super::Check;

/// How long one question may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);
/// A clock off by more than this is a warning (expiries shift), more than the second a failure
/// (sealed envelopes expire, or live too long).
const SKEW_WARN: Duration = Duration::from_secs(30);
const SKEW_FAIL: Duration = Duration::from_secs(300);
/// How long a Realtime channel may take to join.
const REALTIME_JOIN: Duration = Duration::from_secs(5);

/// Whether a hub runs on this data dir and answers on its listener.
pub async fn listener(dir: &Path) -> Check {
    let hub = match LocalHub::find(dir) {
        Ok(hub) => hub,
        Err(LocalHubError::NotRunning { .. }) => {
            return Check::warn(
                "hub",
                "not running",
                "start it: `helix-hub serve`, or run it as a service: `helix-hub service install`",
            );
        }
        Err(e @ LocalHubError::Stale { .. }) => {
            return Check::warn("hub", e.to_string(), "start it: `helix-hub serve`");
        }
        Err(e) => return Check::fail("hub", e.to_string(), "restart the hub"),
    };
    let addr = hub.info.grpc_addr;
    let asked = tokio::time::timeout(ASK_TIMEOUT, async {
        let (channel, bearer) = hub.dial().await.map_err(|e| e.to_string())?;
        RemoteExecutionClient::with_interceptor(channel, bearer)
            .get_hub_info(pb::GetHubInfoRequest {})
            .await
            .map(|r| r.into_inner())
            .map_err(|s| s.message().to_owned())
    })
    .await;
    match asked {
        Ok(Ok(info)) => Check::ok(
            "hub",
            format!(
                "running (pid {}, {} on {addr}, {} provider{})",
                hub.info.pid,
                info.version,
                info.providers.len(),
                if info.providers.len() == 1 { "" } else { "s" }
            ),
        ),
        Ok(Err(e)) => Check::fail(
            "hub",
            format!(
                "pid {} holds the data dir, but its listener on {addr} does not answer: {e}",
                hub.info.pid
            ),
            "look at its log; restart it",
        ),
        Err(_) => Check::fail(
            "hub",
            format!(
                "pid {} holds the data dir, but its listener on {addr} did not answer within {}s",
                hub.info.pid,
                ASK_TIMEOUT.as_secs()
            ),
            "look at its log; restart it",
        ),
    }
}

/// The optional cloud: configured, signed in (the session refreshes), REST answers as this
/// user, and the machine's clock agrees with the server's `Date`.
pub async fn cloud(dir: &Path) -> Vec<Check> {
    let cloud = Cloud::in_dir(dir);
    let config = match cloud.config() {
        Ok(Some(config)) => config,
        Ok(None) => return vec![Check::ok("cloud", "not configured (optional)")],
        Err(e) => {
            return vec![Check::fail(
                "cloud",
                e.to_string(),
                "`helix-hub cloud login` again",
            )];
        }
    };
    let login = "sign in again: `helix-hub cloud login`, then restart the hub";
    let session = match tokio::time::timeout(ASK_TIMEOUT, cloud.rest()).await {
        Ok(Ok(Some((_, session)))) => session,
        Ok(Ok(None)) => {
            return vec![Check::fail(
                "cloud",
                format!("{} is set, but this hub is not signed in", config.url),
                login,
            )];
        }
        Ok(Err(e)) => return vec![Check::fail("cloud", format!("the session: {e}"), login)],
        Err(_) => {
            return vec![Check::fail(
                "cloud",
                format!(
                    "Auth at {} did not answer within {}s",
                    config.url,
                    ASK_TIMEOUT.as_secs()
                ),
                "check the network and the project URL",
            )];
        }
    };
    let mut checks = vec![Check::ok(
        "cloud session",
        format!(
            "signed in to {}{}",
            config.url,
            session
                .email
                .as_deref()
                .map(|e| format!(" as {e}"))
                .unwrap_or_default()
        ),
    )];
    let url = format!(
        "{}/cloud_presence?select=hub_id&limit=1",
        config.rest_base()
    );
    let sent = reqwest::Client::new()
        .get(&url)
        .header("apikey", &config.anon_key)
        .bearer_auth(&session.access_token)
        .timeout(ASK_TIMEOUT)
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) => {
            checks.push(Check::fail(
                "cloud rest",
                format!("{} did not answer: {}", config.rest_base(), e.without_url()),
                "check the network and the project URL",
            ));
            return checks;
        }
    };
    let status = response.status();
    let date = response
        .headers()
        .get(reqwest::header::DATE)
        .and_then(|d| d.to_str().ok())
        .and_then(|d| httpdate::parse_http_date(d).ok());
    if status.is_success() {
        checks.push(Check::ok(
            "cloud rest",
            format!("{} answers", config.rest_base()),
        ));
    } else {
        let body = response.text().await.unwrap_or_default();
        checks.push(Check::fail(
            "cloud rest",
            format!(
                "{} answered {status}: {}",
                config.rest_base(),
                body.chars().take(200).collect::<String>()
            ),
            "apply migrations/ to the project (supabase db push), and check the anon key",
        ));
    }
    checks.push(clock(date, std::time::SystemTime::now()));
    checks.push(realtime(&config, &session.access_token).await);
    checks
}

/// Whether a Realtime channel joins (on a topic of its own, watching no real row): without
/// it the hub still works, but wakes only by polling.
async fn realtime(config: &helix_discovery::rest::SupabaseConfig, access_token: &str) -> Check {
    use helix_discovery::realtime::{self, RealtimeConfig, Watch};
    let probe = uuid::Uuid::new_v4().to_string();
    let (wake, _woken) = tokio::sync::mpsc::channel(1);
    let realtime_config =
        match RealtimeConfig::for_command(config, &probe, vec![Watch::command_row(&probe, wake)]) {
            Ok(c) => c,
            Err(e) => return Check::fail("cloud realtime", e.to_string(), "check the project URL"),
        };
    let (_token_tx, token) = tokio::sync::watch::channel(access_token.to_owned());
    let cancel = tokio_util::sync::CancellationToken::new();
    let (task, mut joined) = realtime::spawn_with_health(realtime_config, token, cancel.clone());
    let outcome = tokio::time::timeout(REALTIME_JOIN, joined.wait_for(|j| *j)).await;
    tracing::debug!(joined = outcome.is_ok(), "doctor: realtime probe done");
    cancel.cancel();
    task.abort();
    tracing::debug!("doctor: realtime probe closed");
    match outcome {
        Ok(Ok(_)) => Check::ok("cloud realtime", "a channel joins"),
        _ => Check::warn(
            "cloud realtime",
            format!(
                "no channel joined within {}s at {}/realtime/v1/websocket",
                REALTIME_JOIN.as_secs(),
                config.url.trim_end_matches('/')
            ),
            "the hub still works, but notices new commands and pairings only by polling (every 15 s): check that the project's Realtime is enabled and the tables are in its publication (migrations/)",
        ),
    }
}

/// The machine's clock against the server's `Date` (whole seconds).
fn clock(server: Option<std::time::SystemTime>, now: std::time::SystemTime) -> Check {
    let Some(server) = server else {
        return Check::warn(
            "clock",
            "the cloud's answer had no Date header to compare with",
            "check this machine's clock against an NTP server",
        );
    };
    let (skew, ahead) = match now.duration_since(server) {
        Ok(d) => (d, true),
        Err(e) => (e.duration(), false),
    };
    let secs = skew.as_secs();
    let detail = format!(
        "{secs} s {} the cloud's",
        if ahead { "ahead of" } else { "behind" }
    );
    let next = "set the clock right (enable NTP: `timedatectl set-ntp true`): commands' and envelopes' expiry times are read on both sides";
    if skew > SKEW_FAIL {
        Check::fail("clock", detail, next)
    } else if skew > SKEW_WARN {
        Check::warn("clock", detail, next)
    } else {
        Check::ok(
            "clock",
            format!("within {} s of the cloud's", SKEW_WARN.as_secs()),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::doctor::Status;

    #[test]
    fn a_skewed_clock_warns_then_fails() {
        let now = SystemTime::now();
        assert_eq!(
            clock(Some(now - Duration::from_secs(5)), now).status,
            Status::Ok
        );
        let warn = clock(Some(now + Duration::from_secs(90)), now);
        assert_eq!(warn.status, Status::Warn);
        assert!(warn.detail.contains("behind"), "{warn:?}");
        let fail = clock(Some(now - Duration::from_secs(3600)), now);
        assert_eq!(fail.status, Status::Fail);
        assert!(fail.detail.starts_with("3600 s ahead"), "{fail:?}");
        assert_eq!(clock(None, now).status, Status::Warn);
    }
}
