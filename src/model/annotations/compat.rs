//! Every ingress-nginx annotation and what weir does with it: the source of the README's
//! compatibility table (a test compares them) and of `weir check`'s explanations.

/// What weir does with an ingress-nginx annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Read with ingress-nginx's meaning and value syntax.
    Supported,
    /// Read, with the difference this sentence states.
    Differs(&'static str),
    /// Accepted and ignored without a Diagnostic: it has no effect any more (the sentence
    /// says why).
    Accepted(&'static str),
    /// Not implemented yet: a Diagnostic; the sentence names the issue that covers it.
    NotYet(&'static str),
    /// Never implemented, by design: a Diagnostic; the sentence says why.
    Never(&'static str),
    /// Removed from ingress-nginx itself: a Diagnostic; the sentence says what replaced it.
    Removed(&'static str),
}

impl Support {
    /// The status column of the README table.
    pub fn label(&self) -> &'static str {
        match self {
            Support::Supported => "supported",
            Support::Differs(_) => "supported, differs",
            Support::Accepted(_) => "accepted, no effect",
            Support::NotYet(_) => "not yet",
            Support::Never(_) => "never",
            Support::Removed(_) => "removed from ingress-nginx",
        }
    }

    /// The note column of the README table.
    pub fn note(&self) -> &'static str {
        match self {
            Support::Supported => "",
            Support::Differs(note)
            | Support::Accepted(note)
            | Support::NotYet(note)
            | Support::Never(note)
            | Support::Removed(note) => note,
        }
    }
}

/// One ingress-nginx annotation (name without prefix) and weir's support for it.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// The name after `nginx.ingress.kubernetes.io/`.
    pub name: &'static str,
    /// What weir does with it.
    pub support: Support,
}

const fn row(name: &'static str, support: Support) -> Row {
    Row { name, support }
}

use Support::{Accepted, Differs, Never, NotYet, Removed, Supported};

const STREAMS: &str = "weir always streams request and response bodies (no disk buffering); \
                       the value is checked and has no other effect";
const SHARED_LIMIT: &str = "a rate limit shared by every replica needs a shared store \
                            (ingress-nginx's is memcached); weir's limit-rps/limit-rpm count per \
                            replica";
const BACKENDS: &str = "issue \"Backends that speak gRPC, HTTP/2 and TLS\"";
const TRAFFIC: &str = "issue \"Traffic management\"";
const NEXT_UPSTREAM: &str = "weir streams request bodies: a request with a body goes on only \
                             when the whole body fit in its 64 KiB replay copy (nginx buffers \
                             the body); values are tokens separated by any white space";
const NEXT_UPSTREAM_TRIES: &str = "each try goes to an endpoint not tried yet, so a Service with \
                                   one endpoint is never retried (ingress-nginx's balancer may \
                                   send a retry to the endpoint that just failed)";
const PART1: &str = "a later part of \"Moving from ingress-nginx\"";
const SNIPPET: &str = "snippets are nginx configuration text; weir never interprets \
                       configuration from annotations (the cause of CVE-2025-1974 and its kin)";
const WAF: &str = "a web application firewall is out of scope; run one in front of weir or \
                   beside the application";
const AUTH_POOL: &str = "weir always keeps connections to authentication services alive in a \
                         pool";
const TRACING: &str = "weir does not export traces yet";

/// Every ingress-nginx annotation, in the order of ingress-nginx's annotations page groups.
pub const ANNOTATIONS: &[Row] = &[
    // Routing, rewrites and redirects.
    row("rewrite-target", Supported),
    row(
        "use-regex",
        Differs(
            "regexes run on a linear-time engine: lookaround and backreferences are refused \
             with a Diagnostic",
        ),
    ),
    row("app-root", Supported),
    row(
        "x-forwarded-prefix",
        Differs("$1…$9 are the path's capture groups; other nginx variables are refused"),
    ),
    row("preserve-trailing-slash", Supported),
    row("permanent-redirect", Supported),
    row("permanent-redirect-code", Supported),
    row("temporal-redirect", Supported),
    row("temporal-redirect-code", Supported),
    row("from-to-www-redirect", Supported),
    row("server-alias", Supported),
    row(
        "upstream-vhost",
        Differs("a host name; a value with nginx variables is refused (the Ingress answers 503)"),
    ),
    row("use-port-in-redirects", Supported),
    row("relative-redirects", Supported),
    row("ssl-redirect", Supported),
    row("force-ssl-redirect", Supported),
    // Timeouts and bodies.
    row("proxy-connect-timeout", Supported),
    row("proxy-send-timeout", Supported),
    row("proxy-read-timeout", Supported),
    row("proxy-body-size", Supported),
    row("client-body-buffer-size", Differs(STREAMS)),
    row("proxy-buffering", Differs(STREAMS)),
    row("proxy-request-buffering", Differs(STREAMS)),
    row("proxy-buffer-size", Differs(STREAMS)),
    row("proxy-buffers-number", Differs(STREAMS)),
    row("proxy-busy-buffers-size", Differs(STREAMS)),
    row("proxy-max-temp-file-size", Differs(STREAMS)),
    row(
        "proxy-http-version",
        Differs("weir always speaks HTTP/1.1 to endpoints (keep-alive); 1.0 is accepted"),
    ),
    row("proxy-redirect-from", NotYet(PART1)),
    row("proxy-redirect-to", NotYet(PART1)),
    row("proxy-cookie-domain", NotYet(PART1)),
    row("proxy-cookie-path", NotYet(PART1)),
    row("custom-headers", NotYet(PART1)),
    row("connection-proxy-header", NotYet(PART1)),
    row("enable-access-log", Supported),
    row(
        "enable-rewrite-log",
        Differs("rewrites are logged at debug level (--log-level debug) whatever the value"),
    ),
    row(
        "http2-push-preload",
        Accepted("HTTP/2 server push was removed from browsers and from nginx 1.25.1"),
    ),
    // Access control.
    row("whitelist-source-range", Supported),
    row("allowlist-source-range", Supported),
    row("denylist-source-range", Supported),
    row("satisfy", Supported),
    row("auth-type", Supported),
    row("auth-secret", Supported),
    row("auth-secret-type", Supported),
    row("auth-realm", Supported),
    row(
        "auth-url",
        Differs(
            "an https URL's certificate is verified (system trust store, SSL_CERT_FILE); the \
             sub-request gets X-Forwarded-Host/-Proto of the request rather than none; nginx \
             variables other than weir's list are refused",
        ),
    ),
    row("auth-method", Supported),
    row("auth-signin", Supported),
    row("auth-signin-redirect-param", Supported),
    row(
        "auth-response-headers",
        Differs("Host, Content-Length and hop-by-hop headers are never copied (a Diagnostic)"),
    ),
    row("auth-request-redirect", Supported),
    row("auth-cache-key", Supported),
    row(
        "auth-cache-duration",
        Differs("answers with Set-Cookie or Cache-Control: no-store/private are never cached"),
    ),
    row("auth-always-set-cookie", Supported),
    row(
        "auth-proxy-set-headers",
        Differs(
            "a ConfigMap in another namespace is read only with \
             --allow-cross-namespace-resources, and a bare name means the Ingress's namespace; \
             Host, Content-Length and hop-by-hop headers are never set (a Diagnostic)",
        ),
    ),
    row("auth-keepalive", Accepted(AUTH_POOL)),
    row("auth-keepalive-requests", Accepted(AUTH_POOL)),
    row("auth-keepalive-share-vars", Accepted(AUTH_POOL)),
    row("auth-keepalive-timeout", Accepted(AUTH_POOL)),
    row("enable-global-auth", Supported),
    row(
        "auth-tls-secret",
        Differs(
            "plain HTTP to the host is redirected or refused (403), and a request on a TLS \
             connection made for another host gets 421",
        ),
    ),
    row("auth-tls-verify-client", Supported),
    row("auth-tls-verify-depth", Supported),
    row("auth-tls-error-page", Supported),
    row("auth-tls-pass-certificate-to-upstream", Supported),
    row("auth-tls-match-cn", Supported),
    row("limit-rps", Supported),
    row("limit-rpm", Supported),
    row("limit-connections", Supported),
    row("limit-burst-multiplier", Supported),
    row("limit-whitelist", Supported),
    row("limit-allowlist", Supported),
    row("limit-rate", Supported),
    row("limit-rate-after", Supported),
    row("enable-cors", Supported),
    row("cors-allow-origin", Supported),
    row("cors-allow-methods", Supported),
    row("cors-allow-headers", Supported),
    row("cors-expose-headers", Supported),
    row("cors-allow-credentials", Supported),
    row("cors-max-age", Supported),
    row("global-rate-limit", NotYet(SHARED_LIMIT)),
    row("global-rate-limit-window", NotYet(SHARED_LIMIT)),
    row("global-rate-limit-key", NotYet(SHARED_LIMIT)),
    row("global-rate-limit-ignored-cidrs", NotYet(SHARED_LIMIT)),
    // Backends.
    row(
        "backend-protocol",
        Differs("AJP and FCGI are refused (503); H2C is weir's own value: HTTP/2 in cleartext"),
    ),
    row("secure-backends", Supported),
    row(
        "proxy-ssl-verify",
        Differs("applies without proxy-ssl-secret too: then against the system's trust store"),
    ),
    row("proxy-ssl-secret", Supported),
    row(
        "proxy-ssl-name",
        Differs("without it the name verified is the Service's DNS name (service.namespace.svc)"),
    ),
    row("proxy-ssl-server-name", Supported),
    row(
        "proxy-ssl-protocols",
        Differs("TLSv1.2 and TLSv1.3 only; older versions are never offered"),
    ),
    row(
        "proxy-ssl-ciphers",
        Differs("ignored with a Diagnostic: rustls offers only modern AEAD suites"),
    ),
    row("proxy-ssl-verify-depth", Supported),
    row("service-upstream", Supported),
    row(
        "ssl-passthrough",
        Differs(
            "without --enable-ssl-passthrough the Ingress answers 503 (ingress-nginx serves its \
             TLS itself); connections go to the Service's ready endpoints, not its clusterIP; a \
             wildcard host also matches the SNI names it covers; a request for the host on a TLS \
             connection weir terminated gets 421",
        ),
    ),
    row("ssl-ciphers", NotYet(BACKENDS)),
    row("ssl-prefer-server-ciphers", NotYet(BACKENDS)),
    row("fastcgi-index", NotYet(BACKENDS)),
    row("fastcgi-params-configmap", NotYet(BACKENDS)),
    // Traffic management.
    row(
        "canary",
        Differs(
            "a canary splits the route of the same host, path and pathType, not every route \
             to the main Service; the canary's defaultBackend is not used",
        ),
    ),
    row("canary-weight", Supported),
    row(
        "canary-weight-total",
        Differs("a total below 100 is used as given (ingress-nginx uses 100)"),
    ),
    row("canary-by-header", Supported),
    row("canary-by-header-value", Supported),
    row("canary-by-header-pattern", Supported),
    row("canary-by-cookie", Supported),
    row("affinity", Supported),
    row("affinity-mode", Supported),
    row("affinity-canary-behavior", Supported),
    row("session-cookie-name", Supported),
    row(
        "session-cookie-path",
        Differs(
            "an Ingress with regex paths and no session-cookie-path gets Path=/ and a Diagnostic",
        ),
    ),
    row("session-cookie-domain", Supported),
    row("session-cookie-expires", Supported),
    row("session-cookie-max-age", Supported),
    row("session-cookie-samesite", Supported),
    row("session-cookie-conditional-samesite-none", Supported),
    row("session-cookie-secure", Supported),
    row(
        "session-cookie-change-on-failure",
        Differs(
            "without it a retry still goes to another endpoint (ingress-nginx retries the cookie's), keeping the cookie",
        ),
    ),
    row(
        "upstream-hash-by",
        Differs("$binary_remote_addr hashes the address as text; a retry goes to another endpoint"),
    ),
    row("upstream-hash-by-subset", Supported),
    row("upstream-hash-by-subset-size", Supported),
    row(
        "load-balance",
        Differs(
            "ewma also counts requests in flight, takes a slower latency at once (peak EWMA) and counts a failure as 1 s",
        ),
    ),
    row("proxy-next-upstream", Differs(NEXT_UPSTREAM)),
    row("proxy-next-upstream-tries", Differs(NEXT_UPSTREAM_TRIES)),
    row("proxy-next-upstream-timeout", Supported),
    row(
        "custom-http-errors",
        Differs(
            "the page goes out with the original status (ingress-nginx sends the error \
             backend's); when the error backend fails, the original response is sent \
             (ingress-nginx sends its own 502); the error request carries no body; gRPC calls \
             keep their gRPC errors",
        ),
    ),
    row(
        "default-backend",
        Differs(
            "while the route's Service has no endpoints, its requests reach that Service as \
             error-page requests (path /, X-Code 503, no body) rather than as they are",
        ),
    ),
    row(
        "mirror-target",
        Differs(
            "copies never hold up the request or its connection: bodies are copied as they \
             stream (nginx reads them whole first); copies past 256 in flight or 64 KiB of \
             body are dropped and counted",
        ),
    ),
    row("mirror-request-body", Supported),
    row("mirror-host", Supported),
    row("disable-proxy-intercept-errors", NotYet(TRAFFIC)),
    row("session-cookie-partitioned", NotYet(TRAFFIC)),
    // Tracing.
    row("enable-opentelemetry", NotYet(TRACING)),
    row("opentelemetry-trust-incoming-span", NotYet(TRACING)),
    row("opentelemetry-operation-name", NotYet(TRACING)),
    // Never.
    row("configuration-snippet", Never(SNIPPET)),
    row("server-snippet", Never(SNIPPET)),
    row("auth-snippet", Never(SNIPPET)),
    row("stream-snippet", Never(SNIPPET)),
    row("modsecurity-snippet", Never(SNIPPET)),
    row("enable-modsecurity", Never(WAF)),
    row("enable-owasp-core-rules", Never(WAF)),
    row("modsecurity-transaction-id", Never(WAF)),
    // Removed from ingress-nginx itself.
    row(
        "enable-opentracing",
        Removed("replaced by enable-opentelemetry"),
    ),
    row(
        "opentracing-trust-incoming-span",
        Removed("replaced by opentelemetry-trust-incoming-span"),
    ),
    row("enable-influxdb", Removed("dropped with no replacement")),
    row(
        "influxdb-measurement",
        Removed("dropped with no replacement"),
    ),
    row("influxdb-port", Removed("dropped with no replacement")),
    row("influxdb-host", Removed("dropped with no replacement")),
    row(
        "influxdb-server-name",
        Removed("dropped with no replacement"),
    ),
    row(
        "secure-verify-ca-secret",
        Removed("replaced by proxy-ssl-secret"),
    ),
    row(
        "grpc-backend",
        Removed("replaced by backend-protocol: GRPC"),
    ),
    row("add-base-url", Removed("dropped with no replacement")),
    row("base-url-scheme", Removed("dropped with no replacement")),
    row(
        "session-cookie-hash",
        Removed("dropped with the move to Lua balancing"),
    ),
    row(
        "upstream-max-fails",
        Removed("dropped with nginx's passive health checks"),
    ),
    row(
        "upstream-fail-timeout",
        Removed("dropped with nginx's passive health checks"),
    ),
    row("vts-filter-key", Removed("dropped with the VTS module")),
    row("mirror-uri", Removed("replaced by mirror-target")),
];

/// weir's support for the ingress-nginx annotation `name` (without prefix); `None` when
/// ingress-nginx has no such annotation.
pub fn support(name: &str) -> Option<Support> {
    ANNOTATIONS
        .iter()
        .find(|row| row.name == name)
        .map(|row| row.support)
}

/// A sentence saying what weir does with annotation `name` (for Diagnostics and `weir check`).
pub fn explain(name: &str) -> String {
    match support(name) {
        Some(Supported) => "weir supports it".to_owned(),
        Some(Differs(note)) => format!("weir supports it with a difference: {note}"),
        Some(Accepted(note)) => format!("accepted, it has no effect: {note}"),
        Some(NotYet(note)) => format!("weir does not implement it yet ({note})"),
        Some(Never(note)) => format!("weir will never implement it: {note}"),
        Some(Removed(note)) => format!("ingress-nginx itself no longer reads it ({note})"),
        None if name.ends_with("-snippet") || name == "snippet" => {
            format!("weir will never implement it: {SNIPPET}")
        }
        None => "it is not an ingress-nginx annotation weir knows of (check its spelling)".into(),
    }
}

/// The README's compatibility table (Markdown), generated from [`ANNOTATIONS`].
pub fn markdown_table() -> String {
    let mut out = String::from("| annotation | weir | note |\n|---|---|---|\n");
    for row in ANNOTATIONS {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            row.name,
            row.support.label(),
            row.support.note()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's compatibility table is the generated one, between its markers.
    #[test]
    fn the_readme_table_is_this_list() {
        let readme = include_str!("../../../README.md");
        let start =
            "<!-- compatibility table: generated from src/model/annotations/compat.rs -->\n";
        let end = "<!-- end of the compatibility table -->";
        let from = readme
            .find(start)
            .expect("README.md has the table's start marker")
            + start.len();
        let to = readme[from..]
            .find(end)
            .expect("README.md has the table's end marker")
            + from;
        let table = markdown_table();
        assert!(
            readme[from..to] == table,
            "README.md's compatibility table differs from the code's list; replace it with:\n{table}"
        );
    }

    #[test]
    fn every_ingress_nginx_annotation_is_listed_once() {
        let mut names: Vec<&str> = ANNOTATIONS.iter().map(|r| r.name).collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "a name is listed twice");
        assert!(count >= 130, "{count}");
    }
}
