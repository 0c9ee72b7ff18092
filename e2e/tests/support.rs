//! Helpers shared by the end-to-end tests: hubs on port 0 in temp dirs, a mock provider,
//! request builders, event collectors, and the built binaries.

#![allow(dead_code)]

pub mod bins;
pub mod cloud;
pub mod fault_proxy;
pub mod mock_anthropic;
pub mod mock_codex;
pub mod mock_gemini;
pub mod mock_gotrue;
pub mod mock_oauth;
pub mod relay;

pub use helix_testkit::{pg, postrust, realtime as mock_realtime, relay::LocalRelay};

use std::{path::Path, time::Duration};

use helix_hub::{
    Hub, HubConfig,
    credentials::{CredentialStore, Secret},
};
use helix_mesh::{
    pb::{self, CommandEvent, Provider, command_event::Kind},
    proto_ext::{ms_to_timestamp, now_ms},
};
use helix_spoke::client::{HubClient, connect_local};
use mock_anthropic::MockAnthropic;
use tempfile::TempDir;
use tokio_stream::StreamExt;

/// The API key the tests store and expect the mock to receive.
pub const TEST_API_KEY: &str = "sk-ant-test-key-do-not-log-0123456789";

/// Longest any single wait in a test may take before it fails instead of hanging.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A hub config pointed at `mock`, with fast retries.
pub fn config_for(mock: &MockAnthropic) -> HubConfig {
    let mut config = HubConfig {
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        drain_timeout: Duration::from_secs(5),
        ..HubConfig::default()
    };
    config.providers.anthropic.base_url = mock.base_url();
    config.retry.base_delay = Duration::from_millis(10);
    config.retry.max_delay = Duration::from_millis(40);
    // iroh stays on loopback: no relay, no n0 services, no mDNS, no port mapping.
    config.iroh = helix_hub::config::IrohConfig::loopback("none");
    config
}

/// An iroh endpoint on loopback with no relay and no discovery, accepting `alpns`.
pub async fn loopback_endpoint(secret: iroh::SecretKey, alpns: &[&[u8]]) -> iroh::Endpoint {
    helix_mesh::transport::bind_endpoint(
        &helix_mesh::transport::EndpointOptions::loopback(
            helix_mesh::transport::RelayChoice::Disabled,
        ),
        secret,
        alpns.iter().map(|a| a.to_vec()).collect(),
        None,
    )
    .await
    .unwrap()
}

/// Stores the test API key in a hub data dir.
pub fn store_api_key(dir: &Path) {
    CredentialStore::in_dir(dir)
        .set_api_key(Provider::Anthropic, Secret::new(TEST_API_KEY))
        .unwrap();
}

/// An in-process hub in its own temp data dir.
pub struct TestHub {
    pub dir: TempDir,
    pub config: HubConfig,
    hub: Option<Hub>,
}

impl TestHub {
    /// A hub with the test API key stored.
    pub async fn start(config: HubConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        store_api_key(dir.path());
        Self::start_in(dir, config).await
    }

