//! Metrics, access logs and logs, read the way an operator reads them: the real `weir` binary
//! in `--manifests` mode, real requests, `/metrics` scraped over HTTP (and checked with
//! `promtool check metrics`), the access log read from its standard output.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, StatusCode};
use http_body_util::Full;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use common::manifests::{ingress_yaml, ingress_yaml_with, service_yaml, write};
use common::metrics::{Sample, parse, scrape, series, total, value};
use common::process::WeirProcess;
use common::ws::{WsBackend, WsProxy, ws_connect, ws_table};
use common::*;

const LIMIT: Duration = Duration::from_secs(10);

/// Scrapes until `ready` holds for the samples (requests are counted when their response
/// ends, which can trail the client reading it).
async fn scrape_until(
    weir: &WeirProcess,
    what: &str,
    ready: impl Fn(&[Sample]) -> bool,
) -> Vec<Sample> {
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let samples = parse(&scrape(weir).await);
        if ready(&samples) {
            return samples;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "metrics never showed {what}:\n{}",
            scrape(weir).await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `promtool check metrics` on `text` (promtool comes with the Debian package `prometheus`,
/// which `scripts/test.sh` installs): no problem but those `allowed` (exact lines).
fn promtool_check(text: &str, allowed: &[&str]) {
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package `prometheus`; scripts/test.sh installs it)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let problems: Vec<&str> = said
        .lines()
        .filter(|l| !l.trim().is_empty() && !allowed.contains(l))
        .collect();
    assert!(
        problems.is_empty() && (out.status.success() || !allowed.is_empty()),
        "promtool check metrics: {problems:?}\n{said}"
    );
}

/// weir serving `web.local/app` → Service `web` (`backend`) and `none.local/` → Service
/// `empty` (no endpoints), with `extra` flags and `env`.
async fn start(
    backend: &TestBackend,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (tempfile::TempDir, WeirProcess) {
    let dir = tempfile::tempdir().unwrap();
    write_site(dir.path(), backend.addr);
    let mut args = vec!["--manifests", dir.path().to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut with_env = vec![("RUST_LOG", "info")];
    with_env.extend_from_slice(env);
    let weir = WeirProcess::spawn_with_env(&args, &with_env);
    weir.until_ready().await;
    (dir, weir)
}

fn write_site(dir: &Path, backend: SocketAddr) {
    write(dir, "web.yaml", &service_yaml("web", &[backend]));
    write(dir, "empty.yaml", &service_yaml("empty", &[]));
    write(
        dir,
        "app.yaml",
        &ingress_yaml("app", "web.local", "/app", "web"),
    );
    write(
        dir,
        "none.yaml",
        &ingress_yaml("none", "none.local", "/", "empty"),
    );
}

async fn post(weir: &WeirProcess, host: &str, path: &str, body: Vec<u8>) -> Answer {
    let request = Request::post(format!("http://{}{path}", weir.http))
        .header("host", host)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    send(&http1_client(), request).await
}

#[tokio::test]
async fn requests_are_counted_by_route_method_and_status_in_the_right_buckets() {
    let backend = TestBackend::start("web").await;
    let (_dir, weir) = start(&backend, &[], &[]).await;
    let client = http1_client();
    for _ in 0..3 {
        assert_eq!(
            get(&client, weir.http, "web.local", "/app/x").await.status,
            200
        );
    }
    assert_eq!(
        post(&weir, "web.local", "/app/upload", vec![b'u'; 2000])
            .await
            .status,
        200
    );
    // 300 ms at the endpoint: the 0.5 s bucket, not the 0.25 s one.
    let slow = get(&client, weir.http, "web.local", "/app/slow?ms=300").await;
    assert_eq!(slow.status, 200);
    assert_eq!(
        get(&client, weir.http, "nowhere.local", "/").await.status,
        404
    );
    assert_eq!(
        get(&client, weir.http, "nowhere.local", "/x").await.status,
        404
    );
    assert_eq!(get(&client, weir.http, "none.local", "/").await.status, 503);

    let app = [
        ("namespace", "default"),
        ("ingress", "app"),
        ("service", "web"),
    ];
    let get_200 = [app.as_slice(), &[("method", "GET"), ("status", "200")]].concat();
    let samples = scrape_until(&weir, "8 requests", |s| {
        total(s, "weir_requests_total") == 8.0
    })
    .await;
    assert_eq!(value(&samples, "weir_requests_total", &get_200), 4.0);
    let post_200 = [app.as_slice(), &[("method", "POST"), ("status", "200")]].concat();
    assert_eq!(value(&samples, "weir_requests_total", &post_200), 1.0);
    let unrouted = [
        ("namespace", ""),
        ("ingress", ""),
        ("service", ""),
        ("method", "GET"),
        ("status", "404"),
    ];
    assert_eq!(value(&samples, "weir_requests_total", &unrouted), 2.0);
    let unavailable = [("ingress", "none"), ("service", "empty"), ("status", "503")];
    assert_eq!(value(&samples, "weir_requests_total", &unavailable), 1.0);

    // Durations: the slow request is the only GET above 0.25 s, and it is under 0.5 s.
    let bucket = |name: &str, le: &str| {
        let labels = [get_200.as_slice(), &[("le", le)]].concat();
        value(&samples, name, &labels)
    };
    assert_eq!(bucket("weir_request_duration_seconds_bucket", "0.25"), 3.0);
    assert_eq!(bucket("weir_request_duration_seconds_bucket", "0.5"), 4.0);
    assert_eq!(
        bucket("weir_upstream_response_duration_seconds_bucket", "0.25"),
        3.0
    );
    assert_eq!(
        bucket("weir_upstream_response_duration_seconds_bucket", "0.5"),
        4.0
    );
    assert_eq!(
        bucket("weir_upstream_header_duration_seconds_bucket", "0.5"),
        4.0
    );
    let header_count = [get_200.as_slice()].concat();
    assert_eq!(
        value(
            &samples,
            "weir_upstream_header_duration_seconds_count",
            &header_count
        ),
        4.0
    );
    // No endpoint answered the 503: no upstream time.
    assert_eq!(
        value(
            &samples,
            "weir_upstream_response_duration_seconds_count",
            &unavailable
        ),
        0.0
    );
    // The 2000-byte upload is between 1 KiB and 4 KiB with its head.
    let post_bucket = |le: &str| {
        let labels = [post_200.as_slice(), &[("le", le)]].concat();
        value(&samples, "weir_request_size_bytes_bucket", &labels)
    };
    assert_eq!(post_bucket("1024"), 0.0);
    assert_eq!(post_bucket("4096"), 1.0);
    let sum = value(&samples, "weir_request_size_bytes_sum", &post_200);
    assert!((2000.0..2400.0).contains(&sum), "request size {sum}");

    // The rest of what an operator looks at.
    assert_eq!(value(&samples, "weir_table_routes", &[]), 2.0);
    assert_eq!(value(&samples, "weir_table_backends", &[]), 2.0);
    assert_eq!(
        value(&samples, "weir_table_backends_without_endpoints", &[]),
        1.0
    );
    assert_eq!(value(&samples, "weir_table_ingresses", &[]), 2.0);
    assert_eq!(value(&samples, "weir_table_generation", &[]), 1.0);
    assert_eq!(
        value(
            &samples,
            "weir_table_rebuilds_total",
            &[("result", "success")]
        ),
        1.0
    );
    assert_eq!(
        value(&samples, "weir_table_last_rebuild_successful", &[]),
        1.0
    );
    // One keep-alive connection of `client`, one of the POST's own client.
    assert_eq!(
        value(
            &samples,
            "weir_client_connections_total",
            &[("listener", "http")]
        ),
        2.0
    );
    assert!(value(&samples, "process_resident_memory_bytes", &[]) > 1e6);
    assert_eq!(value(&samples, "weir_build_info", &[]), 1.0);
    promtool_check(&scrape(&weir).await, &[]);
}

#[tokio::test]
async fn diagnostics_and_upstream_errors_are_counted_by_reason() {
    let backend = TestBackend::start("web").await;
    let dead = refusing_addr();
    let (dir, weir) = start(&backend, &[], &[]).await;
    write(dir.path(), "dead.yaml", &service_yaml("dead", &[dead]));
    write(
        dir.path(),
        "down.yaml",
        &ingress_yaml("down", "down.local", "/", "dead"),
    );
    write(
        dir.path(),
        "lost.yaml",
        &ingress_yaml("lost", "lost.local", "/", "missing"),
    );
    scrape_until(&weir, "the third table", |s| {
        value(s, "weir_table_generation", &[]) >= 2.0
            && value(s, "weir_table_ingresses", &[]) == 4.0
    })
    .await;
    let answer = get(&http1_client(), weir.http, "down.local", "/").await;
    assert_eq!(answer.status, 502);
    let samples = scrape_until(&weir, "the 502", |s| total(s, "weir_requests_total") == 1.0).await;
    assert_eq!(
        value(
            &samples,
            "weir_upstream_errors_total",
            &[
                ("namespace", "default"),
                ("service", "dead"),
                ("reason", "connect_refused")
            ]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "weir_diagnostics",
            &[("reason", "ServiceNotFound")]
        ),
        1.0
    );
}

#[tokio::test]
async fn ingress_nginx_names_mirror_requests_and_certificates() {
    let backend = TestBackend::start("web").await;
    let dir = tempfile::tempdir().unwrap();
    write_site(dir.path(), backend.addr);
    // A certificate that expires at 2031-05-17T00:00:00Z for secure.local.
    let mut params = rcgen::CertificateParams::new(vec!["secure.local".to_owned()]).unwrap();
    params.not_after = rcgen::date_time_ymd(2031, 5, 17);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: secure-cert, namespace: default}}\n\
         type: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}\n  tls.key: |\n{}\n",
        indent(&cert.pem()),
        indent(&key.serialize_pem())
    );
    write(dir.path(), "secret.yaml", &secret);
    let tls_ingress = ingress_yaml("secure", "secure.local", "/", "web").replace(
        "spec:\n",
        "spec:\n  tls:\n  - hosts: [secure.local]\n    secretName: secure-cert\n",
    );
    write(dir.path(), "secure.yaml", &tls_ingress);
    let weir = WeirProcess::spawn_with_env(
        &[
            "--manifests",
            dir.path().to_str().unwrap(),
            "--metrics-compat",
            "ingress-nginx",
            "--metrics-per-host",
        ],
        &[
            ("RUST_LOG", "info"),
            ("POD_NAME", "weir-7d9f"),
            ("POD_NAMESPACE", "ingress"),
        ],
    );
    weir.until_ready().await;
    let client = http1_client();
    for _ in 0..2 {
        assert_eq!(
            get(&client, weir.http, "web.local", "/app").await.status,
            200
        );
    }
    // One TLS handshake that works and one that is not TLS at all.
    let (mut tls, _) = common::tls::handshake(weir.https, "secure.local", &[b"h2"]).await;
    tls.shutdown().await.unwrap();
    let mut garbage = TcpStream::connect(weir.https).await.unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();

    let samples = scrape_until(&weir, "2 requests and 2 handshakes", |s| {
        total(s, "weir_requests_total") == 2.0
            && total(s, "weir_tls_handshakes_total") == 1.0
            && total(s, "weir_tls_handshake_errors_total") == 1.0
    })
    .await;
    let controller = [
        ("controller_class", "weir.dev/ingress-controller"),
        ("controller_namespace", "ingress"),
        ("controller_pod", "weir-7d9f"),
    ];
    let route = [
        ("namespace", "default"),
        ("ingress", "app"),
        ("service", "web"),
        ("host", "web.local"),
        ("method", "GET"),
        ("status", "200"),
    ];
    let nginx = [controller.as_slice(), &route].concat();
    assert_eq!(
        value(&samples, "nginx_ingress_controller_requests", &nginx),
        2.0
    );
    assert_eq!(value(&samples, "weir_requests_total", &route), 2.0);
    for histogram in [
        "nginx_ingress_controller_request_duration_seconds_count",
        "nginx_ingress_controller_response_duration_seconds_count",
        "nginx_ingress_controller_header_duration_seconds_count",
        "nginx_ingress_controller_request_size_count",
        "nginx_ingress_controller_response_size_count",
    ] {
        assert_eq!(value(&samples, histogram, &nginx), 2.0, "{histogram}");
    }
    let expiry = 1_936_742_400.0;
    assert_eq!(
        value(
            &samples,
            "weir_ssl_certificate_expire_time_seconds",
            &[
                ("namespace", "default"),
                ("secret", "secure-cert"),
                ("host", "secure.local")
            ]
        ),
        expiry
    );
    let nginx_expiry = [
        controller.as_slice(),
        &[("secret_name", "secure-cert"), ("host", "secure.local")],
    ]
    .concat();
    assert_eq!(
        value(
            &samples,
            "nginx_ingress_controller_ssl_expire_time_seconds",
            &nginx_expiry
        ),
        expiry
    );
    assert_eq!(
        value(
            &samples,
            "weir_tls_handshakes_total",
            &[("version", "TLSv1_3"), ("alpn", "h2")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "weir_tls_handshake_errors_total",
            &[("reason", "protocol")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "nginx_ingress_controller_config_last_reload_successful",
            &controller
        ),
        1.0
    );
    // ingress-nginx's own name breaks the counter naming convention; dashboards expect it.
    promtool_check(
        &scrape(&weir).await,
        &[r#"nginx_ingress_controller_requests counter metrics should have "_total" suffix"#],
    );
}

fn indent(pem: &str) -> String {
    pem.lines()
        .map(|l| format!("    {l}\n"))
        .collect::<String>()
        .trim_end()
        .to_owned()
}

#[tokio::test]
async fn ten_thousand_request_paths_add_no_series() {
    let backend = TestBackend::start("web").await;
    let (_dir, weir) = start(&backend, &[], &[]).await;
    let client = http1_client();
    let before = parse(&scrape(&weir).await).len();
    for i in 0..10_000 {
        let answer = get(&client, weir.http, "web.local", &format!("/app/item/{i}")).await;
        assert_eq!(answer.status, 200);
    }
    for i in 0..100 {
        let answer = get(&client, weir.http, &format!("host-{i}.example"), "/").await;
        assert_eq!(answer.status, 404);
    }
    let samples = scrape_until(&weir, "10,100 requests", |s| {
        total(s, "weir_requests_total") == 10_100.0
    })
    .await;
    assert_eq!(series(&samples, "weir_requests_total"), 2);
    // Two label sets of 5 histograms (each: 10 to 12 buckets, +Inf, sum, count) and one
    // counter more than before; process metrics may come and go by a few.
    let added = samples.len().abs_diff(before);
    assert!(added < 200, "{added} new series");
    assert!(!scrape(&weir).await.contains("/app/item"));
}

#[tokio::test]
async fn per_host_and_per_path_labels_name_the_rule_not_the_request() {
    let backend = TestBackend::start("web").await;
    let (_dir, weir) = start(
        &backend,
        &[
            "--metrics-per-host",
            "--metrics-per-path",
            "--metrics-status-classes",
        ],
        &[],
    )
    .await;
    let client = http1_client();
    for i in 0..50 {
        let answer = get(&client, weir.http, "WEB.local", &format!("/app/{i}")).await;
        assert_eq!(answer.status, 200);
    }
    let samples = scrape_until(&weir, "50 requests", |s| {
        total(s, "weir_requests_total") == 50.0
    })
    .await;
    assert_eq!(series(&samples, "weir_requests_total"), 1);
    let labels = [
        ("host", "web.local"),
        ("path", "/app"),
        ("status", "2xx"),
        ("method", "GET"),
    ];
    assert_eq!(value(&samples, "weir_requests_total", &labels), 50.0);
}

#[tokio::test]
async fn the_access_log_has_a_text_line_per_request_with_every_field() {
    let backend = TestBackend::start("web").await;
    let (_dir, weir) = start(&backend, &[], &[]).await;
    let request = Request::get(format!("http://{}/app/page?q=1", weir.http))
        .header("host", "web.local")
        .header("user-agent", "probe/1.0 \"quoted\"")
        .header("referer", "https://example.com/")
        .header("x-request-id", "req-42")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = send(&http1_client(), request).await;
    assert_eq!(answer.status, 200);
    let body_len = answer.body.len();
    assert_eq!(
        get(&http1_client(), weir.http, "nowhere.local", "/")
            .await
            .status,
        404
    );

    let lines = weir
        .wait_for_access_lines(2, LIMIT, |l| {
            l.contains("/app/page") || l.contains("nowhere")
        })
        .await;
    let line = &lines[0];
    let expected_start = format!(
        "127.0.0.1 - - [{}",
        jiff::Timestamp::now().strftime("%d/%b/%Y:")
    );
    assert!(line.starts_with(&expected_start), "{line}");
    let rest = line.split_once("] ").unwrap().1;
    let fields: Vec<&str> = rest.split(' ').collect();
    assert_eq!(
        &fields[..3],
        ["\"GET", "/app/page?q=1", "HTTP/1.1\""],
        "{line}"
    );
    assert_eq!(fields[3], "200");
    assert_eq!(fields[4], body_len.to_string(), "body bytes: {line}");
    assert!(
        rest.contains("\"https://example.com/\" \"probe/1.0 \\x22quoted\\x22\""),
        "{line}"
    );
    let tail: Vec<&str> = line.rsplitn(12, ' ').collect();
    // … [proxy_upstream_name] [] upstream_addr length time status req_id host ns/ingress
    assert_eq!(tail[0], "default/app", "{line}");
    assert_eq!(tail[1], "web.local");
    assert_eq!(tail[2], "req-42");
    assert_eq!(tail[3], "200");
    assert!(tail[4].parse::<f64>().unwrap() < 5.0);
    assert_eq!(tail[5], body_len.to_string());
    assert_eq!(tail[6], backend.addr.to_string());
    assert_eq!(tail[7], "[]");
    assert_eq!(tail[8], "[default-web-http]");
    assert!(tail[9].parse::<f64>().unwrap() >= tail[4].parse::<f64>().unwrap());
    let bytes_in: u64 = tail[10].parse().unwrap();
    assert!(
        (100..400).contains(&bytes_in),
        "request length {bytes_in}: {line}"
    );

    let missed = &lines[1];
    assert!(missed.contains("\"GET / HTTP/1.1\" 404 "), "{missed}");
    assert!(
        missed.ends_with(" [-] [] - - - - - nowhere.local -"),
        "{missed}"
    );
}

#[tokio::test]
async fn json_logs_carry_every_field_and_weirs_own_logs_are_json_too() {
    let backend = TestBackend::start("web").await;
    let (_dir, weir) = start(&backend, &["--log-format", "json"], &[]).await;
    assert_eq!(
        post(&weir, "web.local", "/app/form", b"a=1&b=2".to_vec())
            .await
            .status,
        200
    );
    let lines = weir
        .wait_for_access_lines(1, LIMIT, |l| l.contains("/app/form"))
        .await;
    let entry: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(entry["method"], "POST");
    assert_eq!(entry["host"], "web.local");
    assert_eq!(entry["path"], "/app/form");
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["client"], "127.0.0.1");
    assert_eq!(entry["namespace"], "default");
    assert_eq!(entry["ingress"], "app");
    assert_eq!(entry["service"], "web");
    assert_eq!(entry["service_port"], "http");
    assert_eq!(entry["upstream"], backend.addr.to_string());
    assert_eq!(entry["upstream_status"], 200);
    assert_eq!(entry["protocol"], "HTTP/1.1");
    assert_eq!(entry["request_id"].as_str().unwrap().len(), 32);
    assert!(
        entry["bytes_in"].as_u64().unwrap() > 7,
        "the body counts: {entry}"
    );
    assert!(entry["duration"].as_f64().unwrap() >= entry["upstream_time"].as_f64().unwrap());
    for line in weir.log().lines() {
        let own: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            own["level"].is_string() && own["fields"].is_object(),
            "{line}"
        );
    }
}

#[tokio::test]
async fn with_the_access_log_off_nothing_is_written() {
    let backend = TestBackend::start("web").await;
    let (_dir, mut weir) = start(
        &backend,
        &["--access-log", "off", "--shutdown-delay", "0s"],
        &[],
    )
    .await;
    assert_eq!(
        get(&http1_client(), weir.http, "web.local", "/app")
            .await
            .status,
        200
    );
    scrape_until(&weir, "the request", |s| {
        total(s, "weir_requests_total") == 1.0
    })
    .await;
    weir.sigterm();
    assert!(weir.wait_exit(LIMIT).await.success());
    assert_eq!(weir.access_log(), "");
}

#[tokio::test]
async fn an_ingress_with_enable_access_log_false_is_not_logged() {
    let backend = TestBackend::start("web").await;
    let (dir, weir) = start(&backend, &[], &[]).await;
    write(
        dir.path(),
        "quiet.yaml",
        &ingress_yaml_with(
            "quiet",
            "quiet.local",
            "/",
            "web",
            &[("nginx.ingress.kubernetes.io/enable-access-log", "false")],
        ),
    );
    let client = http1_client();
    let started = std::time::Instant::now();
    while get(&client, weir.http, "quiet.local", "/healthz")
        .await
        .status
        != 200
    {
        assert!(
            started.elapsed() < LIMIT,
            "quiet.local never became routable"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // (The polls that got 404 before the Ingress was routable are logged: no route, no
    // annotation.)
    assert_eq!(
        get(&client, weir.http, "quiet.local", "/routed")
            .await
            .status,
        200
    );
    assert_eq!(
        get(&client, weir.http, "web.local", "/app/after")
            .await
            .status,
        200
    );
    // Lines are written in order: once the later request's line is there, the earlier one
    // would be too.
    weir.wait_for_access_lines(1, LIMIT, |l| l.contains("/app/after"))
        .await;
    let log = weir.access_log();
    assert!(!log.contains("/routed"), "{log}");
    assert!(!log.contains("\"GET /healthz HTTP/1.1\" 200"), "{log}");
}

#[tokio::test]
async fn the_last_lines_are_written_before_weir_exits() {
    let backend = TestBackend::start("web").await;
    let (_dir, mut weir) = start(&backend, &["--shutdown-delay", "0s"], &[]).await;
    let client = http1_client();
    for i in 0..20 {
        let path = format!("/app/last/{i}");
        assert_eq!(
            get(&client, weir.http, "web.local", &path).await.status,
            200
        );
    }
    weir.sigterm();
    assert!(weir.wait_exit(LIMIT).await.success());
    let lines = weir
        .wait_for_access_lines(20, LIMIT, |l| l.contains("/app/last/"))
        .await;
    assert!(lines[19].contains("/app/last/19 "), "in order: {lines:?}");
}

#[tokio::test]
async fn a_client_gone_before_the_answer_is_logged_and_counted_as_499() {
    let backend = TestBackend::start("web").await;
    let (_dir, weir) = start(&backend, &[], &[]).await;
    let mut stream = TcpStream::connect(weir.http).await.unwrap();
    stream
        .write_all(b"GET /app/slow?ms=3000 HTTP/1.1\r\nhost: web.local\r\n\r\n")
        .await
        .unwrap();
    // Once the endpoint has the request, hang up.
    wait_until("the request reaches the endpoint", LIMIT, || {
        backend.requests.load(std::sync::atomic::Ordering::SeqCst) == 1
    })
    .await;
    drop(stream);
    let lines = weir
        .wait_for_access_lines(1, LIMIT, |l| l.contains("/app/slow"))
        .await;
    assert!(lines[0].contains("\" 499 0 "), "{}", lines[0]);
    let samples = scrape_until(&weir, "the 499", |s| total(s, "weir_requests_total") == 1.0).await;
    assert_eq!(
        value(&samples, "weir_requests_total", &[("status", "499")]),
        1.0
    );
}

#[tokio::test]
async fn secret_contents_never_reach_the_logs_even_at_trace_level() {
    let backend = TestBackend::start("web").await;
    let dir = tempfile::tempdir().unwrap();
    write_site(dir.path(), backend.addr);
    let good = common::tls::cert_for(&["secure.local"]);
    let other = common::tls::cert_for(&["other.local"]);
    let secret = |name: &str, cert: &str, key: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: default}}\n\
             type: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}\n  tls.key: |\n{}\n",
            indent(cert),
            indent(key)
        )
    };
    write(
        dir.path(),
        "good.yaml",
        &secret("good", &good.cert_pem, &good.key_pem),
    );
    // A certificate with the wrong key: an InvalidTlsSecret diagnostic, logged.
    write(
        dir.path(),
        "bad.yaml",
        &secret("bad", &good.cert_pem, &other.key_pem),
    );
    for (name, host, secret) in [
        ("secure", "secure.local", "good"),
        ("broken", "broken.local", "bad"),
    ] {
        let ingress = ingress_yaml(name, host, "/", "web").replace(
            "spec:\n",
            &format!("spec:\n  tls:\n  - hosts: [{host}]\n    secretName: {secret}\n"),
        );
        write(dir.path(), &format!("{name}.yaml"), &ingress);
    }
    let weir = WeirProcess::spawn_with_env(
        &[
            "--manifests",
            dir.path().to_str().unwrap(),
            "--log-level",
            "trace",
        ],
        &[("RUST_LOG", "trace")],
    );
    weir.until_ready().await;
    weir.wait_for_line("the bad Secret's diagnostic", LIMIT, |l| {
        l.contains("InvalidTlsSecret")
    })
    .await;
    let (mut tls, leaf) = common::tls::handshake(weir.https, "secure.local", &[b"http/1.1"]).await;
    assert_eq!(leaf, good.der);
    tls.shutdown().await.unwrap();
    let log = weir.log();
    assert!(log.lines().count() > 20, "trace logging is on:\n{log}");
    for key in [&good.key_pem, &other.key_pem] {
        for line in key.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!log.contains(line), "key material in the log: {line}");
        }
        let der = pem_body(key);
        assert!(!log.contains(&der[..40]), "base64 of the key in the log");
    }
}

