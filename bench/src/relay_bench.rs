//! The cloud route, measured when PostgreSQL (`DATABASE_URL`, default the local server) and
//! `postrust` (a PostgREST-compatible server) are available: a throwaway database with the
//! project's migrations, a user session from a JWT signed with a bench secret, a hub with the
//! instant provider and no iroh, and a real `helix` process that has to fall back from iroh
//! to the table. Measures when the fallback happens and when the first output arrives.

use std::{
    collections::BTreeMap,
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use helix_discovery::auth::{Session, SessionStore, session_from_access_token};
use helix_hub::devices::Devices;
use helix_mesh::ticket::Ticket;
use iroh::EndpointAddr;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, BufReader},
    process::Command,
};

use helix_testkit::{
    pg::{self, ALICE as USER, TestDb},
    postrust::{self, PostRust, jwt_for},
};

use crate::{
    counting_proxy::CountingProxy,
    hub_bench::{instant_hub, loopback_config},
    hub_processes::bin,
    slow_auth,
};

/// A Supabase URL where nothing listens: no Realtime, the safety poll carries the relay.
const NO_REALTIME: &str = "http://127.0.0.1:9";

/// What the relay run measured.
#[derive(Debug)]
pub struct RelayResult {
    pub fallback: Duration,
    pub first_output: Duration,
    pub total: Duration,
}

/// Whether the prerequisites are here; the reason when not.
pub async fn available() -> Result<(), String> {
    if !postrust::installed() {
        return Err("postrust is not installed (scripts/test installs it)".into());
    }
    if !pg::server_reachable().await {
        return Err("PostgreSQL is not reachable (DATABASE_URL or 127.0.0.1:5432)".into());
    }
    Ok(())
}

/// A throwaway database with the migrations (dropped with this) and postrust in front of it.
struct CloudBench {
    rest_url: String,
    _postrust: PostRust,
    _db: TestDb,
}

async fn cloud() -> CloudBench {
    let db = TestDb::create().await;
    let postrust = PostRust::start(&db).await;
    CloudBench {
        rest_url: postrust.url.clone(),
        _postrust: postrust,
        _db: db,
    }
}

/// Cloud settings and a session in `dir`: Supabase at `url` (Realtime is derived from it),
/// PostgREST at `rest_url`.
fn sign_in(dir: &Path, url: &str, rest_url: &str) -> anyhow::Result<()> {
    sign_in_with(
        dir,
        url,
        rest_url,
        &session_from_access_token(&jwt_for(USER))?,
    )
}

/// [`sign_in`] with an expired session that has a refresh token, and Supabase (Auth, and
/// Realtime, which the spoke does not use) at `url`: the spoke must refresh the session before
/// it may use the table.
fn sign_in_expired(dir: &Path, url: &str, rest_url: &str) -> anyhow::Result<()> {
    let mut session = session_from_access_token(&jwt_for(USER))?;
    session.refresh_token = "bench-expired".into();
    session.expires_at = helix_mesh::proto_ext::now_ms() / 1000 - 1;
    sign_in_with(dir, url, rest_url, &session)
}

fn sign_in_with(dir: &Path, url: &str, rest_url: &str, session: &Session) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("cloud.json"),
        serde_json::json!({"url": url, "anon_key": "bench", "rest_url": rest_url}).to_string(),
    )?;
    SessionStore::new(dir.join("cloud-session.json")).save(session)?;
    Ok(())
}

