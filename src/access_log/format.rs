//! Access log lines: `text` (ingress-nginx's default upstream log format, with the host and the
//! Ingress appended, so existing parsers keep working) or `json` (one object per line).

use std::borrow::Cow;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Version};
use serde::Serialize;

use super::Entry;
use crate::model::Backend;

/// The format of log lines (`--log-format`), for the access log and for weir's own logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Formats entries; keeps the last formatted second of the text format.
pub(super) struct Formatter {
    format: LogFormat,
    second: Option<(u64, String)>,
}

impl Formatter {
    pub(super) fn new(format: LogFormat) -> Self {
        Formatter {
            format,
            second: None,
        }
    }

    /// Appends the line of `entry` (with its newline) to `buf`.
    pub(super) fn write(&mut self, buf: &mut Vec<u8>, entry: &Entry) {
        match self.format {
            LogFormat::Text => self.text(buf, entry),
            LogFormat::Json => json(buf, entry),
        }
    }

    /// `$remote_addr - - [$time_local] "$request" $status $body_bytes_sent "$http_referer"
    /// "$http_user_agent" $request_length $request_time [$proxy_upstream_name] [] $upstream_addr
    /// $upstream_response_length $upstream_response_time $upstream_status $req_id`, then the
    /// host and `namespace/ingress`. Missing values are `-`; quoted values escape `"`, `\` and
    /// non-printable bytes as `\xHH`, so a client cannot forge a line.
    fn text(&mut self, buf: &mut Vec<u8>, e: &Entry) {
        let time = self.local_time(e.time);
        let _ = write!(buf, "{} - - [{time}] \"{} ", client_ip(e.client), e.method);
        escape(buf, path_and_query(e).as_bytes());
        let _ = write!(
            buf,
            " {}\" {} {} \"",
            protocol(e.version),
            e.status.as_u16(),
            e.body_bytes_out
        );
        escape_header(buf, e.referer.as_ref());
        buf.extend_from_slice(b"\" \"");
        escape_header(buf, e.user_agent.as_ref());
        let _ = write!(buf, "\" {} {:.3} [", e.bytes_in, e.duration.as_secs_f64());
        match &e.route {
            Some(route) => escape_upstream_name(buf, &route.backend),
            None => buf.push(b'-'),
        }
        buf.extend_from_slice(b"] [");
        if let Some(canary) = &e.canary {
            escape_upstream_name(buf, &canary.backend);
        }
        buf.extend_from_slice(b"] ");
        match e.upstream {
            Some(upstream) => {
                for tried in &e.upstream_tried {
                    let _ = write!(buf, "{tried}, ");
                }
                let _ = write!(buf, "{upstream} {} ", e.body_bytes_out);
            }
            None => buf.extend_from_slice(b"- - "),
        }
        match e.upstream_time {
            Some(time) => {
                let _ = write!(buf, "{:.3} ", time.as_secs_f64());
            }
            None => buf.extend_from_slice(b"- "),
        }
        match e.upstream_status {
            Some(status) => {
                let _ = write!(buf, "{} ", status.as_u16());
            }
            None => buf.extend_from_slice(b"- "),
        }
        escape_field(buf, e.request_id.as_ref());
        buf.push(b' ');
        escape_field(buf, e.host.as_ref());
        buf.push(b' ');
        match &e.route {
            Some(route) => {
                escape(buf, route.ingress.namespace.as_bytes());
                buf.push(b'/');
                escape(buf, route.ingress_name().as_bytes());
            }
            None => buf.push(b'-'),
        }
        buf.push(b'\n');
    }

    /// `24/Nov/2026:14:30:00 +0000`, formatted once per second.
    fn local_time(&mut self, time: SystemTime) -> &str {
        let secs = unix_seconds(time);
        if self.second.as_ref().is_none_or(|(s, _)| *s != secs) {
            let formatted = timestamp(time)
                .strftime("%d/%b/%Y:%H:%M:%S +0000")
                .to_string();
            self.second = Some((secs, formatted));
        }
        self.second.as_ref().map_or("-", |(_, s)| s.as_str())
    }
}

#[derive(Serialize)]
struct JsonLine<'a> {
    time: String,
    client: String,
    client_port: u16,
    method: &'a str,
    host: Option<Cow<'a, str>>,
    path: &'a str,
    query: Option<&'a str>,
    protocol: &'static str,
    status: u16,
    bytes_in: u64,
    bytes_out: u64,
    body_bytes_out: u64,
    duration: f64,
    upstream: Option<String>,
    upstream_status: Option<u16>,
    upstream_time: Option<f64>,
    namespace: Option<&'a str>,
    ingress: Option<&'a str>,
    service: Option<&'a str>,
    service_port: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alternative_upstream: Option<String>,
    request_id: Option<Cow<'a, str>>,
    user_agent: Option<Cow<'a, str>>,
    referer: Option<Cow<'a, str>>,
}