/// The base64 body of a PEM block on one line.
fn pem_body(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

#[tokio::test]
async fn websocket_tunnels_are_gauged_while_open_and_logged_when_closed() {
    let backend = WsBackend::start("ws").await;
    let (log, lines) = memory_access_log();
    let config = weir::proxy::ProxyConfig {
        access_log: Some(log),
        ..Default::default()
    };
    let host = "chat.local";
    let proxy = WsProxy::start(
        config,
        ws_table(host, vec![backend.addr], None),
        test_certs(),
    )
    .await;
    let metrics = proxy.state.metrics().clone();
    let (mut ws, response) = ws_connect(proxy.http, host, "/room").await;
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    wait_until("the tunnel is counted", LIMIT, || {
        metrics.connections.tunnels.get() == 1
    })
    .await;
    ws.send(Message::text("hello")).await.unwrap();
    let echoed = ws.next().await.unwrap().unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), "hello");
    ws.close(None).await.unwrap();
    while ws.next().await.is_some() {}
    wait_until("the tunnel is gone", LIMIT, || {
        metrics.connections.tunnels.get() == 0
    })
    .await;
    wait_until("the 101 is logged", LIMIT, || {
        lines.lock().unwrap().contains(" 101 ")
    })
    .await;
    let text = lines.lock().unwrap().clone();
    assert!(text.contains("\"GET /room HTTP/1.1\" 101 "), "{text}");
    let encoded = metrics.encode();
    let samples = parse(&encoded);
    assert_eq!(
        value(
            &samples,
            "weir_requests_total",
            &[("status", "101"), ("ingress", "ws")]
        ),
        1.0
    );
}

