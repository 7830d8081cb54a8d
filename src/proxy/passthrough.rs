//! TLS passthrough (`ssl-passthrough`, with `--enable-ssl-passthrough`): on the TLS listener,
//! a connection whose ClientHello names (SNI) a host that passes its TLS through is spliced,
//! unterminated, to one endpoint of the host's backend; every other connection is terminated
//! by weir as always.
//!
//! The listener reads the ClientHello itself only when the table has such a host (else the
//! handshake is exactly what it is without passthrough): the bytes are read off the socket,
//! at most [`client_hello::MAX_BYTES`] of them and within the handshake timeout, and the SNI
//! is taken from them ([`client_hello`]). A passed-through connection gets those bytes first,
//! then both directions are copied as they come ([`Tunnel`], closed after the route's tunnel
//! idle timeout without a byte either way). A terminated one hands them to rustls, which goes
//! on from there.
//!
//! A tunnel keeps the route it started with: a table published meanwhile changes where new
//! connections go, not the open ones. It runs on the connection's tracked task, counted in
//! `weir_passthrough_connections_active`, and is drained on shutdown like a WebSocket: kept
//! open until `--shutdown-timeout`. When the host has no backend, no ready endpoint, or none
//! that accepts the connection (each tried once, from the balancer's pick, at most
//! [`MAX_ATTEMPTS`]), the client's connection is closed: it is never terminated by weir in
//! the backend's place.

use std::io;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::{LazyConfigAcceptor, StartHandshake};
use tracing::{Instrument, debug, info_span, warn};

use super::Proxy;
use super::client_cert::{ClientCert, TlsListener};
use super::client_hello::{self, ClientHelloReader, Parsed};
use super::tunnel::Tunnel;
use super::upstream::UpstreamError;
use crate::metrics::GaugeGuard;
use crate::model::Route;
use crate::state::{Balancer, Snapshot};

/// The most endpoints tried for one connection.
pub const MAX_ATTEMPTS: usize = 3;

/// How a TLS connection goes on after its ClientHello.
// Returned once per connection and taken apart at once: boxing the TLS stream would cost
// every terminated connection an allocation to save a copy.
#[allow(clippy::large_enum_variant)]
pub(super) enum Handshake {
    /// Terminated by weir: the stream, and what the client presented when the host asks for
    /// client certificates.
    Terminated(TlsStream<TcpStream>, Option<Arc<ClientCert>>),
    /// Passed through to a backend.
    Passthrough(Box<PassedThrough>),
}

/// A connection to pass through, with what was read of it.
pub(super) struct PassedThrough {
    client: TcpStream,
    /// The bytes read from the client so far: its ClientHello, maybe more.
    read: Vec<u8>,
    /// The host name of its SNI.
    sni: String,
    /// Where it goes (`None`: nowhere, it is closed).
    route: Option<Arc<Route>>,
    /// The route's balancer.
    balancer: Option<Arc<Balancer>>,
}

impl Proxy {
    /// The start of a connection on the TLS listener: the handshake, or (with
    /// `--enable-ssl-passthrough`, when the SNI names a host with `ssl-passthrough`) the
    /// connection to pass through.
    pub(super) async fn tls_handshake(
        &self,
        tls: &TlsListener,
        stream: TcpStream,
    ) -> io::Result<Handshake> {
        let snapshot = self.state.snapshot();
        if !(self.config.ssl_passthrough && snapshot.table.has_passthrough()) {
            let (stream, cert) = tls.accept(&snapshot, stream).await?;
            return Ok(Handshake::Terminated(stream, cert));
        }
        let (mut stream, read, sni) = read_client_hello(stream).await?;
        if let Some(sni) = sni
            && let Some(passthrough) = snapshot.table.passthrough(&sni)
        {
            let route = passthrough.route.clone();
            let balancer = route
                .as_ref()
                .and_then(|route| snapshot.runtime.get(route))
                .map(|runtime| runtime.balancer.clone());
            return Ok(Handshake::Passthrough(Box::new(PassedThrough {
                client: stream,
                read,
                sni,
                route,
                balancer,
            })));
        }
        let start = start_handshake(&read, &mut stream).await;
        drop(read);
        let (stream, cert) = terminate(tls, &snapshot, start?, stream).await?;
        Ok(Handshake::Terminated(stream, cert))
    }

