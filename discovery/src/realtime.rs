//! A Supabase Realtime client used only as a wake-up signal: for a hub, "a row was inserted into
//! `public.cloud_commands` (or `cloud_pairings`) for me"; for a device, "the row of the command
//! I follow changed" (`postgres_changes` subscriptions, [`Watch`]).
//!
//! Correctness never depends on it (every side also polls slowly), so it is quiet and keeps
//! trying: one task holds one websocket, joins one channel with its `postgres_changes`
//! subscriptions, answers nothing but heartbeats, and on any failure (a dropped socket, a
//! refused join, a `phx_error`/`phx_close`, an unanswered heartbeat) reconnects after an
//! exponential backoff with jitter. Wake-ups go into bounded channels with `try_send`: a
//! pending wake-up already covers later changes. [`spawn_with_health`] also says whether the
//! channel is joined right now, so the owner can poll slowly while wake-ups arrive and quickly
//! while they cannot.
//!
//! Wire: Phoenix protocol v1 JSON frames `{"topic", "event", "payload", "ref"}` on
//! `{url}/realtime/v1/websocket?apikey=<anon key>&vsn=1.0.0`. The URL carries the anon key,
//! so it is never logged; neither is the access token.

use std::{fmt, sync::Arc, time::Duration};

use serde_json::{Value, json};
use tokio::{sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, warn};

use crate::rest::SupabaseConfig;

mod frame;
mod session;
mod watches;

pub use watches::{Change, Watch};

use session::{session, tls_connector};

/// How often a heartbeat goes out: Supabase closes a socket silent for about 60 s, and its own
/// clients beat every 25 s.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(25);
/// How long a heartbeat or a join may wait for its `phx_reply` before the socket counts as dead.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// First delay before reconnecting after a failure; it doubles per consecutive failure.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest delay between reconnects: the safety poll covers the gap, and a minute keeps an
/// outage from turning into a reconnect storm.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How long the TCP + TLS + websocket handshake may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a cancelled client waits for its close frame to go out.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// How many characters of the hub (or command) id name the channel
/// (`realtime:helix-hub-<prefix>`); the filters carry the full id, the topic only needs to be
/// readable in Supabase's dashboard.
pub const TOPIC_HUB_PREFIX_LEN: usize = 16;

/// The timing of one client; [`Timing::default`] is production, [`Timing::fast`] for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub heartbeat_interval: Duration,
    pub reply_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub connect_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            heartbeat_interval: HEARTBEAT_INTERVAL,
            reply_timeout: REPLY_TIMEOUT,
            backoff_min: BACKOFF_MIN,
            backoff_max: BACKOFF_MAX,
            connect_timeout: CONNECT_TIMEOUT,
        }
    }
}

impl Timing {
    /// Short timings for tests against a local server (the reply timeout stays generous so a
    /// loaded test machine does not look like a dead socket).
    pub fn fast() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(50),
            reply_timeout: Duration::from_secs(2),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(100),
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// The delay before reconnect attempt `failures` (1-based): `backoff_min` doubling up to
    /// `backoff_max`, then scaled by a random factor in [0.5, 1] so many hubs do not reconnect
    /// in step.
    pub fn backoff(&self, failures: u32) -> Duration {
        let doubled = self
            .backoff_min
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16));
        let base = doubled.min(self.backoff_max);
        base.mul_f64(0.5 + rand::random::<f64>() / 2.0)
    }
}

/// Where to listen, on which channel, for what.
#[derive(Clone)]
pub struct RealtimeConfig {
    /// The websocket endpoint without a query, e.g. `wss://<ref>.supabase.co/realtime/v1/websocket`.
    pub ws_url: String,
    /// The project's anon (publishable) key; sent as the `apikey` query parameter.
    pub anon_key: String,
    /// The channel, `realtime:helix-hub-<id prefix>` or `realtime:helix-command-<id prefix>`.
    pub topic: String,
    /// The subscriptions and whom each wakes.
    pub watches: Vec<Watch>,
    pub timing: Timing,
    /// Connection failures are logged at debug only: for a device following one command, a
    /// missing Realtime costs only a faster poll, and its terminal is not the place to say so.
    /// A hub (`false`) warns once per streak of failures.
    pub quiet: bool,
}

