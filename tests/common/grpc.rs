//! A real gRPC service for the tests (tonic, served by hyper over h2c or TLS), a tonic client
//! for it, and a hand-made gRPC call for looking at frames.
//!
//! The messages are written by hand with prost's derive and the service by hand on tonic's
//! generic `server::Grpc`/`client::Grpc` — what tonic's code generator would emit — so the
//! build needs no `protoc` and no build script. The equivalent `.proto`:
//!
//! ```proto
//! syntax = "proto3";
//! package weir.test;
//! message Call  { string text = 1; uint32 count = 2; uint64 delay_ms = 3; int32 code = 4;
//!                 bytes padding = 5; }
//! message Reply { string text = 1; string endpoint = 2; uint32 seq = 3; }
//! service Echo {
//!   rpc Unary(Call) returns (Reply);             // the text back; `code` ≠ 0: that status
//!                                                //   instead (trailers-only)
//!   rpc Slow(Call) returns (Reply);              // waits `delay_ms` first, deadline or not
//!   rpc ClientStream(stream Call) returns (Reply); // the texts joined by "+", seq = how many
//!   rpc ServerStream(Call) returns (stream Reply); // `count` replies, seq 0, 1, …
//!   rpc Bidi(stream Call) returns (stream Reply);  // one reply per call, as each arrives
//!   rpc Fail(Call) returns (stream Reply);       // `count` replies, then status `code` with
//!                                                //   trailing metadata `x-detail: <text>`
//! }
//! ```
//!
//! Every reply names the endpoint (server) that made it. The server enforces no deadline
//! (`grpc-timeout` is read by nobody), so a call that ends early was ended by weir.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{StreamExt, stream};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::codec::Streaming;
use tonic::metadata::MetadataMap;
use tonic::{Code, IntoRequest, IntoStreamingRequest, Request, Response, Status};
use tonic_prost::ProstCodec;

use super::tls::TlsSeen;

/// The service's full name.
pub const SERVICE: &str = "weir.test.Echo";

/// A request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Call {
    #[prost(string, tag = "1")]
    pub text: String,
    #[prost(uint32, tag = "2")]
    pub count: u32,
    #[prost(uint64, tag = "3")]
    pub delay_ms: u64,
    #[prost(int32, tag = "4")]
    pub code: i32,
    #[prost(bytes = "vec", tag = "5")]
    pub padding: Vec<u8>,
}

/// A reply.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Reply {
    #[prost(string, tag = "1")]
    pub text: String,
    #[prost(string, tag = "2")]
    pub endpoint: String,
    #[prost(uint32, tag = "3")]
    pub seq: u32,
}

/// A call with this text.
pub fn call(text: &str) -> Call {
    Call {
        text: text.to_owned(),
        ..Call::default()
    }
}

/// The gRPC server: one `Echo` service as endpoint `name`.
pub struct GrpcServer {
    pub addr: SocketAddr,
    pub name: String,
    /// TCP connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    /// Calls received so far (counted when their head arrives).
    pub calls: Arc<AtomicUsize>,
    /// With TLS: the handshakes.
    pub tls: Arc<TlsSeen>,
    _cancel: DropGuard,
}

impl GrpcServer {
    /// HTTP/2 in cleartext with prior knowledge (h2c) on 127.0.0.1:0.
    pub async fn start(name: &str) -> GrpcServer {
        Self::serve(name, None, [127, 0, 0, 1].into()).await
    }

    /// Like [`GrpcServer::start`], on `ip` (the end-to-end suite's endpoints may not be
    /// loopback addresses).
    pub async fn start_on(name: &str, ip: std::net::IpAddr) -> GrpcServer {
        Self::serve(name, None, ip).await
    }

