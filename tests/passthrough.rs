//! TLS passthrough (`ssl-passthrough` with `--enable-ssl-passthrough`) against real sockets: a
//! backend that terminates TLS itself with its own certificate behind a passthrough host, and
//! weir terminating every other host on the same listener.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use common::tls::*;
use common::*;
use weir::model::{BuildConfig, RouteTable};
use weir::proxy::{Proxy, ProxyConfig};
use weir::state::State;

const PASSTHROUGH: (&str, &str) = ("ssl-passthrough", "true");

/// A backend that terminates TLS itself, with a certificate of its own for `host`. Each
/// connection is greeted with `<name> <sni>\n`, then every line it sends is echoed back.
struct TlsBackend {
    addr: SocketAddr,
    /// Its certificate (DER), which a client passed through to it must see.
    der: Vec<u8>,
    /// TLS handshakes it completed.
    handshakes: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl TlsBackend {
    async fn start(name: &str, host: &str) -> TlsBackend {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let cert = cert_for(&[host]);
        let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(cert.der.clone())], key)
        .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let (count, cancel, name) = (handshakes.clone(), stop.clone(), name.to_owned());
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    _ = cancel.cancelled() => return,
                    accepted = listener.accept() => accepted.unwrap(),
                };
                let (acceptor, count, name) = (acceptor.clone(), count.clone(), name.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    count.fetch_add(1, Ordering::SeqCst);
                    let sni = tls.get_ref().1.server_name().unwrap_or("-").to_owned();
                    let mut tls = BufReader::new(tls);
                    let greeting = format!("{name} {sni}\n");
                    if tls.get_mut().write_all(greeting.as_bytes()).await.is_err() {
                        return;
                    }
                    let mut line = String::new();
                    while tls.read_line(&mut line).await.is_ok_and(|n| n > 0) {
                        if tls.get_mut().write_all(line.as_bytes()).await.is_err() {
                            return;
                        }
                        line.clear();
                    }
                });
            }
        });
        TlsBackend {
            addr,
            der: cert.der,
            handshakes,
            stop,
        }
    }
}

/// weir's data plane with a TLS listener on 127.0.0.1:0, as `main` wires it, with its task
/// tracker and cancellation token at hand.
struct Weir {
    addr: SocketAddr,
    state: Arc<State>,
    /// weir's own (default) certificate.
    default_der: Vec<u8>,
    tasks: TaskTracker,
    cancel: CancellationToken,
}

impl Drop for Weir {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Weir {
    async fn start(config: ProxyConfig, table: RouteTable) -> Weir {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let default = weir::tls::self_signed_default().unwrap();
        let default_der = default.cert[0].to_vec();
        let certs = Arc::new(weir::tls::CertStore::new(default));
        let state = Arc::new(State::new(certs.clone()));
        state.publish(table, certs);
        let (cancel, tasks) = (CancellationToken::new(), TaskTracker::new());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let proxy = Proxy::new(state.clone(), config, tasks.clone(), cancel.clone());
        let current = state.clone();
        let resolver = weir::tls::LiveResolver::new(move || current.snapshot().certs.clone());
        let tls = Arc::new(weir::tls::ServerConfigs::new(Arc::new(resolver)).unwrap());
        tasks.spawn(proxy.serve_https(listener, tls, cancel.clone()));
        Weir {
            addr,
            state,
            default_der,
            tasks,
            cancel,
        }
    }

    /// Publishes `table` with the certificates served now.
    fn publish(&self, table: RouteTable) {
        let certs = self.state.snapshot().certs.clone();
        self.state.publish(table, certs);
    }

    fn open_passthroughs(&self) -> i64 {
        self.state.metrics().connections.passthrough.get()
    }
}

/// With `--enable-ssl-passthrough` in the model and the data plane.
fn enabled() -> (BuildConfig, ProxyConfig) {
    let build = BuildConfig {
        ssl_passthrough: true,
        ..BuildConfig::default()
    };
    let proxy = ProxyConfig {
        ssl_passthrough: true,
        ..ProxyConfig::default()
    };
    (build, proxy)
}

/// The table of two Ingresses: `pass.test` (ssl-passthrough, path `/` to Service `tls-app`
/// at `tls_app`) and `plain.test` (path `/` to Service `web` at `web`).
fn two_hosts(config: &BuildConfig, tls_app: &[SocketAddr], web: SocketAddr) -> RouteTable {
    let built = build_table(
        vec![
            nginx_ingress(
                "pass",
                &[PASSTHROUGH],
                rule("pass.test", &[("/", "Prefix", "tls-app")]),
            ),
            nginx_ingress("plain", &[], rule("plain.test", &[("/", "Prefix", "web")])),
        ],
        vec![
            service_json("tls-app", tls_app),
            service_json("web", &[web]),
        ],
        config,
    );
    built.table
}

/// A TLS client connection with `sni` (an IP address sends none), or the handshake's error.
async fn connect(
    addr: SocketAddr,
    sni: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    connect_over(tcp, sni).await
}

async fn connect_over<S>(io: S, sni: &str) -> std::io::Result<tokio_rustls::client::TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let connecting = connector(&[b"http/1.1"]).connect(name, io);
    tokio::time::timeout(Duration::from_secs(10), connecting)
        .await
        .expect("the handshake ends (no hang)")
}

