//! Graceful shutdown of the real `weir` binary (`--manifests` mode): on SIGTERM `/readyz`
//! turns unready at once; weir keeps accepting and serving for `--shutdown-delay`; then the
//! listeners close, idle keep-alive connections close, HTTP/2 connections get GOAWAY, requests
//! in flight finish; open tunnels (WebSockets) get until `--shutdown-timeout` after the delay;
//! then weir exits 0 — at once when nothing is left open.
//!
//! Every wait here is on a condition with a bound; the few fixed pauses only pace a client.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use common::process::WeirProcess;
use common::ws::WsBackend;
use common::*;

const HOST: &str = "demo.local";

/// Service `name` (port `http` 80) with core/v1 Endpoints on `endpoint`.
fn service_yaml(name: &str, endpoint: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n---\n\
         apiVersion: v1\nkind: Endpoints\nmetadata: {{name: {name}, namespace: default}}\n\
         subsets:\n- addresses: [{{ip: \"{}\"}}]\n  ports: [{{name: http, port: {}}}]\n",
        endpoint.ip(),
        endpoint.port()
    )
}

/// Ingress `demo` of class weir: `HOST` `/` → Service `web`, `/ws` → Service `chat`.
const INGRESS: &str = "apiVersion: networking.k8s.io/v1\nkind: Ingress\n\
    metadata: {name: demo, namespace: default}\n\
    spec:\n  ingressClassName: weir\n  rules:\n  - host: demo.local\n    http:\n      paths:\n\
    \x20     - {path: /, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}\n\
    \x20     - {path: /ws, pathType: Prefix, backend: {service: {name: chat, port: {name: http}}}}\n";

/// An HTTP test backend, a WebSocket echo backend, and weir serving both, ready.
struct Setup {
    web: TestBackend,
    /// Kept alive for the test (dropping it stops the backend).
    chat: WsBackend,
    weir: WeirProcess,
    _dir: tempfile::TempDir,
}

async fn start(delay: &str, timeout: &str) -> Setup {
    let web = TestBackend::start("web").await;
    let chat = WsBackend::start("chat").await;
    let dir = tempfile::tempdir().unwrap();
    let manifests = format!(
        "{}---\n{}---\n{INGRESS}",
        service_yaml("web", web.addr),
        service_yaml("chat", chat.addr)
    );
    std::fs::write(dir.path().join("demo.yaml"), manifests).unwrap();
    let weir = WeirProcess::start(
        dir.path(),
        &["--shutdown-delay", delay, "--shutdown-timeout", timeout],
    );
    weir.until_ready().await;
    Setup {
        web,
        chat,
        weir,
        _dir: dir,
    }
}

/// Waits until `/readyz` answers `status`.
async fn until_readyz(weir: &WeirProcess, status: u16, limit: Duration) {
    let client = http1_client();
    let start = Instant::now();
    loop {
        if get(&client, weir.admin, "admin", "/readyz").await.status == status {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "/readyz never answered {status} within {limit:?}:\n{}",
            weir.log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until a TCP connect to `addr` is refused: weir has closed that listener. Returns when.
async fn until_refused(addr: SocketAddr, weir: &WeirProcess, limit: Duration) -> Instant {
    let start = Instant::now();
    loop {
        if TcpStream::connect(addr).await.is_err() {
            return Instant::now();
        }
        assert!(
            start.elapsed() < limit,
            "{addr} still accepts connections after {limit:?}:\n{}",
            weir.log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn still_running(weir: &mut WeirProcess) -> bool {
    weir.child.try_wait().unwrap().is_none()
}

type Ws = WebSocketStream<TcpStream>;

/// Opens `ws://demo.local/ws` through weir's HTTP listener.
async fn open_ws(weir: &WeirProcess) -> Ws {
    let stream = TcpStream::connect(weir.http).await.unwrap();
    let request = format!("ws://{HOST}/ws").into_client_request().unwrap();
    let (ws, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap_or_else(|e| panic!("WebSocket handshake through weir: {e:?}\n{}", weir.log()));
    assert_eq!(response.status(), 101);
    ws
}

/// Sends `text` and expects exactly it back within a few seconds.
async fn echo(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.expect("send");
    let back = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap_or_else(|_| panic!("no echo of {text:?} within 5 s"));
    match back {
        Some(Ok(Message::Text(back))) => assert_eq!(back.as_str(), text),
        other => panic!("expected the echo of {text:?}, got {other:?}"),
    }
}

/// Closes `ws` from the client side and waits for the close handshake and the end of the
/// stream.
async fn close_ws(mut ws: Ws) {
    ws.close(None).await.expect("close frame sent");
    tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await
    .expect("close handshake completed");
}

/// A WebSocket exchanging numbered messages with the echo backend, one at a time, until the
/// socket ends. Every echo must be the message just sent; each one's arrival is recorded.
struct Chatter {
    echoes: Arc<Mutex<Vec<Instant>>>,
    task: tokio::task::JoinHandle<ChatEnd>,
}

/// How a [`Chatter`] ended.
#[derive(Debug)]
struct ChatEnd {
    at: Instant,
    echoed: usize,
    how: String,
}

impl Chatter {
    fn start(mut ws: Ws) -> Chatter {
        let echoes = Arc::new(Mutex::new(Vec::new()));
        let record = echoes.clone();
        let task = tokio::spawn(async move {
            let mut echoed = 0usize;
            let how = loop {
                let text = format!("message {echoed}");
                if let Err(error) = ws.send(Message::text(text.clone())).await {
                    break format!("send failed: {error}");
                }
                match ws.next().await {
                    Some(Ok(Message::Text(back))) => {
                        assert_eq!(back.as_str(), text, "echoes come back whole and in order");
                        record.lock().unwrap().push(Instant::now());
                        echoed += 1;
                    }
                    Some(Ok(Message::Close(frame))) => break format!("close frame {frame:?}"),
                    Some(Ok(other)) => panic!("unexpected message {other:?}"),
                    Some(Err(error)) => break format!("error: {error}"),
                    None => break "end of stream".to_owned(),
                }
                // Pacing only: about a hundred messages a second.
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            ChatEnd {
                at: Instant::now(),
                echoed,
                how,
            }
        });
        Chatter { echoes, task }
    }

    fn echoes_between(&self, from: Instant, to: Instant) -> usize {
        let echoes = self.echoes.lock().unwrap();
        echoes.iter().filter(|&&t| t > from && t < to).count()
    }

    fn echoes(&self) -> usize {
        self.echoes.lock().unwrap().len()
    }
}

/// Sends one HTTP/1.1 request on `stream` and reads its response (head and a
/// `Content-Length` body); returns the head.
async fn exchange_http1(stream: &mut TcpStream, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed before the response head");
        received.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&received[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .expect("a Content-Length");
    while received.len() < head_end + length {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed in the response body");
        received.extend_from_slice(&buf[..n]);
    }
    assert_eq!(received.len(), head_end + length, "nothing after the body");
    head
}

/// A bare-bones HTTP/2 client (prior knowledge, one connection) that reports the frames it
/// receives, so that the GOAWAY itself can be seen, not only its consequences.
mod h2raw {
    use super::*;

    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const SETTINGS: u8 = 0x4;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const END_STREAM: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const ACK: u8 = 0x1;

    /// What the client saw, in order.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Event {
        /// GOAWAY with its last stream id and error code.
        GoAway { last_stream: u32, error: u32 },
        /// A response head; `ok` when it starts with the indexed `:status 200`.
        Headers { stream: u32, ok: bool },
        /// A DATA frame.
        Data { stream: u32, end: bool },
        /// The server closed the connection.
        Eof,
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// A HEADERS block for `GET http://{authority}{path}`: static-table indexed `:method GET`
    /// and `:scheme http`, literal values for `:path` and `:authority` (no Huffman).
    fn get_block(authority: &str, path: &str) -> Vec<u8> {
        let mut block = vec![0x82, 0x86];
        for (name_index, value) in [(0x04u8, path), (0x01, authority)] {
            assert!(value.len() < 127);
            block.push(name_index);
            block.push(value.len() as u8);
            block.extend_from_slice(value.as_bytes());
        }
        block
    }

    /// Connects to `addr`, sends the preface and a GET on stream 1, and records every frame
    /// that matters (with its arrival time) until the server closes the connection.
    pub async fn get(
        addr: SocketAddr,
        authority: &str,
        path: &str,
    ) -> (
        Arc<Mutex<Vec<(Instant, Event)>>>,
        tokio::task::JoinHandle<()>,
    ) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        hello.extend(frame(
            HEADERS,
            END_STREAM | END_HEADERS,
            1,
            &get_block(authority, path),
        ));
        stream.write_all(&hello).await.unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let record = events.clone();
        let reader = tokio::spawn(async move {
            let push = |event| record.lock().unwrap().push((Instant::now(), event));
            loop {
                let mut head = [0u8; 9];
                if stream.read_exact(&mut head).await.is_err() {
                    push(Event::Eof);
                    return;
                }
                let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                let (kind, flags) = (head[3], head[4]);
                let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
                let mut payload = vec![0u8; len];
                if stream.read_exact(&mut payload).await.is_err() {
                    push(Event::Eof);
                    return;
                }
                match kind {
                    SETTINGS if flags & ACK == 0 => {
                        let _ = stream.write_all(&frame(SETTINGS, ACK, 0, &[])).await;
                    }
                    PING if flags & ACK == 0 => {
                        let _ = stream.write_all(&frame(PING, ACK, 0, &payload)).await;
                    }
                    GOAWAY => push(Event::GoAway {
                        last_stream: u32::from_be_bytes(payload[0..4].try_into().unwrap())
                            & 0x7fff_ffff,
                        error: u32::from_be_bytes(payload[4..8].try_into().unwrap()),
                    }),
                    HEADERS => push(Event::Headers {
                        stream: id,
                        ok: payload.first() == Some(&0x88),
                    }),
                    DATA => push(Event::Data {
                        stream: id,
                        end: flags & END_STREAM != 0,
                    }),
                    _ => {}
                }
            }
        });
        (events, reader)
    }
}

/// (a) A slow request in flight at SIGTERM completes after the delay; during the delay weir is
/// unready but new connections are still served; then weir exits 0 without waiting for the
/// shutdown timeout. A client that connects and never sends a byte does not hold up the exit.
#[tokio::test]
async fn sigterm_turns_unready_then_drains_and_exits_zero() {
    let delay = Duration::from_secs(1);
    let Setup {
        chat: _chat,
        web,
        mut weir,
        ..
    } = start("1s", "30s").await;
    let client = http1_client();
    let before = web.requests.load(std::sync::atomic::Ordering::SeqCst);
    let slow = {
        let (client, addr) = (client.clone(), weir.http);
        tokio::spawn(async move {
            let answer = get(&client, addr, HOST, "/slow?ms=2000").await;
            (answer, Instant::now())
        })
    };
    wait_until(
        "the slow request reached the backend",
        Duration::from_secs(10),
        || web.requests.load(std::sync::atomic::Ordering::SeqCst) > before,
    )
    .await;
    let silent = TcpStream::connect(weir.http).await.unwrap();
    let signalled = Instant::now();
    weir.sigterm();

    // During the delay: unready at once, but new connections are accepted and served.
    until_readyz(&weir, 503, Duration::from_millis(500)).await;
    let fresh = http1_client();
    let answer = get(&fresh, weir.http, HOST, "/").await;
    assert_eq!(
        answer.status, 200,
        "a new connection is served during the delay"
    );
    assert!(
        signalled.elapsed() < delay,
        "that was within the delay ({:?}); the machine is too slow for this test",
        signalled.elapsed()
    );

    // The request in flight finishes after the delay.
    let (slow, finished) = slow.await.unwrap();
    assert_eq!(slow.status, 200, "{}", slow.text());
    assert_eq!(slow.echo().uri(), "/slow?ms=2000");
    assert!(finished - signalled > delay);

    // Then weir exits 0, long before the 30 s shutdown timeout.
    let status = weir.wait_exit(Duration::from_secs(5)).await;
    assert!(status.success(), "SIGTERM exits 0, got {status:?}");
    let exited = signalled.elapsed();
    println!("(a) exit {exited:?} after SIGTERM");
    assert!(exited >= delay, "not before the shutdown delay");
    drop(silent);
}

/// (b) After the delay both listeners refuse new connections, while weir is still running
/// because a WebSocket is open (and still echoing).
#[tokio::test]
async fn after_the_delay_new_connections_are_refused_while_a_tunnel_keeps_weir_running() {
    let delay = Duration::from_millis(500);
    let Setup {
        chat: _chat,
        mut weir,
        ..
    } = start("500ms", "30s").await;
    let mut ws = open_ws(&weir).await;
    echo(&mut ws, "before").await;
    assert!(TcpStream::connect(weir.https).await.is_ok());

    let signalled = Instant::now();
    weir.sigterm();
    let http_closed = until_refused(weir.http, &weir, Duration::from_secs(5)).await;
    let https_closed = until_refused(weir.https, &weir, Duration::from_secs(1)).await;
    println!(
        "(b) listeners closed {:?} / {:?} after SIGTERM",
        http_closed - signalled,
        https_closed - signalled
    );
    assert!(
        http_closed - signalled >= delay,
        "the listeners stay open for the delay"
    );
    assert!(
        still_running(&mut weir),
        "weir keeps running while a tunnel is open"
    );
    // Refused for good, not a blip.
    for addr in [weir.http, weir.https] {
        let error = TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);
    }
    echo(&mut ws, "after the delay").await;
    assert!(still_running(&mut weir));

    close_ws(ws).await;
    let status = weir.wait_exit(Duration::from_secs(5)).await;
    assert!(status.success(), "{status:?}");
}

/// (c) An idle HTTP/1.1 keep-alive connection is closed by weir right after the delay, not at
/// the shutdown timeout; an HTTP/2 connection gets GOAWAY while its request in flight still
/// completes (and is then closed).
#[tokio::test]
async fn after_the_delay_idle_connections_close_and_http2_gets_goaway() {
    let delay = Duration::from_millis(500);
    let Setup {
        chat: _chat,
        web,
        mut weir,
        ..
    } = start("500ms", "30s").await;
    // Keeps weir running past the delay, so that closes are weir's doing, not its exit.
    let mut ws = open_ws(&weir).await;

    let mut idle = TcpStream::connect(weir.http).await.unwrap();
    let head = exchange_http1(&mut idle, "/").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let head = exchange_http1(&mut idle, "/again").await;
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "kept alive: {head}\n{}",
        weir.log()
    );

    let before = web.requests.load(std::sync::atomic::Ordering::SeqCst);
    let (frames, reader) = h2raw::get(weir.http, HOST, "/slow?ms=2000").await;
    wait_until(
        "the HTTP/2 request reached the backend",
        Duration::from_secs(10),
        || web.requests.load(std::sync::atomic::Ordering::SeqCst) > before,
    )
    .await;

    let signalled = Instant::now();
    weir.sigterm();

    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
        .await
        .expect("the idle keep-alive connection is closed within 5 s");
    let closed = signalled.elapsed();
    assert!(matches!(read, Ok(0)) || read.is_err(), "EOF, not {read:?}");
    println!("(c) idle keep-alive closed {closed:?} after SIGTERM");
    assert!(closed >= delay, "not closed during the delay: {closed:?}");
    assert!(
        closed < delay + Duration::from_secs(2),
        "closed right after the delay: {closed:?}"
    );
    assert!(still_running(&mut weir));

    // HTTP/2: GOAWAY, then the response of stream 1 in full, then the connection ends.
    tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("weir closes the HTTP/2 connection once its stream is done")
        .unwrap();
    let frames = frames.lock().unwrap().clone();
    let events: Vec<_> = frames.iter().map(|(_, e)| e.clone()).collect();
    let first_goaway = frames
        .iter()
        .position(|(_, e)| matches!(e, h2raw::Event::GoAway { .. }))
        .unwrap_or_else(|| panic!("no GOAWAY: {events:?}"));
    let goaway_at = frames[first_goaway].0 - signalled;
    println!("(c) HTTP/2 GOAWAY {goaway_at:?} after SIGTERM; frames {events:?}");
    assert!(
        goaway_at >= delay && goaway_at < delay + Duration::from_secs(2),
        "GOAWAY right after the delay: {goaway_at:?}"
    );
    let response = &events[first_goaway..];
    assert!(
        response.contains(&h2raw::Event::Headers {
            stream: 1,
            ok: true
        }),
        "the request in flight is answered 200 after the GOAWAY: {events:?}"
    );
    assert!(
        response.contains(&h2raw::Event::Data {
            stream: 1,
            end: true
        }),
        "and its body ends: {events:?}"
    );
    assert!(
        events.iter().all(|e| match e {
            h2raw::Event::GoAway { last_stream, error } => *error == 0 && *last_stream >= 1,
            _ => true,
        }),
        "graceful GOAWAYs (NO_ERROR) that keep stream 1: {events:?}"
    );
    assert_eq!(events.last(), Some(&h2raw::Event::Eof));

    echo(&mut ws, "still here").await;
    assert!(still_running(&mut weir));
    close_ws(ws).await;
    let status = weir.wait_exit(Duration::from_secs(5)).await;
    assert!(status.success(), "{status:?}");
}

/// (d) An open WebSocket keeps echoing through the delay and the drain phase, and is closed by
/// weir at the shutdown timeout; then weir exits 0.
#[tokio::test]
async fn a_websocket_is_served_until_the_shutdown_timeout_then_closed() {
    let (delay, timeout) = (Duration::from_millis(500), Duration::from_secs(2));
    let Setup {
        chat: _chat,
        mut weir,
        ..
    } = start("500ms", "2s").await;
    let mut chatter = Chatter::start(open_ws(&weir).await);
    wait_until("the WebSocket echoes", Duration::from_secs(5), || {
        chatter.echoes() >= 5
    })
    .await;

    let signalled = Instant::now();
    weir.sigterm();
    let drain_started = until_refused(weir.http, &weir, Duration::from_secs(5)).await;
    let end = tokio::time::timeout(delay + timeout + Duration::from_secs(3), &mut chatter.task)
        .await
        .expect("weir closes the WebSocket at the shutdown timeout")
        .expect("every echo was the message sent, in order");
    let closed = end.at - signalled;
    println!(
        "(d) WebSocket closed {closed:?} after SIGTERM ({}) after {} echoes",
        end.how, end.echoed
    );

    let during_delay = chatter.echoes_between(signalled, drain_started);
    let during_drain = chatter.echoes_between(drain_started + Duration::from_secs(1), end.at);
    assert!(
        during_delay > 0,
        "echoes during the delay (drain started {:?} after SIGTERM)",
        drain_started - signalled
    );
    assert!(
        during_drain > 0,
        "echoes in the drain phase, more than 1 s after the listeners closed"
    );
    assert!(
        closed >= delay + timeout,
        "not closed before the shutdown timeout: {closed:?}"
    );
    assert!(
        closed < delay + timeout + Duration::from_millis(1500),
        "closed at the shutdown timeout: {closed:?}"
    );

    let limit = (signalled + delay + timeout + Duration::from_secs(2))
        .saturating_duration_since(Instant::now());
    let status = weir.wait_exit(limit).await;
    assert!(
        status.success(),
        "exits 0 at the shutdown timeout: {status:?}"
    );
    println!("(d) exit {:?} after SIGTERM", signalled.elapsed());
    weir.wait_for_line("about the timeout", Duration::from_secs(1), |l| {
        l.contains("still open at the shutdown timeout")
    })
    .await;
}

/// (e) When the last tunnel ends by itself during the drain phase, weir exits 0 at once, not at
/// the shutdown timeout. One socket is closed by the client, the last by the backend.
#[tokio::test]
async fn weir_exits_as_soon_as_the_last_tunnel_closes() {
    let Setup {
        chat: _chat,
        mut weir,
        ..
    } = start("300ms", "60s").await;
    let mut first = open_ws(&weir).await;
    let mut last = open_ws(&weir).await;
    echo(&mut first, "one").await;
    echo(&mut last, "two").await;

    let signalled = Instant::now();
    weir.sigterm();
    until_refused(weir.http, &weir, Duration::from_secs(5)).await;
    echo(&mut first, "one, draining").await;
    echo(&mut last, "two, draining").await;

    close_ws(first).await;
    echo(&mut last, "two, alone").await;
    assert!(
        still_running(&mut weir),
        "one tunnel is still open: weir waits for it"
    );

    // The backend ends the last one: close handshake, then the end of the stream.
    last.send(Message::text("close")).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match last.next().await {
                Some(Ok(Message::Close(_))) => {}
                Some(Ok(other)) => panic!("unexpected {other:?}"),
                Some(Err(_)) | None => break,
            }
        }
    })
    .await
    .expect("the backend closed the WebSocket");
    drop(last);
    let tunnels_closed = Instant::now();

    let status = weir.wait_exit(Duration::from_secs(3)).await;
    assert!(status.success(), "{status:?}");
    println!(
        "(e) exit {:?} after the last tunnel closed, {:?} after SIGTERM",
        tunnels_closed.elapsed(),
        signalled.elapsed()
    );
    assert!(
        !weir.log().contains("still open at the shutdown timeout"),
        "{}",
        weir.log()
    );
}