    /// HTTP/2 over TLS with `config` (give it ALPN `h2`; see [`super::tls::server_config`]).
    pub async fn start_tls(name: &str, config: Arc<rustls::ServerConfig>) -> GrpcServer {
        Self::serve(
            name,
            Some(tokio_rustls::TlsAcceptor::from(config)),
            [127, 0, 0, 1].into(),
        )
        .await
    }

    async fn serve(
        name: &str,
        tls: Option<tokio_rustls::TlsAcceptor>,
        ip: std::net::IpAddr,
    ) -> GrpcServer {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (connections, calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let seen = Arc::new(TlsSeen::default());
        let cancel = CancellationToken::new();
        let endpoint: Arc<str> = name.into();
        let (stop, counted, called, record) = (
            cancel.clone(),
            connections.clone(),
            calls.clone(),
            seen.clone(),
        );
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => accepted.unwrap(),
                };
                counted.fetch_add(1, Ordering::SeqCst);
                // gRPC writes a head and a message separately: without this, Nagle's algorithm
                // meets the peer's delayed ACK and every call takes ~40 ms.
                tcp.set_nodelay(true).unwrap();
                let (endpoint, called, stop, record, tls) = (
                    endpoint.clone(),
                    called.clone(),
                    stop.clone(),
                    record.clone(),
                    tls.clone(),
                );
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        called.fetch_add(1, Ordering::SeqCst);
                        let endpoint = endpoint.clone();
                        async move { Ok::<_, Infallible>(dispatch(endpoint, req).await) }
                    });
                    let builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let conn = builder.serve_connection(TokioIo::new(tcp), service);
                            tokio::select! { _ = conn => {} _ = stop.cancelled() => {} }
                        }
                        Some(acceptor) => {
                            let Some(stream) = record.accept(&acceptor, tcp).await else {
                                return;
                            };
                            let conn = builder.serve_connection(TokioIo::new(stream), service);
                            tokio::select! { _ = conn => {} _ = stop.cancelled() => {} }
                        }
                    }
                });
            }
        });
        GrpcServer {
            addr,
            name: name.to_owned(),
            connections,
            calls,
            tls: seen,
            _cancel: cancel.drop_guard(),
        }
    }
}

fn reply(endpoint: &str, text: impl Into<String>, seq: u32) -> Reply {
    Reply {
        text: text.into(),
        endpoint: endpoint.to_owned(),
        seq,
    }
}

/// The status `code` with `message` and trailing metadata `x-detail: message`.
fn failure(code: i32, message: &str) -> Status {
    let mut metadata = MetadataMap::new();
    metadata.insert("x-detail", message.parse().unwrap());
    Status::with_metadata(Code::from(code), message, metadata)
}

type ReplyStream = stream::BoxStream<'static, Result<Reply, Status>>;