    /// A hub with no credentials at all.
    pub async fn start_without_credentials(config: HubConfig) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), config).await
    }

    /// A hub with the test API key stored and `providers` instead of those of the config.
    pub async fn start_with_providers(
        config: HubConfig,
        providers: helix_hub::provider::Providers,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        store_api_key(dir.path());
        Self::launch(dir, config, Some(providers)).await
    }

    /// A hub on a data dir prepared by the caller.
    pub async fn start_in(dir: TempDir, config: HubConfig) -> Self {
        Self::launch(dir, config, None).await
    }

    async fn launch(
        dir: TempDir,
        config: HubConfig,
        providers: Option<helix_hub::provider::Providers>,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let builder = Hub::builder(dir.path(), config.clone()).listener(listener);
        let hub = match providers {
            Some(providers) => builder.providers(providers),
            None => builder,
        }
        .start()
        .await
        .unwrap();
        Self {
            dir,
            config,
            hub: Some(hub),
        }
    }

    pub fn hub(&self) -> &Hub {
        self.hub.as_ref().unwrap()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A fresh address ticket for the hub (its UDP port changes across restarts).
    pub fn address_ticket(&self) -> String {
        helix_mesh::ticket::Ticket::Hub(self.hub().endpoint_addr().unwrap()).encode()
    }

    /// A client with the hub's token, found the way the CLI finds it.
    pub async fn client(&self) -> HubClient {
        connect_local(self.dir.path()).await.unwrap().client
    }

    /// A client without any token.
    pub async fn anonymous_client(
        &self,
    ) -> pb::remote_execution_client::RemoteExecutionClient<tonic::transport::Channel> {
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{}", self.hub().local_addr()))
                .unwrap()
                .connect()
                .await
                .unwrap();
        pb::remote_execution_client::RemoteExecutionClient::new(channel)
    }

    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(format!("http://{}", self.hub().local_addr()))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// Stops the hub (staged shutdown) and starts a new one on the same data dir.
    pub async fn restart(&mut self) {
        if let Some(hub) = self.hub.take() {
            hub.shutdown().await;
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.hub = Some(
            Hub::builder(self.dir.path(), self.config.clone())
                .listener(listener)
                .start()
                .await
                .unwrap(),
        );
    }

    pub async fn shutdown(mut self) {
        if let Some(hub) = self.hub.take() {
            hub.shutdown().await;
        }
    }

    /// Stops the hub and hands back its data dir, for a restart with `start_in`.
    pub async fn stop_keeping_dir(mut self) -> TempDir {
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        self.shutdown().await;
        dir
    }
}

/// A valid request for `content`, to the anthropic provider, with no session: a single turn,
/// so a test's commands are independent of each other (and run in parallel) unless it gives
/// them a session ([`request_in`]).
pub fn request(content: &str) -> pb::ExecuteRequest {
    pb::ExecuteRequest {
        command_id: uuid::Uuid::new_v4().to_string(),
        source_device_id: "test-device".into(),
        provider: Provider::Anthropic as i32,
        content: content.into(),
        ..Default::default()
    }
}

/// [`request`] as a turn of `session`.
pub fn request_in(session: &str, content: &str) -> pb::ExecuteRequest {
    pb::ExecuteRequest {
        session_id: session.into(),
        ..request(content)
    }
}

/// A request whose `expires_at` is `ms` from now (negative: already past).
pub fn request_expiring(content: &str, ms: i64) -> pb::ExecuteRequest {
    let now = now_ms();
    pb::ExecuteRequest {
        created_at: Some(ms_to_timestamp(now.min(now + ms) - 1000)),
        expires_at: Some(ms_to_timestamp(now + ms)),
        ..request(content)
    }
}

/// Reads a stream to its end (with a deadline).
pub async fn collect(mut stream: tonic::Streaming<CommandEvent>) -> Vec<CommandEvent> {
    let mut events = Vec::new();
    tokio::time::timeout(TEST_TIMEOUT, async {
        while let Some(ev) = stream.next().await {
            events.push(ev.expect("stream error"));
        }
    })
    .await
    .expect("stream did not end in time");
    events
}

/// Reads events until `pred` matches one (which is returned, with those before it).
pub async fn read_until(
    stream: &mut tonic::Streaming<CommandEvent>,
    pred: impl Fn(&CommandEvent) -> bool,
) -> Vec<CommandEvent> {
    let mut events = Vec::new();
    tokio::time::timeout(TEST_TIMEOUT, async {
        loop {
            let ev = stream
                .next()
                .await
                .expect("stream ended early")
                .expect("stream error");
            let done = pred(&ev);
            events.push(ev);
            if done {
                return;
            }
        }
    })
    .await
    .expect("event did not arrive in time");
    events
}

/// Every event of a command after `after_seq`, to its end (Attach).
pub async fn attach_all(
    client: &mut HubClient,
    command_id: &str,
    after_seq: u64,
) -> Vec<CommandEvent> {
    collect(
        client
            .attach(pb::AttachRequest {
                command_id: command_id.to_owned(),
                after_seq,
            })
            .await
            .unwrap()
            .into_inner(),
    )
    .await
}

/// The `started` event of `events`' first attempt.
pub fn started(events: &[pb::CommandEvent]) -> pb::Started {
    events
        .iter()
        .find_map(|e| match &e.kind {
            Some(pb::command_event::Kind::Started(s)) => Some(s.clone()),
            _ => None,
        })
        .expect("a started event")
}

/// A Messages API message of the user (as the hub sends a turn's prompt).
pub fn user(text: &str) -> serde_json::Value {
    serde_json::json!({"role": "user", "content": text})
}

/// A Messages API message of the assistant (as the hub sends a turn's answer).
pub fn assistant(text: &str) -> serde_json::Value {
    serde_json::json!({"role": "assistant", "content": text})
}

/// A hub whose only credential is a Gemini API key, with Gemini at `gemini`'s server.
pub async fn gemini_hub(
    gemini: &mock_gemini::MockGemini,
    anthropic: &mock_anthropic::MockAnthropic,
) -> TestHub {
    let mut config = config_for(anthropic);
    config.providers.google_gemini.base_url = gemini.base_url();
    let hub = TestHub::start_without_credentials(config).await;
    CredentialStore::in_dir(hub.path())
        .set_api_key(Provider::GoogleGemini, Secret::new(GEMINI_TEST_KEY))
        .unwrap();
    hub
}

/// The API key [`gemini_hub`] stores.
pub const GEMINI_TEST_KEY: &str = "AIza-test-key-77";

/// Each line of a `--json` output as a JSON value.
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The `seq` of each `--json` record.
pub fn json_seqs(text: &str) -> Vec<u64> {
    json_lines(text)
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect()
}

/// Submits and collects every event of the command.
pub async fn run(client: &mut HubClient, req: pb::ExecuteRequest) -> Vec<CommandEvent> {
    collect(client.execute(req).await.unwrap().into_inner()).await
}

/// The output texts of `events`, one per output event.
pub fn outputs(events: &[CommandEvent]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::Output(o)) => Some(o.text.as_str()),
            _ => None,
        })
        .collect()
}

