//! Balancing end to end: Ingress annotations (`load-balance`, `upstream-hash-by`, `affinity`
//! and the `session-cookie-*` family) read by weir's model, enforced by the real proxy on a
//! socket in front of real backends, across table swaps that add and remove endpoints.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use common::fault::FaultProxy;
use common::*;
use http::header::{COOKIE, SET_COOKIE};
use http::{Request, StatusCode};
use http_body_util::Full;
use weir::model::{BuildConfig, RouteTable};
use weir::proxy::ProxyConfig;

const HOST: &str = "app.example.com";

/// The table of one Ingress `app` with these ingress-nginx annotations, routing `HOST` path
/// `/shop` (Prefix) to Service `app` on `endpoints`; the build must report nothing.
fn app(annotations: &[(&str, &str)], endpoints: &[SocketAddr]) -> RouteTable {
    let ingress = nginx_ingress(
        "app",
        annotations,
        rule(HOST, &[("/shop", "Prefix", "app")]),
    );
    let built = build_table(
        vec![ingress],
        vec![service_json("app", endpoints)],
        &BuildConfig::default(),
    );
    assert!(built.diagnostics.is_empty(), "{:#?}", built.diagnostics);
    built.table
}

async fn backends(n: usize) -> Vec<TestBackend> {
    let mut all = Vec::new();
    for i in 0..n {
        all.push(TestBackend::start(&format!("b{i}")).await);
    }
    all
}

fn addrs(backends: &[TestBackend]) -> Vec<SocketAddr> {
    backends.iter().map(|b| b.addr).collect()
}

/// GET `path` on `HOST` with these extra headers; the answer must be an echo (200).
async fn visit(proxy: &TestProxy, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = Request::get(format!("http://{}{path}", proxy.addr)).header("host", HOST);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let answer = send(&http1_client(), req.body(Full::default()).unwrap()).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    answer
}

/// The addresses of `backends` but the one named `name`.
fn without(backends: &[TestBackend], name: &str) -> Vec<SocketAddr> {
    backends
        .iter()
        .filter(|b| b.name != name)
        .map(|b| b.addr)
        .collect()
}

/// `n` requests to `path` with `cookie` all reach `backend` and get no new affinity cookie.
async fn sticks(proxy: &TestProxy, path: &str, cookie: &str, backend: &str, n: usize) {
    for _ in 0..n {
        let answer = visit(proxy, path, &[("cookie", cookie)]).await;
        assert_eq!(answer.echo().backend(), backend);
        assert!(affinity_cookies(&answer, "INGRESSCOOKIE").is_empty());
    }
}

/// The `Set-Cookie` headers of `answer` for the affinity cookie `name`.
fn affinity_cookies<'a>(answer: &'a Answer, name: &str) -> Vec<&'a str> {
    answer
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| v.starts_with(&format!("{name}=")))
        .collect()
}

/// The `name=value` part of the one affinity cookie `answer` sets.
fn new_cookie(answer: &Answer) -> String {
    let cookies = affinity_cookies(answer, "INGRESSCOOKIE");
    assert_eq!(cookies.len(), 1, "{:?}", answer.headers);
    cookies[0].split(';').next().unwrap().to_owned()
}

/// How many of `answers` each backend served.
fn served_by(answers: &[Answer]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for answer in answers {
        *counts
            .entry(answer.echo().backend().to_owned())
            .or_insert(0) += 1;
    }
    counts
}

#[tokio::test]
async fn round_robin_gives_each_endpoint_its_turn() {
    let backends = backends(3).await;
    let proxy = TestProxy::start(ProxyConfig::default(), app(&[], &addrs(&backends))).await;
    let mut answers = Vec::new();
    for _ in 0..300 {
        answers.push(visit(&proxy, "/shop", &[]).await);
    }
    // One request at a time: exactly one in three each.
    let counts = served_by(&answers);
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        [100, 100, 100]
    );
}

