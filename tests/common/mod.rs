//! Shared pieces of the integration tests: real backends, an in-process proxy, clients.
#![allow(dead_code)]

pub mod auth;
pub mod fault;
pub mod grpc;
pub mod manifests;
pub mod metrics;
pub mod process;
pub mod recorder;
pub mod scripted;
pub mod tls;
pub mod ws;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use weir::model::{
    Backend, HostMatch, HttpsPolicy, ObjectKind, ObjectRef, PathRule, Policy, Route, RouteTable,
    RouteTableBuilder,
};
use weir::proxy::{Proxy, ProxyConfig};
use weir::state::State;

/// A real HTTP/1.1 server standing in for a Service endpoint.
///
/// Paths: `…/slow?ms=N` waits N ms before answering; `/sink` reads the body and answers its
/// length; `/source?bytes=N` streams N bytes; `/reset` drops the connection without answering;
/// `/close` answers the echo with `Connection: close`; anything else answers a JSON echo of
/// the request. `/stall` sends a few bytes of its body and then nothing; `/status?code=N`
/// answers status N with the body `status N`.
pub struct TestBackend {
    pub addr: SocketAddr,
    pub name: String,
    /// TCP connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    /// TCP connections that ended so far.
    pub closed: Arc<AtomicUsize>,
    /// Requests received so far (counted when their head arrives).
    pub requests: Arc<AtomicUsize>,
    cancel: CancellationToken,
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// How a [`TestBackend`] treats its connections.
#[derive(Debug, Clone, Copy, Default)]
pub struct BackendOptions {
    /// Listen on this IP (default 127.0.0.1), on an ephemeral port.
    pub ip: Option<std::net::IpAddr>,
    /// Close connections that stay idle this long (silently, as servers with a keep-alive
    /// timeout do).
    pub idle_close: Option<Duration>,
    /// Answer this many requests per connection; drop the connection on the next one without
    /// answering (the keep-alive race, made deterministic).
    pub requests_per_connection: Option<usize>,
    /// Speak HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1; the echo's `version`
    /// says which one a request came in.
    pub h2c: bool,
    /// Answer every request with this status (after reading its body, with the usual
    /// answer's body: for the echo, the backend's name).
    pub status: Option<u16>,
    /// Wait this long before answering each request (an endpoint that is slow on every path).
    pub delay: Option<Duration>,
}

impl TestBackend {
    pub async fn start(name: &str) -> TestBackend {
        Self::start_with(name, BackendOptions::default()).await
    }

