//! One request's record: what was asked, where it went and how it ended, reported once to the
//! request metrics and the access log when the record is dropped — after the last byte of the
//! response body, at the end of a tunnel, or (status 499) when the client went away before
//! the response head.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};

use crate::access_log::{AccessLog, Entry};
use crate::metrics::{Observation, RouteStats};
use crate::model::{Canary, Route};

/// "Client closed request", as nginx logs it.
const CLIENT_CLOSED: StatusCode = match StatusCode::from_u16(499) {
    Ok(status) => status,
    Err(_) => unreachable!(),
};

/// What the access log needs beyond the metrics.
struct Logged {
    log: AccessLog,
    time: SystemTime,
    uri: Uri,
    host: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    referer: Option<HeaderValue>,
    request_id: Option<HeaderValue>,
    route: Option<Arc<Route>>,
    canary: Option<Arc<Canary>>,
}

/// The record of one request (see the module documentation).
pub(super) struct Exchange {
    started: Instant,
    client: SocketAddr,
    method: Method,
    version: Version,
    request_head: u64,
    request_body: Option<Arc<AtomicU64>>,
    /// `None` when request metrics are off.
    stats: Option<Arc<RouteStats>>,
    logged: Option<Logged>,
    upstream: Option<SocketAddr>,
    /// The endpoints tried before `upstream` (`proxy-next-upstream`).
    upstream_tried: Vec<SocketAddr>,
    upstream_started: Option<Instant>,
    upstream_header: Option<Duration>,
    upstream_response: Option<Duration>,
    upstream_status: Option<StatusCode>,
    status: StatusCode,
    response_head: u64,
    response_body: u64,
    /// A gRPC call: its final `grpc-status` is counted.
    grpc: bool,
    /// The `grpc-status` of its trailers (or of a trailers-only response).
    grpc_status: Option<HeaderValue>,
    /// The response body was sent to its end (for gRPC: the call was not cancelled).
    response_ended: bool,
}

impl Exchange {
    /// Starts the record of `req` from `client`: counted into `stats` (`None`: no metrics) and
    /// logged to `log`.
    pub(super) fn start<B>(
        req: &Request<B>,
        client: SocketAddr,
        stats: Option<Arc<RouteStats>>,
        log: Option<&AccessLog>,
    ) -> Box<Exchange> {
        let headers = req.headers();
        // Copies, not clones: a clone may share hyper's read buffer and keep it for as long as
        // the record lives (a WebSocket's whole life).
        let copy = |value: &HeaderValue| HeaderValue::from_bytes(value.as_bytes()).ok();
        let logged = log.map(|log| Logged {
            log: log.clone(),
            time: SystemTime::now(),
            uri: Uri::from_maybe_shared(bytes::Bytes::copy_from_slice(
                req.uri()
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .as_bytes(),
            ))
            .unwrap_or_default(),
            host: req
                .uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
                .or_else(|| headers.get(header::HOST).and_then(copy)),
            user_agent: headers.get(header::USER_AGENT).and_then(copy),
            referer: headers.get(header::REFERER).and_then(copy),
            request_id: None,
            route: None,
            canary: None,
        });
        let target = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
        // "GET /target HTTP/1.1\r\n" + headers + "\r\n"
        let request_head =
            (req.method().as_str().len() + 1 + target + 11) as u64 + head_size(headers);
        Box::new(Exchange {
            started: Instant::now(),
            client,
            method: req.method().clone(),
            version: req.version(),
            request_head,
            request_body: None,
            stats,
            logged,
            upstream: None,
            upstream_tried: Vec::new(),
            upstream_started: None,
            upstream_header: None,
            upstream_response: None,
            upstream_status: None,
            status: CLIENT_CLOSED,
            response_head: 0,
            response_body: 0,
            grpc: false,
            grpc_status: None,
            response_ended: false,
        })
    }

    /// The request matched `route`, whose series are `stats`.
    pub(super) fn routed(&mut self, route: &Arc<Route>, stats: Option<&Arc<RouteStats>>) {
        if let (Some(mine), Some(stats)) = (&mut self.stats, stats) {
            *mine = stats.clone();
        }
        if !route.policy.access_log {
            // `enable-access-log: "false"`.
            self.logged = None;
        } else if let Some(logged) = &mut self.logged {
            logged.route = Some(route.clone());
        }
    }

    /// The route's canary serves the request; its series are `stats`.
    pub(super) fn canary(&mut self, canary: &Arc<Canary>, stats: Option<&Arc<RouteStats>>) {
        if let (Some(mine), Some(stats)) = (&mut self.stats, stats) {
            *mine = stats.clone();
        }
        if let Some(logged) = &mut self.logged {
            logged.canary = Some(canary.clone());
        }
    }

    /// Choosing and connecting to an endpoint starts now (the upstream times start here).
    pub(super) fn connecting(&mut self) {
        self.upstream_started = Some(Instant::now());
    }

