//! Retries (`proxy-next-upstream`, `-tries`, `-timeout`) against real sockets: endpoints that
//! refuse connections, reset them, are slow, answer an error status or broken HTTP.
//!
//! Routes with two endpoints are balanced round robin, so of an even number of requests sent
//! one after the other exactly half start on each endpoint: "half" below is exact, not
//! statistical.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;

use common::ws::{RawBackend, RefusingBackend, WsBackend, try_ws_connect, ws_connect};
use common::*;
use weir::model::{PathRule, Policy, Retry, RetryOn};
use weir::proxy::ProxyConfig;

/// A backend answering every request with `status`.
async fn answering(name: &str, status: u16) -> TestBackend {
    let options = BackendOptions {
        status: Some(status),
        ..BackendOptions::default()
    };
    TestBackend::start_with(name, options).await
}

/// A backend that drops every connection when a request head arrives (before answering).
async fn resetting(name: &str) -> TestBackend {
    let options = BackendOptions {
        requests_per_connection: Some(0),
        ..BackendOptions::default()
    };
    TestBackend::start_with(name, options).await
}

/// `on` as `proxy-next-upstream` would set it.
fn on(tokens: &str) -> RetryOn {
    RetryOn::parse(tokens).unwrap()
}

/// A proxy with one route over `endpoints` whose retry settings are `retry` (and its other
/// settings changed by `change`).
async fn proxy_over(
    endpoints: Vec<SocketAddr>,
    retry: Retry,
    change: impl Fn(&mut Policy),
) -> TestProxy {
    let table = table_with(&[("h", PathRule::prefix("/"), "s", endpoints)], |policy| {
        policy.retry = retry;
        change(policy);
    });
    TestProxy::start(ProxyConfig::default(), table).await
}

/// A request with `method` and `body` to `path` on host `h`.
fn request(proxy: &TestProxy, method: Method, path: &str, body: Vec<u8>) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", proxy.addr))
        .header("host", "h")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// The statuses of `n` requests made by `make`, sorted, with the backends that answered 200.
async fn statuses(
    n: usize,
    mut make: impl FnMut() -> Request<Full<Bytes>>,
) -> (Vec<u16>, Vec<String>) {
    let client = http1_client();
    let mut statuses = Vec::new();
    let mut served = Vec::new();
    for _ in 0..n {
        let answer = send(&client, make()).await;
        if answer.status == StatusCode::OK {
            served.push(answer.echo().backend().to_owned());
        }
        statuses.push(answer.status.as_u16());
    }
    statuses.sort();
    (statuses, served)
}

fn retries_counted(proxy: &TestProxy, reason: &str) -> u64 {
    proxy
        .state
        .metrics()
        .connections
        .upstream_retries
        .with_label_values(&["default", "s", "s", reason])
        .get()
}

#[tokio::test]
async fn a_refused_connect_goes_on_for_every_method_and_is_counted() {
    let live = TestBackend::start("live").await;
    let proxy = proxy_over(vec![refusing_addr(), live.addr], Retry::default(), |_| {}).await;
    for method in [Method::GET, Method::POST, Method::PATCH] {
        let (got, served) =
            statuses(4, || request(&proxy, method.clone(), "/", b"x".to_vec())).await;
        assert_eq!(got, [200; 4], "{method}: nothing was sent, so it goes on");
        assert!(served.iter().all(|b| b == "live"));
    }
    assert_eq!(
        retries_counted(&proxy, "error"),
        6,
        "half of 12 started on the dead one"
    );
    // `off`: the half that starts on the dead endpoint gets 502.
    let off = Retry {
        on: RetryOn::OFF,
        ..Retry::default()
    };
    let proxy = proxy_over(vec![refusing_addr(), live.addr], off, |_| {}).await;
    let (got, _) = statuses(4, || request(&proxy, Method::GET, "/", vec![])).await;
    assert_eq!(got, [200, 200, 502, 502]);
    assert_eq!(retries_counted(&proxy, "error"), 0);
}