fn json(buf: &mut Vec<u8>, e: &Entry) {
    let line = JsonLine {
        time: timestamp(e.time)
            .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string(),
        client: client_ip(e.client),
        client_port: e.client.port(),
        method: e.method.as_str(),
        host: header(&e.host),
        path: e.uri.path(),
        query: e.uri.query(),
        protocol: protocol(e.version),
        status: e.status.as_u16(),
        bytes_in: e.bytes_in,
        bytes_out: e.bytes_out,
        body_bytes_out: e.body_bytes_out,
        duration: seconds(e.duration),
        upstream: e.upstream.map(|last| {
            let mut all = Vec::new();
            for tried in &e.upstream_tried {
                let _ = write!(all, "{tried}, ");
            }
            let _ = write!(all, "{last}");
            String::from_utf8(all).unwrap_or_default()
        }),
        upstream_status: e.upstream_status.map(|s| s.as_u16()),
        upstream_time: e.upstream_time.map(seconds),
        namespace: e.route.as_ref().map(|r| r.ingress.namespace.as_str()),
        ingress: e.route.as_ref().map(|r| r.ingress_name()),
        service: e.route.as_ref().map(|r| r.backend.service.name.as_str()),
        service_port: e.route.as_ref().map(|r| r.backend.port.as_str()),
        alternative_upstream: e.canary.as_ref().map(|c| upstream_name(&c.backend)),
        request_id: header(&e.request_id),
        user_agent: header(&e.user_agent),
        referer: header(&e.referer),
    };
    if serde_json::to_writer(&mut *buf, &line).is_ok() {
        buf.push(b'\n');
    }
}

/// ingress-nginx's name of a backend: `namespace-service-port`.
fn upstream_name(backend: &Backend) -> String {
    let service = &backend.service;
    format!("{}-{}-{}", service.namespace, service.name, backend.port)
}

/// [`upstream_name`], escaped into `buf`.
fn escape_upstream_name(buf: &mut Vec<u8>, backend: &Backend) {
    let service = &backend.service;
    escape(buf, service.namespace.as_bytes());
    buf.push(b'-');
    escape(buf, service.name.as_bytes());
    buf.push(b'-');
    escape(buf, backend.port.as_bytes());
}

fn header(value: &Option<HeaderValue>) -> Option<Cow<'_, str>> {
    value
        .as_ref()
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
}

/// Seconds with microseconds.
fn seconds(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1e6
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn timestamp(time: SystemTime) -> jiff::Timestamp {
    jiff::Timestamp::try_from(time).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// The client's IP (IPv4-mapped IPv6 as IPv4).
fn client_ip(client: SocketAddr) -> String {
    match client.ip() {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or_else(|| v6.to_string(), |v4| v4.to_string()),
        v4 => v4.to_string(),
    }
}

fn path_and_query(e: &Entry) -> &str {
    e.uri.path_and_query().map_or("/", |p| p.as_str())
}

fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "-",
    }
}

/// A header value between quotes (`-` when absent).
fn escape_header(buf: &mut Vec<u8>, value: Option<&HeaderValue>) {
    match value {
        Some(value) if !value.is_empty() => escape(buf, value.as_bytes()),
        _ => buf.push(b'-'),
    }
}

/// A header value as a field of its own, without quotes: spaces are escaped too, so that it
/// stays one field (a Host of `a b/c` must not add a column).
fn escape_field(buf: &mut Vec<u8>, value: Option<&HeaderValue>) {
    match value {
        Some(value) if !value.is_empty() => {
            for part in value.as_bytes().split(|&b| b == b' ').enumerate() {
                if part.0 > 0 {
                    buf.extend_from_slice(b"\\x20");
                }
                escape(buf, part.1);
            }
        }
        _ => buf.push(b'-'),
    }
}

