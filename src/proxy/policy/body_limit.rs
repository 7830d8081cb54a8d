//! `proxy-body-size`: a request whose declared length (Content-Length) is over the route's
//! limit gets 413 before any endpoint is contacted; a body without a declared length (chunked,
//! HTTP/2) is counted as it streams and cut when it grows past the limit — the client gets 413
//! when no response has started ([`BodyTooLarge`] in the upstream error says so).

use http::Request;
use http_body::Body;

use super::super::respond::Refusal;
use crate::model::Policy;

/// A request body grew past the route's `proxy-body-size`.
#[derive(Debug, thiserror::Error)]
#[error("the request body is larger than the limit of {limit} bytes")]
pub struct BodyTooLarge {
    /// The limit.
    pub limit: u64,
}

impl BodyTooLarge {
    /// Finds a `BodyTooLarge` anywhere in an error's source chain.
    pub fn in_chain(error: &(dyn std::error::Error + 'static)) -> bool {
        crate::proxy::in_chain::<BodyTooLarge>(error)
            .next()
            .is_some()
    }
}

/// A streamed body's bytes counted against the route's limit (the request body wrapper of
/// `upstream.rs` feeds it each frame).
#[derive(Debug)]
pub(in crate::proxy) struct Counter {
    limit: u64,
    seen: u64,
}

impl Counter {
    /// A counter for a body of at most `limit` bytes.
    pub(in crate::proxy) fn new(limit: u64) -> Self {
        Counter { limit, seen: 0 }
    }

    /// Counts `len` more bytes; fails once the body is over the limit.
    pub(in crate::proxy) fn add(&mut self, len: usize) -> Result<(), BodyTooLarge> {
        self.seen = self.seen.saturating_add(len as u64);
        if self.seen > self.limit {
            return Err(BodyTooLarge { limit: self.limit });
        }
        Ok(())
    }
}

/// 413 when `req` declares a body longer than the route allows.
pub(in crate::proxy) fn check<B: Body>(policy: &Policy, req: &Request<B>) -> Result<(), Refusal> {
    match policy.max_body_size {
        Some(limit) if req.body().size_hint().lower() > limit => Err(Refusal::PayloadTooLarge),
        _ => Ok(()),
    }
}