    pub async fn start_with(name: &str, options: BackendOptions) -> TestBackend {
        let ip = options.ip.unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
        let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let cancel = CancellationToken::new();
        let counters = (connections.clone(), closed.clone(), requests.clone());
        let (stop, backend_name) = (cancel.clone(), name.to_owned());
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => accepted.unwrap(),
                };
                counters.0.fetch_add(1, Ordering::SeqCst);
                let (name, stop, closed, requests) = (
                    backend_name.clone(),
                    stop.clone(),
                    counters.1.clone(),
                    counters.2.clone(),
                );
                tokio::spawn(async move {
                    let on_this_connection = Arc::new(AtomicUsize::new(0));
                    let service = service_fn(move |req| {
                        requests.fetch_add(1, Ordering::SeqCst);
                        let n = on_this_connection.fetch_add(1, Ordering::SeqCst);
                        let drop_it = options
                            .requests_per_connection
                            .is_some_and(|limit| n >= limit);
                        let name = name.clone();
                        async move {
                            if drop_it {
                                return Err(std::io::Error::other(
                                    "dropping the connection on purpose",
                                ));
                            }
                            if let Some(delay) = options.delay {
                                tokio::time::sleep(delay).await;
                            }
                            let mut response = handle(name, req).await?;
                            if let Some(status) = options.status {
                                *response.status_mut() = StatusCode::from_u16(status).unwrap();
                            }
                            Ok(response)
                        }
                    });
                    if options.h2c {
                        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service);
                        tokio::select! {
                            _ = conn => {}
                            _ = stop.cancelled() => {}
                        }
                        closed.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    let mut builder = http1::Builder::new();
                    if let Some(idle) = options.idle_close {
                        builder
                            .timer(hyper_util::rt::TokioTimer::new())
                            .header_read_timeout(idle);
                    }
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        _ = stop.cancelled() => {}
                    }
                    closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        TestBackend {
            addr,
            name: name.to_owned(),
            connections,
            closed,
            requests,
            cancel,
        }
    }
}

type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn query_number(req: &Request<Incoming>, key: &str) -> u64 {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
        .unwrap_or(0)
}

async fn handle(
    name: String,
    req: Request<Incoming>,
) -> Result<Response<TestBody>, std::io::Error> {
    let path = req.uri().path().to_owned();
    match path.as_str() {
        "/reset" => Err(std::io::Error::other("reset on purpose")),
        "/status" => {
            let code = query_number(&req, "code");
            let status = StatusCode::from_u16(code as u16).unwrap_or(StatusCode::IM_A_TEAPOT);
            Ok(Response::builder()
                .status(status)
                .body(Full::new(Bytes::from(format!("status {code}"))).boxed())
                .unwrap())
        }
        "/stall" => {
            // One chunk, then nothing ever again.
            let first = futures_util::stream::once(async {
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"partial")))
            });
            let body = StreamBody::new(futures_util::StreamExt::chain(
                first,
                futures_util::stream::pending(),
            ));
            Ok(Response::new(BodyExt::boxed(body)))
        }
        "/sink" => {
            let mut body = req.into_body();
            let mut total: u64 = 0;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.map_err(std::io::Error::other)?.into_data() {
                    total += data.len() as u64;
                }
            }
            Ok(Response::new(
                Full::new(Bytes::from(total.to_string())).boxed(),
            ))
        }
        "/source" => {
            let total = query_number(&req, "bytes");
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let chunks = (0..total.div_ceil(chunk.len() as u64)).map(move |i| {
                let len = (total - i * chunk.len() as u64).min(chunk.len() as u64) as usize;
                Ok::<_, Infallible>(Frame::data(chunk.slice(..len)))
            });
            let body = StreamBody::new(futures_util::stream::iter(chunks));
            Ok(Response::new(BodyExt::boxed(body)))
        }
        _ => {
            if path.ends_with("/slow") {
                tokio::time::sleep(Duration::from_millis(query_number(&req, "ms"))).await;
            }
            let method = req.method().to_string();
            let uri = req.uri().to_string();
            let version = format!("{:?}", req.version());
            let headers: Vec<(String, String)> = req
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let body = req
                .into_body()
                .collect()
                .await
                .map_err(std::io::Error::other)?
                .to_bytes();
            let echo = serde_json::json!({
                "backend": name, "method": method, "uri": uri, "version": version,
                "headers": headers, "body_len": body.len(),
            });
            let connection = if path == "/close" {
                "close"
            } else {
                "keep-alive"
            };
            Ok(Response::builder()
                .header("content-type", "application/json")
                .header("connection", connection)
                .header("keep-alive", "timeout=30")
                .header("server", "test-backend")
                .body(Full::new(Bytes::from(echo.to_string())).boxed())
                .unwrap())
        }
    }
}

/// The echo a [`TestBackend`] answers with.
pub struct Echo(pub serde_json::Value);

/// The backend's view of a request the proxy answered with 200, from the raw HTTP/1.1 answer
/// (as [`raw`] returns it; the body is the backend's JSON echo).
pub fn echo_of_raw(answer: &str) -> Echo {
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body = answer.split_once("\r\n\r\n").expect("a body").1;
    Echo(serde_json::from_str(body).expect("the backend's echo"))
}

