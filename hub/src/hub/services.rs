//! What a hub serves and runs: the gRPC router of its TCP listener and the providers its
//! config describes.

use std::sync::Arc;

use helix_mesh::pb::{
    hub_admin_server::HubAdminServer, remote_execution_server::RemoteExecutionServer,
};
use tonic::service::interceptor::InterceptedService;
use tonic_health::ServingStatus;

use super::HubError;
use crate::{
    admin::AdminService,
    bearer::{BearerToken, RequireBearer},
    config::HubConfig,
    provider::{
        Providers,
        anthropic::Anthropic,
        claude_code::{ClaudeCode, ClaudeCodePolicy},
        codex::Codex,
        gemini::Gemini,
    },
    service::RemoteExecutionService,
};

/// The TCP listener's services: health, reflection (v1 and v1alpha), `RemoteExecution` and
/// `HubAdmin` behind the bearer token.
pub(super) async fn grpc_router(
    service: RemoteExecutionService,
    admin: Option<AdminService>,
    token: BearerToken,
) -> Result<tonic::transport::server::Router, HubError> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status(helix_mesh::SERVICE_NAME, ServingStatus::Serving)
        .await;
    health_reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(helix_mesh::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(HubError::Reflection)?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(helix_mesh::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(HubError::Reflection)?;
    let remote = RemoteExecutionServer::new(service)
        .max_decoding_message_size(helix_mesh::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(helix_mesh::MAX_MESSAGE_BYTES);
    let admin = admin
        .map(|a| InterceptedService::new(HubAdminServer::new(a), RequireBearer(token.clone())));
    Ok(helix_mesh::transport::grpc_server()
        .trace_fn(|req| tracing::info_span!("rpc", transport = "tcp", path = %req.uri().path()))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(InterceptedService::new(remote, RequireBearer(token)))
        .add_optional_service(admin))
}

/// Builds the providers the config describes.
pub fn providers_from_config(config: &HubConfig) -> Result<Providers, HubError> {
    use helix_mesh::pb::Provider;
    let a = &config.providers.anthropic;
    let anthropic = Anthropic::new(&a.base_url, a.connect_timeout, a.idle_timeout)
        .map_err(|e| HubError::Provider("anthropic", e))?
        .with_claude_code(
            ClaudeCode::new(&a.claude_binary, &a.base_url, a.idle_timeout).with_policy(
                ClaudeCodePolicy {
                    workdir: a.workdir.clone(),
                    allowed_tools: a.allowed_tools.clone(),
                    permission_mode: a.permission_mode,
                },
            ),
        );
    let c = &config.providers.openai_codex;
    let codex = Codex::new(&c.base_url, c.connect_timeout, c.idle_timeout)
        .map_err(|e| HubError::Provider("openai-codex", e))?;
    let g = &config.providers.google_gemini;
    let gemini = Gemini::new(&g.base_url, g.connect_timeout, g.idle_timeout)
        .map_err(|e| HubError::Provider("google-gemini", e))?;
    Ok(Providers::default()
        .with(Provider::Anthropic, Arc::new(anthropic))
        .with(Provider::OpenaiCodex, Arc::new(codex))
        .with(Provider::GoogleGemini, Arc::new(gemini)))
}
