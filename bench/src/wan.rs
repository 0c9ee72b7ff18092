//! The mesh across a WAN built by `helix-netlab`: the hub in site a, the spoke in site b, no
//! NAT (a direct link through the WAN's delay line, as issue 19 measured), and a relay on
//! the WAN (TLS from a CA made here, QUIC address discovery on). The hub runs in this process
//! on a runtime in site a's host, with [`WanProvider`]; `helix` runs as a process started in
//! site b's host, paired with the hub as a user pairs it.
//!
//! What is timed here: a warm in-process client's `Execute` calls ([`warm_first_outputs`]),
//! and `helix` processes from their start to their first and last stdout byte ([`timed`]).

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use helix_hub::{Hub, config::IrohConfig, devices::Devices, provider::ProviderExec};
use helix_mesh::{
    hub_channel::HubChannel,
    iroh_grpc::IrohConnector,
    pb::remote_execution_client::RemoteExecutionClient,
    transport::{EndpointOptions, RelayChoice, Route, bind_endpoint, current_route},
};
use helix_netlab::{Lab, Nat, Netns, NsRuntime, SiteSpec, TwoSites};
use iroh::{EndpointAddr, SecretKey};
use tempfile::TempDir;
use tokio::process::Command;

use crate::{
    hub_bench::{first_output, hub_with, loopback_config},
    hub_processes::bin,
    stats::Samples,
};

use helix_testkit::relay::TlsRelay;
pub use helix_testkit::timed::TimedRun;

/// Each way across the WAN: a 40 ms round trip between the sites, and through the relay.
pub const ONE_WAY_DELAY: Duration = Duration::from_millis(20);

/// The relay's HTTPS port, as a relay on the internet has it.
const RELAY_HTTPS_PORT: u16 = 443;

/// The port iroh asks every relay in its map for QUIC address discovery.
const QAD_PORT: u16 = 7842;

/// The name the spoke knows the hub by.
const HUB_NAME: &str = "desk";