impl Echo {
    pub fn backend(&self) -> &str {
        self.0["backend"].as_str().unwrap()
    }
    pub fn uri(&self) -> &str {
        self.0["uri"].as_str().unwrap()
    }
    /// Every value of a request header the backend received, in order.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.0["headers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|kv| kv[0] == name)
            .map(|kv| kv[1].as_str().unwrap().to_owned())
            .collect()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.header_all(name).into_iter().next()
    }
}

/// weir's data plane running in this process on 127.0.0.1:0.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub state: Arc<State>,
    /// The proxy's connection tasks (and its pool's reaper).
    pub tasks: TaskTracker,
    cancel: CancellationToken,
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl TestProxy {
    /// A proxy sending every request to one endpoint (service "s").
    pub async fn serving(config: ProxyConfig, endpoint: SocketAddr) -> TestProxy {
        Self::serving_with(config, endpoint, |_| {}).await
    }

    /// Like [`TestProxy::serving`], with the route's policy changed by `change`.
    pub async fn serving_with(
        config: ProxyConfig,
        endpoint: SocketAddr,
        change: impl Fn(&mut Policy),
    ) -> TestProxy {
        let rows = [("", PathRule::prefix("/"), "s", vec![endpoint])];
        Self::start(config, table_with(&rows, change)).await
    }

    pub async fn start(config: ProxyConfig, table: RouteTable) -> TestProxy {
        let state = Arc::new(State::new(test_certs()));
        state.publish(table, test_certs());
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let proxy = Proxy::new(state.clone(), config, tasks.clone(), cancel.clone());
        tokio::spawn(proxy.serve_http(listener, cancel.clone()));
        TestProxy {
            addr,
            state,
            tasks,
            cancel,
        }
    }
}

impl TestProxy {
    /// Swaps in `table` (with the test certificates) and returns its generation.
    pub fn publish(&self, table: RouteTable) -> u64 {
        self.state.publish(table, test_certs())
    }
}

/// A certificate store with only a self-signed default, made once per test process.
pub fn test_certs() -> Arc<weir::tls::CertStore> {
    static CERTS: std::sync::OnceLock<Arc<weir::tls::CertStore>> = std::sync::OnceLock::new();
    CERTS
        .get_or_init(|| {
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            Arc::new(weir::tls::CertStore::new(
                weir::tls::self_signed_default().unwrap(),
            ))
        })
        .clone()
}

/// A route of Ingress `default/<service>` to Service `default/<service>` port 80 on
/// `endpoints`, without annotations (ingress-nginx's defaults).
pub fn route(service: &str, endpoints: Vec<SocketAddr>) -> Route {
    Route::new(
        ObjectRef::new(ObjectKind::Ingress, "default", service),
        Arc::new(Backend::new(
            ObjectRef::new(ObjectKind::Service, "default", service),
            "80",
            endpoints,
        )),
    )
}

/// `route` with its policy changed by `change` (what an Ingress's annotations would do).
pub fn with_policy(mut route: Route, change: impl FnOnce(&mut Policy)) -> Route {
    let mut policy = (*route.policy).clone();
    change(&mut policy);
    route.policy = Arc::new(policy);
    route
}

/// The HTTPS policy of a route on a host with TLS: HSTS with the default value, and the
/// HTTPS redirect when `redirect`.
pub fn tls_host(redirect: bool) -> HttpsPolicy {
    HttpsPolicy {
        tls_host: true,
        redirect,
        hsts: weir::model::Hsts::default().header(),
        ..HttpsPolicy::default()
    }
}

/// A route table from `(host, path rule, route)` rows.
pub fn routes(rows: Vec<(&str, PathRule, Route)>) -> RouteTable {
    let mut builder = RouteTableBuilder::new();
    for (host, path, route) in rows {
        builder
            .insert(&HostMatch::from_rule_host(host), &path, Arc::new(route))
            .unwrap();
    }
    builder.build()
}

