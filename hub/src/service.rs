//! The `RemoteExecution` gRPC service: validation, then the executor and the journal.
//!
//! Every error a caller can see is mapped to a `tonic::Status` in [`grpc_status`], and only there.

use std::{pin::Pin, sync::Arc};

use async_stream::stream;
use futures::Stream;
use helix_mesh::pb::{self, CommandStatus, remote_execution_server::RemoteExecution};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    command::{NewCommand, parse_command_id},
    context::HubContext,
    executor::Submitted,
    grpc_status,
    journal::ListFilter,
};

/// Events read from the journal per query while replaying history.
const HISTORY_PAGE: usize = 1000;

/// Default and largest `ListCommands` page.
const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 500;
/// Turns of one `GetSession` answer: the default, and the most.
const DEFAULT_SESSION_TURNS: usize = 100;
const MAX_SESSION_TURNS: usize = 1000;
/// A session id is validated like `ExecuteRequest.session_id`.
const MAX_SESSION_ID_BYTES: usize = 256;

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::CommandEvent, Status>> + Send>>;
type StatusStream = Pin<Box<dyn Stream<Item = Result<pb::StatusChange, Status>> + Send>>;

/// The service; cheap to clone.
#[derive(Debug, Clone)]
pub struct RemoteExecutionService {
    inner: Arc<HubContext>,
    /// Ends live streams (Attach, Watch) when the hub stops.
    shutdown: CancellationToken,
}

impl RemoteExecutionService {
    pub fn new(context: Arc<HubContext>, shutdown: CancellationToken) -> Self {
        Self {
            inner: context,
            shutdown,
        }
    }

    /// The events of `command_id` after `after_seq`: history from the journal, then live ones
    /// from the bus, ending after `finished`. Subscribes before reading history so nothing
    /// falls between the two; a lagging subscriber catches up from the journal.
    fn event_stream(&self, command_id: Uuid, after_seq: u64) -> EventStream {
        let sub = self.inner.bus.subscribe_command(command_id);
        self.event_stream_with(command_id, after_seq, sub, true)
    }

    /// [`Self::event_stream`] with a subscription taken earlier. `history` says whether the
    /// journal may hold events the subscription has not seen (false only for a command created
    /// after `sub` was taken: then every event arrives live and no read is needed).
    fn event_stream_with(
        &self,
        command_id: Uuid,
        after_seq: u64,
        mut sub: crate::bus::CommandSubscription,
        history: bool,
    ) -> EventStream {
        let inner = self.inner.clone();
        let shutdown = self.shutdown.clone();
        Box::pin(stream! {
            let mut last = after_seq;
            // `catch_up` replays the journal from `last`; it is the whole story for finished
            // commands and the repair for lagged or broken live subscriptions.
            let mut catch_up = history;
            loop {
                if catch_up {
                    catch_up = false;
                    loop {
                        let page = match inner.journal.events_after(command_id, last, HISTORY_PAGE).await {
                            Ok(page) => page,
                            Err(e) => {
                                yield Err(grpc_status::journal(e));
                                return;
                            }
                        };
                        let full = page.len() == HISTORY_PAGE;
                        for event in page {
                            last = event.seq;
                            let done = event.is_finished();
                            yield Ok(event.to_proto());
                            if done {
                                return;
                            }
                        }
                        if !full {
                            break;
                        }
                    }
                }
                let received = tokio::select! {
                    _ = shutdown.cancelled() => {
                        yield Err(Status::unavailable(
                            "the hub is shutting down; attach again with after_seq once it is back",
                        ));
                        return;
                    }
                    r = sub.recv() => r,
                };
                match received {
                    Ok(event) if event.seq <= last => {}
                    Ok(event) if event.seq == last + 1 => {
                        last = event.seq;
                        let done = event.is_finished();
                        yield Ok(event.to_proto());
                        if done {
                            return;
                        }
                    }
                    // A gap: fill it from the journal.
                    Ok(_) | Err(RecvError::Lagged(_)) => catch_up = true,
                    Err(RecvError::Closed) => {
                        sub = inner.bus.subscribe_command(command_id);
                        catch_up = true;
                    }
                }
            }
        })
    }
}