    /// An attempt on `endpoint` starts (the connect first); the endpoint of an earlier one
    /// joins the endpoints tried.
    pub(super) fn attempt(&mut self, endpoint: SocketAddr) {
        if let Some(earlier) = self.upstream.replace(endpoint) {
            self.upstream_tried.push(earlier);
        }
    }

    /// The request goes to `endpoint` now, with request id `id`; returns the counter its body
    /// bytes go into (`None`: the request has no body).
    pub(super) fn sending(
        &mut self,
        endpoint: SocketAddr,
        id: &HeaderValue,
        has_body: bool,
    ) -> Option<Arc<AtomicU64>> {
        self.upstream = Some(endpoint);
        if let Some(logged) = &mut self.logged {
            logged.request_id = HeaderValue::from_bytes(id.as_bytes()).ok();
        }
        has_body.then(|| self.request_body.get_or_insert_default().clone())
    }

    /// The endpoint answered with `status`.
    pub(super) fn upstream_answered(&mut self, status: StatusCode) {
        self.upstream_status = Some(status);
        self.upstream_header = self.upstream_started.map(|s| s.elapsed());
    }

    /// The endpoint's response body ended.
    pub(super) fn upstream_finished(&mut self) {
        if self.upstream_response.is_none() {
            self.upstream_response = self.upstream_started.map(|s| s.elapsed());
        }
    }

    /// The request is a gRPC call.
    pub(super) fn grpc(&mut self) {
        self.grpc = true;
    }

    /// The response ended with `trailers`.
    pub(super) fn trailers(&mut self, trailers: &HeaderMap) {
        self.response_ended = true;
        if self.grpc
            && let Some(status) = trailers.get("grpc-status")
        {
            self.grpc_status = Some(status.clone());
        }
    }

    /// The response head goes out.
    pub(super) fn responding<B>(&mut self, response: &Response<B>) {
        self.status = response.status();
        if self.grpc
            && let Some(status) = response.headers().get("grpc-status")
        {
            self.grpc_status = Some(status.clone());
        }
        // "HTTP/1.1 200 OK\r\n" + headers + "\r\n"
        self.response_head = 17 + head_size(response.headers());
    }

    /// The request became a tunnel: it is reported as 101 (Switching Protocols), whatever the
    /// protocol told the client.
    pub(super) fn switched(&mut self) {
        self.status = StatusCode::SWITCHING_PROTOCOLS;
    }

    /// The response body ended.
    pub(super) fn ended(&mut self) {
        self.response_ended = true;
    }

    /// `bytes` more of the response body went out.
    pub(super) fn sent(&mut self, bytes: usize) {
        self.response_body += bytes as u64;
    }

    /// A tunnel (upgrade) ended after carrying `up` bytes from the client and `down` to it.
    pub(super) fn tunnel_closed(&mut self, up: u64, down: u64) {
        self.request_body
            .get_or_insert_default()
            .fetch_add(up, Ordering::Relaxed);
        self.response_body += down;
        self.upstream_finished();
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let duration = self.started.elapsed();
        if self.upstream_status.is_some() {
            self.upstream_finished();
        }
        let body_in = self
            .request_body
            .as_ref()
            .map_or(0, |b| b.load(Ordering::Relaxed));
        let bytes_in = self.request_head + body_in;
        let bytes_out = self.response_head + self.response_body;
        if let Some(stats) = &self.stats {
            stats.observe(&Observation {
                method: &self.method,
                status: self.status,
                duration,
                upstream_header: self.upstream_header,
                upstream_response: self.upstream_response,
                request_size: bytes_in,
                response_size: bytes_out,
            });
            if self.grpc {
                let ended = self.response_ended;
                let status =
                    super::grpc::status_label(self.grpc_status.as_ref(), self.status, ended);
                stats.observe_grpc(status);
            }
        }
        if let Some(logged) = self.logged.take() {
            logged.log.log(Entry {
                time: logged.time,
                client: self.client,
                method: std::mem::replace(&mut self.method, Method::GET),
                uri: logged.uri,
                version: self.version,
                host: logged.host,
                status: self.status,
                bytes_in,
                bytes_out,
                body_bytes_out: self.response_body,
                duration,
                upstream: self.upstream,
                upstream_tried: std::mem::take(&mut self.upstream_tried),
                upstream_status: self.upstream_status,
                upstream_time: self.upstream_response,
                route: logged.route,
                canary: logged.canary,
                request_id: logged.request_id,
                user_agent: logged.user_agent,
                referer: logged.referer,
            });
        }
    }
}

/// The size of `headers` as HTTP/1.1 lines (`name: value\r\n`).
fn head_size(headers: &HeaderMap) -> u64 {
    headers
        .iter()
        .map(|(name, value)| (name.as_str().len() + value.len() + 4) as u64)
        .sum::<u64>()
        + 2
}