/// Runs the relay scenario with the hub's safety poll at `poll`. With `refresh`, the spoke's
/// session has expired and Supabase Auth takes that long to refresh it.
pub async fn run(poll: Duration, refresh: Option<Duration>) -> anyhow::Result<RelayResult> {
    let cloud = cloud().await;
    let hub_dir = tempfile::tempdir()?;
    let spoke_dir = tempfile::tempdir()?;
    sign_in(hub_dir.path(), NO_REALTIME, &cloud.rest_url)?;
    let _auth = match refresh {
        Some(delay) => {
            let auth = slow_auth::start(delay).await?;
            sign_in_expired(spoke_dir.path(), &auth.url(), &cloud.rest_url)?;
            Some(auth)
        }
        None => {
            sign_in(spoke_dir.path(), NO_REALTIME, &cloud.rest_url)?;
            None
        }
    };
    // The spoke is paired, and remembers an address where nothing answers.
    let spoke_key =
        helix_mesh::transport::load_or_create_secret_key(&spoke_dir.path().join("secret.key"))?;
    Devices::load(hub_dir.path())?.add(spoke_key.public(), "bench")?;
    let hub_key =
        helix_mesh::transport::load_or_create_secret_key(&hub_dir.path().join("secret.key"))?;
    let dead = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
    let ticket = Ticket::Hub(EndpointAddr::new(hub_key.public()).with_ip_addr(dead)).encode();

    let mut config = loopback_config()?;
    config.iroh.enabled = false;
    config.cloud.poll_interval = poll;
    let hub = instant_hub(hub_dir.path(), config).await?;

    let started = Instant::now();
    let mut child = Command::new(bin("helix")?)
        .args([
            "--config-dir",
            &spoke_dir.path().display().to_string(),
            "--local-only",
            "run",
            "--hub",
            &ticket,
            "relayed",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stderr = BufReader::new(child.stderr.take().context("stderr")?).lines();
    let fallback = loop {
        let line = stderr
            .next_line()
            .await?
            .context("helix ended before falling back")?;
        if line.contains("using the cloud route") {
            break started.elapsed();
        }
    };
    let mut byte = [0u8; 1];
    child
        .stdout
        .as_mut()
        .context("stdout")?
        .read_exact(&mut byte)
        .await?;
    let first_output = started.elapsed();
    let status = child.wait().await?;
    let total = started.elapsed();
    hub.shutdown().await;
    if !status.success() {
        bail!("helix run through the table failed ({status})");
    }
    Ok(RelayResult {
        fallback,
        first_output,
        total,
    })
}

/// With Realtime up, the idle hub's schedule (safety poll 5 min, presence 2 min, orphan scan
/// 15 min) runs this many times faster, so a window of a minute or two sees every kind of
/// request several times; the count is scaled back to the default schedule.
pub const IDLE_TIME_SCALE: u32 = 20;

/// What an idle hub with cloud settings sent to Supabase.
#[derive(Debug)]
pub struct IdleCloud {
    pub window: Duration,
    /// Every interval of the hub's cloud schedule was divided by this.
    pub time_scale: u32,
    /// Requests in the window, by `METHOD /path`.
    pub requests: BTreeMap<String, u64>,
}

impl IdleCloud {
    /// Requests an hour at the default schedule.
    pub fn per_hour(&self) -> f64 {
        let total: u64 = self.requests.values().sum();
        total as f64 * 3600.0 / self.window.as_secs_f64() / f64::from(self.time_scale)
    }
}

/// An idle hub with cloud settings and iroh on (so it announces presence): every request it
/// makes to the cloud goes through counting proxies. With `realtime`, a local Realtime server
/// takes its websocket (as Supabase would) and the hub's schedule runs [`IDLE_TIME_SCALE`]
/// times faster; without, the project URL leads to postrust, which has no Realtime, so the
/// reconnect backoff (not scaled: it is the Realtime client's) is counted too, at the default
/// schedule. The first `warmup` (start-up: registration, the first announce, claim and orphan
/// scan) is not counted.
pub async fn idle(warmup: Duration, window: Duration, realtime: bool) -> anyhow::Result<IdleCloud> {
    let cloud = cloud().await;
    let upstream: std::net::SocketAddr = cloud
        .rest_url
        .trim_start_matches("http://")
        .parse()
        .context("postrust address")?;
    let proxy = CountingProxy::start(upstream).await?;
    let mut realtime = match realtime {
        true => {
            let server = helix_testkit::realtime::MockRealtime::start().await;
            let proxy = CountingProxy::start(server.addr).await?;
            Some((server, proxy))
        }
        false => None,
    };
    let project_url = realtime
        .as_ref()
        .map_or(proxy.url.clone(), |(_, p)| p.url.clone());
    let hub_dir = tempfile::tempdir()?;
    sign_in(hub_dir.path(), &project_url, &proxy.url)?;
    let time_scale = if realtime.is_some() {
        IDLE_TIME_SCALE
    } else {
        1
    };
    let mut config = loopback_config()?;
    let cloud_schedule = &mut config.cloud;
    cloud_schedule.poll_interval /= time_scale;
    cloud_schedule.safety_poll /= time_scale;
    cloud_schedule.presence_interval /= time_scale;
    let hub = instant_hub(hub_dir.path(), config).await?;
    tokio::time::sleep(warmup).await;
    proxy.take();
    if let Some((_, p)) = &realtime {
        p.take();
    }
    tokio::time::sleep(window).await;
    let mut requests = proxy.take();
    if let Some((server, p)) = &mut realtime {
        for (what, n) in p.take() {
            *requests.entry(what).or_default() += n;
        }
        // The hub really was on Realtime: it joined its channel (this waits at most 30 s).
        server.frame("phx_join").await;
    }
    hub.shutdown().await;
    Ok(IdleCloud {
        window,
        time_scale,
        requests,
    })
}