/// Routes a request to its method, as tonic's generated server does.
async fn dispatch(
    endpoint: Arc<str>,
    req: http::Request<Incoming>,
) -> http::Response<tonic::body::Body> {
    let mut grpc = tonic::server::Grpc::new(ProstCodec::<Reply, Call>::default());
    let method = req.uri().path().strip_prefix("/weir.test.Echo/");
    let ep = endpoint.clone();
    match method {
        Some("Unary") => {
            let unary = tower::service_fn(move |r: Request<Call>| {
                let call = r.into_inner();
                let out = match call.code {
                    0 => Ok(Response::new(reply(&ep, call.text, 0))),
                    code => Err(failure(code, &call.text)),
                };
                std::future::ready(out)
            });
            grpc.unary(unary, req).await
        }
        Some("Slow") => {
            let slow = tower::service_fn(move |r: Request<Call>| {
                let ep = ep.clone();
                async move {
                    let call = r.into_inner();
                    tokio::time::sleep(Duration::from_millis(call.delay_ms)).await;
                    Ok::<_, Status>(Response::new(reply(&ep, call.text, 0)))
                }
            });
            grpc.unary(slow, req).await
        }
        Some("ClientStream") => {
            let collect = tower::service_fn(move |r: Request<Streaming<Call>>| {
                let ep = ep.clone();
                async move {
                    let mut inbound = r.into_inner();
                    let mut texts = Vec::new();
                    while let Some(call) = inbound.message().await? {
                        texts.push(call.text);
                    }
                    let seq = texts.len() as u32;
                    Ok::<_, Status>(Response::new(reply(&ep, texts.join("+"), seq)))
                }
            });
            grpc.client_streaming(collect, req).await
        }
        Some("ServerStream") => {
            let fan = tower::service_fn(move |r: Request<Call>| {
                let call = r.into_inner();
                let ep = ep.clone();
                let replies = (0..call.count).map(move |i| Ok(reply(&ep, call.text.clone(), i)));
                let replies: ReplyStream = stream::iter(replies).boxed();
                std::future::ready(Ok::<_, Status>(Response::new(replies)))
            });
            grpc.server_streaming(fan, req).await
        }
        Some("Bidi") => {
            let chat = tower::service_fn(move |r: Request<Streaming<Call>>| {
                let ep = ep.clone();
                let mut seq = 0;
                let replies: ReplyStream = r
                    .into_inner()
                    .map(move |call| {
                        seq += 1;
                        call.map(|c| reply(&ep, c.text, seq - 1))
                    })
                    .boxed();
                std::future::ready(Ok::<_, Status>(Response::new(replies)))
            });
            grpc.streaming(chat, req).await
        }
        Some("Fail") => {
            let fail = tower::service_fn(move |r: Request<Call>| {
                let call = r.into_inner();
                let replies = (0..call.count).map({
                    let (ep, text) = (ep.clone(), call.text.clone());
                    move |i| Ok(reply(&ep, text.clone(), i))
                });
                let status = failure(call.code, &call.text);
                let replies: ReplyStream = stream::iter(replies)
                    .chain(stream::once(std::future::ready(Err(status))))
                    .boxed();
                std::future::ready(Ok::<_, Status>(Response::new(replies)))
            });
            grpc.server_streaming(fail, req).await
        }
        _ => Status::unimplemented(format!("no method {}", req.uri().path())).into_http(),
    }
}

/// tonic's transport for [`GrpcClient`]: one hyper HTTP/2 connection. (Not tonic's
/// `Channel`, which enforces `grpc-timeout` itself: here only the header is sent, so a call
/// that ends at its deadline was ended by the server side — weir.)
#[derive(Clone)]
pub struct Connection(hyper::client::conn::http2::SendRequest<tonic::body::Body>);

impl tower::Service<http::Request<tonic::body::Body>> for Connection {
    type Response = http::Response<Incoming>;
    type Error = hyper::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(req))
    }
}

/// A tonic client of the `Echo` service over ONE HTTP/2 connection, made when it is
/// created and never remade (clones share it).
#[derive(Clone)]
pub struct GrpcClient {
    grpc: tonic::client::Grpc<Connection>,
}

impl GrpcClient {
    /// HTTP/2 with prior knowledge (h2c) to `addr`; calls carry `:authority` `authority`.
    pub async fn connect(addr: SocketAddr, authority: &str) -> GrpcClient {
        let tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        Self::over(tcp, "http", authority).await
    }

    /// HTTP/2 over TLS (ALPN `h2`, SNI the host of `authority`, any server certificate
    /// accepted) to `addr`; calls carry `:authority` `authority` and `:scheme` https.
    pub async fn connect_tls(addr: SocketAddr, authority: &str) -> GrpcClient {
        let tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let host = authority.split(':').next().unwrap().to_owned();
        let name = rustls::pki_types::ServerName::try_from(host).unwrap();
        let tls = super::tls::connector(&[b"h2"])
            .connect(name, tcp)
            .await
            .expect("TLS handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "ALPN h2");
        Self::over(tls, "https", authority).await
    }

    async fn over<I>(io: I, scheme: &str, authority: &str) -> GrpcClient
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
                .await
                .expect("HTTP/2 handshake");
        tokio::spawn(conn);
        let origin: http::Uri = format!("{scheme}://{authority}").parse().unwrap();
        GrpcClient {
            grpc: tonic::client::Grpc::with_origin(Connection(sender), origin),
        }
    }

