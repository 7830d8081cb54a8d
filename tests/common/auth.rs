//! An authentication server that behaves like oauth2-proxy, for the external-auth tests.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::tls::Cert;

/// The session cookie the server accepts.
pub const SESSION: &str = "_oauth2_proxy=valid-session";

/// One sub-request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: http::HeaderMap,
    pub body_len: usize,
}

/// An oauth2-proxy look-alike. `/oauth2/auth`: 202 with the user's headers (and a refreshed
/// cookie) for a request carrying [`SESSION`], else 401 with a challenge. `/forbidden`: 403.
/// `/tenant`: 200 for `X-Tenant: blue`, else 403. `/error`: 500. `/moved`: 302. `/hang`: never
/// answers. `/evil`: 200 with headers an authentication service must not be able to set on the
/// request.
pub struct AuthServer {
    addr: SocketAddr,
    scheme: &'static str,
    seen: Arc<Mutex<Vec<Seen>>>,
    asked: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
}

impl AuthServer {
    /// Serves plain HTTP on 127.0.0.1.
    pub async fn start() -> AuthServer {
        Self::serve(None).await
    }

    /// Serves HTTPS on 127.0.0.1 with `cert` (made for `127.0.0.1`).
    pub async fn start_tls(cert: &Cert) -> AuthServer {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der.clone())],
                PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap(),
            )
            .unwrap();
        Self::serve(Some(TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn serve(tls: Option<TlsAcceptor>) -> AuthServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let seen = Arc::new(Mutex::new(Vec::new()));
        let asked = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let (log, count, accepted) = (seen.clone(), asked.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                accepted.fetch_add(1, Ordering::SeqCst);
                let (log, count, tls) = (log.clone(), count.clone(), tls.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let (log, count) = (log.clone(), count.clone());
                        async move { answer(req, log, count).await }
                    });
                    let http = http1::Builder::new();
                    let _ = match tls {
                        None => http.serve_connection(TokioIo::new(stream), service).await,
                        Some(tls) => match tls.accept(stream).await {
                            Ok(stream) => {
                                http.serve_connection(TokioIo::new(stream), service).await
                            }
                            Err(_) => return,
                        },
                    };
                });
            }
        });
        AuthServer {
            addr,
            scheme,
            seen,
            asked,
            connections,
        }
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The last sub-request the server saw.
    pub fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().expect("asked")
    }

    /// Sub-requests seen so far.
    pub fn asked(&self) -> usize {
        self.asked.load(Ordering::SeqCst)
    }
}

async fn answer(
    req: Request<Incoming>,
    log: Arc<Mutex<Vec<Seen>>>,
    count: Arc<AtomicUsize>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    count.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let body_len = body
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    log.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers.clone(),
        body_len,
    });
    let reply = |status: u16| Response::builder().status(status);
    let response = match parts.uri.path() {
        "/oauth2/auth" => {
            let cookie = parts
                .headers
                .get(header::COOKIE)
                .and_then(|c| c.to_str().ok())
                .unwrap_or("");
            if cookie.split("; ").any(|c| c == SESSION) {
                reply(202)
                    .header("x-auth-request-user", "alice")
                    .header("x-auth-request-email", "alice@example.com")
                    .header(
                        header::SET_COOKIE,
                        "_oauth2_proxy=refreshed; Path=/; HttpOnly",
                    )
            } else {
                reply(401)
                    .header(header::WWW_AUTHENTICATE, "Bearer realm=\"oauth2\"")
                    .header(header::SET_COOKIE, "_oauth2_proxy_csrf=c; Path=/")
            }
        }
        "/forbidden" => reply(403),
        "/error" => reply(500),
        "/moved" => reply(302).header(header::LOCATION, "/elsewhere"),
        "/hang" => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        "/evil" => reply(200)
            .header("x-auth-request-user", "alice")
            .header(header::HOST, "evil.test")
            .header("keep-alive", "timeout=1")
            .header("upgrade", "websocket")
            .header("proxy-authenticate", "Basic"),
        "/tenant" => {
            let blue = parts.headers.get("x-tenant").is_some_and(|t| t == "blue");
            reply(if blue { 200 } else { 403 })
        }
        "/cacheable" => {
            let authorized = parts.headers.get(header::AUTHORIZATION).is_some();
            reply(if authorized { 200 } else { 401 })
        }
        _ => reply(404),
    };
    Ok(response
        .body(Full::new(Bytes::from_static(b"auth body")))
        .unwrap())
}
