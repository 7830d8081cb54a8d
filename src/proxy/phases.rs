//! The phases of a request, in order — the one place that says what happens when. The
//! function [`Proxy::forward`] below runs them in this order; each enforcement lives in its own
//! file.
//!
//! | # | phase | where | weir answers |
//! |---|---|---|---|
//! | 1 | check the request (method, transfer coding, Host) | `service.rs` | 400, 405, 501 |
//! | 2 | normalise the path | `policy/path.rs` | 400 |
//! | 3 | route: the host, then the path (its [`routing_path`](crate::model::routing_path): `%2F` as `/`, without `;` parameters) | [`RouteTable::lookup`](crate::model::RouteTable::lookup) | 404 |
//! | 4 | a host passed through (`ssl-passthrough`) refuses weir's TLS; host redirects: `from-to-www-redirect`, `app-root` | `policy/passthrough.rs`, `policy/host_redirect.rs` | 421, 308, 302 |
//! | 5 | fail closed: an annotation about access or routing that cannot be applied | here | 503 |
//! | 6 | trailing slash of a Prefix rule written `/app/` | `policy/slash.rs` | 301 |
//! | 7 | `permanent-redirect`, `temporal-redirect` | `policy/redirect.rs` | 3xx |
//! | 8 | HTTPS redirect (`ssl-redirect`, `force-ssl-redirect`) | `policy/https.rs` | 308 |
//! | 9 | client certificates of the host (`auth-tls-*`), against the connection's handshake | `policy/client_cert.rs` | 400, 403, 421, 302 |
//! | 10 | CORS: a preflight (`OPTIONS`) from an allowed origin is answered | `policy/cors.rs` | 204 |
//! | 11 | rate limits (`limit-rps`, `limit-rpm`, `limit-connections`), then access control: `denylist-source-range`, `whitelist-source-range`, basic auth, external auth (`auth-url`, a sub-request), `satisfy` | `policy/rate_limit.rs`, `policy/access.rs`, `policy/external_auth.rs` | 503, 403, 401, 302, 500 |
//! | 12 | a declared request body over `proxy-body-size`; then a copy of the request starts for `mirror-target` (its body taken as it streams in phase 14) | `policy/body_limit.rs`, `policy/mirror.rs` | 413 |
//! | 13 | forwarding headers, then `rewrite-target`, `x-forwarded-prefix`, `upstream-vhost`, then the headers an authentication service granted (`auth-response-headers`) and the client certificate's (`ssl-client-*`) | `headers.rs`, `policy/rewrite.rs`, `policy/external_auth.rs`, `policy/client_cert.rs` | |
//! | 14 | forward: the backend (the main one, or the route's canary: `canary-by-header`, `-cookie`, `-weight`, `policy/canary.rs`) and its balancer's endpoint (`load-balance`, `upstream-hash-by`, `affinity`, `policy/balance.rs`), both chosen before 13 changes the request; then the endpoint in the route's protocol (`backend-protocol`: HTTP/1.1 or HTTP/2, cleartext or TLS with `proxy-ssl-*`), connect/send/read timeouts (`policy/send_timeout.rs`) and a gRPC call's `grpc-timeout`, a streamed body counted against `proxy-body-size`; then other endpoints of the backend as `proxy-next-upstream`, `-tries`, `-timeout` allow | `policy/canary.rs`, `policy/balance.rs`, `service.rs`, `upstream.rs`, `grpc.rs`, `policy/retry.rs` | 413, 502, 503, 504 |
//! | 15 | response headers: hop-by-hop out, `Server`, HSTS, CORS, a new affinity cookie, an authentication service's `Set-Cookie`; the body paced by `limit-rate` | `service.rs`, `policy/https.rs`, `policy/cors.rs`, `policy/external_auth.rs`, `body.rs` | |
//! | 16 | custom error pages: a listed status (the endpoint's or weir's own on a routed request; what the error backend is told is taken when the request is routed) is replaced by the error backend's page (`custom-http-errors`, `default-backend`) | `policy/custom_errors.rs`, called from `service.rs` | |
//! | 17 | access log and metrics, when the response ends | `exchange.rs` | |
//!
//! Every refusal to a gRPC call (`content-type: application/grpc…`) is answered in gRPC's shape
//! (HTTP 200 and a `grpc-status`, `grpc.rs`), whichever phase refused it.
//!
//! A route without annotations pays for phases 4–13 a few `Option` tests, the declared-length
//! comparison of phase 12, and in phase 14 the counting of body bytes against the default
//! limit (1m) and one atomic store of the send timeout; with one endpoint, nothing for
//! retries (with more, a copy of the request head).