    /// Serves a passed-through connection: connects to an endpoint of its route, sends what
    /// was read of the client, then copies both ways until either side is done.
    pub(super) async fn pass_through(self: Arc<Self>, conn: Box<PassedThrough>) {
        let PassedThrough {
            client,
            read,
            sni,
            route,
            balancer,
        } = *conn;
        let Some(route) = route else {
            debug!(%sni, "TLS passthrough host without a backend: closing the connection");
            return;
        };
        let backend = &route.backend;
        let span =
            info_span!("passthrough", %sni, ingress = %route.ingress, service = %backend.service);
        async move {
            let timeouts = &route.policy.timeouts;
            let Some(mut upstream) = self.connect(&route, balancer.as_deref()).await else {
                return;
            };
            let _open = GaugeGuard::new(self.metrics.connections.passthrough.clone());
            match tokio::time::timeout(timeouts.connect, upstream.write_all(&read)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    debug!(%error, "the endpoint did not take the ClientHello");
                    return;
                }
                Err(_) => {
                    debug!(after = ?timeouts.connect, "the endpoint did not take the ClientHello in time");
                    return;
                }
            }
            let sent = read.len() as u64;
            drop(read);
            debug!(idle_timeout = ?timeouts.tunnel_idle, "passthrough open");
            let (end, bytes) = Tunnel::new(client, upstream, timeouts.tunnel_idle).await;
            let (upstream, downstream) = (bytes.upstream + sent, bytes.downstream);
            match end {
                Ok(end) => debug!(?end, bytes.upstream = upstream, bytes.downstream = downstream, "passthrough closed"),
                Err(error) => debug!(%error, bytes.upstream = upstream, bytes.downstream = downstream, "passthrough closed by an error"),
            }
        }
        .instrument(span)
        .await
    }

    /// A connection to an endpoint of `route`: the balancer's pick, then the next ones when
    /// a connect fails (each failure counted and logged), at most [`MAX_ATTEMPTS`].
    async fn connect(&self, route: &Route, balancer: Option<&Balancer>) -> Option<TcpStream> {
        let backend = &route.backend;
        let endpoints = &backend.endpoints;
        let first = match balancer {
            Some(balancer) => balancer.pick_connection(),
            None => endpoints.first().copied(),
        };
        let Some(first) = first else {
            debug!("no ready endpoints: closing the connection");
            return None;
        };
        let start = endpoints.iter().position(|e| *e == first).unwrap_or(0);
        let timeout = route.policy.timeouts.connect;
        let tries = endpoints.len().min(MAX_ATTEMPTS);
        for addr in endpoints.iter().cycle().skip(start).take(tries).copied() {
            let error = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    debug!(endpoint = %addr, "connected");
                    return Some(stream);
                }
                Ok(Err(source)) => UpstreamError::Connect { addr, source },
                Err(_) => UpstreamError::ConnectTimeout {
                    addr,
                    after: timeout,
                },
            };
            warn!(endpoint = %addr, %error, "passthrough connect failed");
            self.count_upstream_error(backend, &error);
        }
        debug!("no endpoint accepted the connection: closing it");
        None
    }
}

/// Reads the ClientHello at the start of `stream`: the stream, the bytes read, and the host
/// name of the SNI (`None` without one, or when the bytes are not a ClientHello this reads:
/// rustls gets them and answers as it does).
async fn read_client_hello(
    mut stream: TcpStream,
) -> io::Result<(TcpStream, Vec<u8>, Option<String>)> {
    let mut read = Vec::with_capacity(4096);
    let mut reader = ClientHelloReader::new();
    loop {
        match reader.read(&read) {
            Parsed::Incomplete if read.len() < client_hello::MAX_BYTES => {}
            Parsed::Incomplete | Parsed::Invalid => return Ok((stream, read, None)),
            Parsed::Complete(sni) => return Ok((stream, read, sni)),
        }
        let room = (client_hello::MAX_BYTES - read.len()).min(16 * 1024);
        read.reserve(room);
        let n = (&mut stream).take(room as u64).read_buf(&mut read).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// Gives rustls the bytes `read` from the start of a connection, which hold its ClientHello
/// (or something rustls will refuse): the handshake, started. When rustls refuses them, its
/// alert is sent to the client.
async fn start_handshake(read: &[u8], stream: &mut TcpStream) -> io::Result<Started> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut rest = read;
    while !rest.is_empty() {
        if acceptor.read_tls(&mut rest)? == 0 {
            break;
        }
    }
    match acceptor.accept() {
        Ok(Some(accepted)) => Ok(Started::Accepted(accepted)),
        Ok(None) => Ok(Started::NeedsMore(acceptor)),
        Err((error, mut alert)) => {
            let mut bytes = Vec::new();
            let _ = alert.write_all(&mut bytes);
            let _ = stream.write_all(&bytes).await;
            Err(io::Error::new(io::ErrorKind::InvalidData, error))
        }
    }
}

/// How far rustls got with the bytes read before it.
enum Started {
    /// The ClientHello is read.
    Accepted(rustls::server::Accepted),
    /// It needs more bytes of the connection.
    NeedsMore(rustls::server::Acceptor),
}

/// The handshake of a connection whose start rustls has read.
async fn terminate(
    tls: &TlsListener,
    snapshot: &Snapshot,
    started: Started,
    stream: TcpStream,
) -> io::Result<(TlsStream<TcpStream>, Option<Arc<ClientCert>>)> {
    let start = match started {
        Started::Accepted(accepted) => StartHandshake::from_parts(accepted, stream),
        Started::NeedsMore(acceptor) => LazyConfigAcceptor::new(acceptor, stream).await?,
    };
    tls.finish(snapshot, start).await
}
