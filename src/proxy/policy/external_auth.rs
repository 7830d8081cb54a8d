//! Phase 10, external authentication (`auth-url`, or the ConfigMap's `global-auth-url`): a
//! sub-request to the authentication service decides, as nginx's `auth_request` does for
//! ingress-nginx.
//!
//! - The sub-request has no body. It carries the client's headers (without hop-by-hop ones,
//!   `Content-Length` and the client's own `X-Forwarded-*`) and ingress-nginx's: `Host` (the
//!   service's host), `X-Original-URL`, `X-Original-Method`, `X-Auth-Request-Redirect`,
//!   `X-Request-ID`, `X-Real-IP`, `X-Forwarded-For`/`-Host`/`-Proto`, `X-Sent-From`, and with
//!   `auth-method` also `X-Original-URI` and `X-Scheme`.
//! - 2xx: the request goes on; the headers `auth-response-headers` names are copied from the
//!   answer onto it (replacing what the client sent, removed when the answer has none), and
//!   the answer's `Set-Cookie` goes on the response (only a successful one unless
//!   `auth-always-set-cookie`).
//! - 401: a 302 to `auth-signin` when set (with the answer's cookies), else 401 with the
//!   answer's `WWW-Authenticate`. 403: 403.
//! - Anything else, a timeout (the route's connect + read timeouts) or a failed connection:
//!   500. Never a pass.
//!
//! Connections to services are pooled; `https` services are verified against the system's
//! trust store (`SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured). With `auth-cache-key`,
//! answers are reused per expanded key for `auth-cache-duration`, in a cache of at most
//! [`MAX_CACHED`] entries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prometheus::HistogramVec;
use tracing::{debug, warn};

use super::super::body::ProxyBody;
use super::super::headers::ClientInfo;
use super::super::headers::{
    self, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REAL_IP, X_REQUEST_ID,
};
use super::super::respond::{Refusal, SERVER};
use crate::model::variables::Vars;
use crate::model::{ClientAuth, ExternalAuth, ObjectRef, Timeouts};

/// The most answers the cache keeps (all routes together).
pub const MAX_CACHED: usize = 10_000;
/// The most bytes of an answer's body read (and discarded) so its connection can be reused.
const MAX_BODY: usize = 64 * 1024;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The pooled client for authentication services, and the answer cache.
pub(in crate::proxy) struct AuthClient {
    client: HttpsClient,
    cache: Mutex<HashMap<String, Cached>>,
    latency: HistogramVec,
}

/// A reusable answer.
#[derive(Clone)]
struct Cached {
    status: StatusCode,
    headers: HeaderMap,
    expires: Instant,
}

/// One request's facts the sub-request needs.
pub(in crate::proxy) struct Subject<'a> {
    /// What nginx variables expand to.
    pub vars: Vars<'a>,
    /// The request's `X-Request-ID`.
    pub request_id: &'a HeaderValue,
    /// The route's Ingress (logs and the cache key).
    pub ingress: &'a ObjectRef,
    /// The route's timeouts: connect + read bound the sub-request.
    pub timeouts: &'a Timeouts,
    /// The route's rule (host and path) for the cache key: answers are reused per rule, as
    /// nginx keys its auth cache by server and location.
    pub location: &'a str,
    /// On a host with client certificates, its policy and the connection: the sub-request
    /// carries the certificate's `ssl-client-*` headers, as ingress-nginx's does.
    pub client_cert: Option<(&'a ClientAuth, &'a ClientInfo)>,
}

/// What a 2xx answer gives the request: headers for the endpoint and cookies for the client.
#[derive(Debug)]
pub(in crate::proxy) struct Granted {
    /// Each header `auth-response-headers` names, with the answer's values (none: removed).
    copy: Vec<(HeaderName, Vec<HeaderValue>)>,
    /// The answer's `Set-Cookie` values.
    cookies: Vec<HeaderValue>,
    /// `auth-always-set-cookie`.
    always: bool,
}

impl Granted {
    /// When the service was not asked (`satisfy: any` let the request in another way): the
    /// headers `auth-response-headers` names are removed from the request, so that a client
    /// cannot send them itself (nginx sets them from an empty variable, which removes them).
    pub fn unasked(auth: &ExternalAuth) -> Granted {
        Granted {
            copy: auth
                .response_headers
                .iter()
                .map(|name| (name.clone(), Vec::new()))
                .collect(),
            cookies: Vec::new(),
            always: false,
        }
    }

