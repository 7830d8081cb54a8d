//! Custom error pages (`custom-http-errors`, `default-backend`): listed error responses of a
//! route are replaced by the error backend's answer, with ingress-nginx's headers; when the
//! error backend fails, the original response is sent.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use weir::model::{Backend, ErrorPages, ObjectKind, ObjectRef, PathRule, Policy};
use weir::proxy::ProxyConfig;

use common::{
    TestBackend, TestProxy, Unanswering, get, http1_client, refusing_addr, route, routes, send,
    with_policy,
};

/// Error pages sending `codes` to the Service `errors` on `endpoints`.
fn pages(codes: &[u16], endpoints: Vec<SocketAddr>, when_no_endpoints: bool) -> Arc<ErrorPages> {
    let service = ObjectRef::new(ObjectKind::Service, "default", "errors");
    Arc::new(ErrorPages {
        codes: codes.to_vec(),
        backend: Arc::new(Backend::new(service, "80", endpoints)),
        when_no_endpoints,
    })
}

/// A proxy with one route, `/` to Service `s` on `endpoints`, with `pages`.
async fn start_proxy(endpoints: Vec<SocketAddr>, change: impl FnOnce(&mut Policy)) -> TestProxy {
    let route = with_policy(route("s", endpoints), change);
    let table = routes(vec![("", PathRule::prefix("/"), route)]);
    TestProxy::start(ProxyConfig::default(), table).await
}