#[tokio::test]
async fn a_connection_reset_before_the_response_goes_on_when_error_is_listed() {
    let (broken, live) = (resetting("broken").await, TestBackend::start("live").await);
    let endpoints = vec![broken.addr, live.addr];
    let proxy = proxy_over(endpoints.clone(), Retry::default(), |_| {}).await;
    let (got, served) = statuses(4, || request(&proxy, Method::GET, "/", vec![])).await;
    assert_eq!(got, [200; 4], "the default `error timeout` covers it");
    assert!(served.iter().all(|b| b == "live"));
    assert_eq!(broken.requests.load(Ordering::SeqCst), 2);
    // A POST was sent: it does not go on without `non_idempotent`…
    let (got, _) = statuses(4, || request(&proxy, Method::POST, "/", b"form".to_vec())).await;
    assert_eq!(got, [200, 200, 502, 502]);
    // …and does with it, body and all.
    let retry = Retry {
        on: on("error timeout non_idempotent"),
        ..Retry::default()
    };
    let proxy = proxy_over(endpoints.clone(), retry, |_| {}).await;
    let client = http1_client();
    for _ in 0..4 {
        let answer = send(
            &client,
            request(&proxy, Method::POST, "/", b"form".to_vec()),
        )
        .await;
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.echo().0["body_len"],
            4,
            "the whole body was sent again"
        );
    }
    // Without `error`, the half that starts on the broken endpoint gets 502.
    let retry = Retry {
        on: on("timeout http_502"),
        ..Retry::default()
    };
    let proxy = proxy_over(endpoints, retry, |_| {}).await;
    let (got, _) = statuses(4, || request(&proxy, Method::GET, "/", vec![])).await;
    assert_eq!(got, [200, 200, 502, 502]);
}

#[tokio::test]
async fn a_response_timeout_goes_on_when_timeout_is_listed() {
    let slow = TestBackend::start_with(
        "slow",
        BackendOptions {
            delay: Some(Duration::from_secs(5)),
            ..BackendOptions::default()
        },
    )
    .await;
    let live = TestBackend::start("live").await;
    let read_300ms = |policy: &mut Policy| policy.timeouts.read = Duration::from_millis(300);
    let endpoints = vec![slow.addr, live.addr];
    let proxy = proxy_over(endpoints.clone(), Retry::default(), read_300ms).await;
    let (got, served) = statuses(2, || request(&proxy, Method::GET, "/", vec![])).await;
    assert_eq!(got, [200, 200]);
    assert!(served.iter().all(|b| b == "live"));
    assert_eq!(retries_counted(&proxy, "timeout"), 1);
    let retry = Retry {
        on: RetryOn::ERROR,
        ..Retry::default()
    };
    let proxy = proxy_over(endpoints, retry, read_300ms).await;
    let (got, _) = statuses(2, || request(&proxy, Method::GET, "/", vec![])).await;
    assert_eq!(got, [200, 504], "the last answer: weir's 504");
}

#[tokio::test]
async fn each_status_condition_goes_on_only_when_listed() {
    let live = TestBackend::start("live").await;
    for status in [500, 502, 503, 504, 403, 404, 429] {
        let failing = answering("failing", status).await;
        let endpoints = vec![failing.addr, live.addr];
        let token = format!("http_{status}");
        let listed = Retry {
            on: on(&token),
            ..Retry::default()
        };
        let proxy = proxy_over(endpoints.clone(), listed, |_| {}).await;
        let (got, served) = statuses(4, || request(&proxy, Method::GET, "/", vec![])).await;
        assert_eq!(got, [200; 4], "{token}");
        assert!(served.iter().all(|b| b == "live"), "{token}");
        assert_eq!(retries_counted(&proxy, &token), 2, "{token}");
        // Not listed (the default `error timeout`): the endpoint's own answer is relayed.
        let proxy = proxy_over(endpoints, Retry::default(), |_| {}).await;
        let client = http1_client();
        let mut relayed = 0;
        for _ in 0..4 {
            let answer = send(&client, request(&proxy, Method::GET, "/", vec![])).await;
            if answer.status.as_u16() == status {
                assert_eq!(
                    answer.echo().backend(),
                    "failing",
                    "the endpoint's own answer"
                );
                relayed += 1;
            }
        }
        assert_eq!(relayed, 2, "{token}");
    }
}

