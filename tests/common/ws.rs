//! WebSocket pieces of the integration tests: real tungstenite backends (echo, closing, dropping),
//! backends that refuse an upgrade or answer it wrongly, a proxy with both listeners, and
//! ws://, wss:// and HTTP/2 extended-CONNECT clients.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::tls::{Cert, connector};
use weir::model::{PathRule, RouteTable};
use weir::proxy::{Proxy, ProxyConfig};
use weir::state::State;
use weir::tls::CertStore;

/// How long any single step of a WebSocket exchange may take before a test gives up.
pub const STEP: Duration = Duration::from_secs(10);

/// A WebSocket over plain TCP (ws://).
pub type PlainWs = WebSocketStream<TcpStream>;
/// A WebSocket over TLS (wss://).
pub type TlsWs = WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;
/// A WebSocket on an HTTP/2 stream (RFC 8441 extended CONNECT).
pub type H2Ws = WebSocketStream<TokioIo<Upgraded>>;
/// The HTTP response a WebSocket client handshake got.
pub type WsResponse = tungstenite::handshake::client::Response;

/// What a [`WsBackend`] does on its WebSocket connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsBehaviour {
    /// Echo every text and binary message.
    Echo,
    /// Echo this many messages, then close with a close frame (and finish the close handshake).
    CloseAfter(usize),
    /// Echo this many messages, then drop the TCP connection without a close frame.
    DropAfter(usize),
    /// Answer the handshake by hand with the 101 and a first text message in one write (so
    /// they arrive together), then echo.
    Greet(&'static str),
}

/// A request head as a backend received it.
#[derive(Debug, Clone)]
pub struct Head {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
}

impl Head {
    /// The first value of `name`, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }
    /// Every value of `name`, as text.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }
}

/// What a [`WsBackend`] saw so far.
#[derive(Debug, Default)]
pub struct WsStats {
    /// TCP connections accepted.
    pub connections: AtomicUsize,
    /// WebSocket handshakes completed.
    pub upgrades: AtomicUsize,
    /// Text and binary messages received (counted before their echo is sent).
    pub messages: AtomicUsize,
    /// Close frames received from the peer.
    pub closes_received: AtomicUsize,
    /// WebSocket sessions that ended (close handshake, EOF or error).
    pub ended: AtomicUsize,
    /// The upgrade requests, in arrival order.
    heads: Mutex<Vec<Head>>,
}

impl WsStats {
    pub fn get(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::SeqCst)
    }
    pub fn upgrades(&self) -> usize {
        Self::get(&self.upgrades)
    }
    pub fn ended(&self) -> usize {
        Self::get(&self.ended)
    }
    pub fn closes_received(&self) -> usize {
        Self::get(&self.closes_received)
    }
    pub fn messages(&self) -> usize {
        Self::get(&self.messages)
    }
    /// The upgrade requests received so far.
    pub fn heads(&self) -> Vec<Head> {
        self.heads.lock().unwrap().clone()
    }
}

/// A real WebSocket server (tokio-tungstenite) standing in for a Service endpoint. It answers
/// the handshake with `x-backend: <name>` and picks the first subprotocol offered, if any.
/// Besides echoing, it answers the text `who` with its name and closes the socket itself
/// (close handshake, then TCP close) on the text `close`.
pub struct WsBackend {
    pub addr: SocketAddr,
    pub name: String,
    pub stats: Arc<WsStats>,
    cancel: CancellationToken,
}

impl Drop for WsBackend {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl WsBackend {
    pub async fn start(name: &str) -> WsBackend {
        Self::start_with(name, WsBehaviour::Echo).await
    }

    pub async fn start_with(name: &str, behaviour: WsBehaviour) -> WsBackend {
        Self::start_on(IpAddr::from([127, 0, 0, 1]), name, behaviour).await
    }

    /// An echoing backend listening on `ip` (any free port).
    pub async fn start_at(ip: IpAddr, name: &str) -> WsBackend {
        Self::start_on(ip, name, WsBehaviour::Echo).await
    }