/// How long one `helix` process may take before the run counts as failed (not hung).
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the hub may take to reach its home relay, and a warm client to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a warm client keeps calling until its connection is on the route it wants (a
/// direct path is selected once iroh has probed it, a moment after the connection is up).
const SETTLE_LIMIT: Duration = Duration::from_secs(5);

/// When set, the `HELIX_LOG` filter of every `helix` the bench starts, and their stderr is
/// passed on (for profiling a run, e.g. `debug,iroh=debug`).
pub const LOG_ENV: &str = "HELIX_BENCH_WAN_LOG";

/// The hub's provider: `paced COUNT MS` streams `COUNT` words `w0 w1 …`, `MS` apart (from
/// its first); anything else is one short chunk at once (a provider that answers instantly).
#[derive(Debug)]
pub struct WanProvider;

impl WanProvider {
    /// The prompt that streams `count` words `pause` apart, and what it streams.
    pub fn paced(count: usize, pause: Duration) -> (String, String) {
        let prompt = format!("paced {count} {}", pause.as_millis());
        let words: String = (0..count).map(|i| format!("w{i} ")).collect();
        (prompt, words)
    }
}

impl ProviderExec for WanProvider {
    fn execute(
        &self,
        request: helix_hub::provider::ProviderRequest,
    ) -> helix_hub::provider::OutputStream {
        let mut parts = request.content.split_whitespace();
        let paced = match (parts.next(), parts.next(), parts.next()) {
            (Some("paced"), Some(count), Some(ms)) => {
                count.parse::<usize>().ok().zip(ms.parse::<u64>().ok())
            }
            _ => None,
        };
        let Some((count, ms)) = paced else {
            return Box::pin(futures::stream::iter([Ok("ok".to_owned())]));
        };
        let pause = Duration::from_millis(ms);
        Box::pin(async_stream::stream! {
            for i in 0..count {
                if i > 0 {
                    tokio::time::sleep(pause).await;
                }
                yield Ok(format!("w{i} "));
            }
        })
    }
}

/// The lab, its relay, the hub in site a and a `helix` config dir in site b paired with it.
pub struct WanMesh {
    /// Stopped in its namespace by [`WanMesh::shutdown`].
    hub: Option<Hub>,
    relay: Option<TlsRelay>,
    /// The relay's URL and CA, as the spoke is given them.
    pub relay_url: String,
    pub relay_ca: PathBuf,
    hub_dir: TempDir,
    /// The paired spoke's config dir.
    pub spoke_dir: TempDir,
    hub_side: NsRuntime,
    relay_side: NsRuntime,
    /// Dropped last: deletes the namespaces.
    pub lab: Lab,
}

impl WanMesh {
    /// Builds the lab (needs root; the error says why not), starts the relay and the hub
    /// (which accepts `devices` as paired: the in-process clients' keys), and pairs a `helix`
    /// config dir in site b with the hub.
    pub async fn start(devices: &[(&SecretKey, &str)]) -> anyhow::Result<WanMesh> {
        let lab = Lab::two_sites(TwoSites {
            a: SiteSpec::nat(Nat::None),
            b: SiteSpec::nat(Nat::None),
            one_way_delay: Some(ONE_WAY_DELAY),
        })?;
        let relay_side = lab.relay.runtime(1)?;
        let relay_ip = IpAddr::V4(lab.relay_addr);
        let relay = relay_side
            .run(TlsRelay::start_on(
                relay_ip,
                RELAY_HTTPS_PORT,
                Some(QAD_PORT),
            ))
            .await?;
        let (relay_url, relay_ca) = (relay.url.clone(), relay.ca_pem.clone());

        let hub_dir = tempfile::tempdir()?;
        let devices_file = Devices::load(hub_dir.path())?;
        for (key, name) in devices {
            devices_file.add(key.public(), name)?;
        }
        let mut config = loopback_config()?;
        config.iroh = IrohConfig {
            udp_addr: None,
            relay_ca: Some(relay_ca.clone()),
            ..IrohConfig::loopback(&relay_url)
        };
        let hub_side = lab.a.host.runtime(2)?;
        let dir = hub_dir.path().to_owned();
        let hub = hub_side
            .run(async move { hub_with(&dir, config, Arc::new(WanProvider)).await })
            .await??;
        let mesh = WanMesh {
            hub: Some(hub),
            relay: Some(relay),
            relay_url,
            relay_ca,
            hub_dir,
            spoke_dir: tempfile::tempdir()?,
            hub_side,
            relay_side,
            lab,
        };
        mesh.pair().await?;
        Ok(mesh)
    }

    fn hub(&self) -> anyhow::Result<&Hub> {
        self.hub.as_ref().context("the hub has stopped")
    }

    /// `helix-hub pair` on the hub's host, then `helix pair` in site b.
    async fn pair(&self) -> anyhow::Result<()> {
        let mut cmd = Command::new(bin("helix-hub")?);
        cmd.arg("--data-dir")
            .arg(self.hub_dir.path())
            .args(["pair", "--ttl", "10m"]);
        self.lab.a.host.enter_command(&mut cmd);
        let out = checked_output(cmd, "helix-hub pair").await?;
        let ticket = out.lines().last().unwrap_or_default().to_owned();
        let mut cmd = self.helix(self.spoke_dir.path(), &[])?;
        cmd.args(["pair", &ticket, "--name", HUB_NAME]);
        checked_output(cmd, "helix pair").await?;
        Ok(())
    }

    /// `helix --config-dir DIR` in site b, given the lab's relay (and its CA) with no n0
    /// services or mDNS, as a user of a self-hosted relay sets it up; then `extra`.
    pub fn helix(&self, config_dir: &Path, extra: &[&str]) -> anyhow::Result<Command> {
        let mut cmd = helix_command()?;
        cmd.arg("--config-dir")
            .arg(config_dir)
            .args(["--relay-url", &self.relay_url, "--relay-ca"])
            .arg(&self.relay_ca)
            .args(["--no-n0-discovery", "--no-mdns"])
            .args(extra);
        self.lab.b.host.enter_command(&mut cmd);
        Ok(cmd)
    }

    /// `helix run --hub desk PROMPT` in site b (see [`WanMesh::helix`]).
    pub fn helix_run(
        &self,
        config_dir: &Path,
        extra: &[&str],
        prompt: &str,
    ) -> anyhow::Result<Command> {
        let mut cmd = self.helix(config_dir, extra)?;
        cmd.args(["run", "--hub", HUB_NAME, prompt]);
        Ok(cmd)
    }

    /// `helix --hub-dir HUB run PROMPT` on the hub's own host, through its loopback API.
    pub fn helix_on_hub(&self, prompt: &str) -> anyhow::Result<Command> {
        let mut cmd = helix_command()?;
        cmd.arg("--hub-dir")
            .arg(self.hub_dir.path())
            .args(["run", prompt]);
        self.lab.a.host.enter_command(&mut cmd);
        Ok(cmd)
    }

    /// The hub's address once it has its home relay (so a relay-only client can reach it).
    pub async fn hub_addr(&self) -> anyhow::Result<EndpointAddr> {
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        loop {
            let addr = self
                .hub()?
                .endpoint_addr()
                .context("the hub's iroh is off")?;
            if addr.relay_urls().next().is_some() {
                return Ok(addr);
            }
            if Instant::now() > deadline {
                bail!("the hub did not reach the lab's relay in {CONNECT_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The endpoint settings `helix` builds from [`WanMesh::helix`]'s flags (plus
    /// `--relay-only` when `relay_only`).
    pub fn spoke_options(&self, relay_only: bool) -> anyhow::Result<EndpointOptions> {
        Ok(EndpointOptions {
            relay: RelayChoice::Custom(vec![self.relay_url.parse()?]),
            n0_discovery: false,
            mdns: false,
            udp_addr: None,
            ip_transports: !relay_only,
            portmapper: false,
            relay_ca: Some(self.relay_ca.clone()),
        })
    }

    /// Stops the hub and the relay in their namespaces; the lab goes on drop.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(hub) = self.hub.take() {
            self.hub_side.run(hub.shutdown()).await?;
        }
        if let Some(relay) = self.relay.take() {
            self.relay_side.run(relay.shutdown()).await?;
        }
        Ok(())
    }
}

/// `helix` from this build, with none of the caller's environment that would change which
/// hub or cloud it reaches.
fn helix_command() -> anyhow::Result<Command> {
    let mut cmd = Command::new(bin("helix")?);
    for var in [
        "HELIX_HUB_DIR",
        "HELIX_CONFIG_DIR",
        "HELIX_SUPABASE_URL",
        "HELIX_SUPABASE_ANON_KEY",
        "HELIX_SUPABASE_REST_URL",
    ] {
        cmd.env_remove(var);
    }
    cmd.env(
        "HELIX_LOG",
        std::env::var(LOG_ENV).unwrap_or_else(|_| "warn".into()),
    )
    .stdin(Stdio::null())
    .kill_on_drop(true);
    Ok(cmd)
}

/// Runs `cmd` to its end; its stdout, or an error with its stderr.
async fn checked_output(mut cmd: Command, what: &str) -> anyhow::Result<String> {
    let out = tokio::time::timeout(RUN_TIMEOUT, cmd.output())
        .await
        .with_context(|| format!("`{what}` did not finish in {RUN_TIMEOUT:?}"))??;
    if !out.status.success() {
        bail!(
            "`{what}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd`: when its first stdout byte came and when its stdout ended, from its start. An
/// error unless it exits successfully within [`RUN_TIMEOUT`].
pub async fn timed(cmd: Command) -> anyhow::Result<TimedRun> {
    let run = helix_testkit::timed::timed(cmd, RUN_TIMEOUT)
        .await
        .context("timing helix")?;
    if std::env::var_os(LOG_ENV).is_some() {
        crate::report::progress(&format!("helix stderr:\n{}", run.stderr));
    }
    if run.code != Some(0) {
        bail!("helix failed ({:?}): {}", run.code, run.stderr.trim());
    }
    if run.stdout.is_empty() {
        bail!("helix printed nothing: {}", run.stderr.trim());
    }
    Ok(run)
}

/// What a warm client measured.
#[derive(Debug)]
pub struct Warm {
    pub first_output: Samples,
    /// The route its connection was on after the last call.
    pub route: &'static str,
}

/// An in-process client standing for the spoke in `ns`: on a thread there, the runtime the
/// CLI builds (current-thread), an endpoint with `options`, one connection to `hub`, and
/// `calls` `Execute` → first output, back to back, once the connection is on `want`.
pub fn warm_first_outputs(
    ns: &Netns,
    options: EndpointOptions,
    key: SecretKey,
    hub: EndpointAddr,
    calls: usize,
    want: Route,
) -> anyhow::Result<Warm> {
    let work = move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(runtime.block_on(async move {
            let endpoint = bind_endpoint(&options, key, Vec::new(), None).await?;
            let connector = IrohConnector::new(endpoint.clone(), hub, CONNECT_TIMEOUT);
            let channel = connector.channel().await?;
            let conn = connector.connection().await?;
            let mut client = RemoteExecutionClient::new(HubChannel::from(channel))
                .max_decoding_message_size(helix_mesh::MAX_MESSAGE_BYTES);
            let settle_until = Instant::now() + SETTLE_LIMIT;
            while current_route(&conn) != Some(want) && Instant::now() < settle_until {
                first_output(&mut client, 0, Duration::ZERO).await?;
            }
            let first_output = first_output(&mut client, calls, Duration::ZERO).await?;
            let route = current_route(&conn).map_or("none", Route::name);
            endpoint.close().await;
            anyhow::Ok(Warm {
                first_output,
                route,
            })
        }))
    };
    tokio::task::block_in_place(|| ns.on_thread(work)).context("the warm client's thread")?
}

/// Copies the files of `from` (a `helix` config dir) into `to`.
pub fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            std::fs::create_dir_all(&target)?;
            copy_dir(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The address of `hub` without its relay: what a client on the hub's own host dials.
pub fn direct_only(hub: &EndpointAddr) -> EndpointAddr {
    hub.ip_addrs()
        .fold(EndpointAddr::new(hub.id), |addr, ip: &SocketAddr| {
            addr.with_ip_addr(*ip)
        })
}
