//! A network path on this machine: a veth pair between this process's network namespace and a
//! new one, so traffic crosses a real link (MTU 1,500, Ethernet framing, a queueing discipline
//! that can shape its rate) instead of the loopback device's 64 KiB MTU.
//!
//! A socket belongs to the network namespace of the thread that made it. The far side runs on
//! its own tokio runtime, whose threads join the far namespace as they start (`setns`), so
//! everything it binds, and rebinds after a network change, is on the far side.
//!
//! Needs root (`CAP_NET_ADMIN`, `CAP_SYS_ADMIN`) and iproute2's `ip` and `tc`; [`Link::create`]
//! says why when it can't. The namespace (and the veth pair with it) is removed on drop, and a
//! later run removes what a killed run left.

use std::{
    fs::File,
    future::Future,
    net::Ipv4Addr,
    os::fd::AsRawFd,
    process::{Command, Output},
    sync::{
        Arc,
        atomic::{AtomicI32, Ordering},
    },
};

use anyhow::Context;

/// Namespaces this bench makes are named `helix-bench-<pid>`.
const PREFIX: &str = "helix-bench-";

/// Where `ip netns` keeps its namespaces' handles.
const NETNS_DIR: &str = "/run/netns";

/// A veth pair from this namespace ("near") to a new one ("far").
pub struct Link {
    /// Holds the far namespace open, for `setns`.
    far_ns: File,
    pub near: Ipv4Addr,
    pub far: Ipv4Addr,
    near_dev: String,
    far_dev: String,
    /// Dropped last: removes the namespace, and the veth pair with it.
    namespace: Namespace,
}

impl Link {
    /// Makes the far namespace and a veth pair between the two (MTU 1,500, unshaped), with a
    /// /30 of 10.213.0.0/16 picked by process id. The error says why it could not.
    pub fn create() -> Result<Link, String> {
        remove_stale();
        let pid = std::process::id();
        let name = format!("{PREFIX}{pid}");
        run("ip", &["netns", "add", &name])?;
        let namespace = Namespace(name.clone());
        let (near_dev, far_dev) = (format!("hxb{pid}n"), format!("hxb{pid}f"));
        let base = u32::from(Ipv4Addr::new(10, 213, 0, 0)) + (pid % 16_384) * 4;
        let (near, far) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
        let (near_cidr, far_cidr) = (format!("{near}/30"), format!("{far}/30"));
        run(
            "ip",
            &[
                "link", "add", &near_dev, "type", "veth", "peer", "name", &far_dev, "netns", &name,
            ],
        )?;
        // No IPv6 link-local addresses: their duplicate-address detection ends a second or two
        // after the link is up, which iroh's network monitor takes for a major change and
        // answers by rebinding its sockets, in the middle of a measurement.
        run("ip", &["link", "set", &near_dev, "addrgenmode", "none"])?;
        run("ip", &["addr", "add", &near_cidr, "dev", &near_dev])?;
        run("ip", &["link", "set", &near_dev, "up"])?;
        run(
            "ip",
            &["-n", &name, "link", "set", &far_dev, "addrgenmode", "none"],
        )?;
        run(
            "ip",
            &["-n", &name, "addr", "add", &far_cidr, "dev", &far_dev],
        )?;
        run("ip", &["-n", &name, "link", "set", &far_dev, "up"])?;
        run("ip", &["-n", &name, "link", "set", "lo", "up"])?;
        let far_ns = File::open(format!("{NETNS_DIR}/{name}"))
            .map_err(|e| format!("opening {NETNS_DIR}/{name}: {e}"))?;
        Ok(Link {
            far_ns,
            near,
            far,
            near_dev,
            far_dev,
            namespace,
        })
    }

    /// Shapes both directions to `rate` (tc's syntax, e.g. `1gbit`) with a token bucket that
    /// queues up to 10 ms, as a link of that speed would.
    pub fn shape(&self, rate: &str) -> Result<(), String> {
        let tbf = [
            "root", "tbf", "rate", rate, "burst", "256kb", "latency", "10ms",
        ];
        let near = ["qdisc", "replace", "dev", &self.near_dev];
        run("tc", &[&near[..], &tbf].concat())?;
        let far = [
            "-n",
            &self.namespace.0,
            "qdisc",
            "replace",
            "dev",
            &self.far_dev,
        ];
        run("tc", &[&far[..], &tbf].concat())
    }