    /// Puts the copied headers on the request to the endpoint.
    pub fn apply<B>(&self, req: &mut Request<B>) {
        let headers = req.headers_mut();
        for (name, values) in &self.copy {
            headers.remove(name);
            for value in values {
                headers.append(name.clone(), value.clone());
            }
        }
    }

    /// Adds the cookies to the client's response: a successful one (2xx, 3xx but 300 and
    /// 305, as nginx's `add_header`), or any with `auth-always-set-cookie`.
    pub fn set_cookies(&self, response: &mut Response<ProxyBody>) {
        let status = response.status().as_u16();
        if self.always
            || matches!(
                status,
                200 | 201 | 204 | 206 | 301 | 302 | 303 | 304 | 307 | 308
            )
        {
            for cookie in &self.cookies {
                response
                    .headers_mut()
                    .append(header::SET_COOKIE, cookie.clone());
            }
        }
    }
}

impl AuthClient {
    /// A client counting sub-request latency into `latency` (each sub-request is bounded by
    /// its route's timeouts).
    pub fn new(latency: HistogramVec) -> Self {
        AuthClient {
            client: pooled_client(),
            cache: Mutex::new(HashMap::new()),
            latency,
        }
    }

    /// Asks `auth`'s service about the request `req` (already routed; `subject` holds its
    /// facts). `Ok`: it may pass.
    pub async fn check<B>(
        &self,
        auth: &ExternalAuth,
        req: &Request<B>,
        subject: &Subject<'_>,
    ) -> Result<Granted, Refusal> {
        let url = auth.url.expand(&subject.vars);
        let Some(uri) = url
            .parse::<Uri>()
            .ok()
            .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some())
        else {
            warn!(ingress = %subject.ingress, %url, "auth-url does not expand to an http(s) URL");
            return Err(failed());
        };
        let cache_key = auth.cache.as_ref().map(|cache| {
            format!(
                "{}\0{}\0{}\0{url}\0{}",
                subject.ingress,
                subject.vars.host,
                subject.location,
                cache.key.expand(&subject.vars)
            )
        });
        let cached = cache_key.as_ref().and_then(|key| self.cached(key));
        let (status, answer) = match cached {
            Some(hit) => (hit.status, hit.headers),
            None => {
                let started = Instant::now();
                let result = self.ask(auth, uri, req, subject).await;
                let outcome = match &result {
                    Ok((status, _)) if status.is_success() => "allowed",
                    Ok((StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, _)) => "denied",
                    _ => "error",
                };
                self.latency
                    .with_label_values(&[outcome])
                    .observe(started.elapsed().as_secs_f64());
                let (status, answer) = result.map_err(|why| {
                    warn!(ingress = %subject.ingress, %url, %why, "the authentication service failed");
                    failed()
                })?;
                if let (Some(key), Some(ttl)) = (
                    cache_key,
                    auth.cache
                        .as_ref()
                        .and_then(|c| cacheable(status, &answer, c.ttl(status.as_u16()))),
                ) {
                    self.remember(key, status, &answer, ttl);
                }
                (status, answer)
            }
        };
        decide(auth, status, &answer, subject)
    }

    /// Sends the sub-request: the answer's status and headers.
    async fn ask<B>(
        &self,
        auth: &ExternalAuth,
        uri: Uri,
        req: &Request<B>,
        subject: &Subject<'_>,
    ) -> Result<(StatusCode, HeaderMap), String> {
        let sub = sub_request(auth, uri, req, subject)?;
        let deadline = subject.timeouts.connect + subject.timeouts.read;
        let exchange = async {
            let response = self.client.request(sub).await.map_err(|e| {
                let mut why = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(inner) = source {
                    why.push_str(": ");
                    why.push_str(&inner.to_string());
                    source = inner.source();
                }
                why
            })?;
            let (parts, mut body) = response.into_parts();
            // Read (and drop) a small body so the connection can be reused.
            let mut read = 0;
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { break };
                read += frame.data_ref().map_or(0, Bytes::len);
                if read > MAX_BODY {
                    break;
                }
            }
            Ok((parts.status, parts.headers))
        };
        tokio::time::timeout(deadline, exchange)
            .await
            .map_err(|_| format!("no answer within {deadline:?}"))?
    }

    fn cached(&self, key: &str) -> Option<Cached> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(key)
            .filter(|hit| hit.expires > Instant::now())
            .cloned()
    }

    fn remember(&self, key: String, status: StatusCode, answer: &HeaderMap, ttl: Duration) {
        let now = Instant::now();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, entry| entry.expires > now);
            if cache.len() >= MAX_CACHED {
                // Still full of live answers: forget an arbitrary one (they can be asked again).
                if let Some(victim) = cache.keys().next().cloned() {
                    cache.remove(&victim);
                }
            }
        }
        cache.insert(
            key,
            Cached {
                status,
                headers: answer.clone(),
                expires: now + ttl,
            },
        );
    }

    /// How many answers the cache holds (tests).
    #[cfg(test)]
    fn cached_len(&self) -> usize {
        self.cache.lock().unwrap().len()
    }
}