/// Peak EWMA with two choices: an endpoint slowed by 50 ms (a fault proxy in front of it)
/// gets few requests, also right after a table swap (the scores survive it).
#[tokio::test]
async fn ewma_moves_traffic_away_from_a_slowed_endpoint() {
    let backends = backends(3).await;
    let slow = FaultProxy::start(backends[2].addr, Duration::from_millis(50)).await;
    let endpoints = [backends[0].addr, backends[1].addr, slow.addr];
    let table = || app(&[("load-balance", "ewma")], &endpoints);
    let proxy = TestProxy::start(ProxyConfig::default(), table()).await;
    let mut answers = Vec::new();
    // 300 requests, 4 at a time.
    for _ in 0..75 {
        let batch = (0..4).map(|_| visit(&proxy, "/shop", &[]));
        answers.extend(futures_util::future::join_all(batch).await);
    }
    let counts = served_by(&answers);
    let slowed = counts.get("b2").copied().unwrap_or(0);
    // Round robin would send it 100; EWMA only the requests before its first answer and the
    // ones in flight then (at most a few batches). Bound: under 10 %.
    assert!(slowed < 30, "{counts:?}");
    // The same Ingress published again (new route objects): the balancer and its scores
    // carry over, so not one of the next 40 requests goes to the slow endpoint. (A fresh
    // balancer would know nothing and send it about a third until it learned.)
    proxy.publish(table());
    for _ in 0..40 {
        let answer = visit(&proxy, "/shop", &[]).await;
        assert_ne!(answer.echo().backend(), "b2");
    }
}

/// `affinity: cookie` (mode balanced): the first answer sets the cookie, the next 1,000
/// requests with it reach the same endpoint and set none; when that endpoint leaves, the
/// cookie's key lands on another endpoint (ingress-nginx re-hashes the same key), which then
/// keeps the session.
#[tokio::test]
async fn sticky_sessions_hold_and_move_when_their_endpoint_leaves() {
    let backends = backends(3).await;
    let all = addrs(&backends);
    let annotations = [("affinity", "cookie")];
    let proxy = TestProxy::start(ProxyConfig::default(), app(&annotations, &all)).await;
    let first = visit(&proxy, "/shop/cart", &[]).await;
    let cookie = new_cookie(&first);
    let home = first.echo().backend().to_owned();
    // Opaque: neither the address nor the port of any endpoint.
    for addr in &all {
        assert!(!cookie.contains(&addr.port().to_string()), "{cookie}");
    }
    sticks(&proxy, "/shop/cart", &cookie, &home, 1000).await;
    proxy.publish(app(&annotations, &without(&backends, &home)));
    let moved = visit(&proxy, "/shop/cart", &[("cookie", &cookie)]).await;
    let new_home = moved.echo().backend().to_owned();
    assert_ne!(new_home, home);
    assert!(affinity_cookies(&moved, "INGRESSCOOKIE").is_empty());
    sticks(&proxy, "/shop/cart", &cookie, &new_home, 100).await;
}

/// `affinity-mode: persistent`: the cookie names its endpoint; when the endpoint leaves, the
/// next request goes to another one and gets a new cookie, which then holds.
#[tokio::test]
async fn persistent_sessions_get_a_new_cookie_when_their_endpoint_leaves() {
    let backends = backends(3).await;
    let annotations = [("affinity", "cookie"), ("affinity-mode", "persistent")];
    let proxy =
        TestProxy::start(ProxyConfig::default(), app(&annotations, &addrs(&backends))).await;
    let first = visit(&proxy, "/shop", &[]).await;
    let cookie = new_cookie(&first);
    let home = first.echo().backend().to_owned();
    proxy.publish(app(&annotations, &without(&backends, &home)));
    let moved = visit(&proxy, "/shop", &[("cookie", &cookie)]).await;
    assert_ne!(moved.echo().backend(), home);
    let renewed = new_cookie(&moved);
    assert_ne!(renewed, cookie);
    sticks(&proxy, "/shop", &renewed, moved.echo().backend(), 50).await;
}