/// A route table from `(host, path rule, service name, endpoints)` rows, without annotations.
pub fn table(rows: &[(&str, PathRule, &str, Vec<SocketAddr>)]) -> RouteTable {
    table_with(rows, |_| {})
}

/// Like [`table`], every route's policy changed by `change`.
pub fn table_with(
    rows: &[(&str, PathRule, &str, Vec<SocketAddr>)],
    change: impl Fn(&mut Policy),
) -> RouteTable {
    routes(
        rows.iter()
            .map(|(host, path, service, endpoints)| {
                let route = with_policy(route(service, endpoints.clone()), &change);
                (*host, path.clone(), route)
            })
            .collect(),
    )
}

/// Like [`table`], each row with its redirect and HSTS policy.
pub fn table_https(rows: &[(&str, PathRule, &str, Vec<SocketAddr>, HttpsPolicy)]) -> RouteTable {
    routes(
        rows.iter()
            .map(|(host, path, service, endpoints, https)| {
                let mut route = route(service, endpoints.clone());
                route.https = https.clone();
                (*host, path.clone(), route)
            })
            .collect(),
    )
}

/// An HTTP/1.1 client with keep-alive.
pub fn http1_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/2 connection with prior knowledge (h2c) to `addr`; requests carry their own
/// `:authority` in the URI.
pub async fn http2_connect(
    addr: SocketAddr,
) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// An HTTP/1.1 client connection of its own to `addr` (after writing `preamble` on it, such as
/// a PROXY protocol header): requests sent on it share one keep-alive connection.
pub async fn http1_connect(
    addr: SocketAddr,
    preamble: &[u8],
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(preamble).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// Reads a whole response.
pub async fn read_answer(response: Response<Incoming>) -> Answer {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body failed").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// A response read to the end.
pub struct Answer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn echo(&self) -> Echo {
        Echo(
            serde_json::from_slice(&self.body)
                .unwrap_or_else(|e| panic!("not an echo ({e}): {} {:?}", self.status, self.body)),
        )
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `req` and reads the whole response.
pub async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Answer {
    read_answer(client.request(req).await.expect("request failed")).await
}

/// GET `http://{proxy}{path}` with the given Host header.
pub async fn get(
    client: &Client<HttpConnector, Full<Bytes>>,
    proxy: SocketAddr,
    host: &str,
    path: &str,
) -> Answer {
    let req = Request::get(format!("http://{proxy}{path}"))
        .header("host", host)
        .body(Full::default())
        .unwrap();
    send(client, req).await
}

/// Like [`get`], but a transport error is returned instead of panicking.
pub async fn try_get(
    client: &Client<HttpConnector, Full<Bytes>>,
    proxy: SocketAddr,
    host: &str,
    path: &str,
) -> Result<Answer, String> {
    let req = Request::get(format!("http://{proxy}{path}"))
        .header("host", host)
        .body(Full::default())
        .unwrap();
    let response = client
        .request(req)
        .await
        .map_err(|e| format!("request failed: {e:?}"))?;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("body failed: {e:?}"))?
        .to_bytes();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// Writes raw bytes and reads until the server closes the connection.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    raw_timed(addr, request).await.0
}

/// Like [`raw`], also returning how long after the write the server closed the connection.
/// A connection reset ends the read like a close.
pub async fn raw_timed(addr: SocketAddr, request: &[u8]) -> (String, Duration) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("server did not close the connection")
        .ok();
    (
        String::from_utf8_lossy(&out).into_owned(),
        started.elapsed(),
    )
}

/// A local address that refuses connections (nothing listens on TCP port 1).
pub fn refusing_addr() -> SocketAddr {
    "127.0.0.1:1".parse().unwrap()
}

/// A local address whose connects time out: a listener whose backlog is already full, so the
/// kernel drops further SYNs. The address stays that way while this value lives.
pub struct Unanswering {
    pub addr: SocketAddr,
    _listener: TcpListener,
    _queued: TcpStream,
}

impl Unanswering {
    pub async fn new() -> Unanswering {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(0).unwrap();
        let addr = listener.local_addr().unwrap();
        let queued = TcpStream::connect(addr).await.unwrap();
        Unanswering {
            addr,
            _listener: listener,
            _queued: queued,
        }
    }
}

/// Waits until `condition` holds, checking every few milliseconds; panics after `limit`.
pub async fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A Service `name` (port `http` 80) whose endpoints are `endpoints`, as JSON objects (the
/// Service and its core/v1 Endpoints) for [`build_table`].
pub fn service_json(name: &str, endpoints: &[SocketAddr]) -> [serde_json::Value; 2] {
    let subsets: Vec<serde_json::Value> = endpoints
        .iter()
        .map(|a| {
            serde_json::json!({
                "addresses": [{"ip": a.ip().to_string()}],
                "ports": [{"name": "http", "port": a.port()}],
            })
        })
        .collect();
    [
        serde_json::json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"ports": [{"name": "http", "port": 80}]},
        }),
        serde_json::json!({
            "metadata": {"name": name, "namespace": "default"},
            "subsets": subsets,
        }),
    ]
}