    /// A tokio runtime whose every thread is in the far namespace: what runs on it binds and
    /// rebinds its sockets on the far side, and iroh's network monitor there watches the far
    /// side's interfaces. Two workers, as the bench's own runtime has: the two ends of the
    /// link share this machine's cores as the two ends of a loopback run do.
    pub fn far_runtime(&self) -> anyhow::Result<FarRuntime> {
        let ns = Arc::new(self.far_ns.try_clone()?);
        let failed = Arc::new(AtomicI32::new(0));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bench-far-side")
            .enable_all()
            .on_thread_start({
                let failed = failed.clone();
                move || {
                    // SAFETY: setns with an open namespace file moves only the calling thread
                    // (one of this runtime's, as it starts); no memory-safety preconditions.
                    #[allow(unsafe_code)]
                    let joined = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                    if joined != 0 {
                        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(-1);
                        failed.store(errno, Ordering::Relaxed);
                    }
                }
            })
            .build()?;
        Ok(FarRuntime {
            runtime: Some(runtime),
            failed,
        })
    }
}

/// A runtime in the far namespace (see [`Link::far_runtime`]); shut down without waiting on
/// drop, which may happen in async code.
pub struct FarRuntime {
    runtime: Option<tokio::runtime::Runtime>,
    /// The errno of a thread that could not join the far namespace; 0 while none failed.
    failed: Arc<AtomicI32>,
}

impl FarRuntime {
    /// Runs `work` on the far side and waits for its answer; an error if one of the runtime's
    /// threads is not in the far namespace.
    pub async fn run<T, F>(&self, work: F) -> anyhow::Result<T>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let runtime = self
            .runtime
            .as_ref()
            .context("the far side's runtime is gone")?;
        let answer = runtime
            .spawn(work)
            .await
            .context("the far side's task failed")?;
        match self.failed.load(Ordering::Relaxed) {
            0 => Ok(answer),
            errno => Err(std::io::Error::from_raw_os_error(errno))
                .context("joining the far network namespace"),
        }
    }
}

impl Drop for FarRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A network namespace made by `ip netns add`, deleted on drop.
struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.0]);
    }
}

/// Deletes namespaces left by bench runs that were killed (their process is gone).
fn remove_stale() {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(PREFIX) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run("ip", &["netns", "del", &name]);
        }
    }
}

/// Runs a command; the error names it and carries its stderr.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let shown = || format!("{program} {}", args.join(" "));
    let out: Output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("`{}` could not start: {e}", shown()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed: {}",
            shown(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::{net::SocketAddr, path::Path};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_link_carries_tcp_from_near_to_far_is_shaped_and_goes_away_on_drop() {
        let link = match Link::create() {
            Ok(link) => link,
            Err(why) => {
                // Without root or iproute2, the reason names the command that failed.
                assert!(why.contains("`ip netns add helix-bench-"), "{why}");
                return;
            }
        };
        let far = link.far;
        let far_side = link.far_runtime().unwrap();
        let listening = far_side
            .run(async move {
                let listener = tokio::net::TcpListener::bind((far, 0)).await?;
                let addr = listener.local_addr()?;
                tokio::spawn(async move {
                    let (mut stream, peer) = listener.accept().await?;
                    stream.write_all(peer.ip().to_string().as_bytes()).await
                });
                std::io::Result::Ok(addr)
            })
            .await
            .unwrap()
            .unwrap();
        // The far address exists only on the far side of the link.
        assert!(std::net::TcpListener::bind(SocketAddr::from((far, 0))).is_err());
        let mut stream = tokio::net::TcpStream::connect(listening).await.unwrap();
        let mut peer = String::new();
        stream.read_to_string(&mut peer).await.unwrap();
        assert_eq!(
            peer,
            link.near.to_string(),
            "the far side saw the near address"
        );

        link.shape("1gbit").unwrap();
        let near = ["qdisc", "show", "dev", link.near_dev.as_str()];
        let far = [
            "-n",
            &link.namespace.0,
            "qdisc",
            "show",
            "dev",
            &link.far_dev,
        ];
        for args in [&near[..], &far[..]] {
            let qdisc = Command::new("tc").args(args).output().unwrap();
            let qdisc = String::from_utf8_lossy(&qdisc.stdout);
            assert!(
                qdisc.contains("tbf") && qdisc.contains("rate 1Gbit"),
                "tc {args:?}: {qdisc}"
            );
        }

        let handle = Path::new(NETNS_DIR).join(&link.namespace.0);
        assert!(handle.exists());
        drop(far_side);
        drop(link);
        assert!(!handle.exists(), "the namespace outlived its link");
    }
}
