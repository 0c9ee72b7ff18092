//! A delay line: a TUN device whose every packet is held for a fixed time and then written
//! back, so the kernel forwards it on late. Policy routing in the router sends the packets to
//! delay into the device (see [`crate::Lab`]); this kernel has no `netem` to do it.
//!
//! One thread reads packets and stamps them with the time they are due; another writes each
//! back when it is due. The delay is the same for every packet, so the queue stays in order.
//! The queue holds [`QUEUE_PACKETS`] packets; past that, packets are dropped at the tail, as
//! a router's full queue does.

use std::{
    fs::File,
    io::{Read, Write},
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::{LabError, Netns};

/// How many packets may be in the line at once (at 40 ms, ~1.5 Gbit/s of full-size packets).
pub const QUEUE_PACKETS: usize = 8_192;

/// How often the reader looks whether it should stop.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// `TUNSETIFF` (`_IOW('T', 202, int)`) and its flags, from `<linux/if_tun.h>`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;

/// `struct ifreq` as `TUNSETIFF` reads it: the name, then the flags, padded to 40 bytes.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// A running delay line; stops, and its device goes, on drop.
#[derive(Debug)]
pub struct DelayLine {
    device: String,
    delay: Duration,
    stop: Arc<AtomicBool>,
    delayed: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

impl DelayLine {
    /// Makes the TUN device `device` in `ns` (down; the caller brings it up and routes into
    /// it) and holds every packet it reads for `delay`.
    pub fn start(ns: &Netns, device: &str, delay: Duration) -> Result<DelayLine, LabError> {
        if device.len() >= libc::IFNAMSIZ {
            return Err(LabError::new(format!(
                "the device name {device:?} is too long"
            )));
        }
        let name = device.to_owned();
        let tun = ns
            .on_thread(move || open_tun(&name))
            .map_err(|e| LabError::new(format!("making the TUN device {device}: {e}")))?;
        let writer_end = tun
            .try_clone()
            .map_err(|e| LabError::new(format!("the TUN device {device}: {e}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let delayed = Arc::new(AtomicU64::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let (queue, due) = mpsc::sync_channel::<(Instant, Vec<u8>)>(QUEUE_PACKETS);
        let reader = {
            let (stop, dropped) = (stop.clone(), dropped.clone());
            std::thread::Builder::new()
                .name(format!("delay-in-{device}"))
                .spawn(move || read_packets(tun, delay, queue, &stop, &dropped))
        };
        let writer = {
            let delayed = delayed.clone();
            std::thread::Builder::new()
                .name(format!("delay-out-{device}"))
                .spawn(move || write_packets(writer_end, due, &delayed))
        };
        let threads = [reader, writer]
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| LabError::new(format!("starting the delay line: {e}")))?;
        Ok(DelayLine {
            device: device.to_owned(),
            delay,
            stop,
            delayed,
            dropped,
            threads,
        })
    }

    /// The device's name.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// How long each packet is held.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// How many packets went through so far.
    pub fn delayed(&self) -> u64 {
        self.delayed.load(Ordering::Relaxed)
    }

    /// How many packets found the queue full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Opens `/dev/net/tun` as a new layer-3 device named `name` without packet headers.
fn open_tun(name: &str) -> std::io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: IFF_TUN | IFF_NO_PI,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads a `struct ifreq`, which `IfReq` lays out (name, flags, padding
    // to the union's size), from a pointer valid for the call; `file` is an open TUN fd.
    #[allow(unsafe_code)]
    let done = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req as *mut IfReq) };
    if done < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file)
}

/// Reads packets until told to stop, each stamped with when it is due.
fn read_packets(
    mut tun: File,
    delay: Duration,
    queue: mpsc::SyncSender<(Instant, Vec<u8>)>,
    stop: &AtomicBool,
    dropped: &AtomicU64,
) {
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        if !readable(&tun, STOP_CHECK) {
            continue;
        }
        match tun.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                let due = Instant::now() + delay;
                match queue.try_send((due, buf[..n].to_vec())) {
                    Ok(()) => {}
                    Err(mpsc::TrySendError::Full(_)) => {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::TrySendError::Disconnected(_)) => return,
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::debug!("delay line: reading: {e}");
                return;
            }
        }
    }
}

/// Writes each packet back when it is due, until the reader stops.
fn write_packets(mut tun: File, due: mpsc::Receiver<(Instant, Vec<u8>)>, delayed: &AtomicU64) {
    for (at, packet) in due {
        let now = Instant::now();
        if at > now {
            std::thread::sleep(at - now);
        }
        // A packet the kernel refuses (its route went away) is lost, as on a real link.
        if tun.write(&packet).is_ok() {
            delayed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Whether `file` has a packet to read within `wait`.
fn readable(file: &File, wait: Duration) -> bool {
    let mut fds = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = libc::c_int::try_from(wait.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one pollfd, valid for the call.
    #[allow(unsafe_code)]
    let ready = unsafe { libc::poll(&mut fds, 1, millis) };
    ready > 0 && fds.revents & libc::POLLIN != 0
}