/// The concatenated output text of `events`.
pub fn output(events: &[CommandEvent]) -> String {
    outputs(events).concat()
}

/// The event types of `events`, in order.
pub fn kinds(events: &[CommandEvent]) -> Vec<&'static str> {
    events
        .iter()
        .map(|e| match &e.kind {
            Some(Kind::Queued(_)) => "queued",
            Some(Kind::Started(_)) => "started",
            Some(Kind::Output(_)) => "output",
            Some(Kind::Retrying(_)) => "retrying",
            Some(Kind::Finished(_)) => "finished",
            None => "none",
        })
        .collect()
}

/// The `finished` payload of the last event.
pub fn finished(events: &[CommandEvent]) -> pb::Finished {
    match events.last().and_then(|e| e.kind.clone()) {
        Some(Kind::Finished(f)) => f,
        other => panic!("last event is not finished: {other:?}"),
    }
}

pub fn is_output(e: &CommandEvent) -> bool {
    matches!(e.kind, Some(Kind::Output(_)))
}

pub fn is_finished(e: &CommandEvent) -> bool {
    matches!(e.kind, Some(Kind::Finished(_)))
}

/// Asserts seqs run 1, 2, 3… without gaps.
pub fn assert_contiguous(events: &[CommandEvent], first: u64) {
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = (first..first + events.len() as u64).collect();
    assert_eq!(seqs, expected, "seqs must be contiguous");
}

/// The command's status according to the hub.
pub async fn status_of(client: &mut HubClient, id: &str) -> pb::CommandStatus {
    let c = client
        .get_command(pb::GetCommandRequest {
            command_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner();
    pb::CommandStatus::try_from(c.status).unwrap()
}

/// Serves `app` on a port of 127.0.0.1 for the rest of the test; returns its address. Like a
/// real API's server, it sends small writes (one streamed chunk each) at once: TCP_NODELAY,
/// or Nagle's algorithm holds a chunk until the hub ACKs the previous one (up to 40 ms).
pub async fn serve_http(app: axum::Router) -> std::net::SocketAddr {
    use axum::serve::ListenerExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = listener.tap_io(|tcp| tcp.set_nodelay(true).unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}
