//! The spoke's gRPC transports: tonic's `Channel` over loopback TCP, or [`DirectChannel`], one
//! HTTP/2 connection on one iroh QUIC stream driven by hyper directly.
//!
//! tonic's `Channel` puts a buffer task in front of its connection: every call is handed to
//! that task, which hands it to hyper's connection task. Over iroh the spoke has no use for
//! what the buffer buys (load balancing, lazy reconnects: it reconnects explicitly), so
//! [`DirectChannel`] gives each request straight to hyper, one task hand-off less per call.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use http::uri::{Authority, Scheme};
use tonic::{body::Body, codegen::StdError, transport::Channel};

/// The authority requests over iroh carry (HTTP/2 needs one; the hub ignores it).
pub const IROH_AUTHORITY: &str = "hub.iroh.invalid";

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

/// One HTTP/2 connection on an iroh stream, without tonic's buffer task. Cheap to clone;
/// clones share the connection. Made by [`crate::iroh_grpc::IrohConnector::channel`].
#[derive(Debug, Clone)]
pub struct DirectChannel {
    send: hyper::client::conn::http2::SendRequest<Body>,
}

impl DirectChannel {
    pub(crate) fn new(send: hyper::client::conn::http2::SendRequest<Body>) -> Self {
        Self { send }
    }
}

impl tower::Service<http::Request<Body>> for DirectChannel {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.send.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        // A generated client sends the path alone; HTTP/2 wants a scheme and an authority.
        if request.uri().authority().is_none() {
            let mut parts = request.uri().clone().into_parts();
            parts.scheme = Some(Scheme::HTTP);
            parts.authority = Some(Authority::from_static(IROH_AUTHORITY));
            if let Ok(uri) = http::Uri::from_parts(parts) {
                *request.uri_mut() = uri;
            }
        }
        Box::pin(self.send.send_request(request))
    }
}

/// How a spoke reaches a hub: loopback TCP on this machine, or iroh.
#[derive(Debug, Clone)]
pub enum HubChannel {
    Tcp(Channel),
    Iroh(DirectChannel),
}

impl From<Channel> for HubChannel {
    fn from(channel: Channel) -> Self {
        HubChannel::Tcp(channel)
    }
}

impl From<DirectChannel> for HubChannel {
    fn from(channel: DirectChannel) -> Self {
        HubChannel::Iroh(channel)
    }
}

impl tower::Service<http::Request<Body>> for HubChannel {
    type Response = http::Response<Body>;
    type Error = StdError;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            HubChannel::Tcp(c) => c.poll_ready(cx).map_err(Into::into),
            HubChannel::Iroh(c) => c.poll_ready(cx).map_err(lost),
        }
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        match self {
            HubChannel::Tcp(c) => {
                let call = c.call(request);
                Box::pin(async move { call.await.map_err(Into::into) })
            }
            HubChannel::Iroh(c) => {
                let call = c.call(request);
                Box::pin(async move { Ok(call.await.map_err(lost)?.map(Body::new)) })
            }
        }
    }
}

/// A request that could not be sent because the HTTP/2 connection is gone (closed, or the
/// request was dropped with it) is `UNAVAILABLE`, as gRPC names a lost transport: callers
/// reconnect on it. (tonic would call hyper's "canceled" `CANCELLED`, which reads as a user's
/// cancel.) Other errors pass through as they are.
fn lost(error: hyper::Error) -> StdError {
    if error.is_closed() || error.is_canceled() {
        Box::new(tonic::Status::unavailable(format!(
            "the connection to the hub was lost: {error}"
        )))
    } else {
        error.into()
    }
}

#[cfg(test)]
mod tests {
    use tower::Service;

    use super::*;

    #[tokio::test]
    async fn a_request_on_a_closed_connection_is_unavailable() {
        // An HTTP/2 client whose peer goes away after the handshake: its connection ends, and
        // every request after that must read as a lost transport.
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (send, connection) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .handshake::<_, Body>(hyper_util::rt::TokioIo::new(client))
                .await
                .unwrap();
        drop(server);
        let _ = connection.await;
        let mut channel = HubChannel::Iroh(DirectChannel::new(send));
        let request = http::Request::builder()
            .uri("/helix.remote.v1.RemoteExecution/GetHubInfo")
            .body(Body::empty())
            .unwrap();
        let error = match std::future::poll_fn(|cx| channel.poll_ready(cx)).await {
            Err(e) => e,
            Ok(()) => channel.call(request).await.unwrap_err(),
        };
        let status = tonic::Status::from_error(error);
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(
            status
                .message()
                .starts_with("the connection to the hub was lost"),
            "{status:?}"
        );
    }
}
