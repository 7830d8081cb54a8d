//! Request mirroring (`mirror-target`; the model's [`Mirror`]): a copy of each request of the
//! route goes to the target, and the target's answer is read and thrown away.
//!
//! A copy never holds up or fails the real request:
//! - it is sent from a task of its own, tracked and stopped at shutdown, bounded by the route's
//!   connect plus read timeouts;
//! - its body is the request's, copied as it streams to the endpoint (nginx reads the whole
//!   body before it proxies anything); the copy leaves when the body has ended, so a request
//!   whose body never ends whole sends no copy (`incomplete`);
//! - at most [`MirrorLimits::in_flight`] copies are in flight (beyond: `overflow`), each
//!   keeping at most [`MirrorLimits::body`] bytes of body (beyond: `body-too-large`); such a
//!   copy is dropped and counted, the request goes on.
//!
//! The copy has the request's method, the client's headers (without hop-by-hop ones, with the
//! forwarding headers and the `X-Request-ID` the endpoint gets), `Host` set to `mirror-host`
//! (else the target's host), and the target URL with its variables filled in. Outcomes are
//! counted in `weir_mirror_requests_total{namespace,ingress,outcome}`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use prometheus::IntCounterVec;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::super::headers::{self, ClientInfo, client_ip};
use super::custom_errors::{SideClient, side_headers};
use crate::model::variables::Vars;
use crate::model::{Mirror, ObjectRef, Route};

/// How many copies, and how much body per copy, mirroring may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MirrorLimits {
    /// Copies in flight at once, all routes together.
    pub in_flight: usize,
    /// Bytes of request body a copy keeps.
    pub body: usize,
}

impl Default for MirrorLimits {
    fn default() -> Self {
        MirrorLimits {
            in_flight: 256,
            body: 64 * 1024,
        }
    }
}

/// Sends the copies.
pub(in crate::proxy) struct Mirrors {
    shared: Arc<Shared>,
}

struct Shared {
    client: SideClient,
    limits: MirrorLimits,
    in_flight: AtomicUsize,
    counted: IntCounterVec,
    tasks: TaskTracker,
    cancel: CancellationToken,
}

impl Mirrors {
    /// Copies within `limits`, counted into `counted`, sent from tasks on `tasks` that stop
    /// when `cancel` fires.
    pub fn new(
        limits: MirrorLimits,
        counted: IntCounterVec,
        tasks: TaskTracker,
        cancel: CancellationToken,
    ) -> Self {
        Mirrors {
            shared: Arc::new(Shared {
                client: super::external_auth::pooled_client(),
                limits,
                in_flight: AtomicUsize::new(0),
                counted,
                tasks,
                cancel,
            }),
        }
    }

    /// Starts the copy of `req` (routed to `route`, whose policy has `mirror`, on `host` sent as
    /// `host_value`). A copy without body leaves at once; for one with a body the [`Tee`]
    /// returned must see the body as it is sent to the endpoint.
    pub fn start(
        &self,
        mirror: &Mirror,
        route: &Route,
        conn: &ClientInfo,
        (host, host_value): (&str, &HeaderValue),
        req: &mut Request<Incoming>,
    ) -> Option<Box<Tee>> {
        let shared = &self.shared;
        let ingress = &route.ingress;
        let Some(slot) = Slot::take(shared) else {
            shared.count(ingress, "overflow");
            debug!(%ingress, "mirror copy dropped: too many in flight");
            return None;
        };
        let request_id = headers::ensure_request_id(req.headers_mut()).clone();
        let vars = Vars {
            scheme: conn.scheme,
            host,
            http_host: host_value.to_str().unwrap_or(host),
            method: req.method().as_str(),
            request_uri: req.uri().path_and_query().map_or("/", |p| p.as_str()),
            remote_addr: client_ip(conn, req.headers()),
            headers: req.headers(),
        };
        let url = mirror.target.expand(&vars);
        let Some(uri) = url
            .parse::<Uri>()
            .ok()
            .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some())
        else {
            debug!(%ingress, %url, "mirror-target does not expand to an http(s) URL");
            shared.count(ingress, "error");
            return None;
        };
        let body = mirror.request_body && !http_body::Body::is_end_stream(req.body());
        let mut headers = side_headers(req.headers(), conn, host_value, body);
        if !body {
            headers.remove(header::TRANSFER_ENCODING);
        }
        let target_host = mirror
            .host
            .clone()
            .or_else(|| uri.host().and_then(|h| HeaderValue::from_str(h).ok()));
        if let Some(target_host) = target_host {
            headers.insert(header::HOST, target_host);
        }
        headers.insert(headers::X_REQUEST_ID.clone(), request_id);
        let copy = Copy {
            shared: shared.clone(),
            ingress: ingress.clone(),
            method: req.method().clone(),
            uri,
            headers,
            timeout: route.policy.timeouts.connect + route.policy.timeouts.read,
            _slot: slot,
        };
        if !body {
            copy.send(Bytes::new());
            return None;
        }
        Some(Box::new(Tee {
            copy: Some(copy),
            body: BytesMut::new(),
        }))
    }
}

