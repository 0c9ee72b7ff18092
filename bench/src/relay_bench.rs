//! The table relay, measured when PostgreSQL (`DATABASE_URL`, default the local server) and
//! `postrust` (a PostgREST-compatible server) are available: a throwaway database with the
//! project's migrations, a user session from a JWT signed with a bench secret, a hub with the
//! instant provider and no iroh, and a real `helix` process that has to fall back from iroh
//! to the table. Measures when the fallback happens and when the first output arrives.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use helix_discovery::auth::{SessionStore, session_from_access_token};
use helix_hub::{
    Hub, HubConfig,
    config::IrohConfig,
    credentials::{CredentialStore, Secret},
    devices::Devices,
    provider::Providers,
};
use helix_mesh::{pb::Provider, ticket::Ticket};
use iroh::{EndpointAddr, SecretKey};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, BufReader},
    process::{Child, Command},
};

use crate::{
    counting_proxy::CountingProxy,
    hub_bench::{InstantProvider, bin},
};

const JWT_SECRET: &str = "helix-bench-jwt-secret-0123456789abcdef";
const USER: &str = "33333333-3333-3333-3333-333333333333";
/// A Supabase URL where nothing listens: no Realtime, the safety poll carries the relay.
const NO_REALTIME: &str = "http://127.0.0.1:9";

/// What the relay run measured.
#[derive(Debug)]
pub struct RelayResult {
    pub fallback: Duration,
    pub first_output: Duration,
    pub total: Duration,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

async fn psql(url: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url])
        .args(args)
        .output()
        .await?;
    if !out.status.success() {
        bail!("psql {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn postrust_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("HELIX_TEST_POSTRUST") {
        return Some(p.into());
    }
    let home = std::env::var_os("HOME").map(PathBuf::from)?;
    let p = home.join(".cargo/bin/postrust");
    p.exists().then_some(p)
}

/// Whether the prerequisites are here; the reason when not.
pub async fn available() -> Result<(), String> {
    if postrust_binary().is_none() {
        return Err("postrust is not installed (scripts/test installs it)".into());
    }
    match Command::new("psql")
        .args(["-X", "-q", "-d", &admin_url(), "-c", "select 1"])
        .output()
        .await
    {
        Ok(out) if out.status.success() => Ok(()),
        _ => Err("PostgreSQL is not reachable (DATABASE_URL or 127.0.0.1:5432)".into()),
    }
}

fn jwt() -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let b64 = |b: &[u8]| data_encoding::BASE64URL_NOPAD.encode(b);
    let exp = helix_mesh::proto_ext::now_ms() / 1000 + 3600;
    let head = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = b64(format!(
        r#"{{"sub":"{USER}","role":"authenticated","aud":"authenticated","exp":{exp}}}"#
    )
    .as_bytes());
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(JWT_SECRET.as_bytes())
        .unwrap_or_else(|_| unreachable!());
    mac.update(format!("{head}.{body}").as_bytes());
    format!("{head}.{body}.{}", b64(&mac.finalize().into_bytes()))
}

/// A throwaway database (dropped when this is dropped) and postrust in front of it.
struct CloudBench {
    db: String,
    rest_url: String,
    _postrust: Child,
}

impl Drop for CloudBench {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args(["-X", "-q", "-d", &admin_url(), "-c"])
            .arg(format!("drop database if exists {} with (force)", self.db))
            .output();
    }
}

fn url_for(db: &str) -> String {
    let admin = admin_url();
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(b, _)| b)
        .to_owned();
    format!("{base}/{db}")
}

