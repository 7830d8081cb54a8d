//! Canary releases: which of a route's backends serves a request. A request with an affinity
//! cookie of one of the two backends stays with it (ingress-nginx's
//! `route_to_alternative_balancer`); the others follow
//! [`CanaryRule::decide`](crate::model::CanaryRule::decide), ingress-nginx's precedence of
//! header, cookie and weight.

use std::sync::Arc;

use http::HeaderMap;

use crate::model::{Canary, Route};
use crate::state::RouteRuntime;

/// The canary of `route` when it serves a request with `headers`: the request has its
/// affinity cookie, or has none of the main backend's and the canary's rule picks it; and the
/// canary has endpoints (a canary without any leaves every request to the main backend, as
/// ingress-nginx does without a balancer for the canary).
pub(crate) fn chosen<'a>(
    route: &'a Route,
    runtime: Option<&RouteRuntime>,
    headers: &HeaderMap,
) -> Option<&'a Arc<Canary>> {
    let canary = route.canary.as_ref()?;
    if canary.backend.endpoints.is_empty() {
        return None;
    }
    if let Some(runtime) = runtime {
        if runtime.balancer.is_affinitized(headers) {
            return None;
        }
        if let Some(mine) = &runtime.canary
            && mine.balancer.is_affinitized(headers)
        {
            return Some(canary);
        }
    }
    let decision = canary.rule.decide(headers, |total| fastrand::u32(..total));
    decision.to_canary().then_some(canary)
}