    async fn start_on(ip: IpAddr, name: &str, behaviour: WsBehaviour) -> WsBackend {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(WsStats::default());
        let cancel = CancellationToken::new();
        let (stop, counters, backend_name) = (cancel.clone(), stats.clone(), name.to_owned());
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => accepted.unwrap(),
                };
                counters.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(ws_session(
                    stream,
                    backend_name.clone(),
                    behaviour,
                    counters.clone(),
                    stop.clone(),
                ));
            }
        });
        WsBackend {
            addr,
            name: name.to_owned(),
            stats,
            cancel,
        }
    }
}

async fn ws_session(
    stream: TcpStream,
    name: String,
    behaviour: WsBehaviour,
    stats: Arc<WsStats>,
    stop: CancellationToken,
) {
    let (recorder, own_name) = (stats.clone(), name.clone());
    // tungstenite's callback type, not ours.
    #[allow(clippy::result_large_err)]
    let callback =
        move |req: &tungstenite::handshake::server::Request,
              mut response: tungstenite::handshake::server::Response| {
            recorder.heads.lock().unwrap().push(Head {
                method: req.method().to_string(),
                uri: req.uri().to_string(),
                headers: req.headers().clone(),
            });
            response
                .headers_mut()
                .insert("x-backend", HeaderValue::from_str(&own_name).unwrap());
            let offered = req
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(|p| p.trim().to_owned());
            if let Some(protocol) = offered {
                response.headers_mut().insert(
                    "sec-websocket-protocol",
                    HeaderValue::from_str(&protocol).unwrap(),
                );
            }
            Ok(response)
        };
    let mut ws = if let WsBehaviour::Greet(greeting) = behaviour {
        match accept_with_greeting(stream, &name, greeting).await {
            Some((ws, head)) => {
                stats.heads.lock().unwrap().push(head);
                ws
            }
            None => return,
        }
    } else {
        match tokio_tungstenite::accept_hdr_async(stream, callback).await {
            Ok(ws) => ws,
            Err(_) => return,
        }
    };
    stats.upgrades.fetch_add(1, Ordering::SeqCst);
    let mut echoed = 0;
    loop {
        let next = tokio::select! {
            next = ws.next() => next,
            _ = stop.cancelled() => break,
        };
        match next {
            Some(Ok(Message::Text(text))) if text.as_str() == "who" => {
                if ws.send(Message::text(name.as_str())).await.is_err() {
                    break;
                }
            }
            Some(Ok(Message::Text(text))) if text.as_str() == "close" => {
                let _ = ws.close(None).await;
            }
            Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                // Counted before the echo leaves, so a client that got it can count on it.
                stats.messages.fetch_add(1, Ordering::SeqCst);
                if ws.send(message).await.is_err() {
                    break;
                }
                echoed += 1;
                match behaviour {
                    WsBehaviour::CloseAfter(n) if echoed == n => {
                        // The peer's reply arrives as a Close message; reading on finishes
                        // the close handshake.
                        let _ = ws.close(None).await;
                    }
                    WsBehaviour::DropAfter(n) if echoed == n => break,
                    _ => {}
                }
            }
            Some(Ok(Message::Close(_))) => {
                // tungstenite queues the reply; the next read sends it and then ends.
                stats.closes_received.fetch_add(1, Ordering::SeqCst);
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    drop(ws);
    stats.ended.fetch_add(1, Ordering::SeqCst);
}

/// The server side of a WebSocket handshake done by hand: the `101` and a first (unmasked)
/// text frame carrying `greeting` go out in a single write.
async fn accept_with_greeting(
    mut stream: TcpStream,
    name: &str,
    greeting: &str,
) -> Option<(WebSocketStream<TcpStream>, Head)> {
    let raw = read_head(&mut stream).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next()?.split_whitespace();
    let (method, uri) = (
        request_line.next()?.to_owned(),
        request_line.next()?.to_owned(),
    );
    let mut headers = HeaderMap::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (k, v) = line.split_once(':')?;
        headers.append(
            http::HeaderName::from_bytes(k.trim().as_bytes()).ok()?,
            HeaderValue::from_str(v.trim()).ok()?,
        );
    }
    let accept =
        tungstenite::handshake::derive_accept_key(headers.get("sec-websocket-key")?.as_bytes());
    assert!(greeting.len() < 126, "a one-byte payload length");
    let mut answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Accept: {accept}\r\nx-backend: {name}\r\n\r\n"
    )
    .into_bytes();
    answer.extend_from_slice(&[0x81, greeting.len() as u8]);
    answer.extend_from_slice(greeting.as_bytes());
    stream.write_all(&answer).await.ok()?;
    let ws = WebSocketStream::from_raw_socket(stream, Role::Server, None).await;
    Some((
        ws,
        Head {
            method,
            uri,
            headers,
        },
    ))
}

