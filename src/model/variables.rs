//! nginx variables in the annotation values ingress-nginx evaluates per request (`auth-url:
//! "https://$host/oauth2/auth"`, `auth-signin: ".../start?rd=$escaped_request_uri"`,
//! `auth-cache-key: "$remote_user$http_authorization"`).
//!
//! An [`Expr`] is parsed once per table into text and known variables; a variable weir does not
//! know is an error at parse time (the annotation is refused), never text that something
//! interprets later. Expansion reads only the request ([`Vars`]) and yields a string; whoever
//! puts it in a URL or a header validates it there.

use std::fmt;
use std::net::IpAddr;

use http::HeaderMap;
use http::header::COOKIE;

use super::access::basic_credentials;

/// One nginx variable weir can expand.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Var {
    /// `$host`: the request's host, lower-case, without port.
    Host,
    /// `$http_host` (and `$best_http_host`): the host and port the request was routed by, as
    /// sent (the `Host` header, or the request target's authority).
    HttpHost,
    /// `$scheme` (and `$pass_access_scheme`): `http` or `https`.
    Scheme,
    /// `$request_uri`: path and query.
    RequestUri,
    /// `$escaped_request_uri`: `$request_uri` percent-encoded as a URL component.
    EscapedRequestUri,
    /// `$uri`: the path.
    Uri,
    /// `$args` (and `$query_string`): the query without `?`.
    Args,
    /// `$is_args`: `?` when there is a query.
    IsArgs,
    /// `$request_method`.
    Method,
    /// `$remote_addr`: the client address (the one access control uses). Also
    /// `$binary_remote_addr`, which nginx writes as 4 or 16 bytes: weir expands it as text,
    /// which identifies the client the same way (what `upstream-hash-by` needs of it).
    RemoteAddr,
    /// `$remote_user`: the user of an `Authorization: Basic` header.
    RemoteUser,
    /// `$http_NAME`: a request header (`_` stands for `-`).
    Header(String),
    /// `$cookie_NAME`: a cookie of the request.
    Cookie(String),
    /// `$arg_NAME`: a query argument.
    Arg(String),
}

impl Var {
    fn named(name: &str) -> Option<Var> {
        let var = match name {
            "host" => Var::Host,
            "http_host" | "best_http_host" => Var::HttpHost,
            "scheme" | "pass_access_scheme" => Var::Scheme,
            "request_uri" => Var::RequestUri,
            "escaped_request_uri" => Var::EscapedRequestUri,
            "uri" | "document_uri" => Var::Uri,
            "args" | "query_string" => Var::Args,
            "is_args" => Var::IsArgs,
            "request_method" => Var::Method,
            "remote_addr" | "binary_remote_addr" => Var::RemoteAddr,
            "remote_user" => Var::RemoteUser,
            _ => {
                let (prefix, rest) = name.split_once('_')?;
                if rest.is_empty() {
                    return None;
                }
                match prefix {
                    "http" => Var::Header(rest.replace('_', "-").to_ascii_lowercase()),
                    "cookie" => Var::Cookie(rest.to_owned()),
                    "arg" => Var::Arg(rest.to_owned()),
                    _ => return None,
                }
            }
        };
        Some(var)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Part {
    Text(String),
    Var(Var),
}

/// Text with nginx variables, parsed once; [`Expr::expand`] fills them in per request.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Expr {
    parts: Vec<Part>,
    source: String,
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.source)
    }
}

/// What is wrong with an [`Expr`]'s text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidExpr(String);

