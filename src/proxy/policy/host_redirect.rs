//! Host-scope redirects, before any path is matched:
//! - `from-to-www-redirect`: a request for `www.example.com` (a host with no rules of its own)
//!   goes to `example.com` (or the other way round) with the `http-redirect-code` (308),
//!   keeping scheme, path and query. On HTTPS the port is `--https-port-external` unless 443;
//!   on plain HTTP the port the client used is kept.
//! - `app-root`: a request for `/` gets a 302 to `<scheme>://<host>[:<port the client
//!   used>]<app-root>` (the query is dropped), as ingress-nginx answers.

use http::{Request, Response, StatusCode};

use super::super::body::ProxyBody;
use super::super::headers::ClientInfo;
use super::super::respond;
use crate::model::HostSettings;

/// The host-level redirect of `req` for normalised `host` (normalised path `path`), if its
/// host has one.
pub(in crate::proxy) fn respond<B>(
    settings: &HostSettings,
    conn: &ClientInfo,
    host: &str,
    req: &Request<B>,
    https_port: u16,
) -> Option<Response<ProxyBody>> {
    if let Some(to) = &settings.redirect_to {
        let https_port = https_port.to_string();
        let port = if conn.scheme == "https" {
            (https_port != "443").then_some(https_port.as_str())
        } else {
            super::host_port(req)
        };
        let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let location = super::origin(conn.scheme, &to.host, port) + target;
        return Some(respond::redirect(to.code, &location));
    }
    let app_root = settings
        .app_root
        .as_ref()
        .filter(|_| req.uri().path() == "/")?;
    let location =
        super::origin(conn.scheme, host, super::host_port(req)) + app_root.to_str().unwrap_or("/");
    Some(respond::redirect(StatusCode::FOUND, &location))
}