/// Reads a request head byte by byte (nothing past it); `None` if the peer closes first.
async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(head)
}

/// An HTTP/1.1 backend that refuses upgrades: a request with an `Upgrade` header gets `status`
/// and `body` (a 426 also names `Upgrade: websocket`, as it must); any other request gets
/// `200 plain <path>`.
pub struct RefusingBackend {
    pub addr: SocketAddr,
    heads: Arc<Mutex<Vec<Head>>>,
    cancel: CancellationToken,
}

impl Drop for RefusingBackend {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl RefusingBackend {
    pub async fn start(status: StatusCode, body: &'static str) -> RefusingBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let cancel = CancellationToken::new();
        let (stop, recorder) = (cancel.clone(), heads.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => accepted.unwrap(),
                };
                let recorder = recorder.clone();
                let service = service_fn(move |req: Request<Incoming>| {
                    recorder.lock().unwrap().push(Head {
                        method: req.method().to_string(),
                        uri: req.uri().to_string(),
                        headers: req.headers().clone(),
                    });
                    let path = req.uri().path().to_owned();
                    async move {
                        let upgrade = req.headers().contains_key(http::header::UPGRADE);
                        let _ = req.into_body().collect().await;
                        let mut response = Response::builder().header("content-type", "text/plain");
                        let response = if upgrade {
                            if status == StatusCode::UPGRADE_REQUIRED {
                                response = response
                                    .header("upgrade", "websocket")
                                    .header("connection", "upgrade");
                            }
                            response.status(status).body(Full::new(Bytes::from(body)))
                        } else {
                            response.body(Full::new(Bytes::from(format!("plain {path}"))))
                        };
                        Ok::<_, std::convert::Infallible>(response.unwrap())
                    }
                });
                let stop = stop.clone();
                tokio::spawn(async move {
                    let conn =
                        http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        _ = stop.cancelled() => {}
                    }
                });
            }
        });
        RefusingBackend {
            addr,
            heads,
            cancel,
        }
    }

    /// The requests received so far.
    pub fn heads(&self) -> Vec<Head> {
        self.heads.lock().unwrap().clone()
    }
}

/// An HTTP/1.1 server (hyper) that serves plain requests with `200 plain <path>` and accepts
/// WebSocket upgrades on the same keep-alive connections, echoing messages on them, as most
/// application servers do.
pub struct HybridBackend {
    pub addr: SocketAddr,
    /// TCP connections accepted.
    pub connections: Arc<AtomicUsize>,
    /// Requests received (plain and upgrades).
    pub requests: Arc<AtomicUsize>,
    /// WebSocket sessions opened.
    pub upgrades: Arc<AtomicUsize>,
    cancel: CancellationToken,
}

impl Drop for HybridBackend {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl HybridBackend {
    pub async fn start() -> HybridBackend {
        Self::start_with(None).await
    }

