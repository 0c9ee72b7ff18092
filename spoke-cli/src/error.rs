//! The error a `helix` subcommand ends with, and the one place that decides which exit code
//! each error means ([`Error::exit`]). The library's modules return their own typed errors
//! (keeping their sources); only this module maps them to [`Exit`] codes.

use crate::{
    cancel::CancelError,
    client::{BindError, ConnectError, HubStatus, ReachError, ResolveError},
    cloud_route::CloudRouteError,
    device::DeviceError,
    exit::Exit,
    follow::FollowError,
    hub_info::HubInfoError,
    pair::{CloudPairError, PairError},
    queries::QueryError,
    run::RunError,
};

/// A subcommand failed; the text is what `helix` prints, [`Error::exit`] what it exits with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("--relay-url {url:?} is not a relay URL: {source}")]
    RelayUrl {
        url: String,
        #[source]
        source: <iroh::RelayUrl as std::str::FromStr>::Err,
    },
    #[error(transparent)]
    Settings(#[from] crate::settings::SettingsError),
    #[error(transparent)]
    RelayCa(#[from] helix_mesh::transport::EndpointError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Cancel(#[from] CancelError),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    HubInfo(#[from] HubInfoError),
    #[error(transparent)]
    Pair(#[from] PairError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// `helix keeper` could not run.
    #[error("the keeper could not run: {0}")]
    Keeper(#[source] std::io::Error),
}

impl Error {
    /// The exit code this error means (see `helix --help`).
    pub fn exit(&self) -> Exit {
        match self {
            Error::RelayUrl { .. } | Error::Settings(_) | Error::RelayCa(_) => Exit::Usage,
            Error::Keeper(_) => Exit::Unreachable,
            Error::Run(e) => run_exit(e),
            Error::Cancel(e) => match e {
                CancelError::Resolve(e) => resolve_exit(e),
                CancelError::Connect(e) => connect_exit(e),
                CancelError::Status(e) => status_exit(e),
                CancelError::Cloud(e) => cloud_exit(e),
            },
            Error::Query(e) => match e {
                QueryError::Reach(e) => reach_exit(e),
                QueryError::Status(e) => status_exit(e),
                QueryError::ViaCloudWithoutHub => Exit::Usage,
                QueryError::Cloud(e) => cloud_exit(e),
            },
            Error::HubInfo(e) => match e {
                HubInfoError::Reach(e) => reach_exit(e),
                HubInfoError::Status(e) => status_exit(e),
                HubInfoError::WatchEnded => Exit::Unreachable,
            },
            Error::Pair(e) => pair_exit(e),
            Error::Device(e) => match e {
                DeviceError::Key(_) | DeviceError::Cloud(_) => Exit::Failed,
            },
        }
    }
}

fn run_exit(e: &RunError) -> Exit {
    match e {
        RunError::ReadPrompt(_)
        | RunError::EmptyPrompt
        | RunError::NothingToContinue
        | RunError::RunViaCloudWithoutHub
        | RunError::AttachViaCloudWithoutHub => Exit::Usage,
        RunError::LineEditor(_) => Exit::Failed,
        RunError::Resolve(e) => resolve_exit(e),
        RunError::Connect(e) => connect_exit(e),
        RunError::Follow(e) => match e {
            FollowError::CtrlC(_) => Exit::Failed,
            FollowError::Status(e) => status_exit(e),
            FollowError::Refused(_) => Exit::Refused,
            FollowError::Connect(e) => connect_exit(e),
            FollowError::NotResumed(_) | FollowError::NotReconnected { .. } => Exit::Unreachable,
        },
        RunError::Cloud(e) => cloud_exit(e),
    }
}

fn pair_exit(e: &PairError) -> Exit {
    match e {
        PairError::Ticket(_)
        | PairError::AddressTicket
        | PairError::TicketInput(_)
        | PairError::TicketFile { .. } => Exit::Usage,
        PairError::Bind(e) => bind_exit(e),
        PairError::NoRoute(_)
        | PairError::Dial(_)
        | PairError::Stream(_)
        | PairError::Exchange(_)
        | PairError::NoAnswer(_) => Exit::Unreachable,
        PairError::Refused(_) => Exit::Refused,
        PairError::Config(_) => Exit::Failed,
        PairError::Cloud(e) => cloud_pair_exit(e),
    }
}

fn cloud_pair_exit(e: &CloudPairError) -> Exit {
    match e {
        CloudPairError::Cloud(_)
        | CloudPairError::SignedOut
        | CloudPairError::HubNotInCloud(_)
        | CloudPairError::Rest(_)
        | CloudPairError::NoAnswer { .. } => Exit::Unreachable,
        CloudPairError::Seal(_)
        | CloudPairError::Payload(_)
        | CloudPairError::AnswerFromOther { .. }
        | CloudPairError::ForgedAnswer { .. } => Exit::Failed,
    }
}

fn reach_exit(e: &ReachError) -> Exit {
    match e {
        ReachError::Resolve(e) => resolve_exit(e),
        ReachError::Connect(e) => connect_exit(e),
    }
}

fn resolve_exit(e: &ResolveError) -> Exit {
    match e {
        ResolveError::NoHub => Exit::Unreachable,
        ResolveError::SeveralHubs(_)
        | ResolveError::Ticket(_)
        | ResolveError::UnknownHub { .. } => Exit::Usage,
        ResolveError::Config(_) => Exit::Failed,
    }
}

fn bind_exit(e: &BindError) -> Exit {
    match e {
        BindError::Key(_) => Exit::Failed,
        BindError::Endpoint(_) => Exit::Unreachable,
    }
}

/// By the same reading of the error that decides whether to fall back to the cloud route or
/// to keep reconnecting ([`ConnectError::refused_by_hub`], [`ConnectError::hub_unreachable`]).
fn connect_exit(e: &ConnectError) -> Exit {
    if e.refused_by_hub() {
        Exit::Refused
    } else if e.hub_unreachable() {
        Exit::Unreachable
    } else {
        Exit::Failed
    }
}

fn cloud_exit(e: &CloudRouteError) -> Exit {
    match e {
        CloudRouteError::Cloud(_)
        | CloudRouteError::SignedOut
        | CloudRouteError::Rest(_)
        | CloudRouteError::Silent { .. } => Exit::Unreachable,
        CloudRouteError::Seal(_)
        | CloudRouteError::Payload(_)
        | CloudRouteError::Key(_)
        | CloudRouteError::CtrlC(_)
        | CloudRouteError::RefusedKey { .. }
        | CloudRouteError::RefusedPrompt { .. }
        | CloudRouteError::RefusedEvent { .. } => Exit::Failed,
        CloudRouteError::TtlTooLong { .. } | CloudRouteError::OtherHub { .. } => Exit::Usage,
        // A bad id is refused as the hub refuses one over iroh (INVALID_ARGUMENT).
        CloudRouteError::HubNotRegistered { .. }
        | CloudRouteError::CloudFull { .. }
        | CloudRouteError::ExpiryRefused { .. }
        | CloudRouteError::NotAllowed { .. }
        | CloudRouteError::UnknownCommand(_)
        | CloudRouteError::NoSession(_)
        | CloudRouteError::NotAUuid(_)
        | CloudRouteError::NoKey { .. } => Exit::Refused,
    }
}

/// A gRPC status from the hub: unreachable, refused, or failed by its code.
fn status_exit(HubStatus(status): &HubStatus) -> Exit {
    use tonic::Code;
    match status.code() {
        Code::Unavailable | Code::Unknown | Code::DeadlineExceeded => Exit::Unreachable,
        Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::Unauthenticated
        | Code::PermissionDenied
        | Code::ResourceExhausted
        | Code::FailedPrecondition
        | Code::OutOfRange => Exit::Refused,
        _ => Exit::Failed,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use helix_mesh::iroh_grpc::DialError;

    use super::*;
    use crate::{cloud_route, config::ConfigError};

    /// What `helix` prints after "helix: error: " and exits with.
    fn shown(e: impl Into<Error>) -> (u8, String) {
        let e = e.into();
        (e.exit().code(), e.to_string())
    }

    fn corrupt() -> ConfigError {
        ConfigError::Corrupt {
            path: "/c/hubs.json".into(),
            problem: "EOF".into(),
        }
    }

    #[test]
    fn finding_the_hub() {
        let resolve = |e: ResolveError| shown(RunError::from(e));
        assert_eq!(
            resolve(ResolveError::NoHub),
            (
                3,
                "no hub to talk to: none runs on this machine (start one with `helix-hub serve`) and none is paired (pair with `helix pair TICKET`, the ticket comes from `helix-hub pair`)".into()
            )
        );
        assert_eq!(
            resolve(ResolveError::SeveralHubs(vec!["a".into(), "b".into()])),
            (
                2,
                "several hubs are known (a, b): choose one with --hub NAME".into()
            )
        );
        assert_eq!(
            resolve(ResolveError::UnknownHub {
                hub: "x".into(),
                known: vec!["a".into(), "b".into()],
            }),
            (
                2,
                "unknown hub \"x\": known hubs are [a, b] (see `helix hubs`); or pass a ticket or a hub id".into()
            )
        );
        assert_eq!(resolve(ResolveError::Config(corrupt())).0, 1);
        let bad_ticket = helix_mesh::ticket::Ticket::decode("hello").unwrap_err();
        assert_eq!(
            resolve(bad_ticket.clone().into()),
            (2, bad_ticket.to_string())
        );
        let url = "not a url".to_owned();
        let source = url.parse::<iroh::RelayUrl>().unwrap_err();
        let text = format!("--relay-url {url:?} is not a relay URL: {source}");
        assert_eq!(shown(Error::RelayUrl { url, source }), (2, text));
    }

    #[test]
    fn connecting() {
        let connect = |e: ConnectError| shown(QueryError::from(ReachError::from(e)));
        assert_eq!(
            connect(DialError::Refused("this device is not paired".into()).into()),
            (6, "this device is not paired".into())
        );
        let timeout = DialError::Timeout(Duration::from_secs(10));
        assert_eq!(
            connect(timeout.into()),
            (
                3,
                "no route to the hub within 10s (is it running and online? try `helix hubs`)"
                    .into()
            )
        );
        assert_eq!(connect(BindError::Key(corrupt()).into()).0, 1);
        let not_running = helix_discovery::local::LocalHubError::NotRunning { dir: "/h".into() };
        assert_eq!(connect(not_running.into()).0, 3);
    }

    #[test]
    fn hub_statuses() {
        let status = |s: tonic::Status| shown(CancelError::from(HubStatus(s)));
        assert_eq!(
            status(tonic::Status::not_found("no command x")),
            (6, "no command x".into())
        );
        assert_eq!(status(tonic::Status::resource_exhausted("full")).0, 6);
        assert_eq!(status(tonic::Status::unavailable("gone")).0, 3);
        assert_eq!(status(tonic::Status::internal("")), (1, "Internal".into()));
    }

    #[test]
    fn following() {
        let follow = |e: FollowError| shown(RunError::from(e));
        assert_eq!(
            follow(FollowError::Refused("revoked".into())),
            (6, "revoked".into())
        );
        assert_eq!(
            follow(FollowError::NotResumed(tonic::Status::unavailable(
                "the stream ended early"
            ))),
            (
                3,
                "lost the hub and could not resume within 30s (the stream ended early)".into()
            )
        );
        assert_eq!(
            follow(FollowError::NotReconnected {
                source: DialError::Timeout(Duration::from_secs(10)).into()
            }),
            (
                3,
                "lost the hub and could not reconnect within 30s: no route to the hub within 10s (is it running and online? try `helix hubs`)".into()
            )
        );
        assert_eq!(
            follow(FollowError::Connect(
                DialError::Refused("revoked".into()).into()
            )),
            (6, "revoked".into())
        );
        assert_eq!(
            shown(RunError::EmptyPrompt),
            (2, "the prompt is empty".into())
        );
        assert_eq!(
            shown(RunError::RunViaCloudWithoutHub),
            (
                2,
                "--via cloud needs --hub (a paired hub's name, id or ticket)".into()
            )
        );
        assert_eq!(
            shown(RunError::AttachViaCloudWithoutHub),
            (2, "--via cloud needs --hub".into())
        );
    }

    #[test]
    fn the_cloud_route() {
        let cloud = |e: CloudRouteError| shown(RunError::from(e));
        assert_eq!(
            cloud(CloudRouteError::SignedOut),
            (
                3,
                "the cloud route needs the cloud: run `helix cloud login`".into()
            )
        );
        assert_eq!(
            cloud(CloudRouteError::Silent {
                silence: Duration::from_secs(1),
                command_id: "c1".into()
            }),
            (
                3,
                "cloud route: nothing from the hub for 1s (--cloud-silence); the command may still run (follow it again with `helix attach --via cloud c1`)".into()
            )
        );
        assert_eq!(
            cloud(CloudRouteError::UnknownCommand("c1".into())),
            (6, "no command c1 in the cloud".into())
        );
        assert_eq!(
            cloud(CloudRouteError::NotAUuid("x".into())),
            (6, "command_id: \"x\" is not a UUID".into())
        );
        assert_eq!(
            cloud(CloudRouteError::NoKey {
                command_id: "c1".into()
            }),
            (
                6,
                "this device has no key for command c1: it was paired after the command started, or it is revoked".into()
            )
        );
        assert_eq!(
            cloud(CloudRouteError::HubNotRegistered { hub: "abcde".into() }),
            (
                6,
                "hub abcde has not connected to the cloud under this account: on the hub run `helix-hub cloud login` with the same account, then restart it".into()
            )
        );
        assert_eq!(
            cloud(CloudRouteError::RefusedEvent {
                seq: 3,
                command_id: "c1".into(),
                why: cloud_route::Refusal::Missing { next: 5 },
            }),
            (
                1,
                "cloud route: refused event 3 of c1: it is missing from the cloud (the next event stored is 5) (nothing of it was printed, nor anything after it)".into()
            )
        );
        let usage = helix_discovery::cloud::CloudError::Usage("no session".into());
        assert_eq!(cloud(usage.into()), (3, "cloud route: no session".into()));
        assert_eq!(shown(CancelError::from(CloudRouteError::SignedOut)).0, 3);
    }

    #[test]
    fn pairing_and_the_rest() {
        assert_eq!(
            shown(PairError::AddressTicket),
            (
                2,
                "that is an address ticket, which grants nothing: create a pairing ticket on the hub with `helix-hub pair`".into()
            )
        );
        assert_eq!(
            shown(PairError::NoRoute(Duration::from_secs(10))),
            (
                3,
                "could not reach the hub to pair: no route within 10s".into()
            )
        );
        assert_eq!(
            shown(PairError::Refused("bad secret".into())),
            (6, "the hub refused to pair: bad secret".into())
        );
        assert_eq!(shown(PairError::Config(corrupt())).0, 1);
        assert_eq!(
            shown(HubInfoError::WatchEnded),
            (3, "the hub ended the watch".into())
        );
        let usage = helix_discovery::cloud::CloudError::Usage("no password on stdin".into());
        assert_eq!(
            shown(DeviceError::from(usage)),
            (1, "no password on stdin".into())
        );
        assert_eq!(shown(DeviceError::Key(corrupt())).0, 1);
    }
}