/// Endpoints added: `persistent` keeps every session where it was; `balanced` moves some of
/// them, and only to the new endpoints.
#[tokio::test]
async fn persistent_keeps_sessions_when_endpoints_are_added_and_balanced_rebalances() {
    let backends = backends(4).await;
    let all = addrs(&backends);
    for (mode, may_move) in [("persistent", false), ("balanced", true)] {
        let annotations = [("affinity", "cookie"), ("affinity-mode", mode)];
        let proxy = TestProxy::start(ProxyConfig::default(), app(&annotations, &all[..2])).await;
        let mut sessions = Vec::new();
        for _ in 0..60 {
            let answer = visit(&proxy, "/shop", &[]).await;
            sessions.push((new_cookie(&answer), answer.echo().backend().to_owned()));
        }
        proxy.publish(app(&annotations, &all));
        let mut moved = 0;
        for (cookie, home) in &sessions {
            let answer = visit(&proxy, "/shop", &[("cookie", cookie)]).await;
            let now = answer.echo().backend().to_owned();
            if now != *home {
                assert!(
                    ["b2", "b3"].contains(&now.as_str()),
                    "{mode}: moved to an old endpoint"
                );
                moved += 1;
            }
        }
        if may_move {
            // Each key moves to a new endpoint with probability about 1/2 (2 of 4 on the
            // ring): 30 of 60 expected, standard deviation about 4. Bound: 10 to 50.
            assert!((10..=50).contains(&moved), "{mode}: {moved} of 60 moved");
        } else {
            assert_eq!(moved, 0, "{mode}");
        }
    }
}

/// `upstream-hash-by: $request_uri`: a URI always reaches the same endpoint, and removing one
/// of 5 endpoints moves only that endpoint's URIs — about 1/5 of them.
#[tokio::test]
async fn hashing_by_uri_is_consistent_and_removal_moves_about_one_fifth() {
    let backends = backends(5).await;
    let all = addrs(&backends);
    let annotations = [("upstream-hash-by", "$request_uri")];
    let proxy = TestProxy::start(ProxyConfig::default(), app(&annotations, &all)).await;
    let uris: Vec<String> = (0..500).map(|i| format!("/shop/item/{i}")).collect();
    let mut owner = Vec::new();
    for uri in &uris {
        owner.push(visit(&proxy, uri, &[]).await.echo().backend().to_owned());
    }
    for (uri, home) in uris.iter().zip(&owner).take(100) {
        assert_eq!(visit(&proxy, uri, &[]).await.echo().backend(), home);
    }
    let removed = &backends[1];
    let rest = without(&backends, &removed.name);
    proxy.publish(app(&annotations, &rest));
    let mut moved = 0;
    for (uri, home) in uris.iter().zip(&owner) {
        let now = visit(&proxy, uri, &[]).await.echo().backend().to_owned();
        if now != *home {
            assert_eq!(
                *home, removed.name,
                "{uri} moved off an endpoint that stayed"
            );
            moved += 1;
        }
    }
    // The removed endpoint's share of the ring: 1/5 ± about 15 % with 160 points each, and
    // the sample of 500 URIs adds about ±0.018. Bound: 0.12 to 0.28.
    let fraction = f64::from(moved) / uris.len() as f64;
    assert!((0.12..=0.28).contains(&fraction), "{fraction}");
}

