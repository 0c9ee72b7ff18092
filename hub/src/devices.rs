//! Paired devices and pairing tickets.
//!
//! - [`Devices`]: `<data-dir>/devices.json` (0600, atomic writes), held in memory for the
//!   connection hook; a corrupt file is reported with its path and never rewritten.
//! - [`Pairings`]: one-time pairing secrets, in memory only (a hub restart voids them): single
//!   use, expiring, compared in constant time, with wrong attempts throttled hub-wide.
//! - [`PairedOnly`]: the endpoint hook that closes `helix/grpc/1` connections from unpaired
//!   keys right after the handshake, with a reason that says how to pair.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use helix_mesh::{
    fsutil::{self, FsError},
    proto_ext::now_ms,
    ticket::PairingSecret,
    transport::{ALPN_GRPC, CLOSE_NOT_PAIRED},
};
use iroh::{
    EndpointId,
    endpoint::{AfterHandshakeOutcome, Connection, EndpointHooks, Side, VarInt},
};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// The devices file's name inside the data dir.
pub const FILE_NAME: &str = "devices.json";

/// Wrong pairing attempts one device key may make per [`FAILURE_WINDOW`]; past them its
/// wrong attempts are answered "paused" (a right secret still pairs it, and other keys are
/// not affected).
pub const MAX_FAILURES: usize = 5;
/// Device keys whose wrong attempts are remembered at once; a new one past this forgets the
/// key that failed longest ago (keys cost nothing to make, memory does).
pub const MAX_FAILING_PEERS: usize = 1024;
/// The window over which wrong attempts are counted.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Pairing tickets kept at once; creating more drops the oldest.
pub const MAX_PENDING: usize = 64;
/// Longest name a device may give itself.
pub const MAX_DEVICE_NAME: usize = 64;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevicesError {
    #[error(transparent)]
    Fs(#[from] FsError),
    /// An entry of the file is not a paired device.
    #[error("device list {path} is corrupt ({problem}); it was left untouched: fix or move it")]
    Corrupt { path: PathBuf, problem: String },
    /// The file is not a device list at all.
    #[error("device list {path} is corrupt ({source}); it was left untouched: fix or move it")]
    Unparsable {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// One paired device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub name: String,
    pub paired_at_ms: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct DevicesFile {
    version: u32,
    #[serde(default)]
    devices: BTreeMap<String, DeviceRecord>,
}

/// The paired devices, on disk and in memory.
#[derive(Debug)]
pub struct Devices {
    path: PathBuf,
    map: RwLock<BTreeMap<EndpointId, DeviceRecord>>,
}

impl Devices {
    /// Reads `<data_dir>/devices.json` (missing: no devices).
    pub fn load(data_dir: &Path) -> Result<Self, DevicesError> {
        let path = data_dir.join(FILE_NAME);
        let mut map = BTreeMap::new();
        if let Some(bytes) = fsutil::read_optional(&path)? {
            let corrupt = |problem: String| DevicesError::Corrupt {
                path: path.clone(),
                problem,
            };
            let file: DevicesFile =
                serde_json::from_slice(&bytes).map_err(|source| DevicesError::Unparsable {
                    path: path.clone(),
                    source,
                })?;
            for (id, record) in file.devices {
                let id: EndpointId = id
                    .parse()
                    .map_err(|_| corrupt(format!("{id:?} is not a device id")))?;
                map.insert(id, record);
            }
        }
        Ok(Self {
            path,
            map: RwLock::new(map),
        })
    }

    pub fn is_paired(&self, id: &EndpointId) -> bool {
        self.map.read().map(|m| m.contains_key(id)).unwrap_or(false)
    }

    pub fn list(&self) -> Vec<(EndpointId, DeviceRecord)> {
        self.map
            .read()
            .map(|m| m.iter().map(|(k, v)| (*k, v.clone())).collect())
            .unwrap_or_default()
    }

    /// Adds (or renames) a device and saves the file.
    pub fn add(&self, id: EndpointId, name: &str) -> Result<(), DevicesError> {
        self.update(|m| {
            m.insert(
                id,
                DeviceRecord {
                    name: name.to_owned(),
                    paired_at_ms: now_ms(),
                },
            );
        })
    }

    /// Removes a device and saves the file; `false` if it was not paired.
    pub fn remove(&self, id: &EndpointId) -> Result<bool, DevicesError> {
        let mut found = false;
        self.update(|m| found = m.remove(id).is_some())?;
        Ok(found)
    }

    fn update(
        &self,
        change: impl FnOnce(&mut BTreeMap<EndpointId, DeviceRecord>),
    ) -> Result<(), DevicesError> {
        let mut map = self
            .map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = map.clone();
        change(&mut next);
        let file = DevicesFile {
            version: 1,
            devices: next
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        };
        let mut bytes = serde_json::to_vec_pretty(&file).unwrap_or_default();
        bytes.push(b'\n');
        fsutil::write_private_atomic(&self.path, &bytes)?;
        *map = next;
        Ok(())
    }
}

/// Why a pairing attempt was refused (the texts reach the spoke).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairError {
    #[error(
        "this pairing ticket is unknown or was already used: create a new one with `helix-hub pair`"
    )]
    Unknown,
    #[error("this pairing ticket has expired: create a new one with `helix-hub pair`")]
    Expired,
    #[error(
        "too many wrong pairing attempts from this device; its attempts are paused, try again in {0} s"
    )]
    Throttled(u64),
}