    /// With `Some(n)`, each connection answers `n` requests and is dropped, unanswered, on the
    /// next one (the keep-alive race, made deterministic).
    pub async fn start_with(requests_per_connection: Option<usize>) -> HybridBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let upgrades = Arc::new(AtomicUsize::new(0));
        let cancel = CancellationToken::new();
        let (stop, counters) = (
            cancel.clone(),
            (connections.clone(), requests.clone(), upgrades.clone()),
        );
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => accepted.unwrap(),
                };
                counters.0.fetch_add(1, Ordering::SeqCst);
                let (requests, upgrades, session_stop) =
                    (counters.1.clone(), counters.2.clone(), stop.clone());
                let on_this_connection = Arc::new(AtomicUsize::new(0));
                let service = service_fn(move |mut req: Request<Incoming>| {
                    requests.fetch_add(1, Ordering::SeqCst);
                    let n = on_this_connection.fetch_add(1, Ordering::SeqCst);
                    let drop_it = requests_per_connection.is_some_and(|limit| n >= limit);
                    let (upgrades, stop) = (upgrades.clone(), session_stop.clone());
                    async move {
                        if drop_it {
                            return Err(std::io::Error::other(
                                "dropping the connection on purpose",
                            ));
                        }
                        let key = req.headers().get("sec-websocket-key").cloned();
                        let Some(key) = key else {
                            let body = format!("plain {}", req.uri().path());
                            return Ok::<_, std::io::Error>(Response::new(Full::new(Bytes::from(
                                body,
                            ))));
                        };
                        let on_upgrade = hyper::upgrade::on(&mut req);
                        tokio::spawn(async move {
                            let Ok(upgraded) = on_upgrade.await else {
                                return;
                            };
                            upgrades.fetch_add(1, Ordering::SeqCst);
                            let mut ws = WebSocketStream::from_raw_socket(
                                TokioIo::new(upgraded),
                                Role::Server,
                                None,
                            )
                            .await;
                            loop {
                                let next = tokio::select! {
                                    next = ws.next() => next,
                                    _ = stop.cancelled() => return,
                                };
                                match next {
                                    Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                                        if ws.send(m).await.is_err() {
                                            return;
                                        }
                                    }
                                    Some(Ok(_)) => {}
                                    Some(Err(_)) | None => return,
                                }
                            }
                        });
                        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
                        Ok(Response::builder()
                            .status(StatusCode::SWITCHING_PROTOCOLS)
                            .header("connection", "upgrade")
                            .header("upgrade", "websocket")
                            .header("sec-websocket-accept", accept)
                            .body(Full::default())
                            .unwrap())
                    }
                });
                let stop = stop.clone();
                tokio::spawn(async move {
                    let conn = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    tokio::select! {
                        _ = conn => {}
                        _ = stop.cancelled() => {}
                    }
                });
            }
        });
        HybridBackend {
            addr,
            connections,
            requests,
            upgrades,
            cancel,
        }
    }
}

/// A TCP backend that reads one request head per connection, records it, answers with the
/// fixed bytes `response` (which may go on past the head) and then only reads (and discards)
/// until the peer closes.
pub struct RawBackend {
    pub addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    cancel: CancellationToken,
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl RawBackend {
    pub async fn start(response: &'static [u8]) -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let cancel = CancellationToken::new();
        let (stop, recorder) = (cancel.clone(), heads.clone());
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => accepted.unwrap(),
                };
                let (recorder, stop) = (recorder.clone(), stop.clone());
                tokio::spawn(async move {
                    let session = async {
                        let Some(head) = read_head(&mut stream).await else {
                            return;
                        };
                        recorder
                            .lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&head).into_owned());
                        if stream.write_all(response).await.is_err() {
                            return;
                        }
                        let mut sink = [0u8; 4096];
                        while stream.read(&mut sink).await.unwrap_or(0) > 0 {}
                    };
                    tokio::select! {
                        _ = session => {}
                        _ = stop.cancelled() => {}
                    }
                });
            }
        });
        RawBackend {
            addr,
            heads,
            cancel,
        }
    }

    /// The request heads received so far.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// weir's data plane in this process with a plain and a TLS listener on 127.0.0.1:0, sharing
