//! Idle HTTP/1.1 keep-alive connections are parked (hyper's state and buffers dropped, the
//! socket kept) and resumed by the next request, over plain TCP and TLS, without the client
//! noticing anything.

mod common;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use common::tls::*;
use common::ws::*;
use common::*;
use weir::proxy::ProxyConfig;

const HOST: &str = "park.local";
const PARK_AFTER: Duration = Duration::from_millis(50);
/// How long the conditions below may take to come true.
const LIMIT: Duration = Duration::from_secs(5);

/// A proxy (plain and TLS listeners) parking after [`PARK_AFTER`] and closing idle
/// connections after `keepalive`, routing [`HOST`] to a test backend.
async fn setup(keepalive: Duration) -> (WsProxy, TestBackend) {
    let backend = TestBackend::start("b").await;
    let cert = cert_for(&[HOST]);
    let config = ProxyConfig {
        keepalive_park_after: PARK_AFTER,
        keepalive_timeout: keepalive,
        ..ProxyConfig::default()
    };
    let table = ws_table(HOST, vec![backend.addr], None);
    let proxy = WsProxy::start(config, table, cert_store(HOST, &cert)).await;
    (proxy, backend)
}

/// An HTTP/1.1 client bound to the one connection `io`: any request after the server closed
/// it fails.
async fn client<I>(io: I) -> SendRequest<Full<Bytes>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

async fn get_on(sender: &mut SendRequest<Full<Bytes>>, path: &str) -> Answer {
    sender.ready().await.expect("the connection is still open");
    let req = Request::get(path)
        .header("host", HOST)
        .body(Full::default())
        .unwrap();
    read_answer(sender.send_request(req).await.unwrap()).await
}

/// Reads one response with a `Content-Length` body from a raw stream; returns head and body.
async fn read_one(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "closed mid-response: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")?
                .trim()
                .parse()
                .ok()
        })
        .expect("a Content-Length");
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed mid-body");
        body.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(body.len(), length, "nothing beyond the response");
    (head, body)
}

fn get_request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n").into_bytes()
}

/// A raw connection that has had one request answered and is now parked, and when the answer
/// arrived.
async fn parked_connection(proxy: &WsProxy) -> (TcpStream, tokio::time::Instant) {
    let parked_before = proxy.proxy.parked_connections();
    let mut stream = TcpStream::connect(proxy.http).await.unwrap();
    stream.write_all(&get_request("/")).await.unwrap();
    let (head, _) = read_one(&mut stream).await;
    let answered = tokio::time::Instant::now();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    wait_until("the connection is parked", LIMIT, || {
        proxy.proxy.parked_connections() == parked_before + 1
    })
    .await;
    (stream, answered)
}

/// Waits until the server closes `stream`, which must send nothing more.
async fn closed_by_server(stream: &mut TcpStream) {
    let mut rest = Vec::new();
    tokio::time::timeout(LIMIT, stream.read_to_end(&mut rest))
        .await
        .expect("the server closed the connection")
        .unwrap();
    assert!(rest.is_empty(), "{rest:?}");
}

#[tokio::test]
async fn idle_connections_are_parked_and_serve_again_over_tcp_and_tls() {
    let (proxy, _backend) = setup(Duration::from_secs(75)).await;
    let plain = TcpStream::connect(proxy.http).await.unwrap();
    let (tls, _) = handshake(proxy.https, HOST, &[b"http/1.1"]).await;
    let mut clients = [client(plain).await, client(tls).await];
    for round in 0..3 {
        for client in &mut clients {
            let answer = get_on(client, &format!("/round/{round}")).await;
            assert_eq!(answer.status, StatusCode::OK, "round {round}");
            assert_eq!(answer.echo().uri(), format!("/round/{round}"));
        }
        wait_until("both connections are parked", LIMIT, || {
            proxy.proxy.parked_connections() == 2
        })
        .await;
    }
    assert_eq!(proxy.proxy.parks_total(), 6);
    // Parked connections are still open ones.
    assert_eq!(open_connections(&proxy), [1, 1]);

    // A parked connection notices when its client goes away.
    drop(clients);
    wait_until("no connection is parked", LIMIT, || {
        proxy.proxy.parked_connections() == 0
    })
    .await;
    wait_until("no connection is open", LIMIT, || {
        open_connections(&proxy) == [0, 0]
    })
    .await;
}