#[derive(Debug)]
struct Pending {
    secret: PairingSecret,
    expires: Instant,
}

/// Outstanding pairing secrets.
#[derive(Debug, Default)]
pub struct Pairings {
    pending: Mutex<VecDeque<Pending>>,
    /// Each failing device key's wrong attempts within [`FAILURE_WINDOW`].
    failures: Mutex<HashMap<EndpointId, VecDeque<Instant>>>,
    /// When the last secret issued expires (or expired), used or not.
    last_expiry: Mutex<Option<Instant>>,
}

impl Pairings {
    /// A new single-use secret, valid for `ttl`.
    pub fn create(&self, ttl: Duration) -> PairingSecret {
        let secret = PairingSecret(rand::random());
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        pending.retain(|p| p.expires > now);
        if pending.len() >= MAX_PENDING {
            pending.pop_front();
        }
        pending.push_back(Pending {
            secret: secret.clone(),
            expires: now + ttl,
        });
        let mut last = self
            .last_expiry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *last = Some(last.map_or(now + ttl, |t| t.max(now + ttl)));
        secret
    }

    /// Whether some secret is outstanding and unexpired.
    pub fn has_pending(&self) -> bool {
        let now = Instant::now();
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .any(|p| p.expires > now)
    }

    /// Whether some secret issued, used or not, expires less than `grace` from now or later
    /// (the cloud route looks for pairing requests meanwhile, so a late device, or a second
    /// one with a used ticket, is told why it is refused).
    pub fn issued_within(&self, grace: Duration) -> bool {
        self.last_expiry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some_and(|t| t + grace > Instant::now())
    }

    /// Uses up `secret` if it is outstanding and unexpired: a right secret always pairs,
    /// whoever sent wrong ones before. A wrong one counts against `peer` (the key asking), and
    /// past [`MAX_FAILURES`] in [`FAILURE_WINDOW`] that key is told to wait.
    pub fn redeem(&self, secret: &PairingSecret, peer: &EndpointId) -> Result<(), PairError> {
        let now = Instant::now();
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Compare against every entry in constant time; never stop at the first match.
        let mut found = None;
        for (i, p) in pending.iter().enumerate() {
            if bool::from(p.secret.0.ct_eq(&secret.0)) {
                found = Some(i);
            }
        }
        let outcome = match found.and_then(|i| pending.remove(i)) {
            Some(p) if p.expires > now => return Ok(()),
            Some(_) => PairError::Expired,
            None => PairError::Unknown,
        };
        drop(pending);
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        failures.retain(|_, times| {
            while times
                .front()
                .is_some_and(|t| now.duration_since(*t) > FAILURE_WINDOW)
            {
                times.pop_front();
            }
            !times.is_empty()
        });
        if !failures.contains_key(peer) && failures.len() >= MAX_FAILING_PEERS {
            let oldest = failures
                .iter()
                .min_by_key(|(_, times)| times.back().copied())
                .map(|(key, _)| *key);
            if let Some(key) = oldest {
                failures.remove(&key);
            }
        }
        let times = failures.entry(*peer).or_default();
        if times.len() >= MAX_FAILURES {
            // Paused: this attempt is not counted, so the pause ends a window after the first.
            let wait = times
                .front()
                .map(|t| FAILURE_WINDOW.saturating_sub(now.duration_since(*t)))
                .unwrap_or(FAILURE_WINDOW);
            return Err(PairError::Throttled(wait.as_secs().max(1)));
        }
        times.push_back(now);
        Err(outcome)
    }
}

/// Closes `helix/grpc/1` connections from keys that are not paired.
#[derive(Debug, Clone)]
pub struct PairedOnly(pub Arc<Devices>);

