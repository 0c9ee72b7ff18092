//! Scenarios through a real hub as processes (`helix-hub` + `helix-dev-provider`, from the same
//! build): 1,000 concurrent streaming commands (nothing lost, the hub's peak RSS, first-output
//! latency), a cold `helix run`, and the idle hub's CPU.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use helix_discovery::local::LocalHub;
use helix_hub::credentials::{CredentialStore, Secret};
use helix_mesh::pb::{
    self, Provider, command_event::Kind, remote_execution_client::RemoteExecutionClient,
};
use tokio::{io::AsyncReadExt, process::Command};
use tonic::transport::Channel;

use crate::{hub_bench::request, procs, stats::Samples};

/// The built binaries next to this one (`cargo build --release --workspace --bins`).
pub fn bin(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.parent().context("no exe dir")?.join(name);
    if !path.exists() {
        bail!(
            "{} is missing: build with `cargo build --release --workspace --bins` (scripts/bench does)",
            path.display()
        );
    }
    Ok(path)
}

/// A `helix-hub` process and its `helix-dev-provider` (both killed when this is dropped).
pub struct HubProcess {
    _hub: tokio::process::Child,
    _provider: tokio::process::Child,
    pub dir: tempfile::TempDir,
    pub pid: u32,
}

impl HubProcess {
    pub async fn start(max_concurrent: u32, word_delay_ms: u64) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut provider = Command::new(bin("helix-dev-provider")?)
            .args(["--word-delay-ms", &word_delay_ms.to_string()])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut line = [0u8; 64];
        let n = provider
            .stdout
            .as_mut()
            .context("no stdout")?
            .read(&mut line)
            .await?;
        let url = String::from_utf8_lossy(&line[..n]).trim().to_owned();
        std::fs::write(
            dir.path().join("config.toml"),
            format!(
                "grpc_addr = \"127.0.0.1:0\"\nmax_concurrent = {max_concurrent}\n\
                 [providers.anthropic]\nbase_url = \"{url}\"\n\
                 [iroh]\nrelay = \"none\"\nmdns = false\nn0_discovery = false\nportmapper = false\nudp_addr = \"127.0.0.1:0\"\n"
            ),
        )?;
        CredentialStore::in_dir(dir.path())
            .set_api_key(Provider::Anthropic, Secret::new("sk-bench"))?;
        let hub = Command::new(bin("helix-hub")?)
            .arg("--data-dir")
            .arg(dir.path())
            .arg("serve")
            .env("HELIX_LOG", "warn")
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let pid = hub.id().context("hub exited")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while LocalHub::find(dir.path()).map(|h| h.info.pid).ok() != Some(pid) {
            if Instant::now() > deadline {
                bail!("helix-hub did not start");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Self {
            _hub: hub,
            _provider: provider,
            dir,
            pid,
        })
    }

    pub async fn channel(&self) -> anyhow::Result<(Channel, helix_discovery::local::AddBearer)> {
        Ok(LocalHub::find(self.dir.path())?.dial().await?)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// What 1,000 concurrent commands did.
#[derive(Debug, Clone)]
pub struct Concurrent {
    pub commands: usize,
    pub lost_events: u64,
    pub duplicated_events: u64,
    pub failed_commands: usize,
    pub rss_before_mb: f64,
    pub peak_rss_mb: f64,
    pub first_output: Samples,
    pub seconds: f64,
}

/// `n` commands at once against a hub process, each streaming `words` words.
pub async fn concurrent(hub: &HubProcess, n: usize, words: usize) -> anyhow::Result<Concurrent> {
    /// HTTP/2 connections the clients share (like ~10 devices).
    const CONNECTIONS: usize = 10;
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        let (channel, bearer) = hub.channel().await?;
        clients.push(RemoteExecutionClient::with_interceptor(channel, bearer));
    }
    let rss_before_mb = procs::rss_mb(hub.pid, "VmRSS")?;
    let prompt: String = (0..words).map(|i| format!("w{i} ")).collect();
    let expected = format!(
        "(helix-dev-provider echo) You said: {}\n",
        prompt.trim_end()
    );
    let t = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let mut client = clients[i % CONNECTIONS].clone();
            let prompt = prompt.trim_end().to_owned();
            tokio::spawn(async move {
                let start = Instant::now();
                let mut stream = client.execute(request(&prompt)).await?.into_inner();
                let (mut first, mut text, mut seqs, mut status) =
                    (None, String::new(), Vec::new(), 0);
                while let Some(event) = stream.message().await? {
                    seqs.push(event.seq);
                    match event.kind {
                        Some(Kind::Output(o)) => {
                            first.get_or_insert_with(|| start.elapsed());
                            text.push_str(&o.text);
                        }
                        Some(Kind::Finished(f)) => status = f.status,
                        _ => {}
                    }
                }
                Ok::<_, anyhow::Error>((first, text, seqs, status))
            })
        })
        .collect();
    let mut result = Concurrent {
        commands: n,
        lost_events: 0,
        duplicated_events: 0,
        failed_commands: 0,
        rss_before_mb,
        peak_rss_mb: 0.0,
        first_output: Samples::default(),
        seconds: 0.0,
    };
    for task in tasks {
        let (first, text, seqs, status) = task.await??;
        if let Some(f) = first {
            result.first_output.push(f);
        }
        if status != pb::CommandStatus::Completed as i32 || text != expected {
            result.failed_commands += 1;
        }
        let max = seqs.iter().copied().max().unwrap_or(0);
        let mut seen = std::collections::HashSet::new();
        for s in &seqs {
            if !seen.insert(*s) {
                result.duplicated_events += 1;
            }
        }
        result.lost_events += max - seen.len() as u64;
    }
    result.seconds = t.elapsed().as_secs_f64();
    result.peak_rss_mb = procs::rss_mb(hub.pid, "VmHWM")?;
    Ok(result)
}

/// Process start → first stdout byte of `helix … run`, `n` times (median).
pub async fn cold_run(helix_args: &[String], n: usize) -> anyhow::Result<Samples> {
    let mut samples = Samples::default();
    for _ in 0..n {
        let t = Instant::now();
        let mut child = Command::new(bin("helix")?)
            .args(helix_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let mut byte = [0u8; 1];
        let got = child
            .stdout
            .as_mut()
            .context("no stdout")?
            .read(&mut byte)
            .await?;
        samples.push(t.elapsed());
        let status = child.wait().await?;
        anyhow::ensure!(got == 1 && status.success(), "helix run failed ({status})");
    }
    Ok(samples)
}

/// Pairs a fresh spoke config dir with the hub process; returns the `helix` args to reach it.
pub async fn pair_spoke(hub: &HubProcess, config_dir: &Path) -> anyhow::Result<Vec<String>> {
    let out = Command::new(bin("helix-hub")?)
        .arg("--data-dir")
        .arg(hub.path())
        .args(["pair", "--ttl", "2m"])
        .output()
        .await?;
    let ticket = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    let base = vec![
        "--config-dir".to_owned(),
        config_dir.display().to_string(),
        "--local-only".to_owned(),
    ];
    let status = Command::new(bin("helix")?)
        .args(&base)
        .args(["pair", &ticket, "--name", "bench"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await?;
    anyhow::ensure!(status.success(), "pairing the bench spoke failed");
    Ok(base)
}

/// Fraction of one core the process used over `window` while idle.
pub async fn idle_cpu(pid: u32, window: Duration) -> anyhow::Result<f64> {
    let before = procs::cpu_seconds(pid)?;
    tokio::time::sleep(window).await;
    let after = procs::cpu_seconds(pid)?;
    Ok((after - before) / window.as_secs_f64())
}