/// `weir_client_connections_active` of the plain and the TLS listener.
fn open_connections(proxy: &WsProxy) -> [i64; 2] {
    let active = &proxy.state.metrics().connections.active;
    ["http", "https"].map(|listener| active.with_label_values(&[listener]).get())
}

#[tokio::test]
async fn the_start_of_a_request_read_before_parking_is_kept() {
    let (proxy, _backend) = setup(Duration::from_secs(75)).await;
    let mut stream = TcpStream::connect(proxy.http).await.unwrap();
    stream.write_all(&get_request("/first")).await.unwrap();
    let (head, _) = read_one(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    // Half a request head arrives and sits in the server's buffer when the park comes.
    stream
        .write_all(b"GET /second HTTP/1.1\r\nHo")
        .await
        .unwrap();
    wait_until("the connection was parked", LIMIT, || {
        proxy.proxy.parks_total() == 1
    })
    .await;
    stream
        .write_all(format!("st: {HOST}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (head, body) = read_one(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["uri"], "/second");
}

#[tokio::test]
async fn a_parked_connection_is_closed_at_the_keepalive_timeout() {
    let keepalive = Duration::from_millis(400);
    let (proxy, _backend) = setup(keepalive).await;
    let (mut stream, answered) = parked_connection(&proxy).await;
    closed_by_server(&mut stream).await;
    let took = answered.elapsed();
    // The timeout runs from the end of the response, which the server saw a moment before
    // the client did; its clock counts whole milliseconds.
    assert!(
        took >= keepalive - Duration::from_millis(5),
        "closed after {took:?}"
    );
    assert_eq!(proxy.proxy.parked_connections(), 0);
    wait_until("no connection is open", LIMIT, || {
        open_connections(&proxy) == [0, 0]
    })
    .await;
}

#[tokio::test]
async fn shutting_down_closes_parked_connections() {
    let (proxy, _backend) = setup(Duration::from_secs(75)).await;
    let (mut stream, _) = parked_connection(&proxy).await;
    assert_eq!(open_connections(&proxy), [1, 0]);
    let tasks = proxy.shut_down();
    closed_by_server(&mut stream).await;
    tokio::time::timeout(LIMIT, tasks.wait())
        .await
        .expect("every connection task ended");
    assert_eq!(open_connections(&proxy), [0, 0]);
}

#[tokio::test]
async fn a_connection_is_not_parked_under_an_upload_or_a_download() {
    let (proxy, _backend) = setup(Duration::from_secs(75)).await;
    let (mut stream, _) = parked_connection(&proxy).await;

    // Half a body, then a pause several times the park delay: the connection is busy
    // reading it, so nothing may park it. (A pause, because the check is that nothing
    // happens during it.)
    let head = format!("POST /upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 10\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(b"12345").await.unwrap();
    tokio::time::sleep(PARK_AFTER * 6).await;
    assert_eq!(proxy.proxy.parks_total(), 1, "parked during the upload");
    stream.write_all(b"67890").await.unwrap();
    let (head, body) = read_one(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["body_len"], 10);

    // A response far larger than the socket buffers, read only after a pause: the
    // connection is busy writing it.
    let mut sender = client(stream).await;
    let total = 16 * 1024 * 1024;
    sender.ready().await.unwrap();
    let req = Request::get(format!("/source?bytes={total}"))
        .header("host", HOST)
        .body(Full::default())
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    let parks_before = proxy.proxy.parks_total();
    tokio::time::sleep(PARK_AFTER * 6).await;
    assert_eq!(
        proxy.proxy.parks_total(),
        parks_before,
        "parked during the download"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), total);

    // Afterwards it parks, and serves again.
    wait_until("the connection is parked", LIMIT, || {
        proxy.proxy.parked_connections() == 1
    })
    .await;
    assert_eq!(get_on(&mut sender, "/after").await.status, StatusCode::OK);
}

#[tokio::test]
async fn an_http2_connection_counts_as_open_until_it_closes() {
    let (proxy, _backend) = setup(Duration::from_secs(75)).await;
    let (tls, _) = handshake(proxy.https, HOST, &[b"h2"]).await;
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    let connection = tokio::spawn(connection);
    let req = Request::get(format!("https://{HOST}/h2"))
        .body(Full::<Bytes>::default())
        .unwrap();
    let answer = read_answer(sender.send_request(req).await.unwrap()).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(open_connections(&proxy), [0, 1]);

    drop(sender);
    connection.await.unwrap().unwrap();
    wait_until("no connection is open", LIMIT, || {
        open_connections(&proxy) == [0, 0]
    })
    .await;
}
