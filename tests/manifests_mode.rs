//! The `weir` binary in `--manifests` mode, driven the way a user drives it: YAML files in a
//! directory, real HTTP requests, edits while it runs.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;

use common::manifests::{ingress_yaml, ingress_yaml_with, service_yaml, write};
use common::process::WeirProcess;
use common::*;

/// Polls `host` + `path` through weir until it answers `status`; returns how long that took.
async fn until_status(
    weir: &WeirProcess,
    host: &str,
    path: &str,
    status: u16,
    limit: Duration,
) -> Duration {
    let request = || {
        Request::get(format!("http://{}{path}", weir.http))
            .header("host", host)
            .body(Full::default())
            .unwrap()
    };
    until_answer(weir, request, status, limit).await
}

/// Sends `request()` through weir until the answer is `status`; returns how long that took.
async fn until_answer(
    weir: &WeirProcess,
    request: impl Fn() -> Request<Full<Bytes>>,
    status: u16,
    limit: Duration,
) -> Duration {
    let client = http1_client();
    let start = Instant::now();
    loop {
        let req = request();
        let what = format!("{} {}", req.method(), req.uri());
        let answer = send(&client, req).await;
        if answer.status == status {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{what} still answers {} after {limit:?}; log:\n{}",
            answer.status,
            weir.log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// weir serving `dir` with `ingress` (`host` + `path` → Service "web" → `backend`), ready.
async fn start_weir(
    backend: &TestBackend,
    ingress: &str,
    host: &str,
    path: &str,
    extra: &[&str],
) -> (tempfile::TempDir, WeirProcess) {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "backend.yaml",
        &service_yaml("web", &[backend.addr]),
    );
    write(
        dir.path(),
        "ingress.yaml",
        &ingress_yaml(ingress, host, path, "web"),
    );
    let weir = WeirProcess::start(dir.path(), extra);
    weir.until_ready().await;
    (dir, weir)
}

#[tokio::test]
async fn edits_change_routing_within_a_second_without_dropping_requests_in_flight() {
    let backend = TestBackend::start("web").await;
    let (dir, weir) = start_weir(&backend, "demo", "demo.local", "/hello", &[]).await;

    let client = http1_client();
    let answer = get(&client, weir.http, "demo.local", "/hello").await;
    assert_eq!(answer.status, 200, "{}", weir.log());
    assert_eq!(answer.echo().backend(), "web");
    assert_eq!(
        get(&client, weir.http, "demo.local", "/hi").await.status,
        404
    );
    let health = get(&client, weir.admin, "admin", "/healthz").await;
    assert_eq!(health.status, 200);

    // A slow request is in flight while the routing changes under it.
    let slow = {
        let (client, addr) = (client.clone(), weir.http);
        tokio::spawn(async move { get(&client, addr, "demo.local", "/hello/slow?ms=1500").await })
    };
    wait_until(
        "the slow request reached the backend",
        Duration::from_secs(10),
        || backend.requests.load(std::sync::atomic::Ordering::SeqCst) >= 2,
    )
    .await;

    write(
        dir.path(),
        "ingress.yaml",
        &ingress_yaml("demo", "demo.local", "/hi", "web"),
    );
    let took = until_status(&weir, "demo.local", "/hi", 200, Duration::from_secs(1)).await;
    println!("edit to routable: {took:?}");
    assert_eq!(
        get(&client, weir.http, "demo.local", "/hello").await.status,
        404
    );

    let slow = slow.await.unwrap();
    assert_eq!(
        slow.status,
        200,
        "the request in flight finished: {}",
        slow.text()
    );
    assert_eq!(slow.echo().uri(), "/hello/slow?ms=1500");
}

#[tokio::test]
async fn a_broken_file_is_reported_and_the_last_good_table_keeps_serving() {
    let backend = TestBackend::start("web").await;
    let (dir, weir) = start_weir(&backend, "demo", "demo.local", "/", &[]).await;
    let client = http1_client();
    assert_eq!(get(&client, weir.http, "demo.local", "/").await.status, 200);

    // The second document of the file is not YAML.
    let broken = format!(
        "{}---\nkind: Ingress\nmetadata: {{ name: [oops\n",
        ingress_yaml("demo", "demo.local", "/", "web")
    );
    write(dir.path(), "ingress.yaml", &broken);
    let line = weir
        .wait_for_line("with the parse error", Duration::from_secs(5), |l| {
            l.contains("manifest does not parse")
        })
        .await;
    assert!(
        line.contains("ingress.yaml") && line.contains("document=2"),
        "{line}"
    );
    assert_eq!(
        get(&client, weir.http, "demo.local", "/").await.status,
        200,
        "the last good table serves"
    );

    // A change to another file still applies while ingress.yaml is broken.
    write(
        dir.path(),
        "more.yaml",
        &ingress_yaml("more", "more.local", "/", "web"),
    );
    until_status(&weir, "more.local", "/", 200, Duration::from_secs(2)).await;
    assert_eq!(get(&client, weir.http, "demo.local", "/").await.status, 200);

    // An Ingress whose Service does not exist: a diagnostic in the log, 503 for its requests,
    // every other route unaffected.
    write(
        dir.path(),
        "missing.yaml",
        &ingress_yaml("missing", "missing.local", "/", "nope"),
    );
    until_status(&weir, "missing.local", "/", 503, Duration::from_secs(2)).await;
    weir.wait_for_line(
        "with the ServiceNotFound diagnostic",
        Duration::from_secs(5),
        |l| l.contains("ServiceNotFound") && l.contains("default/missing"),
    )
    .await;
    assert_eq!(get(&client, weir.http, "demo.local", "/").await.status, 200);
}

#[tokio::test]
async fn streams_a_hundred_mebibytes_each_way_without_growing_memory() {
    const SIZE: u64 = 100 * 1024 * 1024;
    let backend = TestBackend::start("big").await;
    // Without a body limit (the default is ingress-nginx's 1m).
    let (_dir, weir) =
        start_weir(&backend, "big", "big.local", "/", &["--proxy-body-size=0"]).await;
    let client = http1_client();
    assert_eq!(get(&client, weir.http, "big.local", "/").await.status, 200);
    let (baseline, _) = weir.memory_kib();

    // Upload: 100 MiB in 64 KiB chunks, produced as they are sent.
    let chunk = Bytes::from(vec![7u8; 64 * 1024]);
    let chunks = (0..SIZE / chunk.len() as u64)
        .map(move |_| Ok::<_, std::convert::Infallible>(Frame::data(chunk.clone())));
    let body = StreamBody::new(futures_util::stream::iter(chunks));
    let upload = Request::post(format!("http://{}/sink", weir.http))
        .header("host", "big.local")
        .body(body)
        .unwrap();
    let streaming_client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let response = streaming_client.request(upload).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let received = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        received,
        SIZE.to_string().as_bytes(),
        "the backend received every byte"
    );

    // Download: read it frame by frame without keeping it.
    let download = Request::get(format!("http://{}/source?bytes={SIZE}", weir.http))
        .header("host", "big.local")
        .body(http_body_util::Full::<Bytes>::default())
        .unwrap();
    let mut body = client.request(download).await.unwrap().into_body();
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        total += frame.unwrap().into_data().map_or(0, |d| d.len() as u64);
    }
    assert_eq!(total, SIZE);

    let (_, peak) = weir.memory_kib();
    let growth_mib = peak.saturating_sub(baseline) as f64 / 1024.0;
    println!("weir RSS baseline {baseline} KiB, peak {peak} KiB, growth {growth_mib:.1} MiB");
    assert!(
        growth_mib < 16.0,
        "streaming 2 x 100 MiB grew weir's peak RSS by {growth_mib:.1} MiB"
    );
}

