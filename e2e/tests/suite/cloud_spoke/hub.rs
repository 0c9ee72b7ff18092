//! The hub, played by the test with `helix_mesh` alone: it registers itself with a claim token,
//! claims and opens what devices send, publishes prompts and content keys, and appends events
//! sealed under the content key — exactly the v2 contract, so the real `helix` binary is tested
//! against the contract rather than against one hub's implementation. Also the devices: spoke
//! config dirs with their own keys, signed in to the cloud and knowing the hub as "desk".

use std::time::{Duration, Instant};

use helix_discovery::rest::{Rest, RestError};
use helix_mesh::{
    cloud_payload::{CommandPayload, EventKind, EventPayload},
    envelope_v2::{
        self, ContentKey, ContentKind, SealRandom, SealedKind, seal_content, wrap_content_key,
    },
    proto_ext::{ms_to_system_time, now_ms},
};
use helix_spoke::config::{KnownHub, SpokeConfig};
use iroh::{EndpointAddr, PublicKey, SecretKey};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::{
    bins::{Finished, run_helix, spoke},
    cloud::TestCloud,
};

/// The hub as the test plays it.
pub struct PlayedHub {
    pub key: SecretKey,
    token: String,
    rest: Rest,
}

/// A signed-in spoke config dir with its own device key, paired (in its config) with a hub.
pub struct Device {
    pub dir: TempDir,
    pub key: PublicKey,
}

impl PlayedHub {
    /// A hub registered under the test account with a fresh claim token.
    pub async fn register(cloud: &TestCloud) -> Self {
        let hub = Self::unregistered(cloud).await;
        let _: Value = hub
            .rest
            .rpc(
                "register_cloud_hub",
                &json!({"p_hub_id": hub.id(), "p_token": hub.token}),
            )
            .await
            .unwrap();
        hub
    }

    /// A hub key that never registered.
    pub async fn unregistered(cloud: &TestCloud) -> Self {
        Self {
            key: SecretKey::generate(),
            token: data_encoding::HEXLOWER.encode(&rand_bytes()),
            rest: cloud.rest().await,
        }
    }

    pub fn id(&self) -> String {
        self.key.public().to_string()
    }