/// Hash keys built from headers, cookies and arguments, with text between them; and subsets.
#[tokio::test]
async fn hash_keys_from_headers_and_subsets() {
    let backends = backends(6).await;
    let all = addrs(&backends);
    let by_user = [("upstream-hash-by", "user-$http_x_user-$arg_tenant")];
    let proxy = TestProxy::start(ProxyConfig::default(), app(&by_user, &all)).await;
    let mut homes = BTreeSet::new();
    for user in ["alice", "bob", "carol", "dave", "erin", "frank", "grace"] {
        let mut seen = BTreeSet::new();
        for path in [
            "/shop/a?tenant=t1",
            "/shop/b?tenant=t1&x=1",
            "/shop/c?tenant=t1",
        ] {
            seen.insert(
                visit(&proxy, path, &[("x-user", user)])
                    .await
                    .echo()
                    .backend()
                    .to_owned(),
            );
        }
        assert_eq!(seen.len(), 1, "{user}: one endpoint whatever the path");
        homes.extend(seen);
    }
    assert!(homes.len() > 1, "users spread over endpoints: {homes:?}");
    // Subsets of 3: one key uses the 3 endpoints of its subset, at random.
    let subsets = [
        ("upstream-hash-by", "$http_x_user"),
        ("upstream-hash-by-subset", "true"),
    ];
    proxy.publish(app(&subsets, &all));
    let mut seen = BTreeSet::new();
    for _ in 0..100 {
        seen.insert(
            visit(&proxy, "/shop", &[("x-user", "alice")])
                .await
                .echo()
                .backend()
                .to_owned(),
        );
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
}

/// The cookie's attributes as ingress-nginx writes them: the rule's path, HttpOnly, the
/// `session-cookie-*` ones, and SameSite=None only for browsers that accept it.
#[tokio::test]
async fn cookie_attributes() {
    let backends = backends(2).await;
    let all = addrs(&backends);
    let plain =
        TestProxy::start(ProxyConfig::default(), app(&[("affinity", "cookie")], &all)).await;
    let answer = visit(&plain, "/shop", &[]).await;
    let cookie = affinity_cookies(&answer, "INGRESSCOOKIE")[0].to_owned();
    let attributes: Vec<&str> = cookie.split("; ").skip(1).collect();
    assert_eq!(attributes, ["Path=/shop", "HttpOnly"], "{cookie}");

    let annotations = [
        ("affinity", "cookie"),
        ("session-cookie-name", "route"),
        ("session-cookie-path", "/"),
        ("session-cookie-domain", "example.com"),
        ("session-cookie-max-age", "172800"),
        ("session-cookie-expires", "172800"),
        ("session-cookie-samesite", "None"),
        ("session-cookie-conditional-samesite-none", "true"),
        ("session-cookie-secure", "true"),
    ];
    let full = TestProxy::start(ProxyConfig::default(), app(&annotations, &all)).await;
    let modern = "Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0.0.0 Safari/537.36";
    let answer = visit(&full, "/shop", &[("user-agent", modern)]).await;
    let cookie = affinity_cookies(&answer, "route")[0].to_owned();
    for attribute in [
        "Max-Age=172800",
        "Domain=example.com",
        "Path=/",
        "Secure",
        "HttpOnly",
        "SameSite=None",
    ] {
        assert!(
            cookie.split("; ").any(|a| a == attribute),
            "{attribute}: {cookie}"
        );
    }
    assert!(cookie.contains("; Expires="), "{cookie}");
    assert!(affinity_cookies(&answer, "INGRESSCOOKIE").is_empty());
    // Chrome 51 drops SameSite=None cookies: the attribute is left out for it.
    let old = "Mozilla/5.0 (Windows NT 10.0) Chrome/51.0.2704.103 Safari/537.36";
    let answer = visit(&full, "/shop", &[("user-agent", old)]).await;
    let cookie = affinity_cookies(&answer, "route")[0];
    assert!(!cookie.contains("SameSite"), "{cookie}");
    // The endpoint receives the request's cookies as they were.
    let answer = visit(&full, "/shop", &[("cookie", "route=abc|def; other=1")]).await;
    assert_eq!(
        answer.echo().header(COOKIE.as_str()).as_deref(),
        Some("route=abc|def; other=1")
    );
}

/// Bad values: a Diagnostic, and the route keeps serving with the default.
#[tokio::test]
async fn bad_values_are_reported_and_the_route_keeps_serving() {
    let backends = backends(2).await;
    let ingress = nginx_ingress(
        "app",
        &[
            ("load-balance", "least_conn"),
            ("upstream-hash-by", "$upstream_addr"),
            ("affinity", "cookie"),
            ("session-cookie-samesite", "sometimes"),
        ],
        rule(HOST, &[("/shop", "Prefix", "app")]),
    );
    let built = build_table(
        vec![ingress],
        vec![service_json("app", &addrs(&backends))],
        &BuildConfig::default(),
    );
    let messages: Vec<&str> = built
        .diagnostics
        .iter()
        .map(|d| d.message.as_str())
        .collect();
    assert_eq!(messages.len(), 3, "{messages:#?}");
    for name in [
        "load-balance",
        "upstream-hash-by",
        "session-cookie-samesite",
    ] {
        assert!(
            messages.iter().any(|m| m.contains(name)),
            "{name}: {messages:#?}"
        );
    }
    let proxy = TestProxy::start(ProxyConfig::default(), built.table).await;
    let answer = visit(&proxy, "/shop", &[]).await;
    assert!(!affinity_cookies(&answer, "INGRESSCOOKIE")[0].contains("SameSite"));
}