fn leaf<S>(stream: &tokio_rustls::client::TlsStream<S>) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// The backend's greeting, then the echo of one line.
async fn talk<S>(stream: &mut BufReader<S>, line: &str) -> (String, String)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut greeting = String::new();
    stream.read_line(&mut greeting).await.unwrap();
    let echo = echo(stream, line).await;
    (greeting.trim_end().to_owned(), echo)
}

async fn echo<S>(stream: &mut BufReader<S>, line: &str) -> String
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream
        .get_mut()
        .write_all(format!("{line}\n").as_bytes())
        .await
        .unwrap();
    let mut back = String::new();
    stream.read_line(&mut back).await.unwrap();
    back.trim_end().to_owned()
}

/// An HTTP/1.1 request for `host` on a TLS connection; the whole answer.
async fn http_over<S>(mut stream: S, host: &str) -> String
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_passthrough_host_gets_the_backend_s_tls_and_other_hosts_weir_s() {
    let tls_app = TlsBackend::start("tls-app", "pass.test").await;
    let web = TestBackend::start("web").await;
    let (build, proxy) = enabled();
    let weir = Weir::start(proxy, two_hosts(&build, &[tls_app.addr], web.addr)).await;

    // The passthrough host: the backend's certificate, the backend's answers, in both
    // directions; SNI matched whatever its case.
    for sni in ["pass.test", "PASS.Test"] {
        let stream = connect(weir.addr, sni).await.unwrap();
        assert_eq!(
            leaf(&stream),
            tls_app.der,
            "{sni}: the backend's certificate"
        );
        assert_ne!(leaf(&stream), weir.default_der);
        let mut stream = BufReader::new(stream);
        let (greeting, echo) = talk(&mut stream, "ping").await;
        assert_eq!(greeting, format!("tls-app {}", sni.to_ascii_lowercase()));
        assert_eq!(echo, "ping");
        let big = "x".repeat(100_000);
        assert_eq!(
            self::echo(&mut stream, &big).await,
            big,
            "large writes, both ways"
        );
    }
    assert_eq!(tls_app.handshakes.load(Ordering::SeqCst), 2);

    // The other host on the same listener: weir's certificate, weir's routing.
    let stream = connect(weir.addr, "plain.test").await.unwrap();
    assert_eq!(leaf(&stream), weir.default_der);
    let answer = http_over(stream, "plain.test").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"backend\":\"web\""), "{answer}");

    // No SNI, and an unknown one: terminated as today.
    for sni in ["127.0.0.1", "unknown.test"] {
        let stream = connect(weir.addr, sni).await.unwrap();
        assert_eq!(leaf(&stream), weir.default_der, "{sni}");
        let answer = http_over(stream, "plain.test").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{sni}: {answer}");
    }
    assert_eq!(
        tls_app.handshakes.load(Ordering::SeqCst),
        2,
        "none of those reached it"
    );
}