#[tokio::test]
async fn when_every_try_fails_the_client_gets_the_last_response() {
    let (a, b) = (answering("a", 503).await, answering("b", 503).await);
    let retry = Retry {
        on: on("http_503"),
        ..Retry::default()
    };
    let proxy = proxy_over(vec![a.addr, b.addr], retry, |_| {}).await;
    let client = http1_client();
    let mut last = Vec::new();
    for _ in 0..4 {
        let answer = send(&client, request(&proxy, Method::GET, "/", vec![])).await;
        assert_eq!(answer.status, 503);
        // The endpoint's response (its echo), not one weir made.
        last.push(answer.echo().backend().to_owned());
    }
    last.sort();
    assert_eq!(
        last,
        ["a", "a", "b", "b"],
        "the last endpoint tried answers"
    );
    // Each request tried both endpoints once.
    let total = a.requests.load(Ordering::SeqCst) + b.requests.load(Ordering::SeqCst);
    assert_eq!(total, 8);
}

#[tokio::test]
async fn a_post_is_not_sent_again_unless_non_idempotent_is_listed() {
    let (failing, live) = (
        answering("failing", 503).await,
        TestBackend::start("live").await,
    );
    let endpoints = vec![failing.addr, live.addr];
    let retry = Retry {
        on: on("http_503"),
        ..Retry::default()
    };
    let proxy = proxy_over(endpoints.clone(), retry, |_| {}).await;
    for method in [
        Method::POST,
        Method::PATCH,
        Method::from_bytes(b"LOCK").unwrap(),
    ] {
        let (got, _) = statuses(4, || request(&proxy, method.clone(), "/", b"x".to_vec())).await;
        assert_eq!(got, [200, 200, 503, 503], "{method}");
    }
    for method in [Method::PUT, Method::DELETE] {
        let (got, _) = statuses(4, || request(&proxy, method.clone(), "/", b"x".to_vec())).await;
        assert_eq!(got, [200; 4], "{method} is idempotent");
    }
    let retry = Retry {
        on: on("http_503 non_idempotent"),
        ..Retry::default()
    };
    let proxy = proxy_over(endpoints, retry, |_| {}).await;
    let (got, _) = statuses(4, || request(&proxy, Method::POST, "/", b"x".to_vec())).await;
    assert_eq!(got, [200; 4]);
}

#[tokio::test]
async fn a_body_over_the_replay_bound_is_never_sent_again() {
    let (failing, live) = (
        answering("failing", 503).await,
        TestBackend::start("live").await,
    );
    let retry = Retry {
        on: on("http_503"),
        ..Retry::default()
    };
    let proxy = proxy_over(vec![failing.addr, live.addr], retry, |policy| {
        policy.max_body_size = None;
    })
    .await;
    let client = http1_client();
    let bound = weir::proxy::REPLAY_LIMIT;
    for _ in 0..2 {
        let answer = send(
            &client,
            request(&proxy, Method::PUT, "/", vec![b'x'; bound]),
        )
        .await;
        assert_eq!(
            answer.status, 200,
            "a body of exactly the bound is kept whole"
        );
        assert_eq!(answer.echo().0["body_len"], bound);
    }
    let (got, _) = statuses(4, || {
        request(&proxy, Method::PUT, "/", vec![b'x'; bound + 1])
    })
    .await;
    assert_eq!(got, [200, 200, 503, 503]);
    // The same without a declared length (chunked): the copy overflows while streaming.
    let chunked = || {
        let chunks = (0..2).map(move |_| {
            Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from(vec![
                b'x';
                bound / 2
                    + 1
            ])))
        });
        Request::put(format!("http://{}/", proxy.addr))
            .header("host", "h")
            .body(http_body_util::StreamBody::new(futures_util::stream::iter(
                chunks,
            )))
            .unwrap()
    };
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(client.request(chunked()).await.unwrap().status().as_u16());
    }
    got.sort();
    assert_eq!(got, [200, 200, 503, 503]);
}