/// An Ingress of class weir in namespace `default` with `annotations` and `rules` (the
/// `spec.rules` JSON), created `age` seconds after the epoch (older wins conflicts).
pub fn ingress_json(
    name: &str,
    age: i64,
    annotations: &[(&str, &str)],
    rules: serde_json::Value,
) -> serde_json::Value {
    let annotations: serde_json::Map<String, serde_json::Value> = annotations
        .iter()
        .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
        .collect();
    let created = jiff::Timestamp::from_second(age).unwrap().to_string();
    serde_json::json!({
        "metadata": {
            "name": name, "namespace": "default", "annotations": annotations,
            "creationTimestamp": created,
        },
        "spec": {"ingressClassName": "weir", "rules": rules},
    })
}

/// One rule: `host`, and paths `(path, pathType, service)` to port `http`.
/// An Ingress `name` with these ingress-nginx annotations (names without the
/// `nginx.ingress.kubernetes.io/` prefix) and one rule.
pub fn nginx_ingress(
    name: &str,
    annotations: &[(&str, &str)],
    rule: serde_json::Value,
) -> serde_json::Value {
    let owned: Vec<(String, &str)> = annotations
        .iter()
        .map(|(k, v)| (format!("nginx.ingress.kubernetes.io/{k}"), *v))
        .collect();
    let refs: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    ingress_json(name, 1, &refs, serde_json::json!([rule]))
}

/// An Opaque Secret `default/name` with these keys and (text) values.
pub fn secret_json(name: &str, data: &[(&str, &str)]) -> serde_json::Value {
    use base64::Engine;
    let data: serde_json::Map<String, serde_json::Value> = data
        .iter()
        .map(|(k, v)| {
            let encoded = base64::engine::general_purpose::STANDARD.encode(v);
            (k.to_string(), serde_json::Value::String(encoded))
        })
        .collect();
    serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": "default"},
        "data": data,
    })
}

/// A ConfigMap `default/name` with these keys and values.
pub fn config_map_json(name: &str, data: &[(&str, &str)]) -> serde_json::Value {
    let data: serde_json::Map<String, serde_json::Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
        .collect();
    serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "data": data,
    })
}

pub fn rule(host: &str, paths: &[(&str, &str, &str)]) -> serde_json::Value {
    let paths: Vec<serde_json::Value> = paths
        .iter()
        .map(|(path, path_type, service)| {
            serde_json::json!({
                "path": path, "pathType": path_type,
                "backend": {"service": {"name": service, "port": {"name": "http"}}},
            })
        })
        .collect();
    serde_json::json!({"host": host, "http": {"paths": paths}})
}

