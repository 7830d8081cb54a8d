//! Host-scope redirects, before any path is matched:
//! - `from-to-www-redirect`: a request for `www.example.com` (a host with no rules of its own)
//!   goes to `example.com` (or the other way round) with the `http-redirect-code` (308),
//!   keeping scheme, path and query. On HTTPS the port is `--https-port-external` unless 443;
//!   on plain HTTP the port the client used is kept.
//! - `app-root`: a request for `/` gets a 302 to `scheme://<Host as sent><app-root>` (the
//!   query is dropped), as ingress-nginx answers.

use http::{HeaderValue, Request, Response, StatusCode};

use super::super::body::ProxyBody;
use super::super::headers::ClientInfo;
use super::super::respond;
use crate::model::HostSettings;

/// The host-level redirect of `req` (normalized path `path`), if its host has one.
pub(in crate::proxy) fn respond<B>(
    settings: &HostSettings,
    conn: &ClientInfo,
    req: &Request<B>,
    path: &str,
    https_port: u16,
) -> Option<Response<ProxyBody>> {
    if let Some(to) = &settings.redirect_to {
        let port = if conn.scheme == "https" {
            (https_port != 443).then(|| https_port.to_string())
        } else {
            super::host_port(req).map(str::to_owned)
        };
        let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let location = match port {
            Some(port) => format!("{}://{}:{port}{target}", conn.scheme, to.host),
            None => format!("{}://{}{target}", conn.scheme, to.host),
        };
        return Some(respond::redirect(to.code, &location));
    }
    let app_root = settings.app_root.as_ref().filter(|_| path == "/")?;
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let location = format!(
        "{}://{host}{}",
        conn.scheme,
        app_root.to_str().unwrap_or("/")
    );
    let location = HeaderValue::try_from(location).ok()?;
    Some(respond::redirect_to(StatusCode::FOUND, location))
}
