//! Phase 11, first half: `limit-rps`, `limit-rpm` and `limit-connections` per client address (the address of
//! [`client_ip`](super::super::headers::client_ip)), before access control as nginx's
//! `limit_req` runs before `allow`/`deny` and authentication. A client over a limit gets 503,
//! ingress-nginx's default status (the ConfigMap's `limit-req-status-code` changes it);
//! `limit-whitelist` addresses are never limited.

use std::net::IpAddr;
use std::time::Instant;

use super::super::respond::Refusal;
use crate::model::RateLimits;
use crate::state::{ConnectionSlot, RouteRuntime};

/// Counts the request against the route's limits; 503 (or the ConfigMap's status) when the
/// client is over one. With `limit-connections`, the place the request holds until its
/// response is sent.
pub(in crate::proxy) fn check(
    limits: &RateLimits,
    runtime: Option<&RouteRuntime>,
    client: IpAddr,
) -> Result<Option<ConnectionSlot>, Refusal> {
    if limits.exempt.as_ref().is_some_and(|l| l.contains(client)) {
        return Ok(None);
    }
    // Every route of a table has its runtime; without one nothing can be counted, and the
    // limit is not dropped for it.
    let runtime = runtime.ok_or(Refusal::RateLimited(limits.status))?;
    let now = Instant::now();
    for limiter in [&runtime.per_second, &runtime.per_minute]
        .into_iter()
        .flatten()
    {
        if !limiter.allow(client, now) {
            return Err(Refusal::RateLimited(limits.status));
        }
    }
    match (limits.connections, &runtime.connections) {
        (None, _) => Ok(None),
        (Some(_), Some(counter)) => counter
            .acquire(client)
            .map(Some)
            .ok_or(Refusal::ConnectionLimited(limits.connections_status)),
        (Some(_), None) => Err(Refusal::ConnectionLimited(limits.connections_status)),
    }
}
