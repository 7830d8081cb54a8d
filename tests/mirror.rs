//! Mirroring (`mirror-target`, `mirror-request-body`, `mirror-host`): a copy of each request
//! goes to the target; copies are bounded, counted, and never delay or fail the request.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use weir::model::{Mirror, Policy};
use weir::proxy::{MirrorLimits, ProxyConfig};

use common::recorder::Recorder;
use common::{TestBackend, TestProxy, http1_client, send, wait_until};

fn mirror(target: &str, body: Option<&str>, host: Option<&str>) -> Arc<Mirror> {
    Arc::new(Mirror::parse(target, body, host).unwrap())
}

async fn start_proxy(
    limits: MirrorLimits,
    app: &TestBackend,
    change: impl Fn(&mut Policy),
) -> TestProxy {
    let config = ProxyConfig {
        mirror: limits,
        ..ProxyConfig::default()
    };
    TestProxy::serving_with(config, app.addr, change).await
}

/// `weir_mirror_requests_total` of the test route (Ingress `default/s`) for `outcome`.
fn copies(proxy: &TestProxy, outcome: &str) -> u64 {
    let metrics = proxy.state.metrics();
    metrics
        .connections
        .mirror_requests
        .with_label_values(&["default", "s", outcome])
        .get()
}

fn post(proxy: &TestProxy, path: &str, body: &'static [u8]) -> Request<Full<Bytes>> {
    Request::post(format!("http://{}{path}", proxy.addr))
        .header("host", "shop.test")
        .header("x-request-id", "copy-1")
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from_static(body)))
        .unwrap()
}

#[tokio::test]
async fn a_copy_has_the_method_target_headers_and_body() {
    let app = TestBackend::start("app").await;
    let target = Recorder::start().await;
    let url = format!("http://{}/shadow$request_uri", target.addr);
    let m = mirror(&url, None, Some("shadow.test"));
    let proxy = start_proxy(MirrorLimits::default(), &app, |p| {
        p.mirror = Some(m.clone())
    })
    .await;
    let client = http1_client();

    let answer = send(&client, post(&proxy, "/api/orders?id=7", b"hello mirror")).await;
    let echo = answer.echo();
    assert_eq!(echo.backend(), "app", "the real request is served");
    assert_eq!(echo.0["body_len"], 12);
    wait_until("the copy arrived", Duration::from_secs(5), || {
        target.count() == 1
    })
    .await;
    let copy = &target.requests()[0];
    assert_eq!(copy.method, "POST");
    assert_eq!(copy.uri, "/shadow/api/orders?id=7");
    assert_eq!(copy.body, "hello mirror");
    assert_eq!(copy.headers["host"], "shadow.test");
    assert_eq!(copy.headers["x-request-id"], "copy-1");
    assert_eq!(copy.headers["content-type"], "text/plain");
    assert_eq!(copy.headers["x-forwarded-host"], "shop.test");
    wait_until("the copy is counted", Duration::from_secs(5), || {
        copies(&proxy, "sent") == 1
    })
    .await;

    // mirror-request-body: off — the same request, copied without its body; the target's
    // host is the default Host.
    let target2 = Recorder::start().await;
    let url = format!("http://{}$request_uri", target2.addr);
    let m = mirror(&url, Some("off"), None);
    let proxy = start_proxy(MirrorLimits::default(), &app, |p| {
        p.mirror = Some(m.clone())
    })
    .await;
    let answer = send(&client, post(&proxy, "/api", b"not copied")).await;
    assert_eq!(answer.echo().0["body_len"], 10);
    wait_until("the copy arrived", Duration::from_secs(5), || {
        target2.count() == 1
    })
    .await;
    let copy = &target2.requests()[0];
    assert_eq!((copy.method.as_str(), copy.uri.as_str()), ("POST", "/api"));
    assert!(copy.body.is_empty());
    assert!(!copy.headers.contains_key("content-length"));
    assert_eq!(copy.headers["host"], "127.0.0.1");
}

#[tokio::test]
async fn a_never_answering_target_delays_nothing_and_copies_past_the_cap_are_dropped() {
    let app = TestBackend::start("app").await;
    let target = Recorder::never_answering().await;
    let url = format!("http://{}$request_uri", target.addr);
    let m = mirror(&url, None, None);
    let limits = MirrorLimits {
        in_flight: 4,
        body: 64 * 1024,
    };
    let proxy = start_proxy(limits, &app, |p| p.mirror = Some(m.clone())).await;
    let client = http1_client();

    // 20 requests one after the other: the first 4 copies stay in flight (the target never
    // answers, the route's read timeout is 60 s), the other 16 are dropped and counted. The
    // real requests answer as fast as without mirroring: each within 500 ms (the endpoint
    // answers at once; the bound leaves room for a machine shared by several builds), where
    // waiting for a copy would take the 60 s timeout.
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let started = Instant::now();
        let answer = send(&client, post(&proxy, &format!("/r{i}"), b"body")).await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(answer.echo().backend(), "app");
    }
    assert!(
        slowest < Duration::from_millis(500),
        "slowest request took {slowest:?}"
    );
    wait_until(
        "4 copies reached the target",
        Duration::from_secs(5),
        || target.count() == 4,
    )
    .await;
    assert_eq!(copies(&proxy, "overflow"), 16);
    assert_eq!(copies(&proxy, "sent"), 0);
    assert_eq!(target.count(), 4, "never more than the cap in flight");
}

#[tokio::test]
async fn a_body_over_the_copy_limit_drops_the_copy_not_the_request() {
    let app = TestBackend::start("app").await;
    let target = Recorder::start().await;
    let url = format!("http://{}$request_uri", target.addr);
    let m = mirror(&url, None, None);
    let limits = MirrorLimits {
        in_flight: 16,
        body: 8,
    };
    let proxy = start_proxy(limits, &app, |p| p.mirror = Some(m.clone())).await;
    let client = http1_client();

    let answer = send(&client, post(&proxy, "/big", b"more than eight bytes")).await;
    assert_eq!(
        answer.echo().0["body_len"],
        21,
        "the endpoint gets the whole body"
    );
    assert_eq!(copies(&proxy, "body-too-large"), 1);
    // A small one is copied.
    let answer = send(&client, post(&proxy, "/small", b"tiny")).await;
    assert_eq!(answer.echo().0["body_len"], 4);
    wait_until("the small copy arrived", Duration::from_secs(5), || {
        target.count() == 1
    })
    .await;
    assert_eq!(target.requests()[0].uri, "/small");
}