/// The rustls configuration for `https` services: the system's trust store.
/// A pooled HTTP/1.1 client for services weir asks on the side of a request (authentication
/// services, error backends, mirror targets): `http` and `https` URLs, an `https` service's
/// certificate verified against the system trust store.
pub(in crate::proxy) fn pooled_client<B>() -> Client<hyper_rustls::HttpsConnector<HttpConnector>, B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config())
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .build(https)
}

fn tls_config() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        debug!(%error, "a system certificate could not be loaded");
    }
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    debug!(added, ignored, "trust store for authentication services");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// 500: the service failed or cannot be asked.
fn failed() -> Refusal {
    Refusal::ExternalAuth(Box::new((
        StatusCode::INTERNAL_SERVER_ERROR,
        HeaderMap::new(),
    )))
}

/// The headers of the client's request that never go to the authentication service.
const NOT_FORWARDED: [&str; 6] = [
    "content-length",
    "expect",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
];

/// The sub-request for `req`, to `uri`.
fn sub_request<B>(
    auth: &ExternalAuth,
    uri: Uri,
    req: &Request<B>,
    subject: &Subject<'_>,
) -> Result<Request<Empty<Bytes>>, String> {
    let vars = &subject.vars;
    let mut headers = req.headers().clone();
    headers::strip_hop_by_hop(&mut headers);
    for name in NOT_FORWARDED {
        headers.remove(name);
    }
    // The certificate's headers are the connection's, never the client's.
    match subject.client_cert {
        Some((client_auth, conn)) => {
            super::client_cert::set_headers(client_auth, conn, &mut headers)
        }
        None => super::client_cert::strip_headers(&mut headers),
    }
    let value = |text: String, what: &str| {
        HeaderValue::try_from(text).map_err(|_| format!("{what} is not a valid header value"))
    };
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let host = match uri.port() {
        // ingress-nginx sends the host without its port; a bracketed IPv6 literal keeps
        // its brackets.
        _ if host.contains(':') => format!("[{host}]"),
        _ => host.to_owned(),
    };
    headers.insert(header::HOST, value(host, "the auth-url host")?);
    let http_host = vars.http_host;
    headers.insert(
        HeaderName::from_static("x-original-url"),
        value(
            format!("{}://{http_host}{}", vars.scheme, vars.request_uri),
            "X-Original-URL",
        )?,
    );
    headers.insert(
        HeaderName::from_static("x-original-method"),
        value(vars.method.to_owned(), "X-Original-Method")?,
    );
    // The value ingress-nginx sends: some services check for it.
    headers.insert(
        HeaderName::from_static("x-sent-from"),
        HeaderValue::from_static("nginx-ingress-controller"),
    );
    let client = value(vars.remote_addr.to_string(), "the client address")?;
    headers.insert(X_REAL_IP.clone(), client.clone());
    headers.insert(X_FORWARDED_FOR.clone(), client);
    headers.insert(
        X_FORWARDED_HOST.clone(),
        value(http_host.to_owned(), "X-Forwarded-Host")?,
    );
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(if vars.scheme == "https" {
            "https"
        } else {
            "http"
        }),
    );
    headers.insert(X_REQUEST_ID.clone(), subject.request_id.clone());
    let redirect = match &auth.request_redirect {
        Some(expr) => expr.expand(vars),
        None => vars.request_uri.to_owned(),
    };
    headers.insert(
        HeaderName::from_static("x-auth-request-redirect"),
        value(redirect, "auth-request-redirect")?,
    );
    if auth.method.is_some() {
        headers.insert(
            HeaderName::from_static("x-original-uri"),
            value(vars.request_uri.to_owned(), "X-Original-URI")?,
        );
        headers.insert(
            HeaderName::from_static("x-scheme"),
            HeaderValue::from_static(if vars.scheme == "https" {
                "https"
            } else {
                "http"
            }),
        );
    }
    for (name, expr) in &auth.proxy_set_headers {
        let text = expr.expand(vars);
        if text.is_empty() {
            headers.remove(name);
        } else {
            headers.insert(
                name.clone(),
                value(text, "an auth-proxy-set-headers value")?,
            );
        }
    }
    let mut sub = Request::new(Empty::new());
    *sub.method_mut() = auth.method.clone().unwrap_or(Method::GET);
    *sub.uri_mut() = uri;
    *sub.headers_mut() = headers;
    Ok(sub)
}