#[tokio::test]
async fn a_listed_status_gets_the_error_backends_page_with_the_contract_headers() {
    let app = TestBackend::start("app").await;
    let errors = TestBackend::start("errors").await;
    let pages = pages(&[404, 503], vec![errors.addr], false);
    let proxy = start_proxy(vec![app.addr], |p| p.custom_errors = Some(pages)).await;
    let client = http1_client();

    let req = Request::get(format!("http://{}/status?code=404", proxy.addr))
        .header("host", "shop.test")
        .header("accept", "application/json")
        .header("x-request-id", "req-1234")
        .header("cookie", "lang=fr")
        .body(Full::<Bytes>::default())
        .unwrap();
    let answer = send(&client, req).await;
    // The error backend's page with the original status (the test backend answers 200 with an
    // echo of what it received).
    assert_eq!(answer.status, 404);
    let echo = answer.echo();
    assert_eq!(echo.backend(), "errors");
    assert_eq!(echo.0["method"], "GET");
    assert_eq!(
        echo.uri(),
        "/",
        "ingress-nginx rewrites the error request to /"
    );
    for (name, want) in [
        ("x-code", "404"),
        ("x-format", "application/json"),
        ("x-original-uri", "/status?code=404"),
        ("x-namespace", "default"),
        ("x-ingress-name", "s"),
        ("x-service-name", "s"),
        ("x-service-port", "80"),
        ("x-request-id", "req-1234"),
        ("host", "shop.test"),
        ("cookie", "lang=fr"),
    ] {
        assert_eq!(echo.header(name).as_deref(), Some(want), "{name}");
    }
    assert_eq!(echo.0["body_len"], 0);
    assert_eq!(answer.headers["server"], "weir");

    // A status that is not listed is the endpoint's, untouched.
    let answer = get(&client, proxy.addr, "shop.test", "/status?code=500").await;
    assert_eq!(
        (answer.status.as_u16(), answer.text()),
        (500, "status 500".into())
    );
    // So is a success.
    let answer = get(&client, proxy.addr, "shop.test", "/ok").await;
    assert_eq!(answer.echo().backend(), "app");
    assert_eq!(errors.requests.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn weirs_own_errors_on_the_route_go_to_the_error_backend_too() {
    let errors = TestBackend::start("errors").await;
    let client = http1_client();

    // No endpoints: weir's 503.
    let listed = pages(&[503], vec![errors.addr], false);
    let proxy = start_proxy(vec![], |p| p.custom_errors = Some(listed)).await;
    let answer = get(&client, proxy.addr, "a.test", "/x?y=1").await;
    let echo = answer.echo();
    assert_eq!(echo.backend(), "errors");
    assert_eq!(echo.header("x-code").as_deref(), Some("503"));
    assert_eq!(echo.header("x-original-uri").as_deref(), Some("/x?y=1"));

    // The endpoint refuses the connection: weir's 502.
    let listed = pages(&[502], vec![errors.addr], false);
    let proxy = proxy_to(refusing_addr(), listed).await;
    let echo = get(&client, proxy.addr, "a.test", "/").await.echo();
    assert_eq!(echo.header("x-code").as_deref(), Some("502"));

    // Not listed: weir's own answer.
    let unlisted = pages(&[404], vec![errors.addr], false);
    let proxy = start_proxy(vec![], |p| p.custom_errors = Some(unlisted)).await;
    let answer = get(&client, proxy.addr, "a.test", "/").await;
    assert_eq!(answer.status, 503);
    assert!(
        answer.text().contains("no ready endpoints"),
        "{}",
        answer.text()
    );
}

async fn proxy_to(endpoint: SocketAddr, pages: Arc<ErrorPages>) -> TestProxy {
    start_proxy(vec![endpoint], |p| p.custom_errors = Some(pages)).await
}

#[tokio::test]
async fn default_backend_alone_serves_a_route_whose_service_has_no_endpoints() {
    let errors = TestBackend::start("errors").await;
    let client = http1_client();
    // `default-backend` without `custom-http-errors`: no codes, but the Service serves the
    // route while it has no endpoints.
    let own = pages(&[], vec![errors.addr], true);
    let proxy = start_proxy(vec![], |p| p.custom_errors = Some(own.clone())).await;
    let echo = get(&client, proxy.addr, "a.test", "/page").await.echo();
    assert_eq!(echo.backend(), "errors");
    assert_eq!(echo.header("x-code").as_deref(), Some("503"));
    assert_eq!(echo.header("x-service-name").as_deref(), Some("s"));

    // With endpoints, errors pass untouched (nothing is listed).
    let app = TestBackend::start("app").await;
    let proxy = proxy_to(app.addr, own).await;
    let answer = get(&client, proxy.addr, "a.test", "/status?code=503").await;
    assert_eq!(
        (answer.status.as_u16(), answer.text()),
        (503, "status 503".into())
    );
}

#[tokio::test]
async fn a_failing_error_backend_leaves_the_original_response() {
    let app = TestBackend::start("app").await;
    let client = http1_client();

    // Refused: the endpoint's own 404, body and all.
    let refused = pages(&[404], vec![refusing_addr()], false);
    let proxy = proxy_to(app.addr, refused).await;
    let answer = get(&client, proxy.addr, "a.test", "/status?code=404").await;
    assert_eq!(
        (answer.status.as_u16(), answer.text()),
        (404, "status 404".into())
    );

    // No endpoints at all: weir's own 503.
    let empty = pages(&[503], vec![], false);
    let proxy = start_proxy(vec![], |p| p.custom_errors = Some(empty)).await;
    assert_eq!(get(&client, proxy.addr, "a.test", "/").await.status, 503);

    // Never answers the connect: the original response once the route's connect + read
    // timeouts have passed (200 ms each here), not later. Bound: 2 s, for a busy machine.
    let silent = Unanswering::new().await;
    let stuck = pages(&[404], vec![silent.addr], false);
    let proxy = start_proxy(vec![app.addr], |p| {
        p.custom_errors = Some(stuck);
        p.timeouts.connect = Duration::from_millis(200);
        p.timeouts.read = Duration::from_millis(200);
    })
    .await;
    let started = Instant::now();
    let answer = get(&client, proxy.addr, "a.test", "/status?code=404").await;
    let took = started.elapsed();
    assert_eq!(
        (answer.status.as_u16(), answer.text()),
        (404, "status 404".into())
    );
    assert!(
        took >= Duration::from_millis(400),
        "gave up early: {took:?}"
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
}
