//! gRPC with one QUIC bi-stream per call (ALPN [`ALPN_GRPC_CALLS`]): the mapping HTTP/3 uses,
//! without HTTP/2 in between.
//!
//! Over [`crate::iroh_grpc`] every call of a channel shares one QUIC stream through hyper's
//! HTTP/2 connection task on each side. Here a call owns its stream: the caller's task writes
//! the request straight into it, the hub runs one task per call that polls the tonic service
//! and writes the answer into the stream, and QUIC does the multiplexing and flow control.
//! Bodies travel as `Bytes` without a copy, and no connection task sits between a call and
//! the network.
//!
//! # Wire
//!
//! Each direction of a call's stream is a sequence of frames, `type (1 byte) | length (u32,
//! big-endian) | payload`, then the stream's end:
//!
//! - request: `HEADERS` (`:path` first, then the metadata), any number of `DATA`, end;
//! - response: `HEADERS` (`:status` first, then the headers), any number of `DATA`, `TRAILERS`
//!   (`grpc-status` and friends), end. A "trailers-only" answer is `HEADERS` then `TRAILERS`.
//!
//! A header block is `count (u16)`, then per field `name length (u16) | name | value length
//! (u32) | value`. A caller that gives up (drops the response) stops its stream, and the hub
//! drops the call's response body at once, as an HTTP/2 `RST_STREAM` would.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use iroh::{
    endpoint::{Connection, ReadError, RecvStream, SendStream, VarInt, WriteError},
    protocol::{AcceptError, ProtocolHandler},
};
use tokio::io::AsyncReadExt;
use tokio_util::task::TaskTracker;
use tonic::{Status, body::Body, codegen::StdError};
use tower::{Service, ServiceExt};

use crate::iroh_grpc::{ConnectionTracker, IrohConnectInfo, refusal};

pub use crate::transport::ALPN_GRPC_CALLS;

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const TRAILERS: u8 = 2;
/// Frame header: type and length.
const FRAME_HEADER: usize = 5;
/// The largest header block either side accepts.
pub const MAX_HEADER_BLOCK: u32 = 256 * 1024;
/// Stream error code: the peer broke the framing.
const RESET_PROTOCOL: u32 = 0x11;

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

/// The spoke's side: every call opens a new stream on `conn`. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CallChannel {
    conn: Connection,
}

impl CallChannel {
    /// Calls over `conn`, a connection dialed with [`ALPN_GRPC_CALLS`].
    pub fn new(conn: Connection) -> Self {
        Self { conn }
    }