/// What weir's model builds for `ingresses` and `services` (JSON from [`ingress_json`] and
/// [`service_json`]) with `config`: the same code path as the controller, annotations and all.
pub fn build_table(
    ingresses: Vec<serde_json::Value>,
    services: Vec<[serde_json::Value; 2]>,
    config: &weir::model::BuildConfig,
) -> weir::model::Built {
    build_table_with(ingresses, services, Vec::new(), config)
}

/// A build's table and the messages of its diagnostics.
pub fn messages(built: weir::model::Built) -> (RouteTable, Vec<String>) {
    let messages = built
        .diagnostics
        .iter()
        .map(|d| d.message.clone())
        .collect();
    (built.table, messages)
}

/// The table weir builds for one Ingress `app` routing host `h` (every path) to Service `s`
/// of `backend`, with `annotations` and the controller ConfigMap `settings`; and the
/// diagnostics' messages.
pub fn built_for_h(
    backend: &TestBackend,
    annotations: &[(&str, &str)],
    settings: &[(&str, &str)],
) -> (RouteTable, Vec<String>) {
    let built = build_table_with(
        vec![nginx_ingress(
            "app",
            annotations,
            rule("h", &[("/", "Prefix", "s")]),
        )],
        vec![service_json("s", &[backend.addr])],
        vec![config_map_json("weir", settings)],
        &with_config_map(),
    );
    messages(built)
}

/// A build configuration that reads the controller ConfigMap `default/weir` (make it with
/// [`config_map_json`]`("weir", …)`).
pub fn with_config_map() -> weir::model::BuildConfig {
    weir::model::BuildConfig {
        config_map: Some(weir::model::ObjectRef::new(
            weir::model::ObjectKind::ConfigMap,
            "default",
            "weir",
        )),
        ..weir::model::BuildConfig::default()
    }
}

/// `table` with the forwarding headers of the peers in `nets` (comma-separated CIDRs)
/// believed, as `--trust-forwarded-from` does.
pub fn trusting(table: RouteTable, nets: &str) -> RouteTable {
    table.with_client_address(weir::model::client_address::ClientAddress {
        forwarded_from: weir::model::access::IpList::parse(nets).unwrap(),
        ..Default::default()
    })
}

/// [`build_table`] with these Secrets ([`secret_json`]) and ConfigMaps ([`config_map_json`])
/// in the cluster.
pub fn build_table_with(
    ingresses: Vec<serde_json::Value>,
    services: Vec<[serde_json::Value; 2]>,
    objects: Vec<serde_json::Value>,
    config: &weir::model::BuildConfig,
) -> weir::model::Built {
    fn parse<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Arc<T> {
        Arc::new(serde_json::from_value(v).unwrap())
    }
    let mut input = weir::model::Input {
        ingresses: ingresses.into_iter().map(parse).collect(),
        ..Default::default()
    };
    for object in objects {
        match object["kind"].as_str() {
            Some("Secret") => input.secrets.push(parse(object)),
            Some("ConfigMap") => input.config_maps.push(parse(object)),
            other => panic!("build_table_with reads Secrets and ConfigMaps, not {other:?}"),
        }
    }
    for [service, endpoints] in services {
        input.services.push(parse(service));
        input.endpoints.push(parse(endpoints));
    }
    weir::model::build(&input, config)
}

/// An access log writing text into memory.
pub fn memory_access_log() -> (
    weir::access_log::AccessLog,
    std::sync::Arc<std::sync::Mutex<String>>,
) {
    #[derive(Clone)]
    struct Sink(std::sync::Arc<std::sync::Mutex<String>>);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(buf));
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let lines = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let dropped = prometheus::IntCounter::new("dropped", "dropped").unwrap();
    let log = weir::access_log::AccessLog::start(
        weir::access_log::LogFormat::Text,
        Box::new(Sink(lines.clone())),
        dropped,
    )
    .unwrap();
    (log, lines)
}
