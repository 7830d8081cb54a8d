//! Canary releases: which of a route's backends serves a request (the rule is
//! [`CanaryRule::decide`](crate::model::CanaryRule::decide), ingress-nginx's precedence of
//! header, cookie and weight).

use std::sync::Arc;

use http::HeaderMap;

use crate::model::{Canary, Route};

/// The canary of `route` when it serves a request with `headers`: its rule picks it, and it
/// has endpoints (a canary without any leaves every request to the main backend, as
/// ingress-nginx does without a balancer for the canary).
pub(crate) fn chosen<'a>(route: &'a Route, headers: &HeaderMap) -> Option<&'a Arc<Canary>> {
    let canary = route.canary.as_ref()?;
    if canary.backend.endpoints.is_empty() {
        return None;
    }
    let decision = canary.rule.decide(headers, |total| fastrand::u32(..total));
    decision.to_canary().then_some(canary)
}
