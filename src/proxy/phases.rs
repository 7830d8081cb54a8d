//! The phases of a request, in order — the one place that says what happens when.
//!
//! | # | phase | where | weir answers |
//! |---|---|---|---|
//! | 1 | check the request (method, transfer coding, Host) | `service.rs` | 400, 405, 501 |
//! | 2 | normalise the path | `policy/path.rs` | 400 |
//! | 3 | route: the host, then the path | [`RouteTable::lookup`](crate::model::RouteTable::lookup) | 404 |
//! | 4 | host redirects: `from-to-www-redirect`, `app-root` | `policy/host_redirect.rs` | 308, 302 |
//! | 5 | trailing slash of a Prefix rule written `/app/` | `policy/slash.rs` | 301 |
//! | 6 | fail closed: an invalid access or routing annotation | here | 503 |
//! | 7 | `permanent-redirect`, `temporal-redirect` | `policy/redirect.rs` | 3xx |
//! | 8 | HTTPS redirect (`ssl-redirect`, `force-ssl-redirect`) | `policy/https.rs` | 308 |
//! | 9 | access control (IP lists, auth: the access-control issue) | | |
//! | 10 | request body limit (`proxy-body-size`) | `policy/body_limit.rs` | 413 |
//! | 11 | forwarding headers, then `rewrite-target`, `x-forwarded-prefix`, `upstream-vhost` | `headers.rs`, `policy/rewrite.rs` | |
//! | 12 | forward: balance, connect/send/read timeouts, one retry of a failed connect | `service.rs`, `upstream.rs` | 502, 503, 504 |
//! | 13 | response headers: hop-by-hop out, `Server`, HSTS | `service.rs`, `policy/https.rs` | |
//! | 14 | access log and metrics, when the response ends | `exchange.rs` | |
//!
//! Phases 4–10 cost a route without annotations a few `Option` tests.

use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use tracing::debug;

use super::Proxy;
use super::body::ProxyBody;
use super::headers::ClientInfo;
use super::policy;
use super::respond::Refusal;
use crate::model::{PathMatch, Route};
use crate::state::RouteRuntime;

/// The outcome of phases 3 and 4.
pub(super) enum Routed {
    /// The host answers before any path is matched (phase 4).
    HostRedirect(Box<Response<ProxyBody>>),
    /// A route matched.
    Route {
        /// The route.
        route: Arc<Route>,
        /// Its runtime state (metrics, balancer).
        runtime: Option<Arc<RouteRuntime>>,
        /// The path needs the Prefix rule's trailing slash (phase 5).
        add_slash: bool,
    },
}

impl Proxy {
    /// Phases 3 and 4: the route of `req` (normalised path) on `host` (normalised).
    pub(super) fn route(
        &self,
        conn: &ClientInfo,
        host: &str,
        req: &Request<Incoming>,
    ) -> Result<Routed, Refusal> {
        let snapshot = self.state.snapshot();
        let path = req.uri().path();
        let lookup = snapshot.table.lookup(host, path);
        if let Some(settings) = lookup.host {
            let https_port = self.config.https_port_external;
            if let Some(response) =
                policy::host_redirect::respond(settings, conn, req, path, https_port)
            {
                return Ok(Routed::HostRedirect(Box::new(response)));
            }
        }
        let (route, add_slash) = match lookup.path.ok_or(Refusal::NoRoute)? {
            PathMatch::Route(route) => (route, false),
            PathMatch::AddSlash(route) => (route, true),
        };
        Ok(Routed::Route {
            runtime: snapshot.runtime.get(route).cloned(),
            route: route.clone(),
            add_slash,
        })
    }

    /// Phases 5–10: the response weir makes itself instead of forwarding `req` on `route`,
    /// if any (`Err`: a refusal).
    pub(super) fn answer(
        &self,
        route: &Route,
        add_slash: bool,
        conn: &ClientInfo,
        host: &str,
        req: &Request<Incoming>,
    ) -> Result<Option<Response<ProxyBody>>, Refusal> {
        let policy = &route.policy;
        if add_slash {
            return Ok(Some(policy::slash::redirect(
                conn,
                host,
                req.uri().path(),
                req,
                policy,
            )));
        }
        if let Some(why) = &policy.refused {
            debug!(ingress = %route.ingress, %why, "the route fails closed");
            return Err(Refusal::Misconfigured);
        }
        if let Some(redirect) = &policy.redirect {
            return Ok(Some(policy::redirect::respond(redirect)));
        }
        let https_port = self.config.https_port_external;
        if let Some(response) = policy::https::redirect(route, conn, host, req, https_port) {
            return Ok(Some(response));
        }
        policy::body_limit::check(policy, req)?;
        Ok(None)
    }
}