/// one [`State`].
pub struct WsProxy {
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub state: Arc<State>,
    pub proxy: Arc<Proxy>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Drop for WsProxy {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl WsProxy {
    pub async fn start(config: ProxyConfig, table: RouteTable, certs: Arc<CertStore>) -> WsProxy {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let state = Arc::new(State::new(certs.clone()));
        state.publish(table, certs);
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let secure = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (http, https) = (plain.local_addr().unwrap(), secure.local_addr().unwrap());
        let proxy = Proxy::new(state.clone(), config, tasks.clone(), cancel.clone());
        let current = state.clone();
        let resolver = weir::tls::LiveResolver::new(move || current.snapshot().certs.clone());
        let tls = Arc::new(weir::tls::ServerConfigs::new(Arc::new(resolver)).unwrap());
        tokio::spawn(proxy.clone().serve_http(plain, cancel.clone()));
        tokio::spawn(proxy.clone().serve_https(secure, tls, cancel.clone()));
        WsProxy {
            http,
            https,
            state,
            proxy,
            cancel,
            tasks,
        }
    }

    /// Shuts down as the binary does after its delay: the listeners close and connections
    /// drain. Returns the tracker of every task the proxy spawned (closed: `wait` ends once
    /// they all have).
    pub fn shut_down(&self) -> TaskTracker {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.clone()
    }

    /// Swaps in `table`, keeping the current certificates; returns the generation.
    pub fn publish(&self, table: RouteTable) -> u64 {
        let certs = self.state.snapshot().certs.clone();
        self.state.publish(table, certs)
    }

    /// Swaps in `table` and `certs` together; returns the generation.
    pub fn publish_with_certs(&self, table: RouteTable, certs: Arc<CertStore>) -> u64 {
        self.state.publish(table, certs)
    }
}

/// A certificate store serving `cert` for `host` and a fresh self-signed default otherwise.
pub fn cert_store(host: &str, cert: &Cert) -> Arc<CertStore> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut store = CertStore::new(weir::tls::self_signed_default().unwrap());
    let key = weir::tls::certified_key_from_pem(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes())
        .unwrap();
    store.insert(host, key);
    Arc::new(store)
}

/// A table with one route, `host` + Prefix `/` → service "ws" on `endpoints`, with the route's
/// tunnel idle timeout (`proxy-read-timeout`) set to `idle_timeout` when given.
pub fn ws_table(
    host: &str,
    endpoints: Vec<SocketAddr>,
    idle_timeout: Option<Duration>,
) -> RouteTable {
    let route = super::with_policy(super::route("ws", endpoints), |policy| {
        if let Some(idle) = idle_timeout {
            policy.timeouts.read = idle;
            policy.timeouts.tunnel_idle = idle;
        }
    });
    super::routes(vec![(host, PathRule::prefix("/"), route)])
}

/// Opens ws://`host``path` through the proxy's plain listener at `addr`.
pub async fn try_ws_connect(
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> Result<(PlainWs, WsResponse), tungstenite::Error> {
    let tcp = TcpStream::connect(addr).await?;
    let request = format!("ws://{host}{path}").into_client_request()?;
    in_time(tokio_tungstenite::client_async(request, tcp)).await
}

pub async fn ws_connect(addr: SocketAddr, host: &str, path: &str) -> (PlainWs, WsResponse) {
    try_ws_connect(addr, host, path)
        .await
        .unwrap_or_else(|e| panic!("ws://{host}{path} via {addr}: {}", describe_error(&e)))
}

/// Opens wss://`host``path` through the proxy's TLS listener at `addr` (SNI `host`, ALPN
/// http/1.1); also returns the leaf certificate the proxy sent.
pub async fn try_wss_connect(
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> Result<(TlsWs, WsResponse, Vec<u8>), tungstenite::Error> {
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap();
    let tls = in_time(connector(&[b"http/1.1"]).connect(name, tcp)).await?;
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let request = format!("wss://{host}{path}").into_client_request()?;
    let (ws, response) = in_time(tokio_tungstenite::client_async(request, tls)).await?;
    Ok((ws, response, leaf))
}

pub async fn wss_connect(addr: SocketAddr, host: &str, path: &str) -> (TlsWs, WsResponse, Vec<u8>) {
    try_wss_connect(addr, host, path)
        .await
        .unwrap_or_else(|e| panic!("wss://{host}{path} via {addr}: {}", describe_error(&e)))
}

/// A tungstenite error, with the status and body when the server refused the handshake.
pub fn describe_error(error: &tungstenite::Error) -> String {
    match error {
        tungstenite::Error::Http(response) => format!(
            "handshake answered {} {:?}",
            response.status(),
            response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
        ),
        other => other.to_string(),
    }
}

/// The status of a refused WebSocket handshake (panics on any other outcome).
pub fn refused_status<T>(result: Result<T, tungstenite::Error>) -> StatusCode {
    match result {
        Err(tungstenite::Error::Http(response)) => response.status(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected an HTTP refusal, the handshake succeeded"),
    }
}

async fn in_time<T, E: From<std::io::Error>>(
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    tokio::time::timeout(STEP, work)
        .await
        .map_err(|_| E::from(std::io::Error::other("timed out")))?
}

/// An HTTP/2 client connection over `io` (h2c with prior knowledge, or TLS with ALPN h2),
/// returned once the server's SETTINGS have enabled extended CONNECT (RFC 8441); panics if
/// they do not.
pub async fn h2_connect<S>(io: S) -> SendRequest<Full<Bytes>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
    let enabled = Arc::new(AtomicBool::new(false));
    let flag = enabled.clone();
    // hyper drives the h2 connection on a task of its own, so the setting is looked at every
    // few milliseconds rather than whenever this future happens to be woken.
    tokio::spawn(async move {
        let mut conn = std::pin::pin!(conn);
        loop {
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = tokio::time::sleep(Duration::from_millis(2)), if !flag.load(Ordering::SeqCst) => {
                    if conn.is_extended_connect_protocol_enabled() {
                        flag.store(true, Ordering::SeqCst);
                    }
                }
            }
        }
    });
    super::wait_until(
        "the server's SETTINGS enable extended CONNECT (SETTINGS_ENABLE_CONNECT_PROTOCOL)",
        Duration::from_secs(5),
        || enabled.load(Ordering::SeqCst),
    )
    .await;
    sender
}

/// Opens a WebSocket on a new stream of `sender` with an RFC 8441 extended CONNECT to `uri`
/// (`http://host/path` or `https://host/path`). Panics unless the answer is 200.
pub async fn h2_websocket(sender: &mut SendRequest<Full<Bytes>>, uri: &str) -> (H2Ws, HeaderMap) {
    match try_h2_websocket(sender, uri).await {
        Ok(opened) => opened,
        Err((status, body)) => panic!("extended CONNECT to {uri} answered {status} {body:?}"),
    }
}

/// Like [`h2_websocket`]; an answer other than 200 is returned with its body.
pub async fn try_h2_websocket(
    sender: &mut SendRequest<Full<Bytes>>,
    uri: &str,
) -> Result<(H2Ws, HeaderMap), (StatusCode, Bytes)> {
    try_h2_websocket_with(sender, uri, &[]).await
}

/// Like [`try_h2_websocket`], with `headers` added to the CONNECT request.
pub async fn try_h2_websocket_with(
    sender: &mut SendRequest<Full<Bytes>>,
    uri: &str,
    headers: &[(&str, &str)],
) -> Result<(H2Ws, HeaderMap), (StatusCode, Bytes)> {
    let mut req = Request::builder()
        .method(Method::CONNECT)
        .uri(uri)
        .header("sec-websocket-version", "13");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let mut req = req.body(Full::default()).unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    tokio::time::timeout(STEP, sender.ready())
        .await
        .expect("HTTP/2 connection ready in time")
        .expect("HTTP/2 connection ready");
    let mut response = tokio::time::timeout(STEP, sender.send_request(req))
        .await
        .expect("extended CONNECT answered in time")
        .expect("extended CONNECT answered");
    if response.status() != StatusCode::OK {
        let status = response.status();
        let body = tokio::time::timeout(STEP, response.into_body().collect())
            .await
            .expect("the body in time")
            .expect("the body")
            .to_bytes();
        return Err((status, body));
    }
    let upgraded = tokio::time::timeout(STEP, hyper::upgrade::on(&mut response))
        .await
        .expect("stream upgraded in time")
        .expect("stream upgraded");
    let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await;
    Ok((ws, response.headers().clone()))
}

/// `len` bytes of pseudo-random content, the same for the same `seed`.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| rng.u8(..)).collect()
}

/// A text message of exactly `len` ASCII bytes, the same for the same `seed`.
pub fn text(len: usize, seed: u64) -> Message {
    let mut rng = fastrand::Rng::with_seed(seed);
    Message::text((0..len).map(|_| rng.alphanumeric()).collect::<String>())
}

/// The sizes that cross WebSocket framing boundaries (7-bit, 16-bit and 64-bit lengths) plus
/// a large one.
pub const FRAME_SIZES: [usize; 7] = [0, 1, 125, 126, 65535, 65536, 1024 * 1024];

/// Kind and length of a message, for failure messages (never the whole payload).
pub fn describe(message: &Message) -> String {
    match message {
        Message::Text(t) => format!("text({} B)", t.len()),
        Message::Binary(b) => format!("binary({} B)", b.len()),
        Message::Close(c) => format!("close({c:?})"),
        other => format!("{other:?}"),
    }
}

/// Sends `message` and waits for the identical message to come back.
pub async fn echo<S>(ws: &mut WebSocketStream<S>, message: Message) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let sent = describe(&message);
    match tokio::time::timeout(STEP, ws.send(message.clone())).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(format!("sending {sent}: {e}")),
        Err(_) => return Err(format!("sending {sent} timed out")),
    }
    loop {
        match tokio::time::timeout(STEP, ws.next()).await {
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(got))) if got == message => return Ok(()),
            Ok(Some(Ok(got))) => {
                return Err(format!("sent {sent}, got back {}", describe(&got)));
            }
            Ok(Some(Err(e))) => return Err(format!("waiting for the echo of {sent}: {e}")),
            Ok(None) => return Err(format!("connection ended before the echo of {sent}")),
            Err(_) => return Err(format!("no echo of {sent} within {STEP:?}")),
        }
    }
}

