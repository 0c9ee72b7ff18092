//! The built `helix-hub` and `helix` binaries, run as real processes.
//!
//! They live next to this test binary's directory (`target/<profile>/`). The README's test
//! command builds them first (`cargo build --workspace --bins`).

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use helix_discovery::local::RuntimeInfo;
use tokio::process::{Child, Command};

/// Path of a workspace binary.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first with `cargo build --workspace --bins` (scripts/test does)",
        path.display()
    );
    path
}

/// Writes a `config.toml` for a hub process pointed at the mock provider.
pub fn write_hub_config(dir: &Path, mock_base_url: &str, max_concurrent: u32) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "grpc_addr = \"127.0.0.1:0\"\nmax_concurrent = {max_concurrent}\ndrain_timeout = \"5s\"\n\
             [retry]\nbase_delay = \"10ms\"\nmax_delay = \"40ms\"\n\
             [providers.anthropic]\nbase_url = \"{mock_base_url}\"\n\
             [iroh]\nrelay = \"none\"\nmdns = false\nn0_discovery = false\nportmapper = false\nudp_addr = \"127.0.0.1:0\"\n"
        ),
    )
    .unwrap();
}

/// A `helix-hub serve` process.
pub struct HubProcess {
    pub child: Child,
    pub dir: PathBuf,
    pub info: RuntimeInfo,
    pub stderr_path: PathBuf,
}

impl HubProcess {
    /// Starts `helix-hub --data-dir DIR serve` and waits until it has written `hub.json`.
    pub async fn spawn(dir: &Path) -> Self {
        Self::spawn_with_env(dir, &[]).await
    }

    /// Like [`Self::spawn`], with extra environment variables (e.g. `HELIX_LOG=trace`).
    pub async fn spawn_with_env(dir: &Path, env: &[(&str, &str)]) -> Self {
        let stderr_path = dir.join(format!("hub-stderr-{}.log", rand_suffix()));
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        // A hub.json left by a killed predecessor must not be mistaken for ours.
        let _ = std::fs::remove_file(dir.join("hub.json"));
        let child = Command::new(bin("helix-hub"))
            .arg("--data-dir")
            .arg(dir)
            .arg("serve")
            .env_remove("HELIX_HUB_DIR")
            .env_remove("ANTHROPIC_BASE_URL")
            .env("HELIX_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        let mut process = HubProcess {
            child,
            dir: dir.to_owned(),
            info: RuntimeInfo {
                hub_id: String::new(),
                version: String::new(),
                pid,
                grpc_addr: "127.0.0.1:1".parse().unwrap(),
                started_at_ms: 0,
            },
            stderr_path,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(bytes) = std::fs::read(dir.join("hub.json"))
                && let Ok(info) = serde_json::from_slice::<RuntimeInfo>(&bytes)
                && info.pid == pid
            {
                process.info = info;
                return process;
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("helix-hub exited early ({status}): {}", process.stderr());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "helix-hub did not start in time: {}",
                process.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// SIGKILL: no chance to clean up.
    pub async fn kill9(&mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }

    /// Sends a signal (e.g. `libc::SIGTERM`).
    pub fn signal(&self, sig: i32) {
        let pid = self.child.id().unwrap() as i32;
        // SAFETY: kill(2) with a pid we own.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid, sig);
        }
    }

    pub async fn wait(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("helix-hub did not exit in time")
            .unwrap()
    }
}

/// `helix --hub-dir DIR …` with a clean environment for the variables it reads.
pub fn helix(dir: &Path) -> Command {
    let mut cmd = Command::new(bin("helix"));
    cmd.arg("--hub-dir")
        .arg(dir)
        .env_remove("HELIX_HUB_DIR")
        .env("HELIX_LOG", "warn")
        .kill_on_drop(true);
    cmd
}

/// `helix --config-dir DIR --local-only …`: a spoke with its own identity, on loopback.
pub fn spoke(config_dir: &Path) -> Command {
    let mut cmd = spoke_with_own_settings(config_dir);
    cmd.arg("--local-only");
    cmd
}

/// `helix` as [`spoke`] runs it but without `--local-only`: how it reaches hubs is what the
/// config dir's `config.toml` (and the flags the caller adds) say.
pub fn spoke_with_own_settings(config_dir: &Path) -> Command {
    let mut cmd = Command::new(bin("helix"));
    cmd.arg("--config-dir")
        .arg(config_dir)
        .env_remove("HELIX_HUB_DIR")
        .env_remove("HELIX_CONFIG_DIR")
        .env_remove("HELIX_SUPABASE_URL")
        .env_remove("HELIX_SUPABASE_ANON_KEY")
        .env_remove("HELIX_SUPABASE_REST_URL")
        .env("HELIX_LOG", "warn")
        .kill_on_drop(true);
    cmd
}

/// `helix-hub --data-dir DIR …` (for the admin commands against a running hub).
pub fn hub_cli(data_dir: &Path) -> Command {
    let mut cmd = Command::new(bin("helix-hub"));
    cmd.arg("--data-dir")
        .arg(data_dir)
        .env_remove("HELIX_HUB_DIR")
        .kill_on_drop(true);
    cmd
}

/// A pairing ticket from the hub running on `data_dir`, made by `helix-hub pair [extra…]`.
pub async fn pairing_ticket(data_dir: &Path, extra: &[&str]) -> String {
    let mut cmd = hub_cli(data_dir);
    cmd.arg("pair").args(extra);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    done.stdout.lines().last().unwrap().to_owned()
}

/// Output of a finished `helix` process.
#[derive(Debug)]
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` with `stdin` (if any) to completion, within the test timeout.
pub async fn run_helix(mut cmd: Command, stdin: Option<&str>) -> Finished {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(text) = stdin {
        use tokio::io::AsyncWriteExt;
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).await.unwrap();
        drop(pipe);
    }
    let out = tokio::time::timeout(super::TEST_TIMEOUT, child.wait_with_output())
        .await
        .expect("helix did not finish in time")
        .unwrap();
    Finished {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        ^ u64::from(std::process::id())
}