/// Copies `bytes`, writing `"`, `\` and bytes outside printable ASCII as `\xHH`.
fn escape(buf: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(buf, "\\x{b:02X}");
        } else {
            buf.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_route;
    use http::{Method, StatusCode};

    fn entry() -> Entry {
        let route = test_route("shop", "web", "cart", "http");
        Entry {
            // 2026-11-24T14:30:05.250Z
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_530_605_250),
            client: "[::ffff:10.0.0.7]:51000".parse().unwrap(),
            method: Method::POST,
            uri: "/cart/add?item=3".parse().unwrap(),
            version: Version::HTTP_11,
            host: Some(HeaderValue::from_static("shop.example.com")),
            status: StatusCode::CREATED,
            bytes_in: 210,
            bytes_out: 180,
            body_bytes_out: 42,
            duration: Duration::from_micros(3_456),
            upstream: Some("10.1.2.3:8080".parse().unwrap()),
            upstream_tried: Vec::new(),
            upstream_status: Some(StatusCode::CREATED),
            upstream_time: Some(Duration::from_micros(2_900)),
            route: Some(route),
            canary: None,
            request_id: Some(HeaderValue::from_static("abc123")),
            user_agent: Some(HeaderValue::from_static("curl/8.5 \"quoted\"")),
            referer: None,
        }
    }

    fn line(format: LogFormat, entry: &Entry) -> String {
        let mut buf = Vec::new();
        Formatter::new(format).write(&mut buf, entry);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn text_lines_follow_the_ingress_nginx_format() {
        assert_eq!(
            line(LogFormat::Text, &entry()),
            "10.0.0.7 - - [24/Nov/2026:14:30:05 +0000] \"POST /cart/add?item=3 HTTP/1.1\" 201 42 \"-\" \
             \"curl/8.5 \\x22quoted\\x22\" 210 0.003 [shop-cart-http] [] 10.1.2.3:8080 42 0.003 201 \
             abc123 shop.example.com shop/web\n"
        );
    }

    #[test]
    fn text_lines_without_a_route_or_upstream_use_dashes() {
        let mut e = entry();
        e.route = None;
        e.upstream = None;
        e.upstream_status = None;
        e.upstream_time = None;
        e.request_id = None;
        e.status = StatusCode::NOT_FOUND;
        let text = line(LogFormat::Text, &e);
        assert!(
            text.ends_with(" 210 0.003 [-] [] - - - - - shop.example.com -\n"),
            "{text}"
        );
    }

    #[test]
    fn the_upstream_lists_every_endpoint_tried_like_upstream_addr() {
        let mut e = entry();
        e.upstream_tried = vec![
            "10.1.2.1:8080".parse().unwrap(),
            "[fd00::2]:8080".parse().unwrap(),
        ];
        let text = line(LogFormat::Text, &e);
        assert!(
            text.contains(" [] 10.1.2.1:8080, [fd00::2]:8080, 10.1.2.3:8080 42 "),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&line(LogFormat::Json, &e)).unwrap();
        assert_eq!(
            v["upstream"],
            "10.1.2.1:8080, [fd00::2]:8080, 10.1.2.3:8080"
        );
    }

    #[test]
    fn json_lines_carry_every_field() {
        let text = line(LogFormat::Json, &entry());
        assert!(text.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["time"], "2026-11-24T14:30:05.250Z");
        assert_eq!(v["client"], "10.0.0.7");
        assert_eq!(v["client_port"], 51000);
        assert_eq!(v["method"], "POST");
        assert_eq!(v["host"], "shop.example.com");
        assert_eq!(v["path"], "/cart/add");
        assert_eq!(v["query"], "item=3");
        assert_eq!(v["status"], 201);
        assert_eq!(v["bytes_in"], 210);
        assert_eq!(v["bytes_out"], 180);
        assert_eq!(v["duration"], 0.003456);
        assert_eq!(v["upstream"], "10.1.2.3:8080");
        assert_eq!(v["upstream_time"], 0.0029);
        assert_eq!(v["namespace"], "shop");
        assert_eq!(v["ingress"], "web");
        assert_eq!(v["service"], "cart");
        assert_eq!(v["service_port"], "http");
        assert_eq!(v["request_id"], "abc123");
        assert_eq!(v["user_agent"], "curl/8.5 \"quoted\"");
        assert_eq!(v["referer"], serde_json::Value::Null);
    }

    #[test]
    fn a_host_with_spaces_stays_one_field() {
        let mut e = entry();
        e.host = Some(HeaderValue::from_static("x.example victim/ingress"));
        let text = line(LogFormat::Text, &e);
        assert!(
            text.ends_with(" abc123 x.example\\x20victim/ingress shop/web\n"),
            "{text}"
        );
    }

    #[test]
    fn control_bytes_cannot_break_a_text_line() {
        let mut e = entry();
        e.user_agent = Some(HeaderValue::from_bytes(b"evil\t\xff\\").unwrap());
        let text = line(LogFormat::Text, &e);
        assert!(text.contains("\"evil\\x09\\xFF\\x5C\""), "{text}");
        assert_eq!(text.matches('\n').count(), 1);
    }
}