    /// Claims pending commands until one comes (up to 20 s); that row.
    pub async fn claim_one(&self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let rows: Vec<Value> = self.claim().await;
            if let Some(row) = rows.into_iter().next() {
                return row;
            }
            assert!(Instant::now() < deadline, "no command came to claim");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One claim round (which also expires what waited too long).
    pub async fn claim(&self) -> Vec<Value> {
        self.rest
            .rpc(
                "claim_cloud_commands",
                &json!({"p_hub_id": self.id(), "p_token": self.token, "p_limit": 1}),
            )
            .await
            .unwrap()
    }

    /// Opens a claimed row as the hub must: sealed to it by the row's device, kind `command`,
    /// bound to the row's command id, with that id inside too.
    pub fn open_command(&self, row: &Value) -> CommandPayload {
        let id = row["command_id"].as_str().unwrap();
        let device: PublicKey = row["source_device_id"].as_str().unwrap().parse().unwrap();
        let opened = envelope_v2::open_sealed(
            &self.key,
            row["envelope"].as_str().unwrap(),
            u64::try_from(now_ms()).unwrap(),
            |k| *k == device,
        )
        .unwrap();
        assert_eq!(
            (opened.header.kind, opened.header.context.as_str()),
            (SealedKind::Command, id)
        );
        let payload = CommandPayload::from_json(&opened.plaintext).unwrap();
        assert_eq!(payload.command_id, id);
        payload
    }

    /// Publishes `payload` (a claimed command, or a new one it mirrors) from `source`, with
    /// the content key sealed to each of `devices`; the key.
    pub async fn publish(
        &self,
        payload: &CommandPayload,
        source: &PublicKey,
        devices: &[&PublicKey],
    ) -> ContentKey {
        let key = ContentKey::generate();
        let id = &payload.command_id;
        let prompt = seal_content(
            &self.key,
            &key,
            ContentKind::Prompt,
            id,
            0,
            &payload.to_json().unwrap(),
        )
        .unwrap();
        let keys: Vec<Value> = devices
            .iter()
            .map(|device| {
                let wrapped =
                    wrap_content_key(&self.key, device, id, &key, &SealRandom::fresh()).unwrap();
                json!({"device": device.to_string(), "envelope": wrapped})
            })
            .collect();
        let expires_ms = payload
            .expires_at_ms
            .unwrap_or(u64::try_from(now_ms()).unwrap() + 3_600_000);
        let expires_at =
            humantime::format_rfc3339_millis(ms_to_system_time(i64::try_from(expires_ms).unwrap()))
                .to_string();
        let _: Value = self
            .rest
            .rpc(
                "publish_cloud_command",
                &json!({"p_hub_id": self.id(), "p_token": self.token, "p_command_id": id,
                        "p_source_device_id": source.to_string(), "p_prompt": prompt,
                        "p_keys": keys, "p_expires_at": expires_at}),
            )
            .await
            .unwrap();
        key
    }

    /// Event `seq` of `command_id` sealed as the hub seals it.
    pub fn event(&self, key: &ContentKey, command_id: &str, seq: u64, kind: EventKind) -> String {
        let payload = EventPayload {
            seq,
            time_ms: Some(u64::try_from(now_ms()).unwrap()),
            kind,
        };
        seal_content(
            &self.key,
            key,
            ContentKind::Event,
            command_id,
            seq,
            &payload.to_json().unwrap(),
        )
        .unwrap()
    }

    /// Appends `(seq, envelope)`s; the new last seq, or the cloud's refusal.
    pub async fn append(
        &self,
        command_id: &str,
        events: &[(u64, String)],
    ) -> Result<u64, RestError> {
        let events: Vec<Value> = events
            .iter()
            .map(|(seq, envelope)| json!({"seq": seq, "envelope": envelope}))
            .collect();
        self.rest
            .rpc(
                "append_cloud_events",
                &json!({"p_hub_id": self.id(), "p_token": self.token,
                        "p_command_id": command_id, "p_events": events}),
            )
            .await
    }

    /// A whole run after seq `after`: started, one output event per text, finished (completed).
    pub async fn stream(&self, key: &ContentKey, command_id: &str, after: u64, texts: &[&str]) {
        let events = run_events(texts);
        let sealed: Vec<(u64, String)> = events
            .into_iter()
            .enumerate()
            .map(|(i, kind)| {
                let seq = after + 1 + i as u64;
                (seq, self.event(key, command_id, seq, kind))
            })
            .collect();
        self.append(command_id, &sealed).await.unwrap();
    }

    /// Ends the row as the hub does.
    pub async fn complete(&self, command_id: &str, status: &str, reason: Option<&str>) {
        let _: Value = self
            .rest
            .rpc(
                "complete_cloud_command",
                &json!({"p_hub_id": self.id(), "p_token": self.token, "p_command_id": command_id,
                        "p_status": status, "p_reason": reason}),
            )
            .await
            .unwrap();
    }

    /// Says where it can be dialed (a presence row).
    pub async fn announce(&self, name: &str, relay_url: Option<&str>, addrs: &[&str]) {
        let _: Value = self
            .rest
            .rpc(
                "announce_cloud_hub",
                &json!({"p_hub_id": self.id(), "p_token": self.token, "p_hub_name": name,
                        "p_relay_url": relay_url, "p_direct_addrs": addrs,
                        "p_providers": ["anthropic"], "p_version": "0.0.0-test"}),
            )
            .await
            .unwrap();
    }
}

/// Started, an output per text, finished `completed`.
pub fn run_events(texts: &[&str]) -> Vec<EventKind> {
    let mut events = vec![EventKind::started(1)];
    events.extend(texts.iter().map(|t| EventKind::Output {
        text: (*t).to_owned(),
    }));
    events.push(EventKind::Finished {
        status: "completed".into(),
        error: String::new(),
        attempts: 1,
        executed_at_ms: Some(u64::try_from(now_ms()).unwrap()),
    });
    events
}

/// A command as the hub publishes it (defaults filled in), from `source`.
pub fn accepted(command_id: &str, content: &str, source: &PublicKey) -> CommandPayload {
    let now = u64::try_from(now_ms()).unwrap();
    CommandPayload {
        command_id: command_id.to_owned(),
        content: content.to_owned(),
        provider: Some("anthropic".into()),
        agent_id: Some("main".into()),
        session_id: Some("s-cloud".into()),
        channel_id: None,
        model: None,
        source_device_id: Some(source.to_string()),
        created_at_ms: Some(now),
        expires_at_ms: Some(now + 3_600_000),
    }
}

/// 32 random bytes (a fresh key's).
fn rand_bytes() -> [u8; 32] {
    SecretKey::generate().to_bytes()
}

impl Device {
    /// A new device of the test account that knows `hub` as "desk" (its key only: the cloud
    /// route needs no address).
    pub async fn new(cloud: &TestCloud, hub: &PlayedHub) -> Self {
        let dir = cloud.signed_in_dir(&cloud.server.url).await;
        let config = SpokeConfig::new(dir.path().to_owned());
        let key = config.secret_key().unwrap().public();
        let hub_id = hub.key.public();
        config
            .save_hub(
                "desk",
                KnownHub {
                    hub_id,
                    hub_name: "desk".into(),
                    addr: EndpointAddr::new(hub_id),
                    paired_at_ms: now_ms(),
                },
            )
            .unwrap();
        Self { dir, key }
    }

    /// `helix --hub desk ARGS` from this device.
    pub fn helix(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = spoke(self.dir.path());
        cmd.arg("--hub").arg("desk").args(args);
        cmd
    }

    /// Runs `helix --hub desk ARGS` to its end.
    pub async fn run(&self, args: &[&str]) -> Finished {
        run_helix(self.helix(args), None).await
    }

    /// `helix attach --via cloud ID`.
    pub async fn attach(&self, id: &str) -> Finished {
        self.run(&["attach", "--via", "cloud", id]).await
    }
}
