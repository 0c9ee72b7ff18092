//! `helix run` (send a prompt and follow it) and `helix attach` (follow a command sent before),
//! over iroh or the local listener, or through the cloud route ([`crate::cloud_route`]) with
//! `--via cloud`, or when [`crate::fallback`] finds no iroh route in time.

use std::time::SystemTime;

use helix_mesh::{
    pb::{self, Provider},
    proto_ext::{ms_to_timestamp, system_time_to_ms},
};

use crate::{
    cli::{RunArgs, Via},
    client::{ConnectError, ResolveError, Spoke, Target},
    cloud_route::{self, CloudRouteError},
    exit::Exit,
    fallback::{Route, hub_or_cloud, no_route},
    follow::{FollowError, Start, Until, follow},
    last_session,
    render::Printer,
};

/// `helix run` or `helix attach` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    #[error("reading the prompt from stdin: {0}")]
    ReadPrompt(#[source] std::io::Error),
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error(
        "no session to continue on this hub from this device: start one with `helix run --session NAME …` (any `helix run` starts one that --continue goes on from)"
    )]
    NothingToContinue,
    #[error("helix chat's line editor: {0}")]
    LineEditor(String),
    #[error("--via cloud needs --hub (a paired hub's name, id or ticket)")]
    RunViaCloudWithoutHub,
    #[error("--via cloud needs --hub")]
    AttachViaCloudWithoutHub,
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Follow(#[from] FollowError),
    #[error(transparent)]
    Cloud(#[from] CloudRouteError),
}

/// Runs `helix run`.
pub async fn run(
    spoke: &Spoke,
    hub: Option<&str>,
    args: RunArgs,
    quiet: bool,
) -> Result<Exit, RunError> {
    let content = if args.prompt == "-" {
        read_prompt_from_stdin()?
    } else {
        args.prompt.clone()
    };
    if content.trim().is_empty() {
        return Err(RunError::EmptyPrompt);
    }
    let mut printer = Printer::new(args.json, quiet);
    let until = Until::detached(args.detach);
    let target = spoke.resolve(hub)?;
    let now = SystemTime::now();
    let command_id = uuid::Uuid::new_v4().to_string();
    let hub_key = last_session::hub_key(&target);
    let session = if args.continue_session {
        last_session::last(&spoke.config.dir, &hub_key).ok_or(RunError::NothingToContinue)?
    } else {
        // Named after the command when not given, as the hub would: then --continue can go on
        // from a command that started no named session.
        args.session.clone().unwrap_or_else(|| command_id.clone())
    };
    if let Err(e) = last_session::remember(&spoke.config.dir, &hub_key, &session) {
        printer.note(&format!(
            "could not remember this session for --continue: {e}"
        ));
    }
    let request = pb::ExecuteRequest {
        command_id,
        source_device_id: String::new(),
        source_user_id: String::new(),
        agent_id: args.agent.clone(),
        provider: args
            .provider
            .map(Provider::from)
            .unwrap_or(Provider::Unspecified) as i32,
        content,
        session_id: session,
        channel_id: None,
        created_at: Some(ms_to_timestamp(system_time_to_ms(now))),
        expires_at: Some(ms_to_timestamp(system_time_to_ms(now + args.ttl))),
        model: args.model.clone(),
    };
    let remote_hub = match &target {
        Target::Remote { addr, .. } => Some(addr.id),
        Target::Local(_) => None,
    };
    if args.via == Via::Cloud {
        let hub = remote_hub.ok_or(RunError::RunViaCloudWithoutHub)?;
        return Ok(cloud_route::run(spoke, hub, request, &mut printer, until).await?);
    }
    let conn = match remote_hub {
        Some(hub) if args.via == Via::Auto => {
            let connecting = spoke.connect_with_progress(&target, &mut printer);
            match hub_or_cloud(connecting, cloud_route::available(spoke)).await? {
                Route::Hub { conn, .. } => conn,
                Route::Cloud => {
                    printer.progress(&no_route("using the cloud route"));
                    return Ok(cloud_route::run(spoke, hub, request, &mut printer, until).await?);
                }
            }
        }
        _ => spoke.connect_with_progress(&target, &mut printer).await?,
    };
    Ok(follow(
        spoke,
        &target,
        conn,
        Start::Execute(Box::new(request)),
        &mut printer,
        until,
    )
    .await?)
}

/// Runs `helix attach ID`.
pub async fn attach(
    spoke: &Spoke,
    hub: Option<&str>,
    id: String,
    after_seq: u64,
    json: bool,
    via: Via,
    quiet: bool,
) -> Result<Exit, RunError> {
    let mut printer = Printer::new(json, quiet);
    let target = spoke.resolve(hub)?;
    if via == Via::Cloud {
        let Target::Remote { addr, .. } = &target else {
            return Err(RunError::AttachViaCloudWithoutHub);
        };
        return Ok(cloud_route::attach(spoke, addr.id, &id, after_seq, &mut printer).await?);
    }
    let conn = spoke.connect_with_progress(&target, &mut printer).await?;
    let start = Start::Attach {
        command_id: id,
        after_seq,
    };
    Ok(follow(spoke, &target, conn, start, &mut printer, Until::Finished).await?)
}

fn read_prompt_from_stdin() -> Result<String, RunError> {
    helix_mesh::secret_input::read_all("helix: type the prompt, then Ctrl-D")
        .map_err(RunError::ReadPrompt)
}