#[tokio::test]
async fn a_real_prometheus_scrapes_weir() {
    let backend = TestBackend::start("web").await;
    let (_dir, weir) = start(&backend, &["--metrics-compat", "ingress-nginx"], &[]).await;
    let client = http1_client();
    for _ in 0..5 {
        assert_eq!(
            get(&client, weir.http, "web.local", "/app").await.status,
            200
        );
    }
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\n\
             scrape_configs:\n- job_name: weir\n  static_configs:\n  - targets: ['{}']\n",
            weir.admin
        ),
    )
    .unwrap();
    // A free port for Prometheus's API (it cannot report a port chosen by the OS).
    let api = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut prometheus = KillOnDrop(
        std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                data.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={api}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("prometheus (Debian package `prometheus`; scripts/test.sh installs it)"),
    );
    let query = |q: &str| {
        let url = format!(
            "/api/v1/query?query={}",
            q.replace('(', "%28").replace(')', "%29")
        );
        async move {
            let answer = try_get(&http1_client(), api, "prometheus", &url)
                .await
                .ok()?;
            let body: serde_json::Value = serde_json::from_slice(&answer.body).ok()?;
            let value = body["data"]["result"][0]["value"][1].as_str()?.to_owned();
            value.parse::<f64>().ok()
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let weir_count = query("sum(weir_requests_total)").await;
        let nginx_count = query("sum(nginx_ingress_controller_requests)").await;
        if weir_count == Some(5.0) && nginx_count == Some(5.0) {
            break;
        }
        if let Some(status) = prometheus.0.try_wait().unwrap() {
            panic!("prometheus exited: {status}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Prometheus never saw 5 requests (weir: {weir_count:?}, nginx names: {nginx_count:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(query("up").await, Some(1.0), "the scrape succeeds");
}

/// Kills the child process when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
