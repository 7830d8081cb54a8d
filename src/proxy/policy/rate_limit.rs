//! Phase 10, first half: `limit-rps` and `limit-rpm` per client address (the address of
//! [`client_ip`](super::super::headers::client_ip)), before access control as nginx's
//! `limit_req` runs before `allow`/`deny` and authentication. A client over a limit gets 503,
//! ingress-nginx's default status (the ConfigMap's `limit-req-status-code` changes it);
//! `limit-whitelist` addresses are never limited.

use std::net::IpAddr;
use std::time::Instant;

use super::super::respond::Refusal;
use crate::model::RateLimits;
use crate::state::RouteRuntime;

/// Counts the request against the route's limits; 503 when the client is over one.
pub(in crate::proxy) fn check(
    limits: &RateLimits,
    runtime: Option<&RouteRuntime>,
    client: IpAddr,
) -> Result<(), Refusal> {
    if limits.exempt.as_ref().is_some_and(|l| l.contains(client)) {
        return Ok(());
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
    Ok(())
}