    /// The connection the calls use.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

impl Service<http::Request<Body>> for CallChannel {
    type Response = http::Response<Body>;
    type Error = StdError;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self.conn.close_reason() {
            Some(reason) => Poll::Ready(Err(Box::new(lost(&self.conn, &reason.to_string())))),
            None => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let conn = self.conn.clone();
        Box::pin(async move {
            call(conn, request)
                .await
                .map_err(|status| Box::new(status) as StdError)
        })
    }
}

/// A lost transport, in gRPC's words: `UNAVAILABLE`, with the hub's reason when it gave one.
fn lost(conn: &Connection, detail: &str) -> Status {
    match conn.close_reason().as_ref().and_then(refusal) {
        Some(reason) => Status::unavailable(reason),
        None => Status::unavailable(format!("the connection to the hub was lost: {detail}")),
    }
}

async fn call(
    conn: Connection,
    request: http::Request<Body>,
) -> Result<http::Response<Body>, Status> {
    let (mut send, recv) = conn
        .open_bi()
        .await
        .map_err(|e| lost(&conn, &e.to_string()))?;
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let head = header_block(HEADERS, Some((":path", path.as_bytes())), &parts.headers);
    send.write_chunk(head)
        .await
        .map_err(|e| write_lost(&conn, e))?;
    let mut reader = FrameReader::new(recv);
    // The request body goes out while the answer's head is awaited; a body still going when
    // the head arrives (client streaming) carries on in its own task.
    let pump = Box::pin(pump_body(send, body, std::future::pending::<()>()));
    let head = Box::pin(reader.head());
    let head = match futures::future::select(pump, head).await {
        futures::future::Either::Left((pumped, head)) => {
            pumped.map_err(|e| e.into_status(&conn))?;
            head.await
        }
        futures::future::Either::Right((head, pump)) => {
            tokio::spawn(pump);
            head
        }
    }
    .map_err(|e| e.into_status(&conn))?;
    let Some(fields) = head else {
        return Err(lost(&conn, "the hub ended the call without an answer"));
    };
    let (status, headers) = fields.into_response_head()?;
    let mut response = http::Response::new(Body::new(response_body(reader, conn)));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    *response.version_mut() = http::Version::HTTP_2;
    Ok(response)
}

fn write_lost(conn: &Connection, e: WriteError) -> Status {
    lost(conn, &e.to_string())
}

/// Streams `body` into `send` as `DATA` and `TRAILERS` frames, then ends the stream. With
/// `stopped`, returns early (without error) when the peer stops reading.
async fn pump_body<F: Future>(
    mut send: SendStream,
    mut body: Body,
    stopped: F,
) -> Result<(), CallError> {
    let mut stopped = std::pin::pin!(stopped);
    loop {
        let frame = tokio::select! {
            biased;
            frame = body.frame() => frame,
            _ = stopped.as_mut() => return Ok(()),
        };
        let Some(frame) = frame else { break };
        let frame = match frame {
            Ok(frame) => frame,
            Err(status) => {
                // The body failed midway: end the call with the body's own status.
                let mut trailers = HeaderMap::new();
                let _ = status.add_header(&mut trailers);
                send.write_chunk(header_block(TRAILERS, None, &trailers))
                    .await
                    .map_err(CallError::Write)?;
                break;
            }
        };
        match frame.into_data() {
            Ok(data) => {
                let len = u32::try_from(data.len()).map_err(|_| CallError::TooLarge)?;
                let mut header = [0u8; FRAME_HEADER];
                header[0] = DATA;
                header[1..].copy_from_slice(&len.to_be_bytes());
                send.write_all_chunks(&mut [Bytes::copy_from_slice(&header), data])
                    .await
                    .map_err(CallError::Write)?;
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    send.write_chunk(header_block(TRAILERS, None, &trailers))
                        .await
                        .map_err(CallError::Write)?;
                }
            }
        }
    }
    // Finishing fails only if the stream is already gone, which the peer knows.
    let _ = send.finish();
    Ok(())
}

/// What went wrong on a call's stream.
#[derive(Debug)]
enum CallError {
    Read(ReadError),
    Write(WriteError),
    /// The peer broke the framing.
    Protocol(String),
    TooLarge,
}

impl CallError {
    /// A read error, with noq's own error recovered from the `io::Error` it comes wrapped in.
    fn from_io(e: std::io::Error) -> CallError {
        let text = e.to_string();
        match e.into_inner().map(|inner| inner.downcast::<ReadError>()) {
            Some(Ok(read)) => CallError::Read(*read),
            _ => CallError::Protocol(format!("reading the stream: {text}")),
        }
    }

    fn into_status(self, conn: &Connection) -> Status {
        match self {
            CallError::Read(ReadError::Reset(code)) => {
                Status::unavailable(format!("the hub reset the call (code {code})"))
            }
            CallError::Read(e) => lost(conn, &e.to_string()),
            CallError::Write(e) => lost(conn, &e.to_string()),
            CallError::Protocol(msg) => {
                Status::internal(format!("malformed answer from the hub: {msg}"))
            }
            CallError::TooLarge => Status::resource_exhausted("a message over 4 GiB"),
        }
    }
}