#[tokio::test]
async fn bad_start_up_input_gets_a_clear_error() {
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "--manifests",
            "/nonexistent/weir-test",
            "--http-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("/nonexistent/weir-test"), "{stderr}");

    let no_source = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "--http-addr",
            "127.0.0.1:0",
            "--https-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .env_remove("WEIR_MANIFESTS")
        .output()
        .unwrap();
    assert!(!no_source.status.success());
    assert!(String::from_utf8_lossy(&no_source.stderr).contains("--manifests"));

    let help = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--manifests",
        "--http-addr",
        "--admin-addr",
        "--ingress-class",
        "--controller-name",
        "--watch-ingress-without-class",
        "WEIR_HTTP_ADDR",
    ] {
        assert!(help.contains(flag), "--help documents {flag}");
    }
}

/// The controller ConfigMap `default/weir-config` with `data`.
fn config_map_yaml(data: &[(&str, &str)]) -> String {
    let data: String = data
        .iter()
        .map(|(k, v)| format!("  {k}: {}\n", serde_json::to_string(v).unwrap()))
        .collect();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: weir-config, namespace: default}}\ndata:\n{data}"
    )
}

#[tokio::test]
async fn the_configmap_sets_global_defaults_live_and_annotations_win() {
    let backend = TestBackend::start("web").await;
    let (dir, weir) = start_weir(
        &backend,
        "app",
        "app.local",
        "/",
        &["--configmap=default/weir-config"],
    )
    .await;
    write(
        dir.path(),
        "config.yaml",
        &config_map_yaml(&[("proxy-body-size", "1k")]),
    );
    let upload_of = |host: &'static str, size: usize| {
        let addr = weir.http;
        move || {
            Request::post(format!("http://{addr}/sink"))
                .header("host", host)
                .body(Full::new(Bytes::from(vec![b'x'; size])))
                .unwrap()
        }
    };
    let upload = |host| upload_of(host, 2048);
    let second = Duration::from_secs(1);
    until_answer(&weir, upload("app.local"), 413, second).await;

    // Raised in the ConfigMap: applies within a second, without a restart.
    write(
        dir.path(),
        "config.yaml",
        &config_map_yaml(&[("proxy-body-size", "4k")]),
    );
    until_answer(&weir, upload("app.local"), 200, second).await;

    // An Ingress's annotation wins over the ConfigMap.
    write(
        dir.path(),
        "strict.yaml",
        &ingress_yaml_with(
            "strict",
            "strict.local",
            "/",
            "web",
            &[("nginx.ingress.kubernetes.io/proxy-body-size", "1k")],
        ),
    );
    until_answer(&weir, upload("strict.local"), 413, second).await;

    // A bad value is reported and the flag's default (1m) applies; snippet keys are refused.
    write(
        dir.path(),
        "config.yaml",
        &config_map_yaml(&[
            ("proxy-body-size", "10 MB"),
            ("server-snippet", "return 200;"),
        ]),
    );
    weir.wait_for_line("the bad value is reported", Duration::from_secs(5), |l| {
        l.contains("InvalidConfigMapValue") && l.contains("10 MB")
    })
    .await;
    weir.wait_for_line("the snippet is refused", Duration::from_secs(5), |l| {
        l.contains("UnsupportedConfigMapKey") && l.contains("server-snippet")
    })
    .await;
    // 8 KiB: over the last good 4k, under the flag's 1m.
    until_answer(&weir, upload_of("app.local", 8192), 200, second).await;
    until_answer(&weir, upload("strict.local"), 413, second).await;
}