impl Expr {
    /// Parses `$name` and `${name}` references among text; `$` followed by anything else, or
    /// a name weir does not know, is an error.
    pub fn parse(text: &str) -> Result<Expr, InvalidExpr> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            literal.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let (name, len) = if let Some(braced) = after.strip_prefix('{') {
                let end = braced
                    .find('}')
                    .ok_or_else(|| InvalidExpr("a \"${\" has no closing \"}\"".to_owned()))?;
                (&braced[..end], end + 2)
            } else {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            };
            if name.is_empty() {
                return Err(InvalidExpr(
                    "a \"$\" must start an nginx variable such as $host".to_owned(),
                ));
            }
            let var = Var::named(name).ok_or_else(|| {
                InvalidExpr(format!(
                    "weir does not know the nginx variable ${name} (it knows $host, \
                     $http_host, $best_http_host, $scheme, $pass_access_scheme, $request_uri, \
                     $escaped_request_uri, $uri, $args, $is_args, $request_method, \
                     $remote_addr, $binary_remote_addr, $remote_user, $http_NAME, $cookie_NAME \
                     and $arg_NAME)"
                ))
            })?;
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            parts.push(Part::Var(var));
            rest = &after[len..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Expr {
            parts,
            source: text.to_owned(),
        })
    }

    /// The text as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The text with `vars`' values in place of the variables.
    pub fn expand(&self, vars: &Vars<'_>) -> String {
        let mut out = String::with_capacity(self.source.len() + 32);
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Var(var) => vars.push(var, &mut out),
            }
        }
        out
    }

    /// The text with each variable replaced by `placeholder`: what a value looks like, for
    /// checking its shape when the table is built.
    pub fn sample(&self, placeholder: &str) -> String {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Text(text) => text.as_str(),
                Part::Var(_) => placeholder,
            })
            .collect()
    }

    /// Appends `text` (taken literally).
    pub fn push_text(&mut self, text: &str) {
        self.source.push_str(text);
        self.push_text_part(text);
    }

    /// Appends another expression.
    pub fn push_expr(&mut self, other: &Expr) {
        self.source.push_str(&other.source);
        for part in &other.parts {
            match part {
                Part::Text(text) => self.push_text_part(text),
                Part::Var(var) => self.parts.push(Part::Var(var.clone())),
            }
        }
    }

    fn push_text_part(&mut self, text: &str) {
        match self.parts.last_mut() {
            Some(Part::Text(last)) => last.push_str(text),
            _ => self.parts.push(Part::Text(text.to_owned())),
        }
    }
}

/// What variables expand to for one request.
#[derive(Debug, Clone, Copy)]
pub struct Vars<'a> {
    /// `http` or `https`.
    pub scheme: &'a str,
    /// The request's host, normalised (lower-case, no port).
    pub host: &'a str,
    /// The host and port the request was routed by, as the client sent them (`Host`, or the
    /// authority of an absolute target).
    pub http_host: &'a str,
    /// The request's method.
    pub method: &'a str,
    /// The request's path (normalised, as weir forwards it before any `rewrite-target`) and
    /// query.
    pub request_uri: &'a str,
    /// The client address.
    pub remote_addr: IpAddr,
    /// The request headers.
    pub headers: &'a HeaderMap,
}

impl Vars<'_> {
    fn path_and_query(&self) -> (&str, Option<&str>) {
        match self.request_uri.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (self.request_uri, None),
        }
    }

    fn push(&self, var: &Var, out: &mut String) {
        let (path, query) = self.path_and_query();
        match var {
            Var::Host => out.push_str(self.host),
            Var::HttpHost => out.push_str(self.http_host),
            Var::Scheme => out.push_str(self.scheme),
            Var::RequestUri => out.push_str(self.request_uri),
            Var::EscapedRequestUri => escape_component(self.request_uri, out),
            Var::Uri => out.push_str(path),
            Var::Args => out.push_str(query.unwrap_or("")),
            Var::IsArgs => {
                if query.is_some() {
                    out.push('?');
                }
            }
            Var::Method => out.push_str(self.method),
            Var::RemoteAddr => {
                use std::fmt::Write;
                let _ = write!(out, "{}", self.remote_addr);
            }
            Var::RemoteUser => {
                if let Some((user, _)) = basic_credentials(self.headers) {
                    out.push_str(&user);
                }
            }
            Var::Header(name) => {
                let mut values = self.headers.get_all(name.as_str()).iter();
                if let Some(first) = values.next().and_then(|v| v.to_str().ok()) {
                    out.push_str(first);
                    // nginx joins repeated headers it knows to be lists; weir joins all.
                    for more in values.filter_map(|v| v.to_str().ok()) {
                        out.push_str(", ");
                        out.push_str(more);
                    }
                }
            }
            Var::Cookie(name) => {
                if let Some(value) = cookie(self.headers, name) {
                    out.push_str(value);
                }
            }
            Var::Arg(name) => {
                if let Some(value) = query.and_then(|q| argument(q, name)) {
                    out.push_str(value);
                }
            }
        }
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986), as ngx_set_misc's
/// `set_escape_uri` makes `$escaped_request_uri` for ingress-nginx.
pub fn escape_component(text: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
}