use std::sync::Arc;

use http::header::SET_COOKIE;
use http::{Request, Response};
use hyper::body::Incoming;
use tracing::{debug, warn};

use super::Proxy;
use super::activity::ConnActivity;
use super::body::ProxyBody;
use super::exchange::Exchange;
use super::grpc;
use super::headers::{self, ClientInfo, client_ip};
use super::policy;
use super::policy::balance::Chosen;
use super::policy::external_auth::{Granted, Subject};
use super::policy::retry::Retries;
use super::respond::Refusal;
use super::service::{
    check_request, is_idempotent, prepare_upstream_request, request_host, routing_host,
};
use super::upgrade::UpgradeRequest;
use super::upstream::{Outgoing, SendOptions, Target, UpstreamError};
use crate::model::client_auth::HostClientAuth;
use crate::model::variables::Vars;
use crate::model::{ClientAuth, PathMatch, Route, routing_path};
use crate::state::ConnectionSlot;
use crate::state::{Picked, RouteRuntime};

/// The TLS client towards the endpoints of a route whose protocol is TLS; a route whose
/// settings could not be compiled answers 502, one without a runtime 503.
fn upstream_tls(
    route: &Route,
    runtime: Option<&RouteRuntime>,
    addr: std::net::SocketAddr,
) -> Result<Arc<crate::tls::UpstreamTlsClient>, Refusal> {
    match runtime.and_then(|r| r.tls.as_ref()) {
        Some(Ok(client)) => Ok(client.clone()),
        Some(Err(why)) => {
            warn!(ingress = %route.ingress, service = %route.backend.service, %why, "no TLS client towards the endpoints");
            Err(Refusal::Upstream(UpstreamError::TlsSettings {
                addr,
                why: why.clone(),
            }))
        }
        None => Err(Refusal::Misconfigured),
    }
}

/// What nginx variables expand to for `req` (as received, normalised path) from `client`.
fn request_vars<'a>(
    conn: &'a ClientInfo,
    host: &'a str,
    host_value: &'a http::HeaderValue,
    req: &'a Request<Incoming>,
    client: std::net::IpAddr,
) -> Vars<'a> {
    Vars {
        scheme: conn.scheme,
        host,
        http_host: host_value.to_str().unwrap_or(host),
        method: req.method().as_str(),
        request_uri: req.uri().path_and_query().map_or("/", |p| p.as_str()),
        remote_addr: client,
        headers: req.headers(),
    }
}

/// The outcome of phases 3 and 4.
enum Routed {
    /// The host answers before any path is matched (phase 4).
    HostRedirect(Box<Response<ProxyBody>>),
    /// A route matched.
    Route {
        /// The route.
        route: Arc<Route>,
        /// Its runtime state (metrics, balancer).
        runtime: Option<Arc<RouteRuntime>>,
        /// The path needs the Prefix rule's trailing slash (phase 6).
        add_slash: bool,
        /// The host's client-certificate setting (phase 9).
        client_auth: Option<HostClientAuth>,
    },
}

/// What phase 11 needs to know about a request beside the request itself.
#[derive(Clone, Copy)]
struct Facts<'a> {
    conn: &'a ClientInfo,
    /// The normalised host.
    host: &'a str,
    /// The host as sent (`Host`, or the target's authority).
    host_value: &'a http::HeaderValue,
    route: &'a Route,
    runtime: Option<&'a RouteRuntime>,
    /// The host's client-certificate policy.
    client_auth: Option<&'a ClientAuth>,
}

/// What phase 11 gives a request it lets through.
#[derive(Default)]
struct Admitted {
    /// What an authentication service's answer adds to the request and its response.
    granted: Option<Box<Granted>>,
    /// Its place among the client's requests in progress (`limit-connections`).
    slot: Option<ConnectionSlot>,
}