impl fmt::Debug for RealtimeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RealtimeConfig")
            .field("ws_url", &self.ws_url)
            .field("anon_key", &"<redacted>")
            .field("topic", &self.topic)
            .field("watches", &self.watches)
            .field("timing", &self.timing)
            .field("quiet", &self.quiet)
            .finish()
    }
}

impl RealtimeConfig {
    /// A hub's channel (`realtime:helix-hub-<prefix>`) on the Realtime endpoint of a Supabase
    /// project (`https` → `wss`, `http` → `ws`).
    pub fn for_hub(
        config: &SupabaseConfig,
        hub_id: &str,
        watches: Vec<Watch>,
    ) -> Result<Self, RealtimeError> {
        Self::on_topic(config, format!("helix-hub-{}", prefix(hub_id)), watches)
    }

    /// A device's channel for the command it follows (`realtime:helix-command-<prefix>`),
    /// [`quiet`](Self::quiet).
    pub fn for_command(
        config: &SupabaseConfig,
        command_id: &str,
        watches: Vec<Watch>,
    ) -> Result<Self, RealtimeError> {
        let mut config = Self::on_topic(
            config,
            format!("helix-command-{}", prefix(command_id)),
            watches,
        )?;
        config.quiet = true;
        Ok(config)
    }

    fn on_topic(
        config: &SupabaseConfig,
        name: String,
        watches: Vec<Watch>,
    ) -> Result<Self, RealtimeError> {
        let url = config.url.trim_end_matches('/');
        let rest = if let Some(rest) = url.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = url.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            return Err(RealtimeError::BadUrl(url.to_owned()));
        };
        Ok(Self {
            ws_url: format!("{rest}/realtime/v1/websocket"),
            anon_key: config.anon_key.clone(),
            topic: format!("realtime:{name}"),
            watches,
            timing: Timing::default(),
            quiet: false,
        })
    }

    /// The channel topic.
    pub fn topic(&self) -> String {
        self.topic.clone()
    }

    fn connect_url(&self) -> String {
        format!(
            "{}?apikey={}&vsn=1.0.0",
            self.ws_url,
            helix_mesh::urlenc::percent_encode(&self.anon_key)
        )
    }

    fn join_payload(&self, access_token: &str) -> Value {
        json!({
            "config": {
                "broadcast": {"self": false},
                "presence": {"key": ""},
                "postgres_changes": self.watches.iter().map(Watch::subscription).collect::<Vec<_>>(),
            },
            "access_token": access_token,
        })
    }
}

