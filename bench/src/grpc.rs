//! The gRPC backend of test 11: one unary echo method over HTTP/2 cleartext (prior knowledge),
//! with gRPC's framing and protobuf encoding done by hand (no protoc, no generated code).
//!
//! - `POST /weir.bench.Echo/Echo` with `content-type: application/grpc…` and a body of exactly
//!   one uncompressed length-prefixed message `EchoRequest { string message = 1; }`: `200`,
//!   the same message back as `EchoReply { string message = 1; }` (the same bytes), and
//!   `grpc-status: 0` in the trailers;
//! - a malformed call: `200` with `grpc-status: 3` (INVALID_ARGUMENT) in the headers
//!   (trailers-only); another method: `grpc-status: 12` (UNIMPLEMENTED);
//! - `GET /stats`: the calls answered so far, as JSON (`ok`, `not_ok`, and `cancelled`: calls
//!   whose request body never arrived whole, a client or proxy having reset them), so that the
//!   benchmark can check that every call a load generator counted as a success was answered
//!   here with `grpc-status: 0`, not made up by a proxy.
//!
//! [`request_frame`] is the request the load generator sends (`weir-bench grpc-message`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, header};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpSocket;

/// The one method served.
pub const ECHO_PATH: &str = "/weir.bench.Echo/Echo";

/// The message of the request the load generator sends (and gets back).
const MESSAGE: &str = "hello, world";

/// gRPC status codes used here.
const OK: u8 = 0;
const INVALID_ARGUMENT: u8 = 3;
const UNIMPLEMENTED: u8 = 12;

/// Arguments of `grpc-backend`.
#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on (HTTP/2 cleartext with prior knowledge only).
    #[arg(long, default_value = "127.0.0.1:19001")]
    listen: SocketAddr,
}

/// Arguments of `grpc-message`.
#[derive(clap::Args)]
pub struct MessageArgs {
    /// Where to write the request body (one length-prefixed gRPC message).
    #[arg(long)]
    out: std::path::PathBuf,
}

/// Calls answered, by outcome.
#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    not_ok: AtomicU64,
    cancelled: AtomicU64,
}

/// `EchoRequest { message: "hello, world" }` as one uncompressed length-prefixed gRPC message:
/// flag 0, 4-byte big-endian length, then the protobuf (field 1, wire type 2: tag `0x0a`,
/// varint length, the UTF-8 bytes).
pub fn request_frame() -> Vec<u8> {
    let mut protobuf = vec![0x0a, MESSAGE.len() as u8];
    protobuf.extend_from_slice(MESSAGE.as_bytes());
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(protobuf.len() as u32).to_be_bytes());
    frame.extend_from_slice(&protobuf);
    frame
}

/// Writes [`request_frame`] to a file (h2load's `-d`).
pub fn write_message(args: MessageArgs) -> anyhow::Result<()> {
    std::fs::write(&args.out, request_frame())?;
    Ok(())
}

/// Whether `body` is exactly one uncompressed gRPC message holding an `EchoRequest`
/// (a message of field 1 only, length-delimited, valid UTF-8).
fn valid_echo_request(body: &[u8]) -> bool {
    let [0, a, b, c, d, protobuf @ ..] = body else {
        return false;
    };
    if u32::from_be_bytes([*a, *b, *c, *d]) as usize != protobuf.len() {
        return false;
    }
    let [0x0a, len, text @ ..] = protobuf else {
        return false;
    };
    // One-byte varint: messages under 128 bytes, which is all this backend is sent.
    *len < 0x80 && usize::from(*len) == text.len() && std::str::from_utf8(text).is_ok()
}

/// Accepts connections forever.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let socket = if args.listen.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(args.listen)?;
    let listener = socket.listen(4096)?;
    eprintln!(
        "weir-bench grpc-backend listening on h2c://{} ({ECHO_PATH})",
        args.listen
    );
    let counts = Arc::new(Counts::default());
    let mut builder = http2::Builder::new(TokioExecutor::new());
    // nginx sends one call per upstream connection, weir multiplexes: allow either.
    builder.max_concurrent_streams(1000);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let counts = counts.clone();
        let connection = builder.serve_connection(
            TokioIo::new(stream),
            service_fn(move |req| answer(req, counts.clone())),
        );
        // A client going away mid-call (a load generator stopping) is no error of ours.
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}

/// Answers one request.
async fn answer(
    req: Request<Incoming>,
    counts: Arc<Counts>,
) -> Result<Response<GrpcBody>, Infallible> {
    if req.method() == Method::GET && req.uri().path() == "/stats" {
        let json = serde_json::json!({
            "ok": counts.ok.load(Ordering::Relaxed),
            "not_ok": counts.not_ok.load(Ordering::Relaxed),
            "cancelled": counts.cancelled.load(Ordering::Relaxed),
        });
        let response = Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(GrpcBody::data_only(Bytes::from(json.to_string())))
            .expect("a valid 200");
        return Ok(response);
    }
    let is_grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let path_ok = req.method() == Method::POST && req.uri().path() == ECHO_PATH;
    let body = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            // Reset before its body was whole: nobody waits for an answer.
            counts.cancelled.fetch_add(1, Ordering::Relaxed);
            return Ok(Response::new(GrpcBody::empty()));
        }
    };
    let status = if !path_ok {
        UNIMPLEMENTED
    } else if !is_grpc || !valid_echo_request(&body) {
        INVALID_ARGUMENT
    } else {
        OK
    };
    let builder = Response::builder().header(header::CONTENT_TYPE, "application/grpc");
    let response = if status == OK {
        counts.ok.fetch_add(1, Ordering::Relaxed);
        // EchoReply has the same shape as EchoRequest: the same bytes are the reply.
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        builder.body(GrpcBody::new(body, trailers))
    } else {
        counts.not_ok.fetch_add(1, Ordering::Relaxed);
        builder
            .header("grpc-status", HeaderValue::from(u16::from(status)))
            .header(
                "grpc-message",
                HeaderValue::from_static(if status == UNIMPLEMENTED {
                    "unknown method"
                } else {
                    "malformed EchoRequest"
                }),
            )
            .body(GrpcBody::empty())
    };
    Ok(response.expect("a valid response"))
}

/// A response body: one data frame, then trailers (either may be absent).
pub struct GrpcBody {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl GrpcBody {
    fn new(data: Bytes, trailers: HeaderMap) -> Self {
        GrpcBody {
            data: Some(data),
            trailers: Some(trailers),
        }
    }

    fn data_only(data: Bytes) -> Self {
        GrpcBody {
            data: Some(data),
            trailers: None,
        }
    }

    fn empty() -> Self {
        GrpcBody {
            data: None,
            trailers: None,
        }
    }
}

impl Body for GrpcBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn the_request_is_a_valid_echo_request() {
        let frame = request_frame();
        assert_eq!(frame.len(), 5 + 2 + MESSAGE.len());
        assert!(valid_echo_request(&frame));
        let mut longer = BytesMut::from(&frame[..]);
        longer.extend_from_slice(b"x");
        assert!(!valid_echo_request(&longer));
        assert!(!valid_echo_request(&frame[..frame.len() - 1]));
        let mut compressed = frame.clone();
        compressed[0] = 1;
        assert!(!valid_echo_request(&compressed));
    }
}