#[tokio::test]
async fn a_request_for_a_passthrough_host_on_weir_s_tls_is_misdirected() {
    let tls_app = TlsBackend::start("tls-app", "pass.test").await;
    let web = TestBackend::start("web").await;
    let (build, proxy) = enabled();
    let weir = Weir::start(proxy, two_hosts(&build, &[tls_app.addr], web.addr)).await;
    // A connection made for another host (as HTTP/2 clients reuse one for every host its
    // certificate covers) must not carry the passthrough host's requests to its TLS port.
    let stream = connect(weir.addr, "plain.test").await.unwrap();
    let answer = http_over(stream, "pass.test").await;
    assert!(answer.starts_with("HTTP/1.1 421"), "{answer}");
    assert!(answer.contains("ssl-passthrough"), "{answer}");
    assert_eq!(tls_app.handshakes.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn connections_are_balanced_and_a_refusing_endpoint_is_skipped() {
    let (one, two) = (
        TlsBackend::start("one", "pass.test").await,
        TlsBackend::start("two", "pass.test").await,
    );
    let web = TestBackend::start("web").await;
    let (build, proxy) = enabled();
    let endpoints = [one.addr, two.addr, refusing_addr()];
    let weir = Weir::start(proxy, two_hosts(&build, &endpoints, web.addr)).await;
    let mut greeted = Vec::new();
    for _ in 0..6 {
        let stream = connect(weir.addr, "pass.test").await.unwrap();
        let mut stream = BufReader::new(stream);
        let (greeting, _) = talk(&mut stream, "hi").await;
        greeted.push(greeting);
    }
    let count = |name: &str| greeted.iter().filter(|g| g.starts_with(name)).count();
    assert!(count("one ") >= 2 && count("two ") >= 2, "{greeted:?}");
    assert_eq!(
        count("one ") + count("two "),
        6,
        "every connection got through"
    );
    let errors = weir
        .state
        .metrics()
        .connections
        .upstream_errors
        .with_label_values(&["default", "tls-app", "connect_refused"])
        .get();
    assert!(errors >= 1, "the refusing endpoint was tried and counted");
}

#[tokio::test]
async fn endpoints_down_close_the_connection_without_a_hang() {
    let web = TestBackend::start("web").await;
    let (build, proxy) = enabled();
    // Every endpoint refuses; then none at all.
    for endpoints in [vec![refusing_addr()], vec![]] {
        let weir = Weir::start(proxy.clone(), two_hosts(&build, &endpoints, web.addr)).await;
        let started = tokio::time::Instant::now();
        let result = connect(weir.addr, "pass.test").await;
        assert!(result.is_err(), "{endpoints:?}: the handshake fails");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(weir.open_passthroughs(), 0);
        // Never terminated by weir in the backend's place, and other hosts still served.
        let stream = connect(weir.addr, "plain.test").await.unwrap();
        assert_eq!(leaf(&stream), weir.default_der);
    }
}

#[tokio::test]
async fn an_open_passthrough_survives_a_table_publish_and_is_counted() {
    let tls_app = TlsBackend::start("tls-app", "pass.test").await;
    let web = TestBackend::start("web").await;
    let (build, proxy) = enabled();
    let weir = Weir::start(proxy, two_hosts(&build, &[tls_app.addr], web.addr)).await;
    let stream = connect(weir.addr, "pass.test").await.unwrap();
    let mut stream = BufReader::new(stream);
    assert_eq!(talk(&mut stream, "before").await.1, "before");
    assert_eq!(weir.open_passthroughs(), 1);

    // The host stops passing through (the Ingress is gone): new connections are weir's...
    let built = build_table(
        vec![nginx_ingress(
            "plain",
            &[],
            rule("pass.test", &[("/", "Prefix", "web")]),
        )],
        vec![service_json("web", &[web.addr])],
        &build,
    );
    weir.publish(built.table);
    let fresh = connect(weir.addr, "pass.test").await.unwrap();
    assert_eq!(leaf(&fresh), weir.default_der);
    assert!(
        http_over(fresh, "pass.test")
            .await
            .starts_with("HTTP/1.1 200")
    );
    // ...and the open one carries on with what it started with.
    assert_eq!(echo(&mut stream, "after").await, "after");
    assert_eq!(weir.open_passthroughs(), 1);

    drop(stream);
    wait_until("the passthrough is closed", Duration::from_secs(5), || {
        weir.open_passthroughs() == 0
    })
    .await;
}

#[tokio::test]
async fn an_open_passthrough_is_drained_like_a_websocket() {
    let tls_app = TlsBackend::start("tls-app", "pass.test").await;
    let web = TestBackend::start("web").await;
    let (build, proxy) = enabled();
    let weir = Weir::start(proxy, two_hosts(&build, &[tls_app.addr], web.addr)).await;
    let stream = connect(weir.addr, "pass.test").await.unwrap();
    let mut stream = BufReader::new(stream);
    assert_eq!(talk(&mut stream, "before").await.1, "before");

    // Shutdown: the listener closes, the tunnel keeps going, and the drain waits for it.
    weir.cancel.cancel();
    weir.tasks.close();
    wait_until("the listener is closed", Duration::from_secs(5), || {
        std::net::TcpStream::connect(weir.addr).is_err()
    })
    .await;
    assert_eq!(echo(&mut stream, "draining").await, "draining");
    let drained = tokio::time::timeout(Duration::from_millis(100), weir.tasks.wait()).await;
    assert!(drained.is_err(), "the drain waits for the open passthrough");

    drop(stream);
    tokio::time::timeout(Duration::from_secs(5), weir.tasks.wait())
        .await
        .expect("drained once the passthrough closed");
    assert_eq!(weir.open_passthroughs(), 0);
}

/// Writes at most `chunk` bytes per write, flushing each: a ClientHello that arrives in
/// pieces.
struct Trickle<S> {
    inner: S,
    chunk: usize,
}

impl<S: AsyncRead + Unpin> AsyncRead for Trickle<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Trickle<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let n = buf.len().min(self.chunk);
        std::pin::Pin::new(&mut self.inner).poll_write(cx, &buf[..n])
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn a_client_hello_sent_in_pieces_is_read_whole_both_ways() {
    let tls_app = TlsBackend::start("tls-app", "pass.test").await;
    let web = TestBackend::start("web").await;
    let (build, proxy) = enabled();
    let weir = Weir::start(proxy, two_hosts(&build, &[tls_app.addr], web.addr)).await;
    // Two-byte writes split every record header and length of the ClientHello.
    for chunk in [2, 7, 100] {
        let tcp = TcpStream::connect(weir.addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let stream = connect_over(Trickle { inner: tcp, chunk }, "pass.test")
            .await
            .unwrap();
        assert_eq!(
            leaf(&stream),
            tls_app.der,
            "passed through, {chunk}-byte writes"
        );
        let mut stream = BufReader::new(stream);
        assert_eq!(talk(&mut stream, "pieces").await.1, "pieces");

        let tcp = TcpStream::connect(weir.addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let stream = connect_over(Trickle { inner: tcp, chunk }, "plain.test")
            .await
            .unwrap();
        assert_eq!(
            leaf(&stream),
            weir.default_der,
            "terminated, {chunk}-byte writes"
        );
        let answer = http_over(stream, "plain.test").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{chunk}: {answer:?}");
    }
}

#[tokio::test]
async fn what_is_not_a_client_hello_is_refused_as_before() {
    let tls_app = TlsBackend::start("tls-app", "pass.test").await;
    let web = TestBackend::start("web").await;
    let (build, proxy) = enabled();
    let weir = Weir::start(proxy, two_hosts(&build, &[tls_app.addr], web.addr)).await;
    // Plain HTTP on the TLS port: rustls answers with an alert and the connection ends.
    let (answer, took) = raw_timed(weir.addr, b"GET / HTTP/1.1\r\nHost: pass.test\r\n\r\n").await;
    assert!(!answer.contains("HTTP/1.1"), "{answer:?}");
    assert!(took < Duration::from_secs(5));
    assert_eq!(tls_app.handshakes.load(Ordering::SeqCst), 0);
    // A client that says nothing is given the handshake timeout, as before.
    let proxy = ProxyConfig {
        tls_handshake_timeout: Duration::from_millis(200),
        ..enabled().1
    };
    let weir = Weir::start(proxy, two_hosts(&build, &[tls_app.addr], web.addr)).await;
    let mut silent = TcpStream::connect(weir.addr).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut silent, &mut byte),
    )
    .await
    .expect("closed at the handshake timeout");
    assert!(matches!(read, Ok(0) | Err(_)));
}

#[tokio::test]
async fn without_the_flag_nothing_is_passed_through() {
    let tls_app = TlsBackend::start("tls-app", "pass.test").await;
    let web = TestBackend::start("web").await;

    // Neither the model nor the data plane has the flag: the Ingress fails closed.
    let table = two_hosts(&BuildConfig::default(), &[tls_app.addr], web.addr);
    let weir = Weir::start(ProxyConfig::default(), table).await;
    let stream = connect(weir.addr, "pass.test").await.unwrap();
    assert_eq!(leaf(&stream), weir.default_der);
    let answer = http_over(stream, "pass.test").await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");

    // A table with a passthrough host and a data plane without the flag: weir's TLS, and
    // the host's requests on it are misdirected, never forwarded.
    let table = two_hosts(&enabled().0, &[tls_app.addr], web.addr);
    let weir = Weir::start(ProxyConfig::default(), table).await;
    let stream = connect(weir.addr, "pass.test").await.unwrap();
    assert_eq!(leaf(&stream), weir.default_der);
    let answer = http_over(stream, "pass.test").await;
    assert!(answer.starts_with("HTTP/1.1 421"), "{answer}");
    assert_eq!(tls_app.handshakes.load(Ordering::SeqCst), 0);
}