impl Proxy {
    /// Runs the phases in order: a response weir makes itself, or the endpoint's.
    ///
    /// A plain function returning an `async move` block rather than an `async fn`: an
    /// `async fn` keeps each argument beside the local it is moved into, and every request's
    /// future would carry the request twice (264 B more, copied with every move).
    #[allow(clippy::manual_async_fn)] // see above: an `async fn` is what this avoids
    pub(super) fn forward<'a>(
        self: &'a Arc<Self>,
        conn: &'a ClientInfo,
        activity: &'a Arc<ConnActivity>,
        mut req: Request<Incoming>,
        exchange: &'a mut Option<Box<Exchange>>,
        errors: &'a mut Option<Box<policy::custom_errors::Pending>>,
    ) -> impl Future<Output = Result<Response<ProxyBody>, Refusal>> + Send + 'a {
        async move {
            // 1. Check the request.
            let upgrade = UpgradeRequest::of(&req);
            check_request(&req, upgrade.as_ref(), self.config.max_request_target_size)?;
            let host_value = request_host(&req)?;
            let host = routing_host(&host_value)?;
            // 2. Normalise the path.
            policy::path::normalize(&mut req)?;
            // 3, 4. Route; the host may redirect first.
            let (route, runtime, add_slash, client_auth) = match self.route(conn, &host, &req)? {
                Routed::HostRedirect(response) => return Ok(*response),
                Routed::Route {
                    route,
                    runtime,
                    add_slash,
                    client_auth,
                } => (route, runtime, add_slash, client_auth),
            };
            if let Some(exchange) = exchange.as_deref_mut() {
                exchange.routed(&route, runtime.as_ref().and_then(|r| r.stats.as_ref()));
            }
            let policy = &route.policy;
            // 16, prepared: what the error backend would be told (a gRPC call keeps its errors).
            if let Some(pages) = &policy.custom_errors
                && !grpc::is_grpc(req.headers())
            {
                let pending =
                    policy::custom_errors::Pending::new(pages, &route, &mut req, &host_value);
                *errors = Some(pending);
            }
            // 5. Fail closed.
            if let Some(why) = &policy.refused {
                debug!(ingress = %route.ingress, %why, "the route fails closed");
                return Err(Refusal::Misconfigured);
            }
            // 6. The trailing slash.
            if add_slash {
                return Ok(policy::slash::redirect(conn, &host, &req, policy));
            }
            // 7. Redirects instead of forwarding.
            if let Some(redirect) = &policy.redirect {
                return Ok(policy::redirect::respond(redirect));
            }
            // 8. HTTPS.
            let https_port = self.config.https_port_external;
            if let Some(response) = policy::https::redirect(&route, conn, &host, &req, https_port) {
                return Ok(response);
            }
            // 9. Client certificates.
            let client_auth = match client_auth {
                None => None,
                Some(Ok(auth)) => Some(auth),
                Some(Err(why)) => {
                    debug!(ingress = %route.ingress, %why, "the host fails closed");
                    return Err(Refusal::Misconfigured);
                }
            };
            if let Some(auth) = &client_auth {
                policy::client_cert::check(auth, conn).inspect_err(|refusal| {
                    let client = client_ip(conn, req.headers());
                    self.count_denied(&route, refusal, client);
                })?;
            }
            // 10. CORS preflights.
            let cors = policy
                .cors
                .as_deref()
                .and_then(|cors| policy::cors::allowed(cors, &req));
            if let Some(response) = cors
                .as_deref()
                .and_then(|a| policy::cors::preflight(a, &req))
            {
                return Ok(response);
            }
            // 11. Rate limits, then access control, on a route with either. The checks' future (an
            // authentication sub-request among them) and what they admit are boxed: every request's
            // future would otherwise be as large as theirs.
            let mut admitted: Option<Box<Admitted>> = None;
            if policy.rate_limits.is_some() || policy.access.is_some() {
                let facts = Facts {
                    conn,
                    host: &host,
                    host_value: &host_value,
                    route: &route,
                    runtime: runtime.as_deref(),
                    client_auth: client_auth.as_deref(),
                };
                match Box::pin(self.admit(&facts, &mut req)).await {
                    Ok(passed) => admitted = Some(Box::new(passed)),
                    Err(refusal) if grpc::is_grpc(req.headers()) => return Err(refusal),
                    Err(refusal) => {
                        let mut response = refusal.into_response(req.version());
                        policy::cors::add_headers(&cors, response.headers_mut());
                        return Ok(response);
                    }
                }
            }
            // 12. The declared body size.
            policy::body_limit::check(policy, &req)?;
            let mut tee = match &policy.mirror {
                None => None,
                Some(mirror) => {
                    let host = (host.as_ref(), &host_value);
                    self.mirrors.start(mirror, &route, conn, host, &mut req)
                }
            };
            // 14, chosen before 13 changes the request: the backend (the main one or the route's
            // canary) and its balancer's endpoint (`load-balance`, `upstream-hash-by`, `affinity`).
            let canary = match &route.canary {
                None => None,
                Some(_) => policy::canary::chosen(&route, runtime.as_deref(), req.headers()),
            };
            let canary_runtime = canary.and_then(|_| runtime.as_ref()?.canary.as_ref());
            if let (Some(canary), Some(exchange)) = (canary, exchange.as_deref_mut()) {
                exchange.canary(canary, canary_runtime.and_then(|r| r.stats.as_ref()));
            }
            let (backend, balance, balancer) = match canary {
                Some(canary) => (
                    &canary.backend,
                    &canary.balance,
                    canary_runtime.map(|r| &r.balancer),
                ),
                None => (
                    &route.backend,
                    &policy.balance,
                    runtime.as_ref().map(|r| &r.balancer),
                ),
            };
            let idempotent = is_idempotent(req.method());
            let first = match balancer {
                Some(balancer) => {
                    let client = || client_ip(conn, req.headers());
                    let request = || request_vars(conn, &host, &host_value, &req, client());
                    policy::balance::pick((&*route, balance, &**balancer), request)
                }
                None => {
                    let first = backend.endpoints.first().copied();
                    first.map(|addr| Chosen::plain(Picked::endpoint(addr)))
                }
            };
            let first = first.ok_or(Refusal::NoEndpoints)?;
            // 13. What the endpoint receives.
            let request_id = prepare_upstream_request(&mut req, host_value, conn);
            policy::rewrite::apply(&route, &mut req)?;
            if let Some(granted) = admitted.as_ref().and_then(|a| a.granted.as_ref()) {
                granted.apply(&mut req);
            }
            if let Some(auth) = &client_auth {
                policy::client_cert::set_headers(auth, conn, req.headers_mut());
            }
            // 14. Forward: the balancer's endpoint, then others as `proxy-next-upstream` allows
            // (`policy/retry.rs`). 15: the answer is relayed, or an upgrade's tunnel opened.
            let client_upgrade = upgrade.as_ref().map(|upgrade| {
                upgrade.apply(&mut req);
                hyper::upgrade::on(&mut req)
            });
            let upstream = &policy.upstream;
            let tls = match &upstream.tls {
                None => None,
                Some(_) => Some(upstream_tls(&route, runtime.as_deref(), first.addr())?),
            };
            // gRPC's deadline bounds the wait for the response head, and the call.
            let deadline = upstream
                .protocol
                .is_grpc()
                .then(|| grpc::timeout(req.headers()))
                .flatten()
                .map(|d| std::time::Instant::now() + d);
            let has_body = !http_body::Body::is_end_stream(req.body());
            if let Some(exchange) = exchange.as_deref_mut() {
                exchange.connecting();
            }
            let timeouts = &policy.timeouts;
            let mut retries = Retries::start(
                &policy.retry,
                (&backend.endpoints, balancer.map(|b| &**b)),
                first.addr(),
                (req.method(), upgrade.is_some()),
                deadline,
            );
            let mut req = req.map(Outgoing::Client);
            let mut addr = first.addr();
            // The balancer learns how its pick did (EWMA).
            let mut attempt = Some(first.picked.attempt());
            let result = loop {
                if let Some(exchange) = exchange.as_deref_mut() {
                    exchange.attempt(addr);
                }
                let target = Target {
                    addr,
                    protocol: upstream.protocol,
                    tls: tls.clone(),
                };
                let connection = match self.pool.connection(&target, timeouts.connect).await {
                    Ok(connection) => connection,
                    Err(error) => {
                        if let Some(attempt) = attempt.take() {
                            attempt.finish(false);
                        }
                        match retries.as_mut().and_then(|r| r.after_connect(&error)) {
                            Some((next, condition)) => {
                                self.note_retry(&route, (addr, next), condition, Err(&error));
                                addr = next;
                                continue;
                            }
                            None => {
                                warn!(service = %backend.service, endpoint = %addr, %error, "upstream connect failed");
                                self.count_upstream_error(backend, &error);
                                return Err(Refusal::Upstream(error));
                            }
                        }
                    }
                };
                let body_copy = retries.as_mut().and_then(|r| r.keep(&req));
                let body_bytes = exchange
                    .as_deref_mut()
                    .and_then(|e| e.sending(addr, &request_id, has_body));
                let options = SendOptions {
                    idempotent,
                    timeouts,
                    max_body_size: policy.max_body_size,
                    body_bytes,
                    deadline,
                    tee: tee.take(),
                    body_copy,
                };
                let sent = self.pool.send(connection, req, activity, options).await;
                if let Some(attempt) = attempt.take() {
                    attempt.finish(sent.is_ok());
                }
                let Some(retried) = retries.as_mut().and_then(|r| r.after_send(&sent)) else {
                    break sent;
                };
                let failed = sent.as_ref().map(|(response, _)| response.status());
                self.note_retry(&route, (addr, retried.next), retried.condition, failed);
                (req, addr) = (retried.req, retried.next);
            };
            if let (Some(exchange), Ok((response, _))) = (exchange.as_deref_mut(), &result) {
                exchange.upstream_answered(response.status());
            }
            match (upgrade, client_upgrade) {
                (Some(upgrade), Some(client)) => self.switch(
                    result,
                    (&upgrade, client, admitted.and_then(|a| a.slot)),
                    (&route, backend),
                    conn,
                    activity,
                    exchange,
                ),
                _ => {
                    let mut relayed = self.relay(result, (&route, backend), conn, &cors);
                    if let Ok(response) = &mut relayed {
                        if let Some(cookie) = first.set_cookie {
                            response.headers_mut().append(SET_COOKIE, cookie);
                        }
                        // Only a route with limits or access rules admitted anything.
                        let (granted, slot) =
                            admitted.map_or((None, None), |a| (a.granted, a.slot));
                        if let Some(granted) = &granted {
                            granted.set_cookies(response);
                        }
                        if slot.is_some() || policy.response_rate.is_some() || deadline.is_some() {
                            response
                                .body_mut()
                                .shape(slot, policy.response_rate, deadline);
                        }
                    }
                    relayed
                }
            }
        }
    }

    /// Phase 11: the route's rate limits, then its access rules (a refusal is counted).
    async fn admit(
        &self,
        facts: &Facts<'_>,
        req: &mut Request<Incoming>,
    ) -> Result<Admitted, Refusal> {
        let Facts { conn, route, .. } = *facts;
        let policy = &route.policy;
        let client = client_ip(conn, req.headers());
        let mut admitted = Admitted::default();
        let mut verdict = Ok(());
        if let Some(limits) = &policy.rate_limits {
            match policy::rate_limit::check(limits, facts.runtime, client) {
                Ok(held) => admitted.slot = held,
                Err(refusal) => verdict = Err(refusal),
            }
        }
        if let (Ok(()), Some(access)) = (&verdict, &policy.access) {
            // The sub-request to an authentication service carries the request's ID.
            let request_id = access
                .external
                .is_some()
                .then(|| headers::ensure_request_id(req.headers_mut()).clone());
            let subject = request_id.as_ref().map(|request_id| Subject {
                vars: request_vars(conn, facts.host, facts.host_value, req, client),
                request_id,
                ingress: &route.ingress,
                timeouts: &policy.timeouts,
                location: &route.location,
                client_cert: facts.client_auth.map(|auth| (auth, conn)),
            });
            let external = subject.as_ref().map(|s| (&self.auth, s));
            match policy::access::check(access, client, req, external).await {
                Ok(granted) => admitted.granted = granted,
                Err(refusal) => verdict = Err(refusal),
            }
        }
        match verdict {
            Ok(()) => Ok(admitted),
            Err(refusal) => {
                self.count_denied(route, &refusal, client);
                Err(refusal)
            }
        }
    }

    /// Phases 3 and 4: the route of `req` (normalised path) on `host` (normalised).
    fn route(
        &self,
        conn: &ClientInfo,
        host: &str,
        req: &Request<Incoming>,
    ) -> Result<Routed, Refusal> {
        let path = req.uri().path();
        // Only a `;` or an escape can make the routing path differ (the common path has none).
        let path = if path.bytes().any(|b| b == b';' || b == b'%') {
            routing_path(path)
                .map_err(|_| Refusal::BadRequest("malformed percent-escape in the path"))?
        } else {
            std::borrow::Cow::Borrowed(path)
        };
        let snapshot = self.state.snapshot();
        let lookup = snapshot.table.lookup(host, &path);
        let mut client_auth = None;
        if let Some(settings) = lookup.host {
            policy::passthrough::check(settings, conn)?;
            client_auth = settings.client_auth.clone();
            let https_port = self.config.https_port_external;
            if let Some(response) =
                policy::host_redirect::respond(settings, conn, host, req, https_port)
            {
                return Ok(Routed::HostRedirect(Box::new(response)));
            }
        }
        let (route, add_slash) = match lookup.path {
            Some(PathMatch::Route(route)) => (route, false),
            Some(PathMatch::AddSlash(route)) => (route, true),
            None => return Err(Refusal::NoRoute),
        };
        Ok(Routed::Route {
            runtime: snapshot.runtime.get(route).cloned(),
            route: route.clone(),
            add_slash,
            client_auth,
        })
    }
}