#[tokio::test]
async fn tries_count_every_attempt_and_are_bounded_by_the_endpoints() {
    let backends = [
        answering("a", 503).await,
        answering("b", 503).await,
        answering("c", 503).await,
        answering("d", 503).await,
    ];
    let endpoints: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let total = || -> usize {
        backends
            .iter()
            .map(|b| b.requests.swap(0, Ordering::SeqCst))
            .sum()
    };
    for (tries, want) in [(1, 1), (2, 2), (3, 3), (0, 4), (9, 4)] {
        let retry = Retry {
            on: on("http_503"),
            tries,
            timeout: None,
        };
        let proxy = proxy_over(endpoints.clone(), retry, |_| {}).await;
        let answer = get(&http1_client(), proxy.addr, "h", "/").await;
        assert_eq!(answer.status, 503);
        assert_eq!(
            total(),
            want,
            "tries {tries}: attempts, each on another endpoint"
        );
    }
}

#[tokio::test]
async fn no_attempt_starts_after_the_next_upstream_timeout() {
    // Each attempt takes 300 ms; attempts may start within 500 ms of the first: the second
    // one starts at about 300 ms, a third would at about 600 ms. (This holds as long as an
    // attempt takes between 250 and 500 ms of wall time.)
    let options = BackendOptions {
        status: Some(503),
        delay: Some(Duration::from_millis(300)),
        ..BackendOptions::default()
    };
    let mut backends = Vec::new();
    for name in ["a", "b", "c", "d"] {
        backends.push(TestBackend::start_with(name, options).await);
    }
    let endpoints: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let retry = Retry {
        on: on("http_503"),
        tries: 0,
        timeout: Some(Duration::from_millis(500)),
    };
    let proxy = proxy_over(endpoints, retry, |_| {}).await;
    let started = Instant::now();
    let answer = get(&http1_client(), proxy.addr, "h", "/").await;
    assert_eq!(answer.status, 503);
    let attempts: usize = backends
        .iter()
        .map(|b| b.requests.load(Ordering::SeqCst))
        .sum();
    assert_eq!(attempts, 2, "after {:?}", started.elapsed());
}

#[tokio::test]
async fn an_invalid_response_head_goes_on_only_with_invalid_header() {
    let garbage = RawBackend::start(b"HTTP/1.1 two hundred\r\n\r\n").await;
    let live = TestBackend::start("live").await;
    let endpoints = vec![garbage.addr, live.addr];
    let proxy = proxy_over(endpoints.clone(), Retry::default(), |_| {}).await;
    let (got, _) = statuses(4, || request(&proxy, Method::GET, "/", vec![])).await;
    assert_eq!(got, [200, 200, 502, 502], "not covered by `error timeout`");
    let retry = Retry {
        on: on("error timeout invalid_header"),
        ..Retry::default()
    };
    let proxy = proxy_over(endpoints, retry, |_| {}).await;
    let (got, _) = statuses(4, || request(&proxy, Method::GET, "/", vec![])).await;
    assert_eq!(got, [200; 4]);
    assert_eq!(retries_counted(&proxy, "invalid_header"), 2);
}

#[tokio::test]
async fn an_upgrade_goes_on_after_a_refused_connect_but_never_once_sent() {
    let ws = WsBackend::start("ws").await;
    let proxy = proxy_over(vec![refusing_addr(), ws.addr], Retry::default(), |_| {}).await;
    for _ in 0..4 {
        let (_socket, response) = ws_connect(proxy.addr, "h", "/").await;
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    }
    let refusing = RefusingBackend::start(StatusCode::SERVICE_UNAVAILABLE, "busy").await;
    let retry = Retry {
        on: on("error timeout http_503"),
        ..Retry::default()
    };
    let proxy = proxy_over(vec![refusing.addr, ws.addr], retry, |_| {}).await;
    let mut refused = 0;
    for _ in 0..4 {
        if try_ws_connect(proxy.addr, "h", "/").await.is_err() {
            refused += 1;
        }
    }
    assert_eq!(
        refused, 2,
        "the half that went to the refusing endpoint first"
    );
    assert_eq!(refusing.heads().len(), 2);
}