/// The next message (pings and pongs skipped), within [`STEP`].
pub async fn next_message<S>(ws: &mut WebSocketStream<S>) -> Result<Message, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        match tokio::time::timeout(STEP, ws.next()).await {
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(message))) => return Ok(message),
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(None) => return Err("the connection ended".to_owned()),
            Err(_) => return Err(format!("no message within {STEP:?}")),
        }
    }
}

/// Echoes text and binary messages of every size in [`FRAME_SIZES`].
pub async fn echo_all_sizes<S>(ws: &mut WebSocketStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    for (i, size) in FRAME_SIZES.into_iter().enumerate() {
        echo(ws, text(size, i as u64)).await.unwrap();
        echo(ws, Message::binary(payload(size, 100 + i as u64)))
            .await
            .unwrap();
    }
}

/// How a WebSocket connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The peer sent a close frame.
    CloseFrame,
    /// The stream ended without (another) close frame.
    Eof,
    /// The stream failed (e.g. reset, or closed without a close handshake).
    Error(String),
}

/// Reads until the connection ends (pings and pongs are skipped; a data message is an error)
/// and says how; panics if it has not ended within `limit`.
pub async fn wait_ended<S>(ws: &mut WebSocketStream<S>, limit: Duration) -> Ended
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let ended = tokio::time::timeout(limit, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) => return Ended::CloseFrame,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(other)) => panic!("unexpected {} instead of the end", describe(&other)),
                Some(Err(e)) => return Ended::Error(e.to_string()),
                None => return Ended::Eof,
            }
        }
    })
    .await;
    ended.unwrap_or_else(|_| panic!("the WebSocket connection did not end within {limit:?}"))
}