fn parse_id(raw: &str) -> Result<Uuid, Status> {
    parse_command_id(raw).map_err(grpc_status::invalid)
}

#[tonic::async_trait]
impl RemoteExecution for RemoteExecutionService {
    type ExecuteStream = EventStream;
    type AttachStream = EventStream;
    type WatchStream = StatusStream;

    async fn execute(
        &self,
        request: Request<pb::ExecuteRequest>,
    ) -> Result<Response<Self::ExecuteStream>, Status> {
        // Over iroh the caller is the authenticated peer key; on the token-guarded TCP listener
        // the request's own source_device_id is trusted.
        let peer = request
            .extensions()
            .get::<helix_mesh::iroh_grpc::IrohConnectInfo>()
            .map(|info| info.remote_id);
        let device = peer.map(|peer| peer.to_string());
        let config = self.inner.config.clone();
        let cmd = NewCommand::from_request(
            request.into_inner(),
            |agent| config.default_provider(agent),
            device,
        )
        .map_err(grpc_status::invalid)?;
        let command_id = cmd.command_id;
        tracing::trace!(%command_id, "execute received");
        // Subscribe before submitting: a new command's events then all arrive live, from its
        // `queued` event on, without reading the journal back.
        let sub = self.inner.bus.subscribe_command(command_id);
        let submitted = self
            .inner
            .executor
            .submit(cmd)
            .await
            .map_err(grpc_status::submit)?;
        let attached = matches!(submitted, Submitted::Existing(_));
        tracing::info!(%command_id, attached, "execute");
        if !attached {
            // Never waits: a cloud that is slow or down does not slow this path.
            self.inner.mirror.offer(command_id, peer);
        }
        Ok(Response::new(
            self.event_stream_with(command_id, 0, sub, attached),
        ))
    }

    async fn attach(
        &self,
        request: Request<pb::AttachRequest>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let req = request.into_inner();
        let command_id = parse_id(&req.command_id)?;
        let record = self
            .inner
            .journal
            .command(command_id)
            .await
            .map_err(grpc_status::journal)?;
        let Some(record) = record else {
            return Err(grpc_status::not_found(command_id));
        };
        if req.after_seq > record.last_seq && record.status.is_terminal() {
            return Err(Status::out_of_range(format!(
                "after_seq {} is past the last event ({}) of finished command {command_id}",
                req.after_seq, record.last_seq
            )));
        }
        if record.status.is_terminal() && req.after_seq == record.last_seq {
            // Finished, and the caller has everything: nothing will ever come.
            return Ok(Response::new(Box::pin(futures::stream::empty())));
        }
        Ok(Response::new(self.event_stream(command_id, req.after_seq)))
    }

