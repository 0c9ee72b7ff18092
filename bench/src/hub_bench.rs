//! Scenarios through a real hub: the full executor and journal.
//!
//! In process, with an instant provider, over iroh direct: time from `Execute` to the first
//! output event, and token-sized events per second through one stream. The same hub as real
//! processes is in `hub_processes`.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use helix_hub::{
    Hub, HubConfig,
    config::IrohConfig,
    credentials::{CredentialStore, Secret},
    devices::Devices,
    provider::{OutputStream, ProviderExec, ProviderRequest, Providers},
};
use helix_mesh::{
    hub_channel::HubChannel,
    iroh_grpc::IrohConnector,
    pb::{self, Provider, command_event::Kind, remote_execution_client::RemoteExecutionClient},
    transport::{EndpointOptions, RelayChoice, bind_endpoint},
};
use iroh::SecretKey;

use crate::stats::Samples;

/// Answers at once: content `chunks <size> <count>` yields `count` chunks of `size` bytes;
/// anything else yields one short chunk.
#[derive(Debug)]
pub struct InstantProvider;

impl ProviderExec for InstantProvider {
    fn execute(&self, request: ProviderRequest) -> OutputStream {
        let mut parts = request.content.split_whitespace();
        let (size, count) = match (parts.next(), parts.next(), parts.next()) {
            (Some("chunks"), Some(size), Some(count)) => {
                (size.parse().unwrap_or(1), count.parse().unwrap_or(1))
            }
            _ => (2, 1),
        };
        let chunk = "t".repeat(size);
        Box::pin(futures::stream::iter(
            (0..count).map(move |_| Ok(chunk.clone())),
        ))
    }
}

/// A hub in this process with the instant provider, and a paired client over iroh direct.
pub struct InProcess {
    pub hub: Hub,
    /// The spoke's transport over iroh ([`HubChannel`] around a `DirectChannel`).
    pub client: RemoteExecutionClient<HubChannel>,
    pub endpoint: iroh::Endpoint,
    _dir: tempfile::TempDir,
}

/// The settings of an in-process bench hub: gRPC on a free loopback port, iroh on loopback
/// with no relay.
pub fn loopback_config() -> anyhow::Result<HubConfig> {
    Ok(HubConfig {
        grpc_addr: "127.0.0.1:0".parse()?,
        iroh: IrohConfig::loopback("none"),
        ..HubConfig::default()
    })
}

/// A hub in this process on `dir` with the instant provider (and an API key stored for it).
pub async fn instant_hub(dir: &Path, config: HubConfig) -> anyhow::Result<Hub> {
    hub_with(dir, config, Arc::new(InstantProvider)).await
}

/// A hub in this process on `dir` with `provider` as Anthropic (and an API key stored for
/// it), its local API on a free loopback port.
pub async fn hub_with(
    dir: &Path,
    config: HubConfig,
    provider: Arc<dyn ProviderExec>,
) -> anyhow::Result<Hub> {
    CredentialStore::in_dir(dir).set_api_key(Provider::Anthropic, Secret::new("sk-bench"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let providers = Providers::default().with(Provider::Anthropic, provider);
    Ok(Hub::builder(dir, config)
        .listener(listener)
        .providers(providers)
        .start()
        .await?)
}

pub async fn in_process_hub() -> anyhow::Result<InProcess> {
    let dir = tempfile::tempdir()?;
    let spoke_key = SecretKey::generate();
    Devices::load(dir.path())?.add(spoke_key.public(), "bench")?;
    let hub = instant_hub(dir.path(), loopback_config()?).await?;
    let endpoint = bind_endpoint(
        &EndpointOptions::loopback(RelayChoice::Disabled),
        spoke_key,
        Vec::new(),
        None,
    )
    .await?;
    let addr = hub.endpoint_addr().context("iroh is off")?;
    let channel = IrohConnector::new(endpoint.clone(), addr, Duration::from_secs(10))
        .channel()
        .await?;
    let client = RemoteExecutionClient::new(HubChannel::from(channel))
        .max_decoding_message_size(helix_mesh::MAX_MESSAGE_BYTES);
    Ok(InProcess {
        hub,
        client,
        endpoint,
        _dir: dir,
    })
}

pub fn request(content: &str) -> pb::ExecuteRequest {
    pb::ExecuteRequest {
        command_id: uuid::Uuid::new_v4().to_string(),
        content: content.to_owned(),
        provider: Provider::Anthropic as i32,
        ..Default::default()
    }
}

/// `Execute` → first output event, `n` times: back to back (`pause` zero), or each after a
/// pause in which the whole process goes idle (what a lone command meets).
pub async fn first_output(
    client: &mut RemoteExecutionClient<HubChannel>,
    n: usize,
    pause: Duration,
) -> anyhow::Result<Samples> {
    let mut samples = Samples::default();
    for i in 0..n + 5 {
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        let t = Instant::now();
        let mut stream = client.execute(request("first output")).await?.into_inner();
        let mut first = None;
        while let Some(event) = stream.message().await? {
            if first.is_none() && matches!(event.kind, Some(Kind::Output(_))) {
                first = Some(t.elapsed());
            }
        }
        let first = first.context("no output event")?;
        if i >= 5 {
            samples.push(first);
        }
    }
    Ok(samples)
}

/// Events per second of `count` 20-byte outputs through one stream, checked for order.
pub async fn token_events(
    client: &mut RemoteExecutionClient<HubChannel>,
    count: usize,
) -> anyhow::Result<f64> {
    let t = Instant::now();
    let mut stream = client
        .execute(request(&format!("chunks 20 {count}")))
        .await?
        .into_inner();
    let (mut outputs, mut last_seq) = (0usize, 0u64);
    while let Some(event) = stream.message().await? {
        anyhow::ensure!(
            event.seq == last_seq + 1,
            "seq {} after {last_seq}",
            event.seq
        );
        last_seq = event.seq;
        if let Some(Kind::Output(o)) = event.kind {
            anyhow::ensure!(o.text.len() == 20, "chunk of {} bytes", o.text.len());
            outputs += 1;
        }
    }
    anyhow::ensure!(outputs == count, "got {outputs} of {count} output events");
    Ok(count as f64 / t.elapsed().as_secs_f64())
}