/// A header block as a frame: `HEADERS` or `TRAILERS`, with an optional pseudo field first.
fn header_block(kind: u8, pseudo: Option<(&str, &[u8])>, headers: &HeaderMap) -> Bytes {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_u8(kind);
    buf.put_u32(0); // length, set below
    let count = headers.len() + usize::from(pseudo.is_some());
    buf.put_u16(u16::try_from(count).unwrap_or(u16::MAX));
    let fields = pseudo
        .into_iter()
        .map(|(n, v)| (n.as_bytes(), v))
        .chain(
            headers
                .iter()
                .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())),
        )
        .take(usize::from(u16::MAX));
    for (name, value) in fields {
        buf.put_u16(name.len() as u16);
        buf.put_slice(name);
        buf.put_u32(value.len() as u32);
        buf.put_slice(value);
    }
    let len = (buf.len() - FRAME_HEADER) as u32;
    buf[1..FRAME_HEADER].copy_from_slice(&len.to_be_bytes());
    buf.freeze()
}

/// A decoded header block: the pseudo field (if the block has one) and the rest.
#[derive(Debug)]
struct Fields {
    pseudo: Option<(String, Bytes)>,
    headers: HeaderMap,
}

impl Fields {
    fn decode(mut block: Bytes, with_pseudo: bool) -> Result<Fields, String> {
        let need = |block: &Bytes, n: usize| {
            if block.remaining() < n {
                Err("truncated header block".to_owned())
            } else {
                Ok(())
            }
        };
        need(&block, 2)?;
        let count = block.get_u16();
        let mut pseudo = None;
        let mut headers = HeaderMap::with_capacity(usize::from(count));
        for i in 0..count {
            need(&block, 2)?;
            let name_len = usize::from(block.get_u16());
            need(&block, name_len)?;
            let name = block.split_to(name_len);
            need(&block, 4)?;
            let value_len = block.get_u32() as usize;
            need(&block, value_len)?;
            let value = block.split_to(value_len);
            if i == 0 && with_pseudo {
                let name = std::str::from_utf8(&name)
                    .map_err(|_| "pseudo field name is not UTF-8".to_owned())?;
                pseudo = Some((name.to_owned(), value));
                continue;
            }
            let name = HeaderName::from_bytes(&name).map_err(|e| format!("header name: {e}"))?;
            let value =
                HeaderValue::from_maybe_shared(value).map_err(|e| format!("header {name}: {e}"))?;
            headers.append(name, value);
        }
        if block.has_remaining() {
            return Err("bytes after the header block".to_owned());
        }
        Ok(Fields { pseudo, headers })
    }

    fn pseudo(&self, name: &str) -> Option<&Bytes> {
        self.pseudo
            .as_ref()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    fn into_response_head(self) -> Result<(StatusCode, HeaderMap), Status> {
        let status = self
            .pseudo(":status")
            .and_then(|v| StatusCode::from_bytes(v).ok())
            .ok_or_else(|| Status::internal("malformed answer from the hub: no :status"))?;
        Ok((status, self.headers))
    }
}

/// Bytes asked of the QUIC stream per read. QUIC hands data over in packet-sized pieces;
/// reading many of them into one buffer (one copy, as HTTP/2 over a byte stream does) keeps
/// the per-piece work of the body and the gRPC decoder off the hot path.
const READ_SIZE: usize = 256 * 1024;

/// Reads frames off a call's stream; `DATA` payloads are slices of its read buffer.
#[derive(Debug)]
struct FrameReader {
    recv: RecvStream,
    /// Received and not yet consumed.
    buf: Bytes,
    /// Where reads land.
    read_buf: BytesMut,
    /// `DATA` payload bytes still to come in the current frame.
    data_left: u32,
}

/// What [`FrameReader::next`] found.
#[derive(Debug)]
enum Piece {
    Data(Bytes),
    Trailers(HeaderMap),
    /// A second `HEADERS` frame.
    Headers,
}

impl FrameReader {
    fn new(recv: RecvStream) -> Self {
        Self {
            recv,
            buf: Bytes::new(),
            read_buf: BytesMut::new(),
            data_left: 0,
        }
    }

    /// Reads more into `buf` if it is empty; `false` at the stream's end.
    async fn fill(&mut self) -> Result<bool, CallError> {
        while self.buf.is_empty() {
            self.read_buf.reserve(READ_SIZE);
            let read = self
                .recv
                .read_buf(&mut self.read_buf)
                .await
                .map_err(CallError::from_io)?;
            if read == 0 {
                return Ok(false);
            }
            self.buf = self.read_buf.split().freeze();
        }
        Ok(true)
    }