    async fn watch(
        &self,
        _request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let mut rx = self.inner.bus.subscribe_status();
        let shutdown = self.shutdown.clone();
        Ok(Response::new(Box::pin(stream! {
            loop {
                let received = tokio::select! {
                    _ = shutdown.cancelled() => {
                        yield Err(Status::unavailable("the hub is shutting down"));
                        return;
                    }
                    r = rx.recv() => r,
                };
                match received {
                    Ok(change) => yield Ok(change.to_proto()),
                    Err(RecvError::Lagged(missed)) => {
                        yield Err(Status::resource_exhausted(format!(
                            "watcher fell {missed} status changes behind and was cut off; watch again and use ListCommands to catch up"
                        )));
                        return;
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        })))
    }

    async fn cancel(
        &self,
        request: Request<pb::CancelRequest>,
    ) -> Result<Response<pb::CancelResponse>, Status> {
        let command_id = parse_id(&request.into_inner().command_id)?;
        let done = self
            .inner
            .executor
            .cancel(command_id)
            .await
            .map_err(grpc_status::cancel)?;
        tracing::info!(%command_id, status = %done.status, "cancel");
        Ok(Response::new(pb::CancelResponse {
            status: done.status as i32,
            was_queued: done.was_queued,
        }))
    }

    async fn get_command(
        &self,
        request: Request<pb::GetCommandRequest>,
    ) -> Result<Response<pb::Command>, Status> {
        let command_id = parse_id(&request.into_inner().command_id)?;
        match self
            .inner
            .journal
            .command_with_output(command_id)
            .await
            .map_err(grpc_status::journal)?
        {
            Some(record) => Ok(Response::new(record.to_proto())),
            None => Err(grpc_status::not_found(command_id)),
        }
    }

    async fn list_commands(
        &self,
        request: Request<pb::ListCommandsRequest>,
    ) -> Result<Response<pb::ListCommandsResponse>, Status> {
        let req = request.into_inner();
        let status_filter = match CommandStatus::try_from(req.status) {
            Ok(CommandStatus::Unspecified) => None,
            Ok(s) => Some(s),
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "status: unknown value {}",
                    req.status
                )));
            }
        };
        let before_row = if req.page_token.is_empty() {
            None
        } else {
            Some(decode_page_token(&req.page_token)?)
        };
        let limit = match req.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => (n as usize).min(MAX_PAGE_SIZE),
        };
        let page = self
            .inner
            .journal
            .list(ListFilter {
                status: status_filter,
                session_id: (!req.session_id.is_empty()).then_some(req.session_id),
                before_row,
                limit,
            })
            .await
            .map_err(grpc_status::journal)?;
        Ok(Response::new(pb::ListCommandsResponse {
            commands: page.commands.iter().map(|c| c.to_proto()).collect(),
            next_page_token: page
                .next_before_row
                .map(encode_page_token)
                .unwrap_or_default(),
        }))
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let limit = match request.into_inner().page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => (n as usize).min(MAX_PAGE_SIZE),
        };
        let sessions = self
            .inner
            .journal
            .list_sessions(limit)
            .await
            .map_err(grpc_status::journal)?;
        Ok(Response::new(pb::ListSessionsResponse { sessions }))
    }

    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let req = request.into_inner();
        if req.session_id.is_empty() {
            return Err(Status::invalid_argument("session_id: must not be empty"));
        }
        if req.session_id.len() > MAX_SESSION_ID_BYTES {
            return Err(Status::invalid_argument(format!(
                "session_id: is longer than {MAX_SESSION_ID_BYTES} bytes"
            )));
        }
        let max_turns = match req.max_turns {
            0 => DEFAULT_SESSION_TURNS,
            n => (n as usize).min(MAX_SESSION_TURNS),
        };
        let session_id = req.session_id.clone();
        self.inner
            .journal
            .get_session(req.session_id, max_turns)
            .await
            .map_err(grpc_status::journal)?
            .map(Response::new)
            .ok_or_else(|| {
                Status::not_found(format!(
                    "no session {session_id:?}: no turn of it has ended"
                ))
            })
    }

    async fn get_hub_info(
        &self,
        _request: Request<pb::GetHubInfoRequest>,
    ) -> Result<Response<pb::HubInfo>, Status> {
        let providers = pb::Provider::ALL
            .into_iter()
            .map(|p| {
                // A store that cannot be read counts as "no credential" here; running a command
                // reports the precise problem.
                let credential = self.inner.credentials.credential_for(p).ok().flatten();
                pb::ProviderInfo {
                    provider: p as i32,
                    name: p.name().to_owned(),
                    supported: self.inner.providers.get(p).is_some(),
                    has_credential: credential.is_some(),
                    credential_kind: credential.map(|c| c.kind().to_owned()).unwrap_or_default(),
                }
            })
            .collect();
        let config = &self.inner.config;
        Ok(Response::new(pb::HubInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            hub_id: self.inner.hub_id.clone(),
            providers,
            limits: Some(pb::HubLimits {
                max_concurrent: config.max_concurrent,
                queue_capacity: config.queue_capacity,
                max_content_bytes: helix_mesh::MAX_CONTENT_BYTES as u64,
            }),
            protocol_version: helix_mesh::PROTOCOL_VERSION,
        }))
    }
}

fn encode_page_token(row: i64) -> String {
    format!("r{row}")
}

fn decode_page_token(token: &str) -> Result<i64, Status> {
    token
        .strip_prefix('r')
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            Status::invalid_argument("page_token: not a token from a previous ListCommands answer")
        })
}