async fn cloud() -> anyhow::Result<CloudBench> {
    let db = format!("helix_bench_{}", std::process::id());
    psql(
        &admin_url(),
        &[
            "-f",
            &repo()
                .join("tests/sql/supabase_roles.sql")
                .display()
                .to_string(),
        ],
    )
    .await?;
    psql(&admin_url(), &["-c", &format!("create database {db}")]).await?;
    let url = url_for(&db);
    psql(
        &url,
        &[
            "-f",
            &repo()
                .join("tests/sql/supabase_bootstrap.sql")
                .display()
                .to_string(),
        ],
    )
    .await?;
    let mut migrations: Vec<PathBuf> = std::fs::read_dir(repo().join("migrations"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    migrations.sort();
    for m in migrations {
        psql(&url, &["-f", &m.display().to_string()]).await?;
    }
    psql(
        &url,
        &[
            "-c",
            &format!("insert into auth.users (id, email) values ('{USER}', 'bench@example.com')"),
        ],
    )
    .await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let postrust = Command::new(postrust_binary().context("postrust")?)
        .env(
            "DATABASE_URL",
            url.replacen("postgres@", "authenticator@", 1),
        )
        .env("PGRST_DB_ANON_ROLE", "anon")
        .env("PGRST_DB_SCHEMAS", "public")
        .env("PGRST_JWT_SECRET", JWT_SECRET)
        .env("PGRST_SERVER_HOST", "127.0.0.1")
        .env("PGRST_SERVER_PORT", port.to_string())
        .env("PGRST_COMPAT_MODE", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let rest_url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("postrust did not start");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(CloudBench {
        db,
        rest_url,
        _postrust: postrust,
    })
}

/// Cloud settings and a session in `dir`: Supabase at `url` (Realtime is derived from it),
/// PostgREST at `rest_url`.
fn sign_in(dir: &Path, url: &str, rest_url: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("cloud.json"),
        serde_json::json!({"url": url, "anon_key": "bench", "rest_url": rest_url}).to_string(),
    )?;
    SessionStore::new(dir.join("cloud-session.json")).save(&session_from_access_token(&jwt())?)?;
    Ok(())
}

/// Runs the relay scenario with the hub's safety poll at `poll`.
pub async fn run(poll: Duration) -> anyhow::Result<RelayResult> {
    let cloud = cloud().await?;
    let hub_dir = tempfile::tempdir()?;
    let spoke_dir = tempfile::tempdir()?;
    sign_in(hub_dir.path(), NO_REALTIME, &cloud.rest_url)?;
    sign_in(spoke_dir.path(), NO_REALTIME, &cloud.rest_url)?;
    CredentialStore::in_dir(hub_dir.path())
        .set_api_key(Provider::Anthropic, Secret::new("sk-bench"))?;
    // The spoke is paired, and remembers an address where nothing answers.
    let spoke_key =
        helix_mesh::transport::load_or_create_secret_key(&spoke_dir.path().join("secret.key"))?;
    Devices::load(hub_dir.path())?.add(spoke_key.public(), "bench")?;
    let hub_key =
        helix_mesh::transport::load_or_create_secret_key(&hub_dir.path().join("secret.key"))?;
    let dead = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
    let ticket = Ticket::Hub(EndpointAddr::new(hub_key.public()).with_ip_addr(dead)).encode();
    let _ = SecretKey::generate();

    let mut config = HubConfig {
        grpc_addr: "127.0.0.1:0".parse()?,
        iroh: IrohConfig {
            enabled: false,
            ..IrohConfig::loopback("none")
        },
        ..HubConfig::default()
    };
    config.cloud.poll_interval = poll;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let providers = Providers::default().with(Provider::Anthropic, Arc::new(InstantProvider));
    let hub = Hub::bind_with_providers(hub_dir.path(), config, listener, providers).await?;

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
        if line.contains("using the table relay") {
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

/// What an idle hub with cloud settings sent to Supabase.
#[derive(Debug)]
pub struct IdleCloud {
    pub window: Duration,
    /// Requests in the window, by `METHOD /path`.
    pub requests: BTreeMap<String, u64>,
}

impl IdleCloud {
    pub fn per_hour(&self) -> f64 {
        let total: u64 = self.requests.values().sum();
        total as f64 * 3600.0 / self.window.as_secs_f64()
    }
}

/// An idle hub with cloud settings, the default safety poll and iroh on (so it announces
/// presence): every request it makes to the cloud goes through counting proxies. With
/// `realtime`, a local Realtime server takes its websocket (as Supabase would); without, the
/// project URL leads to postrust, which has no Realtime, so the reconnect backoff is counted
/// too. The first `warmup` (start-up: the first announce and claim) is not counted.
pub async fn idle(warmup: Duration, window: Duration, realtime: bool) -> anyhow::Result<IdleCloud> {
    let cloud = cloud().await?;
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
    CredentialStore::in_dir(hub_dir.path())
        .set_api_key(Provider::Anthropic, Secret::new("sk-bench"))?;
    let config = HubConfig {
        grpc_addr: "127.0.0.1:0".parse()?,
        iroh: IrohConfig::loopback("none"),
        ..HubConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let providers = Providers::default().with(Provider::Anthropic, Arc::new(InstantProvider));
    let hub = Hub::bind_with_providers(hub_dir.path(), config, listener, providers).await?;
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
    Ok(IdleCloud { window, requests })
}