/// Reads from `ws` until it ends (within 10 s); returns how long that took.
pub async fn time_until_ended<S>(ws: &mut WebSocketStream<S>) -> Duration
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let started = tokio::time::Instant::now();
    wait_ended(ws, Duration::from_secs(10)).await;
    started.elapsed()
}

pub type Step<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A WebSocket client of any transport (ws://, wss://, HTTP/2), so one test can loop over
/// them alike.
pub trait Tunnel: Send {
    fn echo(&mut self, message: Message) -> Step<'_, Result<(), String>>;
    fn time_until_ended(&mut self) -> Step<'_, Duration>;
    /// Closes with a close handshake; an error unless it completes cleanly in time.
    fn close(&mut self) -> Step<'_, Result<(), String>>;
    /// The next message (pings and pongs skipped), or what went wrong.
    fn next_message(&mut self) -> Step<'_, Result<Message, String>>;
}

impl<S> Tunnel for WebSocketStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    fn echo(&mut self, message: Message) -> Step<'_, Result<(), String>> {
        Box::pin(echo(self, message))
    }
    fn time_until_ended(&mut self) -> Step<'_, Duration> {
        Box::pin(time_until_ended(self))
    }
    fn close(&mut self) -> Step<'_, Result<(), String>> {
        Box::pin(close_cleanly(self))
    }
    fn next_message(&mut self) -> Step<'_, Result<Message, String>> {
        Box::pin(next_message(self))
    }
}