/// Why a Realtime connection ended (each is followed by a reconnect) or could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RealtimeError {
    #[error("the Supabase URL must start with http:// or https://, not {0:?}")]
    BadUrl(String),
    #[error("connecting to Supabase Realtime: {0}")]
    Tls(#[source] rustls::Error),
    #[error("connecting to Supabase Realtime: the Realtime URL is not a valid URI")]
    BadUri,
    #[error("connecting to Supabase Realtime: {0}")]
    Connect(#[source] tokio_websockets::Error),
    #[error("connecting to Supabase Realtime timed out")]
    ConnectTimeout,
    #[error("the Realtime socket failed: {0}")]
    Socket(#[source] tokio_websockets::Error),
    #[error("the Realtime server closed the socket")]
    Closed,
    #[error("the Realtime server refused the join: {0}")]
    JoinRefused(String),
    #[error("the Realtime channel reported {0}")]
    Channel(String),
    #[error("no reply from Realtime within {0:?}")]
    ReplyTimeout(Duration),
}

/// Starts the client. It sends `()` on a watch's `wake` (with `try_send`; a full channel
/// already holds a wake-up) for every change that watch subscribes to, follows `token` for the
/// user's access token, and ends, closing its socket, when `cancel` fires or every watch's
/// receiver is dropped.
pub fn spawn(
    config: RealtimeConfig,
    token: watch::Receiver<String>,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    spawn_with_health(config, token, cancel).0
}

/// [`spawn`], and whether the channel is joined now: `true` from the join's `ok` until the
/// connection fails (then `false` until the next join).
pub fn spawn_with_health(
    config: RealtimeConfig,
    token: watch::Receiver<String>,
    cancel: CancellationToken,
) -> (JoinHandle<()>, watch::Receiver<bool>) {
    let (listening, health) = watch::channel(false);
    let span = tracing::info_span!("realtime", topic = %config.topic());
    let task = tokio::spawn(run(config, token, listening, cancel).instrument(span));
    (task, health)
}

/// How a session ended when it did not fail.
enum Stop {
    Cancelled,
    NobodyListens,
}

async fn run(
    config: RealtimeConfig,
    mut token: watch::Receiver<String>,
    listening: watch::Sender<bool>,
    cancel: CancellationToken,
) {
    let connector = match tls_connector() {
        Ok(c) => Arc::new(c),
        Err(e) => {
            match config.quiet {
                true => debug!(error = %e, "Supabase Realtime is off: cannot set up TLS"),
                false => warn!(error = %e, "Supabase Realtime is off: cannot set up TLS"),
            }
            return;
        }
    };
    let mut failures: u32 = 0;
    loop {
        let mut joined = false;
        let outcome = session(
            &config,
            &connector,
            &mut token,
            &listening,
            &cancel,
            &mut joined,
        )
        .await;
        listening.send_replace(false);
        match outcome {
            Ok(Stop::Cancelled) => {
                debug!("stopped");
                return;
            }
            Ok(Stop::NobodyListens) => {
                debug!("wake-up receiver dropped; stopping");
                return;
            }
            Err(e) => {
                if joined {
                    failures = 0;
                }
                failures = failures.saturating_add(1);
                let delay = config.timing.backoff(failures);
                // The first failure of a streak is worth a line; the rest are noise.
                if failures == 1 && !config.quiet {
                    warn!(error = %e, retry_in = ?delay, "Supabase Realtime connection lost; retrying (wake-ups fall back to polling)");
                } else {
                    debug!(error = %e, failures, retry_in = ?delay, "Supabase Realtime retry failed");
                }
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = watches::all_closed(&config.watches) => return,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// The first [`TOPIC_HUB_PREFIX_LEN`] characters of an id.
fn prefix(id: &str) -> String {
    id.chars().take(TOPIC_HUB_PREFIX_LEN).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supabase(url: &str) -> SupabaseConfig {
        SupabaseConfig {
            url: url.into(),
            anon_key: "anon+key/1=".into(),
            rest_url: None,
        }
    }

    #[test]
    fn urls_follow_the_project_scheme_and_hide_the_key() {
        let hub = "ab".repeat(32);
        let c = RealtimeConfig::for_hub(&supabase("https://x.supabase.co/"), &hub, vec![]).unwrap();
        assert_eq!(c.ws_url, "wss://x.supabase.co/realtime/v1/websocket");
        assert_eq!(
            c.connect_url(),
            "wss://x.supabase.co/realtime/v1/websocket?apikey=anon%2Bkey%2F1%3D&vsn=1.0.0"
        );
        assert_eq!(c.topic(), "realtime:helix-hub-abababababababab");
        assert!(!format!("{c:?}").contains("anon+key"));
        let local = RealtimeConfig::for_hub(&supabase("http://127.0.0.1:5"), &hub, vec![]).unwrap();
        assert_eq!(local.ws_url, "ws://127.0.0.1:5/realtime/v1/websocket");
        let command =
            RealtimeConfig::for_command(&supabase("http://x"), "0123456789abcdef-x", vec![]);
        assert_eq!(
            command.unwrap().topic(),
            "realtime:helix-command-0123456789abcdef"
        );
        let err = RealtimeConfig::for_hub(&supabase("ftp://x"), &hub, vec![]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the Supabase URL must start with http:// or https://, not \"ftp://x\""
        );
    }

    #[test]
    fn backoff_doubles_within_bounds_with_jitter() {
        let t = Timing::default();
        for (failures, full) in [(1, 1), (2, 2), (3, 4), (6, 32), (7, 60), (40, 60)] {
            let d = t.backoff(failures);
            let full = Duration::from_secs(full);
            assert!(d >= full / 2 && d <= full, "{failures}: {d:?}");
        }
    }
}
