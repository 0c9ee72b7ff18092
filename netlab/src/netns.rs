//! Network namespaces: made by `ip netns add`, entered by a thread (`setns`), a child process
//! (before it runs its program) or a whole tokio runtime, and deleted on drop.
//!
//! A socket belongs to the network namespace of the thread that made it, so the namespace a
//! piece of code runs in is the network it sees: its interfaces, routes, loopback and
//! `/proc/sys/net`.

use std::{
    fs::File,
    future::Future,
    os::fd::{AsRawFd, OwnedFd},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicI32, AtomicU32, Ordering},
    },
};

use crate::{LabError, run::run};

/// Where `ip netns` keeps its namespaces' handles.
pub(crate) const NETNS_DIR: &str = "/run/netns";

/// Namespaces the lab makes are named `hxlab-<pid>-<n>-<role>`, so a later run can remove
/// what a killed one left.
const PREFIX: &str = "hxlab-";

/// A network namespace of the lab, deleted (with every interface in it) on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
    /// Holds the namespace open, for `setns`.
    handle: Arc<OwnedFd>,
}

impl Netns {
    /// A new namespace for `role` (a short word: `wan`, `hub`, `router-a`…), with its
    /// loopback up and reverse path filtering off (the delay line re-injects packets on
    /// another interface than they came in on).
    pub fn new(role: &str) -> Result<Netns, LabError> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        remove_stale();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{}-{n}-{role}", std::process::id());
        run("ip", &["netns", "add", &name])?;
        let handle = match File::open(Path::new(NETNS_DIR).join(&name)) {
            Ok(file) => Arc::new(OwnedFd::from(file)),
            Err(e) => {
                let _ = run("ip", &["netns", "del", &name]);
                return Err(LabError::new(format!("opening {NETNS_DIR}/{name}: {e}")));
            }
        };
        let ns = Netns { name, handle };
        ns.ip(&["link", "set", "lo", "up"])?;
        for key in [
            "net/ipv4/conf/all/rp_filter",
            "net/ipv4/conf/default/rp_filter",
        ] {
            ns.sysctl(key, "0")?;
        }
        Ok(ns)
    }

    /// The name `ip netns` knows it by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <this> <args>`.
    pub fn ip(&self, args: &[&str]) -> Result<(), LabError> {
        run("ip", &[&["-n", &self.name], args].concat())
    }

    /// Loads an nftables ruleset (`nft -f`) into this namespace.
    pub fn nft(&self, ruleset: &str) -> Result<(), LabError> {
        crate::run::run_with_stdin(
            "ip",
            &["netns", "exec", &self.name, "nft", "-f", "-"],
            ruleset,
        )
    }

    /// Writes `value` to `/proc/sys/<key>` as this namespace sees it.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), LabError> {
        let path = Path::new("/proc/sys").join(key);
        let value = value.to_owned();
        self.on_thread(move || std::fs::write(&path, value))
            .map_err(|e| LabError::new(format!("setting {key} in {}: {e}", self.name)))
    }

    /// Runs `work` on a new thread that has joined this namespace, and waits for it.
    pub fn on_thread<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        let handle = self.handle.clone();
        std::thread::spawn(move || {
            enter(&handle)?;
            work()
        })
        .join()
        .map_err(|_| std::io::Error::other("the namespace's thread panicked"))?
    }

    /// Makes `cmd`'s process start in this namespace (it joins it after `fork`, before it
    /// runs its program). The rest of its world (files, mounts, `/etc/hosts`) is this
    /// machine's.
    pub fn enter_command(&self, cmd: &mut tokio::process::Command) {
        let handle = self.handle.clone();
        // SAFETY: the closure runs in the child between fork and exec and calls only
        // `setns`, which is async-signal-safe, on a descriptor the child inherited.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(move || enter(&handle));
        }
    }

    /// A tokio runtime whose every thread (workers and blocking pool) is in this namespace:
    /// what runs on it binds, and rebinds after a network change, here.
    pub fn runtime(&self, workers: usize) -> Result<NsRuntime, LabError> {
        let handle = self.handle.clone();
        let failed = Arc::new(AtomicI32::new(0));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name(format!("netlab-{}", self.name))
            .enable_all()
            .on_thread_start({
                let failed = failed.clone();
                move || {
                    if let Err(e) = enter(&handle) {
                        failed.store(e.raw_os_error().unwrap_or(-1), Ordering::Relaxed);
                    }
                }
            })
            .build()
            .map_err(|e| LabError::new(format!("starting a runtime in {}: {e}", self.name)))?;
        Ok(NsRuntime {
            runtime: Some(runtime),
            failed,
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = run("ip", &["netns", "del", &self.name]) {
            tracing::warn!("{e}");
        }
    }
}

/// Moves the calling thread into the namespace `handle` holds.
fn enter(handle: &OwnedFd) -> std::io::Result<()> {
    // SAFETY: setns with an open namespace descriptor changes only the calling thread's
    // network namespace; it has no memory-safety preconditions.
    #[allow(unsafe_code)]
    let joined = unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) };
    if joined == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A runtime in a namespace (see [`Netns::runtime`]); shut down without waiting on drop,
/// which may happen in async code.
#[derive(Debug)]
pub struct NsRuntime {
    runtime: Option<tokio::runtime::Runtime>,
    /// The errno of a thread that could not join the namespace; 0 while none failed.
    failed: Arc<AtomicI32>,
}

impl NsRuntime {
    /// Runs `work` in the namespace and waits for its answer; an error if one of the
    /// runtime's threads is not in the namespace.
    pub async fn run<T, F>(&self, work: F) -> Result<T, LabError>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| LabError::new("the namespace's runtime is gone"))?;
        let answer = runtime
            .spawn(work)
            .await
            .map_err(|e| LabError::new(format!("a task in the namespace failed: {e}")))?;
        match self.failed.load(Ordering::Relaxed) {
            0 => Ok(answer),
            errno => Err(LabError::new(format!(
                "joining the network namespace: {}",
                std::io::Error::from_raw_os_error(errno)
            ))),
        }
    }

    /// The runtime's handle, to spawn long-lived work (servers) in the namespace.
    pub fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.runtime.as_ref().map(|r| r.handle())
    }
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Deletes namespaces left by lab runs that were killed (their process is gone).
fn remove_stale() {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = run("ip", &["netns", "del", &name]);
        }
    }
}