/// When an answer may be reused: `ttl` from `auth-cache-duration`, unless the answer sets a
/// cookie or forbids caching (`Cache-Control: no-store`, `no-cache`, `private`); its
/// `max-age` wins over the annotation, as in nginx.
fn cacheable(status: StatusCode, answer: &HeaderMap, ttl: Option<Duration>) -> Option<Duration> {
    if answer.contains_key(header::SET_COOKIE) || status.is_server_error() {
        return None;
    }
    let mut ttl = ttl?;
    for directive in answer
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_ascii_lowercase())
    {
        match directive.split_once('=') {
            None if matches!(directive.as_str(), "no-store" | "no-cache" | "private") => {
                return None;
            }
            Some(("max-age", seconds)) => ttl = Duration::from_secs(seconds.trim().parse().ok()?),
            _ => {}
        }
    }
    (!ttl.is_zero()).then_some(ttl)
}

/// The decision on the service's answer.
fn decide(
    auth: &ExternalAuth,
    status: StatusCode,
    answer: &HeaderMap,
    subject: &Subject<'_>,
) -> Result<Granted, Refusal> {
    let cookies: Vec<HeaderValue> = answer.get_all(header::SET_COOKIE).iter().cloned().collect();
    if status.is_success() {
        let copy = auth
            .response_headers
            .iter()
            .map(|name| (name.clone(), answer.get_all(name).iter().cloned().collect()))
            .collect();
        return Ok(Granted {
            copy,
            cookies,
            always: auth.always_set_cookie,
        });
    }
    let mut headers = HeaderMap::new();
    let status = match status {
        StatusCode::UNAUTHORIZED => match &auth.signin {
            Some(signin) => {
                let location = signin.expand(&subject.vars);
                let Ok(location) = HeaderValue::try_from(location) else {
                    warn!(ingress = %subject.ingress, "auth-signin does not expand to a valid Location");
                    return Err(failed());
                };
                headers.insert(header::LOCATION, location);
                for cookie in cookies {
                    headers.append(header::SET_COOKIE, cookie);
                }
                StatusCode::FOUND
            }
            None => {
                for challenge in answer.get_all(header::WWW_AUTHENTICATE) {
                    headers.append(header::WWW_AUTHENTICATE, challenge.clone());
                }
                StatusCode::UNAUTHORIZED
            }
        },
        StatusCode::FORBIDDEN => StatusCode::FORBIDDEN,
        other => {
            warn!(ingress = %subject.ingress, status = other.as_u16(), "the authentication service answered neither 2xx, 401 nor 403");
            return Err(failed());
        }
    };
    if auth.always_set_cookie && status != StatusCode::FOUND {
        for cookie in answer.get_all(header::SET_COOKIE) {
            headers.append(header::SET_COOKIE, cookie.clone());
        }
    }
    Err(Refusal::ExternalAuth(Box::new((status, headers))))
}

