//! A server that records the requests it receives (method, target, headers, body): a mirror
//! target, an error backend. It can also take requests and never answer them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method, Response};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A recording server on 127.0.0.1 (an ephemeral port); stops when dropped.
pub struct Recorder {
    pub addr: SocketAddr,
    /// What arrived so far (a request that is never answered is recorded when its head arrives,
    /// without its body).
    pub received: Arc<Mutex<Vec<Recorded>>>,
    cancel: CancellationToken,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Recorder {
    /// Answers every request `200 recorded` once its body has arrived.
    pub async fn start() -> Recorder {
        Self::start_with(false).await
    }

    /// Records each request's head and never answers it.
    pub async fn never_answering() -> Recorder {
        Self::start_with(true).await
    }

    async fn start_with(hang: bool) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let cancel = CancellationToken::new();
        let (log, stop) = (received.clone(), cancel.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => accepted.unwrap(),
                };
                let (log, stop) = (log.clone(), stop.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let mut recorded = Recorded {
                                method: parts.method,
                                uri: parts.uri.to_string(),
                                headers: parts.headers,
                                body: Bytes::new(),
                            };
                            if hang {
                                log.lock().unwrap().push(recorded.clone());
                                std::future::pending::<()>().await;
                            }
                            recorded.body = body.collect().await?.to_bytes();
                            log.lock().unwrap().push(recorded);
                            Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from_static(
                                b"recorded",
                            ))))
                        }
                    });
                    let conn =
                        http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        _ = stop.cancelled() => {}
                    }
                });
            }
        });
        Recorder {
            addr,
            received,
            cancel,
        }
    }

    /// How many requests arrived so far.
    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// The requests that arrived so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.received.lock().unwrap().clone()
    }
}