impl EndpointHooks for PairedOnly {
    async fn after_handshake<'a>(&'a self, conn: &'a Connection) -> AfterHandshakeOutcome {
        if conn.side() == Side::Server
            && conn.alpn() == ALPN_GRPC
            && !self.0.is_paired(&conn.remote_id())
        {
            tracing::info!(peer = %conn.remote_id(), "refused an unpaired device");
            return AfterHandshakeOutcome::Reject {
                error_code: VarInt::from_u32(CLOSE_NOT_PAIRED),
                reason: not_paired_reason(&conn.remote_id()).into_bytes(),
            };
        }
        AfterHandshakeOutcome::accept()
    }
}

/// What an unpaired device is told.
pub fn not_paired_reason(device: &EndpointId) -> String {
    format!(
        "this device ({}) is not paired with the hub: run `helix-hub pair` on the hub, then `helix pair <ticket>` here",
        device.fmt_short()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> EndpointId {
        iroh::SecretKey::from_bytes(&[seed; 32]).public()
    }

    #[test]
    fn secrets_are_single_use_and_expire() {
        let pairings = Pairings::default();
        let device = key(1);
        let s = pairings.create(Duration::from_secs(60));
        assert!(pairings.has_pending());
        assert_eq!(pairings.redeem(&s, &device), Ok(()));
        assert!(!pairings.has_pending());
        assert_eq!(
            pairings.redeem(&s, &device),
            Err(PairError::Unknown),
            "single use"
        );
        let old = pairings.create(Duration::ZERO);
        assert_eq!(pairings.redeem(&old, &device), Err(PairError::Expired));
    }

    #[test]
    fn wrong_secrets_pause_only_the_key_that_sent_them_and_a_right_one_always_pairs() {
        let pairings = Pairings::default();
        let (guesser, owner) = (key(1), key(2));
        for _ in 0..MAX_FAILURES {
            assert_eq!(
                pairings.redeem(&PairingSecret([9; 32]), &guesser),
                Err(PairError::Unknown)
            );
        }
        assert!(
            matches!(
                pairings.redeem(&PairingSecret([9; 32]), &guesser),
                Err(PairError::Throttled(_))
            ),
            "the guesser is paused"
        );
        // Another device with its ticket pairs, and is not paused by the guesser's attempts.
        let ticket = pairings.create(Duration::from_secs(60));
        assert_eq!(pairings.redeem(&ticket, &owner), Ok(()));
        assert_eq!(
            pairings.redeem(&PairingSecret([8; 32]), &owner),
            Err(PairError::Unknown)
        );
        // Even the paused key pairs with a right secret.
        let ticket = pairings.create(Duration::from_secs(60));
        assert_eq!(pairings.redeem(&ticket, &guesser), Ok(()));
    }

    #[test]
    fn failing_keys_are_remembered_up_to_a_bound() {
        let pairings = Pairings::default();
        let first = key(0);
        for _ in 0..MAX_FAILURES {
            let _ = pairings.redeem(&PairingSecret([9; 32]), &first);
        }
        for i in 0..MAX_FAILING_PEERS {
            let peer = iroh::SecretKey::from_bytes(&{
                let mut seed = [7u8; 32];
                seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
                seed
            })
            .public();
            let _ = pairings.redeem(&PairingSecret([9; 32]), &peer);
        }
        let remembered = pairings
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len();
        assert_eq!(remembered, MAX_FAILING_PEERS);
        // The key that failed longest ago was forgotten: its next wrong attempt counts anew.
        assert_eq!(
            pairings.redeem(&PairingSecret([9; 32]), &first),
            Err(PairError::Unknown)
        );
    }

    #[test]
    fn issued_secrets_are_watched_for_a_grace_after_expiry_used_or_not() {
        let pairings = Pairings::default();
        assert!(
            !pairings.issued_within(Duration::from_secs(600)),
            "none issued"
        );
        let s = pairings.create(Duration::from_secs(60));
        assert_eq!(pairings.redeem(&s, &key(1)), Ok(()));
        assert!(!pairings.has_pending());
        assert!(pairings.issued_within(Duration::ZERO), "used, not expired");
        let short = Pairings::default();
        short.create(Duration::ZERO);
        assert!(!short.issued_within(Duration::ZERO));
        assert!(
            short.issued_within(Duration::from_secs(600)),
            "within the grace"
        );
    }

    #[test]
    fn devices_persist_and_corruption_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let devices = Devices::load(dir.path()).unwrap();
        let id = iroh::SecretKey::generate().public();
        devices.add(id, "laptop").unwrap();
        let again = Devices::load(dir.path()).unwrap();
        assert!(again.is_paired(&id));
        assert_eq!(again.list()[0].1.name, "laptop");
        assert!(again.remove(&id).unwrap());
        assert!(!Devices::load(dir.path()).unwrap().is_paired(&id));
        std::fs::write(dir.path().join(FILE_NAME), "{").unwrap();
        let err = Devices::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("devices.json") && err.contains("corrupt"),
            "{err}"
        );
    }
}