/// The response for an [`Refusal::ExternalAuth`]: `status` with `headers`.
pub(in crate::proxy) fn respond(status: StatusCode, headers: HeaderMap) -> Response<ProxyBody> {
    let body = match status {
        StatusCode::FOUND => String::new(),
        _ => format!(
            "{} {}\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        ),
    };
    let mut response = Response::new(ProxyBody::full(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    let h = response.headers_mut();
    h.insert(header::SERVER, SERVER);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::external_auth::Settings;

    fn latency() -> HistogramVec {
        HistogramVec::new(prometheus::HistogramOpts::new("t", "t"), &["outcome"]).unwrap()
    }

    #[test]
    fn only_answers_without_cookies_or_no_store_are_cached() {
        let ttl = Some(Duration::from_secs(300));
        let with = |pairs: &[(&str, &str)]| {
            let mut map = HeaderMap::new();
            for (k, v) in pairs {
                map.append(
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            map
        };
        let ok = StatusCode::OK;
        assert_eq!(cacheable(ok, &with(&[]), ttl), ttl);
        assert_eq!(cacheable(ok, &with(&[]), None), None);
        assert_eq!(cacheable(ok, &with(&[("set-cookie", "a=b")]), ttl), None);
        for no in ["no-store", "private", "No-Cache", "max-age=0"] {
            assert_eq!(
                cacheable(ok, &with(&[("cache-control", no)]), ttl),
                None,
                "{no}"
            );
        }
        assert_eq!(
            cacheable(ok, &with(&[("cache-control", "public, max-age=7")]), ttl),
            Some(Duration::from_secs(7))
        );
    }

    #[tokio::test]
    async fn the_cache_is_bounded() {
        let client = AuthClient::new(latency());
        for i in 0..MAX_CACHED + 50 {
            client.remember(
                format!("k{i}"),
                StatusCode::OK,
                &HeaderMap::new(),
                Duration::from_secs(60),
            );
        }
        assert_eq!(client.cached_len(), MAX_CACHED);
        assert!(client.cached(&format!("k{}", MAX_CACHED + 49)).is_some());
    }

    #[test]
    fn granted_headers_replace_the_client_s_and_absent_ones_are_removed() {
        let (auth, _) = ExternalAuth::parse(
            &Settings {
                url: "http://a/",
                response_headers: Some("X-User, X-Groups"),
                ..Settings::default()
            },
            false,
        )
        .unwrap();
        let mut answer = HeaderMap::new();
        answer.insert("x-user", "alice".parse().unwrap());
        answer.insert("host", "evil".parse().unwrap());
        answer.insert("transfer-encoding", "chunked".parse().unwrap());
        answer.append("set-cookie", "s=1".parse().unwrap());
        let headers = HeaderMap::new();
        let subject = Subject {
            vars: Vars {
                scheme: "http",
                host: "h",
                http_host: "h",
                method: "GET",
                request_uri: "/",
                remote_addr: "127.0.0.1".parse().unwrap(),
                headers: &headers,
            },
            request_id: &HeaderValue::from_static("id"),
            ingress: &ObjectRef::new(crate::model::ObjectKind::Ingress, "d", "i"),
            timeouts: &Timeouts::default(),
            location: "h /",
            client_cert: None,
        };
        let granted = decide(&auth, StatusCode::OK, &answer, &subject).unwrap();
        let mut req = Request::new(());
        req.headers_mut()
            .insert("x-user", "mallory".parse().unwrap());
        req.headers_mut()
            .insert("x-groups", "admins".parse().unwrap());
        req.headers_mut().insert("host", "app".parse().unwrap());
        granted.apply(&mut req);
        assert_eq!(req.headers()["x-user"], "alice");
        assert!(
            req.headers().get("x-groups").is_none(),
            "the client's value is gone"
        );
        assert_eq!(req.headers()["host"], "app");
        assert!(req.headers().get("transfer-encoding").is_none());
        for (status, expected) in [(401, 401), (403, 403), (302, 500), (500, 500), (404, 500)] {
            let refusal = decide(
                &auth,
                StatusCode::from_u16(status).unwrap(),
                &answer,
                &subject,
            )
            .unwrap_err();
            let Refusal::ExternalAuth(answer) = refusal else {
                panic!("{status}: {refusal:?}")
            };
            assert_eq!(answer.0.as_u16(), expected, "{status}");
        }
    }
}