/// The value of cookie `name` among the request's `Cookie` headers (the first one, as nginx's
/// `$cookie_NAME`).
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then_some(value)
        })
}

/// The value of query argument `name` (as sent, not decoded; nginx matches names ignoring
/// case).
fn argument<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        key.eq_ignore_ascii_case(name).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn expand(text: &str, headers: &[(&str, &str)]) -> String {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        let vars = Vars {
            scheme: "https",
            host: "app.example.com",
            http_host: headers
                .iter()
                .find(|(name, _)| *name == "host")
                .map_or("app.example.com", |(_, value)| value),
            method: "POST",
            request_uri: "/a b/c?x=1&Next=/home",
            remote_addr: "192.0.2.7".parse().unwrap(),
            headers: &map,
        };
        Expr::parse(text).unwrap().expand(&vars)
    }

    #[test]
    fn variables_expand_from_the_request() {
        /// The text, the request's headers, the expansion.
        type Row<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let table: &[Row<'_>] = &[
            (
                "https://$host/oauth2/auth",
                &[],
                "https://app.example.com/oauth2/auth",
            ),
            (
                "https://auth/start?rd=$escaped_request_uri",
                &[],
                "https://auth/start?rd=%2Fa%20b%2Fc%3Fx%3D1%26Next%3D%2Fhome",
            ),
            (
                "$scheme://$http_host$request_uri",
                &[("host", "App:8443")],
                "https://App:8443/a b/c?x=1&Next=/home",
            ),
            ("${uri}x", &[], "/a b/cx"),
            (
                "$args|$is_args|$arg_next|$arg_none",
                &[],
                "x=1&Next=/home|?|/home|",
            ),
            ("$request_method $remote_addr", &[], "POST 192.0.2.7"),
            ("$binary_remote_addr", &[], "192.0.2.7"),
            (
                "$remote_user$http_authorization",
                &[("authorization", "Basic YWxpY2U6c2VjcmV0")],
                "aliceBasic YWxpY2U6c2VjcmV0",
            ),
            ("$http_x_user", &[("x-user", "a"), ("x-user", "b")], "a, b"),
            (
                "$cookie_session.",
                &[("cookie", "a=1; session=s3"), ("cookie", "b=2")],
                "s3.",
            ),
            ("$cookie_missing$http_missing", &[], ""),
            ("no variables", &[], "no variables"),
        ];
        for (text, headers, expected) in table {
            assert_eq!(expand(text, headers), *expected, "{text}");
        }
    }

    #[test]
    fn unknown_variables_and_stray_dollars_are_errors() {
        for bad in [
            "$", "a$", "${host", "$unknown", "${}", "$http_", "$ host", "$1",
        ] {
            assert!(Expr::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn appending_keeps_text_and_variables() {
        let mut expr = Expr::parse("https://a/start").unwrap();
        expr.push_text("?rd=");
        expr.push_expr(&Expr::parse("$scheme://$host").unwrap());
        assert_eq!(expr.source(), "https://a/start?rd=$scheme://$host");
        assert_eq!(
            expand(expr.source(), &[]),
            "https://a/start?rd=https://app.example.com"
        );
        assert_eq!(expr.sample("x"), "https://a/start?rd=x://x");
    }

    proptest! {
        /// Parsing never panics, and what parses expands to the text without its
        /// variables when every variable is empty-valued or to exactly the text when it
        /// has none.
        #[test]
        fn parse_is_total(text in "[a-z$/{}_:?=&%.]{0,40}") {
            if let Ok(expr) = Expr::parse(&text) {
                if !text.contains('$') {
                    prop_assert_eq!(expand(&text, &[]), text.clone());
                }
                prop_assert_eq!(expr.source(), text.as_str());
            }
        }

        /// The escaped form holds only unreserved characters and escapes, and decodes back.
        #[test]
        fn escaping_round_trips(text in "\\PC{0,40}") {
            let mut out = String::new();
            escape_component(&text, &mut out);
            prop_assert!(out.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)));
            let mut decoded = Vec::new();
            let bytes = out.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%' {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    decoded.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 3;
                } else {
                    decoded.push(bytes[i]);
                    i += 1;
                }
            }
            prop_assert_eq!(decoded, text.as_bytes());
        }
    }
}