impl Shared {
    fn count(&self, ingress: &ObjectRef, outcome: &str) {
        self.counted
            .with_label_values(&[&ingress.namespace, &ingress.name, outcome])
            .inc();
    }
}

/// A place among the copies in flight, given back when dropped.
struct Slot(Arc<Shared>);

impl Slot {
    fn take(shared: &Arc<Shared>) -> Option<Slot> {
        let before = shared.in_flight.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(shared.clone());
        (before < shared.limits.in_flight).then_some(slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A copy ready to leave, but for its body.
struct Copy {
    shared: Arc<Shared>,
    ingress: ObjectRef,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    timeout: Duration,
    _slot: Slot,
}

impl Copy {
    /// Sends the copy with `body` from a task of its own.
    fn send(self, body: Bytes) {
        let Copy {
            shared,
            ingress,
            method,
            uri,
            headers,
            timeout,
            _slot: slot,
        } = self;
        let tasks = shared.tasks.clone();
        tasks.spawn(async move {
            let _slot = slot;
            let mut req = Request::new(Full::new(body));
            *req.method_mut() = method;
            *req.uri_mut() = uri.clone();
            *req.headers_mut() = headers;
            let exchange = async {
                let response = shared.client.request(req).await?;
                // Read (and drop) the answer so the connection can be reused.
                let status = response.status();
                let _ = response.into_body().collect().await;
                Ok::<_, hyper_util::client::legacy::Error>(status)
            };
            let answered = tokio::select! {
                _ = shared.cancel.cancelled() => return,
                answered = tokio::time::timeout(timeout, exchange) => answered,
            };
            let outcome = match answered {
                Ok(Ok(status)) => {
                    debug!(%ingress, target = %uri, status = status.as_u16(), "mirror copy answered");
                    "sent"
                }
                Ok(Err(error)) => {
                    debug!(%ingress, target = %uri, %error, "mirror copy failed");
                    "error"
                }
                Err(_) => {
                    debug!(%ingress, target = %uri, "mirror copy not answered in time");
                    "error"
                }
            };
            shared.count(&ingress, outcome);
        });
    }
}

/// Sees the request body on its way to the endpoint and keeps a copy of it; when the body has
/// ended the mirror copy leaves with it. Dropped before that, the copy is dropped.
pub struct Tee {
    copy: Option<Copy>,
    body: BytesMut,
}

impl std::fmt::Debug for Tee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tee")
            .field("kept", &self.body.len())
            .field("copying", &self.copy.is_some())
            .finish()
    }
}

impl Tee {
    /// Keeps `data`, a frame of the body, unless the copy has grown past its limit.
    pub fn data(&mut self, data: &Bytes) {
        let Some(copy) = &self.copy else {
            return;
        };
        if self.body.len() + data.len() > copy.shared.limits.body {
            copy.shared.count(&copy.ingress, "body-too-large");
            self.copy = None;
            self.body = BytesMut::new();
            return;
        }
        self.body.extend_from_slice(data);
    }

    /// The body has ended: the copy leaves.
    pub fn end(mut self: Box<Self>) {
        if let Some(copy) = self.copy.take() {
            copy.send(std::mem::take(&mut self.body).freeze());
        }
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        if let Some(copy) = &self.copy {
            copy.shared.count(&copy.ingress, "incomplete");
        }
    }
}
