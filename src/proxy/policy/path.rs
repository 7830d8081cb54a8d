//! Path normalisation before routing: dot-segments (also `%2e`) resolved, repeated slashes
//! merged, encoded unreserved characters decoded (see [`crate::model::normalize_path`]). The
//! request continues with the normalised path, so the route it matched is the path the
//! endpoint receives: `/public/../admin` reaches `/admin`'s backend as `/admin`, never
//! `/public`'s. (ingress-nginx matches the normalised path but forwards the raw one.)
//! A `%` that starts no escape gets 400, as from nginx.

use std::borrow::Cow;

use http::uri::PathAndQuery;
use http::{Request, Uri};

use super::super::respond::Refusal;
use crate::model::normalize_path;

/// Normalises `req`'s path in place (its query stays as it is).
pub(in crate::proxy) fn normalize<B>(req: &mut Request<B>) -> Result<(), Refusal> {
    let path = req.uri().path();
    // `*` (OPTIONS *) and other forms that are not paths are left to the request checks.
    if !path.starts_with('/') {
        return Ok(());
    }
    let normalized = normalize_path(path)
        .map_err(|_| Refusal::BadRequest("malformed percent-escape in the path"))?;
    let Cow::Owned(normalized) = normalized else {
        return Ok(());
    };
    let target = match req.uri().query() {
        Some(query) => format!("{normalized}?{query}"),
        None => normalized,
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query =
        Some(PathAndQuery::try_from(target).map_err(|_| Refusal::BadRequest("invalid path"))?);
    *req.uri_mut() = Uri::from_parts(parts).map_err(|_| Refusal::BadRequest("invalid path"))?;
    Ok(())
}