    fn path(method: &str) -> http::uri::PathAndQuery {
        format!("/{SERVICE}/{method}").parse().unwrap()
    }

    async fn ready(&mut self) -> Result<(), Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("the channel is not ready: {e}")))
    }

    pub async fn unary(&mut self, req: impl IntoRequest<Call>) -> Result<Response<Reply>, Status> {
        self.ready().await?;
        let codec = ProstCodec::<Call, Reply>::default();
        let req = req.into_request();
        self.grpc.unary(req, Self::path("Unary"), codec).await
    }

    pub async fn slow(&mut self, req: impl IntoRequest<Call>) -> Result<Response<Reply>, Status> {
        self.ready().await?;
        let codec = ProstCodec::<Call, Reply>::default();
        let req = req.into_request();
        self.grpc.unary(req, Self::path("Slow"), codec).await
    }

    pub async fn client_stream(
        &mut self,
        req: impl IntoStreamingRequest<Message = Call>,
    ) -> Result<Response<Reply>, Status> {
        self.ready().await?;
        let codec = ProstCodec::<Call, Reply>::default();
        let req = req.into_streaming_request();
        self.grpc
            .client_streaming(req, Self::path("ClientStream"), codec)
            .await
    }

    pub async fn server_stream(
        &mut self,
        req: impl IntoRequest<Call>,
    ) -> Result<Response<Streaming<Reply>>, Status> {
        self.ready().await?;
        let codec = ProstCodec::<Call, Reply>::default();
        let req = req.into_request();
        self.grpc
            .server_streaming(req, Self::path("ServerStream"), codec)
            .await
    }

    pub async fn bidi(
        &mut self,
        req: impl IntoStreamingRequest<Message = Call>,
    ) -> Result<Response<Streaming<Reply>>, Status> {
        self.ready().await?;
        let codec = ProstCodec::<Call, Reply>::default();
        let req = req.into_streaming_request();
        self.grpc.streaming(req, Self::path("Bidi"), codec).await
    }

    pub async fn fail(
        &mut self,
        req: impl IntoRequest<Call>,
    ) -> Result<Response<Streaming<Reply>>, Status> {
        self.ready().await?;
        let codec = ProstCodec::<Call, Reply>::default();
        let req = req.into_request();
        self.grpc
            .server_streaming(req, Self::path("Fail"), codec)
            .await
    }
}

/// Every message of a response stream, or the status it ended with after `got` messages.
pub async fn drain(mut replies: Streaming<Reply>) -> Result<Vec<Reply>, (Vec<Reply>, Status)> {
    let mut got = Vec::new();
    loop {
        match replies.message().await {
            Ok(Some(reply)) => got.push(reply),
            Ok(None) => return Ok(got),
            Err(status) => return Err((got, status)),
        }
    }
}