/// A plain TCP client speaking HTTP/1.1 by hand, so a test controls exactly which requests go
/// over which connection.
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// A response as [`RawConn`] read it.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> RawConn {
        RawConn {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    /// Writes `request` and reads one response (Content-Length, chunked, or no body for
    /// 1xx/204/304).
    pub async fn send(&mut self, request: &str) -> RawResponse {
        self.send_bytes(request.as_bytes()).await
    }

    /// Like [`RawConn::send`], with any bytes.
    pub async fn send_bytes(&mut self, request: &[u8]) -> RawResponse {
        self.stream.write_all(request).await.unwrap();
        tokio::time::timeout(STEP, self.read_response())
            .await
            .expect("a response in time")
    }

    /// Reads exactly `n` more bytes (after a response: what the connection carries next).
    pub async fn read_bytes(&mut self, n: usize) -> Vec<u8> {
        tokio::time::timeout(STEP, self.exactly(n))
            .await
            .expect("the bytes in time")
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "connection closed mid-response after {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        self.buf.extend_from_slice(&chunk[..n]);
    }

    async fn line(&mut self) -> String {
        loop {
            if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..at]).into_owned();
                self.buf.drain(..at + 2);
                return line;
            }
            self.fill().await;
        }
    }

    async fn exactly(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            self.fill().await;
        }
        self.buf.drain(..n).collect()
    }

    async fn read_response(&mut self) -> RawResponse {
        let status_line = self.line().await;
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let line = self.line().await;
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("header line");
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        let mut response = RawResponse {
            status,
            headers,
            body: Vec::new(),
        };
        if status < 200 || status == 204 || status == 304 {
            return response;
        }
        if let Some(len) = response.header("content-length") {
            let len = len.parse().unwrap();
            response.body = self.exactly(len).await;
        } else if response
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let size = self.line().await;
                let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16)
                    .expect("chunk size");
                if size == 0 {
                    while !self.line().await.is_empty() {}
                    break;
                }
                let chunk = self.exactly(size).await;
                response.body.extend_from_slice(&chunk);
                self.exactly(2).await;
            }
        } else {
            loop {
                let mut chunk = [0u8; 8192];
                let n = self.stream.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
            response.body = std::mem::take(&mut self.buf);
        }
        response
    }
}

/// The handshake request of a WebSocket client, by hand.
pub fn upgrade_request(host: &str, path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Closes with a close handshake: sends a close frame, then expects the peer's close frame
/// in reply and the end of the connection, each within [`STEP`].
pub async fn close_cleanly<S>(ws: &mut WebSocketStream<S>) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(STEP, ws.close(None)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(format!("sending the close frame: {e}")),
        Err(_) => return Err("sending the close frame timed out".to_owned()),
    }
    match wait_ended(ws, STEP).await {
        Ended::CloseFrame => {}
        other => return Err(format!("no close frame in reply: {other:?}")),
    }
    match wait_ended(ws, STEP).await {
        Ended::Eof => Ok(()),
        other => Err(format!(
            "the connection did not end after the close handshake: {other:?}"
        )),
    }
}