    /// Exactly `n` bytes, or `None` at a clean end before the first of them.
    async fn exact(&mut self, n: usize) -> Result<Option<Bytes>, CallError> {
        if !self.fill().await? {
            return Ok(None);
        }
        if self.buf.len() >= n {
            return Ok(Some(self.buf.split_to(n)));
        }
        let mut out = BytesMut::with_capacity(n);
        while out.len() < n {
            if !self.fill().await? {
                return Err(CallError::Protocol(
                    "the stream ended inside a frame".into(),
                ));
            }
            let take = (n - out.len()).min(self.buf.len());
            out.extend_from_slice(&self.buf.split_to(take));
        }
        Ok(Some(out.freeze()))
    }

    /// The next frame header, or `None` at the stream's end.
    async fn frame_header(&mut self) -> Result<Option<(u8, u32)>, CallError> {
        let Some(mut header) = self.exact(FRAME_HEADER).await? else {
            return Ok(None);
        };
        Ok(Some((header.get_u8(), header.get_u32())))
    }

    async fn block(&mut self, len: u32, with_pseudo: bool) -> Result<Fields, CallError> {
        if len > MAX_HEADER_BLOCK {
            return Err(CallError::Protocol(format!(
                "a header block of {len} bytes (at most {MAX_HEADER_BLOCK})"
            )));
        }
        let block = self
            .exact(len as usize)
            .await?
            .ok_or_else(|| CallError::Protocol("the stream ended inside a frame".into()))?;
        Fields::decode(block, with_pseudo).map_err(CallError::Protocol)
    }

    /// The `HEADERS` frame that opens a stream, or `None` if it ended before one.
    async fn head(&mut self) -> Result<Option<Fields>, CallError> {
        match self.frame_header().await? {
            None => Ok(None),
            Some((HEADERS, len)) => self.block(len, true).await.map(Some),
            Some((kind, _)) => Err(CallError::Protocol(format!(
                "the stream opened with frame type {kind}, not HEADERS"
            ))),
        }
    }

    /// The next piece of the body, or `None` at the stream's end.
    async fn next(&mut self) -> Result<Option<Piece>, CallError> {
        loop {
            if self.data_left > 0 {
                if !self.fill().await? {
                    return Err(CallError::Protocol(
                        "the stream ended inside a frame".into(),
                    ));
                }
                let take = (self.data_left as usize).min(self.buf.len());
                self.data_left -= take as u32;
                return Ok(Some(Piece::Data(self.buf.split_to(take))));
            }
            match self.frame_header().await? {
                None => return Ok(None),
                Some((DATA, len)) => self.data_left = len,
                Some((TRAILERS, len)) => {
                    return Ok(Some(Piece::Trailers(self.block(len, false).await?.headers)));
                }
                Some((HEADERS, _)) => return Ok(Some(Piece::Headers)),
                Some((kind, _)) => {
                    return Err(CallError::Protocol(format!("unknown frame type {kind}")));
                }
            }
        }
    }
}

/// The answer's body on the spoke: `DATA` pieces, then the trailers. A stream that ends
/// without trailers is an error: every gRPC answer ends with a status.
fn response_body(
    reader: FrameReader,
    conn: Connection,
) -> impl http_body::Body<Data = Bytes, Error = Status> + Send + 'static {
    let pieces = futures::stream::unfold(Some((reader, conn)), |state| async move {
        let (mut reader, conn) = state?;
        match reader.next().await {
            Ok(Some(Piece::Data(data))) => Some((Ok(Frame::data(data)), Some((reader, conn)))),
            Ok(Some(Piece::Trailers(trailers))) => Some((Ok(Frame::trailers(trailers)), None)),
            Ok(Some(Piece::Headers)) => Some((
                Err(Status::internal(
                    "malformed answer from the hub: a second HEADERS frame",
                )),
                None,
            )),
            Ok(None) => Some((
                Err(lost(&conn, "the hub ended the call without a status")),
                None,
            )),
            Err(e) => Some((Err(e.into_status(&conn)), None)),
        }
    });
    StreamBody::new(pieces)
}

