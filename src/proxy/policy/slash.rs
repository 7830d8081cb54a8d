//! The trailing-slash redirect: a request for `/app` that only a Prefix rule written `/app/`
//! covers gets a 301 to `/app/` (query kept), as nginx answers for a prefix location ending in
//! a slash, so that applications with relative links keep working. Exact rules never redirect.
//! The Location is absolute (`http://host/app/`, no port), as ingress-nginx sends it, unless
//! `use-port-in-redirects` (the client's port is kept) or `relative-redirects` (path only).

use http::{Request, Response, StatusCode};

use super::super::body::ProxyBody;
use super::super::headers::ClientInfo;
use super::super::respond;
use crate::model::Policy;

/// The redirect for `req` on normalised `host` to its (normalised) path with a slash.
pub(in crate::proxy) fn redirect<B>(
    conn: &ClientInfo,
    host: &str,
    req: &Request<B>,
    policy: &Policy,
) -> Response<ProxyBody> {
    let mut location = if policy.relative_redirects {
        String::new()
    } else {
        let port = super::host_port(req).filter(|_| policy.use_port_in_redirects);
        super::origin(conn.scheme, host, port)
    };
    location.push_str(req.uri().path());
    location.push('/');
    if let Some(query) = req.uri().query() {
        location.push('?');
        location.push_str(query);
    }
    respond::redirect(StatusCode::MOVED_PERMANENTLY, &location)
}