/// Calls each of the four kinds once through `client` and checks the answers: unary,
/// client-streaming (3 calls), server-streaming (3 replies) and bidirectional (3 calls
/// answered one by one while the request stream is still open). Returns the endpoint names
/// that answered, in that order.
pub async fn call_all_four_kinds(client: &mut GrpcClient) -> Vec<String> {
    let mut served_by = Vec::new();

    let unary = client
        .unary(call("hello"))
        .await
        .expect("unary")
        .into_inner();
    assert_eq!(unary.text, "hello");
    served_by.push(unary.endpoint);

    let calls = stream::iter(["a", "b", "c"].map(call));
    let collected = client
        .client_stream(calls)
        .await
        .expect("client streaming")
        .into_inner();
    assert_eq!((collected.text.as_str(), collected.seq), ("a+b+c", 3));
    served_by.push(collected.endpoint);

    let fan = Call {
        count: 3,
        ..call("fan")
    };
    let replies = drain(
        client
            .server_stream(fan)
            .await
            .expect("server streaming")
            .into_inner(),
    )
    .await
    .expect("the server stream ends with OK");
    let seqs: Vec<u32> = replies.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [0, 1, 2]);
    assert!(replies.iter().all(|r| r.text == "fan"));
    served_by.push(replies[0].endpoint.clone());

    // Bidirectional: each call is sent only after the previous reply arrived, so the replies
    // must be relayed while the request body is still open (no buffering of either side).
    let (tx, rx) = tokio::sync::mpsc::channel::<Call>(1);
    let outbound = tokio_stream_from(rx);
    let mut replies = client.bidi(outbound).await.expect("bidi").into_inner();
    let mut endpoint = String::new();
    for (i, text) in ["x", "y", "z"].into_iter().enumerate() {
        tx.send(call(text)).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(10), replies.message())
            .await
            .expect("a bidi reply while the request stream is open")
            .expect("bidi reply")
            .expect("a message, not the end");
        assert_eq!((reply.text.as_str(), reply.seq), (text, i as u32));
        endpoint = reply.endpoint;
    }
    drop(tx);
    let rest = drain(replies).await.expect("the bidi stream ends with OK");
    assert!(rest.is_empty(), "{rest:?}");
    served_by.push(endpoint);
    served_by
}

/// A stream of what `rx` receives, until its senders are gone.
fn tokio_stream_from<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// `message` as one gRPC length-prefixed message (uncompressed).
pub fn frame(message: &impl prost::Message) -> Bytes {
    let body = message.encode_to_vec();
    let mut out = BytesMut::with_capacity(5 + body.len());
    out.put_u8(0);
    out.put_u32(body.len() as u32);
    out.put_slice(&body);
    out.freeze()
}

/// A gRPC response as it came on the wire (hyper's view of the HTTP/2 frames).
#[derive(Debug)]
pub struct RawAnswer {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    /// The trailers, when they came in a HEADERS frame of their own after the head.
    pub trailers: Option<http::HeaderMap>,
}

impl RawAnswer {
    /// Asserts that this is a gRPC trailers-only answer with `code`: HTTP 200,
    /// `content-type: application/grpc`, `grpc-status` in the one HEADERS frame, no body, no
    /// trailers frame.
    #[track_caller]
    pub fn assert_trailers_only(&self, code: Code) {
        let header = |name: &str| self.headers.get(name).map(|v| v.to_str().unwrap());
        assert_eq!(self.status, http::StatusCode::OK, "{self:#?}");
        assert_eq!(
            header("content-type"),
            Some("application/grpc"),
            "{self:#?}"
        );
        let expected = (code as i32).to_string();
        assert_eq!(
            header("grpc-status"),
            Some(expected.as_str()),
            "grpc-status {code:?} in the head: {self:#?}"
        );
        assert!(self.body.is_empty(), "no body: {self:#?}");
        assert!(self.trailers.is_none(), "no trailers frame: {self:#?}");
    }
}

/// A unary gRPC call to `/weir.test.Echo/<method>` made by hand over a new h2c connection to
/// `addr`, with `:authority` `authority` and these extra headers.
pub async fn raw_call(
    addr: SocketAddr,
    authority: &str,
    method: &str,
    message: &Call,
    headers: &[(&str, &str)],
) -> RawAnswer {
    let mut sender = super::http2_connect(addr).await;
    let mut req = http::Request::post(format!("http://{authority}/{SERVICE}/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(Full::new(frame(message))).unwrap();
    let response = sender.send_request(req).await.expect("an HTTP/2 response");
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.expect("the response body");
    let trailers = collected.trailers().cloned();
    RawAnswer {
        status: parts.status,
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
    }
}