/// A call's request body on the hub: `DATA` pieces until the stream's end.
fn request_body(reader: FrameReader) -> Body {
    let pieces = futures::stream::unfold(Some(reader), |state| async move {
        let mut reader = state?;
        match reader.next().await {
            Ok(Some(Piece::Data(data))) => Some((Ok(Frame::data(data)), Some(reader))),
            Ok(Some(Piece::Trailers(trailers))) => Some((Ok(Frame::trailers(trailers)), None)),
            Ok(Some(Piece::Headers)) => Some((
                Err(Status::internal("a second HEADERS frame in a request")),
                None,
            )),
            Ok(None) => None,
            Err(CallError::Read(ReadError::Reset(code))) => Some((
                Err(Status::cancelled(format!(
                    "the caller reset the call (code {code})"
                ))),
                None,
            )),
            Err(e) => Some((Err(Status::internal(format!("{e:?}"))), None)),
        }
    });
    Body::new(StreamBody::new(pieces))
}

/// The hub's handler for [`ALPN_GRPC_CALLS`]: each accepted bi-stream is one call of `S`
/// (e.g. `tonic::service::Routes`), served in its own task.
#[derive(Debug, Clone)]
pub struct CallAcceptor<S> {
    service: S,
    tracker: ConnectionTracker,
    tasks: TaskTracker,
}

impl<S> CallAcceptor<S> {
    /// Calls served by `service`; `tracker` learns each connection (so a device can be cut
    /// off), `tasks` each call (so a stopping hub can wait for them).
    pub fn new(service: S, tracker: ConnectionTracker, tasks: TaskTracker) -> Self {
        Self {
            service,
            tracker,
            tasks,
        }
    }
}

impl<S> ProtocolHandler for CallAcceptor<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + std::fmt::Debug
        + 'static,
    S::Future: Send + 'static,
{
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        self.tracker.add(&conn);
        tracing::debug!(peer = %conn.remote_id(), "grpc-calls connection");
        let info = IrohConnectInfo {
            remote_id: conn.remote_id(),
            connection_id: conn.stable_id(),
        };
        while let Ok((send, recv)) = conn.accept_bi().await {
            if self.tasks.is_closed() {
                break;
            }
            self.tasks
                .spawn(serve_call(self.service.clone(), send, recv, info.clone()));
        }
        self.tracker.remove(&conn);
        Ok(())
    }
}

async fn serve_call<S>(service: S, mut send: SendStream, recv: RecvStream, info: IrohConnectInfo)
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
{
    let mut reader = FrameReader::new(recv);
    let fields = match reader.head().await {
        Ok(Some(fields)) => fields,
        Ok(None) => return,
        Err(error) => {
            tracing::debug!(?error, "a call without a valid head");
            let _ = send.reset(VarInt::from_u32(RESET_PROTOCOL));
            return;
        }
    };
    let path = fields
        .pseudo(":path")
        .and_then(|p| http::uri::PathAndQuery::from_maybe_shared(p.clone()).ok());
    let Some(path) = path else {
        let _ = send.reset(VarInt::from_u32(RESET_PROTOCOL));
        return;
    };
    let mut request = http::Request::new(request_body(reader));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = http::Uri::from(path);
    *request.version_mut() = http::Version::HTTP_2;
    *request.headers_mut() = fields.headers;
    request.extensions_mut().insert(info);
    let Ok(response) = service.oneshot(request).await;
    let (parts, body) = response.into_parts();
    let status = parts.status.as_str().to_owned();
    let head = header_block(
        HEADERS,
        Some((":status", status.as_bytes())),
        &parts.headers,
    );
    if send.write_chunk(head).await.is_err() {
        return;
    }
    let stopped = send.stopped();
    if let Err(error) = pump_body(send, body, stopped).await {
        tracing::debug!(?error, "a call's answer was cut short");
    }
}
