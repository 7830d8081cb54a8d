//! Canary releases with real backends: the split a weight gives, ingress-nginx's precedence of
//! header, cookie and weight, a canary without endpoints, weights changed while requests flow,
//! and (with the `weir` binary in `--manifests` mode) the metrics and access log naming the
//! backend that served each request.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, Request};
use http_body_util::Full;

use common::manifests::{ingress_yaml, ingress_yaml_with, service_yaml, write};
use common::metrics::{scrape_until, sum};
use common::process::WeirProcess;
use common::*;
use weir::model::{
    Affinity, Backend, Balance, Canary, CanaryRule, HeaderRule, ObjectKind, ObjectRef, PathRule,
    RouteTable,
};
use weir::proxy::ProxyConfig;

const LIMIT: Duration = Duration::from_secs(10);

/// A table whose one route (every host, `/`) goes to `main` with a canary to `canary`.
fn canary_table(main: SocketAddr, canary: Vec<SocketAddr>, rule: CanaryRule) -> RouteTable {
    canary_table_with(main, canary, rule, Balance::default())
}

/// Like [`canary_table`], both backends balanced with `balance`.
fn canary_table_with(
    main: SocketAddr,
    canary: Vec<SocketAddr>,
    rule: CanaryRule,
    balance: Balance,
) -> RouteTable {
    let route = with_policy(route("main", vec![main]), |p| p.balance = balance.clone());
    let mut route = route;
    route.canary = Some(Arc::new(Canary {
        ingress: ObjectRef::new(ObjectKind::Ingress, "default", "main-canary"),
        backend: Arc::new(Backend::new(
            ObjectRef::new(ObjectKind::Service, "default", "canary"),
            "80",
            canary,
        )),
        rule,
        balance,
    }));
    routes(vec![("", PathRule::prefix("/"), route)])
}

fn weight(weight: u32, total: u32) -> CanaryRule {
    CanaryRule {
        weight,
        total,
        ..CanaryRule::none()
    }
}

/// Which backend answered a GET with `headers`.
async fn served_by(proxy: &TestProxy, headers: &[(&str, &str)]) -> String {
    let mut req = Request::get(format!("http://{}/", proxy.addr)).header("host", "app.local");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let answer = send(&http1_client(), req.body(Full::<Bytes>::default()).unwrap()).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.echo().backend().to_owned()
}

/// How many of `n` requests the canary served.
async fn canary_share(proxy: &TestProxy, n: usize) -> usize {
    let client = http1_client();
    let mut to_canary = 0;
    for _ in 0..n {
        let answer = get(&client, proxy.addr, "app.local", "/").await;
        assert_eq!(answer.status, 200);
        if answer.echo().backend() == "canary" {
            to_canary += 1;
        }
    }
    to_canary
}

/// Weight 20 of 100 over 10,000 requests: 2,000 expected, standard deviation 40; the bound
/// of ±2 % (±200) is five standard deviations, so this fails by chance about once in 1.7
/// million runs. Weight 1 of 1,000 (`canary-weight-total`) over the same requests: 10
/// expected, bound 0 to 30 (more than 6 standard deviations above).
#[tokio::test]
async fn a_weight_sends_its_share_of_the_requests() {
    let main = TestBackend::start("main").await;
    let canary = TestBackend::start("canary").await;
    let proxy = TestProxy::start(
        ProxyConfig::default(),
        canary_table(main.addr, vec![canary.addr], weight(20, 100)),
    )
    .await;
    let share = canary_share(&proxy, 10_000).await;
    assert!((1_800..=2_200).contains(&share), "canary served {share}");

    proxy.publish(canary_table(main.addr, vec![canary.addr], weight(1, 1000)));
    let share = canary_share(&proxy, 10_000).await;
    assert!(share <= 30, "canary served {share}");
}

/// ingress-nginx's precedence, request by request: the header, then the cookie, then the
/// weight (0 or 100 here, so that the weight's answer is certain).
#[tokio::test]
async fn header_then_cookie_then_weight_decide() {
    let main = TestBackend::start("main").await;
    let canary = TestBackend::start("canary").await;
    let rule = |header: Option<HeaderRule>, weight: u32| CanaryRule {
        header: header.map(|rule| (HeaderName::from_static("x-canary"), rule)),
        cookie: Some("canary".to_owned()),
        weight,
        total: 100,
    };
    let proxy = TestProxy::start(
        ProxyConfig::default(),
        canary_table(main.addr, vec![canary.addr], rule(None, 0)),
    )
    .await;
    type Case<'a> = (Option<HeaderRule>, u32, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            Some(HeaderRule::AlwaysNever),
            0,
            &[("x-canary", "always")],
            "canary",
        ),
        (
            Some(HeaderRule::AlwaysNever),
            100,
            &[("x-canary", "never"), ("cookie", "canary=always")],
            "main",
        ),
        (
            Some(HeaderRule::AlwaysNever),
            0,
            &[("x-canary", "other"), ("cookie", "canary=always")],
            "canary",
        ),
        (
            Some(HeaderRule::AlwaysNever),
            100,
            &[("x-canary", "other")],
            "canary",
        ),
        (
            Some(HeaderRule::Value("v2".into())),
            0,
            &[("x-canary", "v2")],
            "canary",
        ),
        (
            Some(HeaderRule::Value("v2".into())),
            100,
            &[("x-canary", "never")],
            "canary",
        ),
        (
            Some(HeaderRule::Pattern(
                regex::Regex::new("^(beta|v2)$").unwrap(),
            )),
            0,
            &[("x-canary", "beta")],
            "canary",
        ),
        (None, 100, &[("cookie", "a=1; canary=never")], "main"),
        (None, 0, &[("cookie", "canary=always")], "canary"),
        (None, 0, &[("x-canary", "always")], "main"),
        (None, 100, &[], "canary"),
        (None, 0, &[], "main"),
    ];
    for (header, weight, headers, want) in cases {
        proxy.publish(canary_table(
            main.addr,
            vec![canary.addr],
            rule(header.clone(), *weight),
        ));
        let got = served_by(&proxy, headers).await;
        assert_eq!(got, *want, "{header:?} weight {weight} {headers:?}");
    }
}

/// A canary without ready endpoints leaves every request to the main backend, even those
/// its rule picks (as ingress-nginx, which has no balancer for it then).
#[tokio::test]
async fn a_canary_without_endpoints_leaves_every_request_to_the_main_backend() {
    let main = TestBackend::start("main").await;
    let proxy = TestProxy::start(
        ProxyConfig::default(),
        canary_table(main.addr, vec![], weight(100, 100)),
    )
    .await;
    assert_eq!(served_by(&proxy, &[]).await, "main");
}

/// With cookie affinity on the main Ingress (`affinity-canary-behavior: sticky`, the default),
/// a session the canary started stays on the canary and one the main backend started stays
/// there, whatever the weight says afterwards.
#[tokio::test]
async fn sessions_stay_with_the_backend_that_started_them() {
    let main = TestBackend::start("main").await;
    let canary = TestBackend::start("canary").await;
    let sticky = Balance {
        affinity: Some(Arc::new(Affinity::default())),
        ..Balance::default()
    };
    let rule = CanaryRule {
        header: Some((HeaderName::from_static("x-canary"), HeaderRule::AlwaysNever)),
        ..weight(50, 100)
    };
    let proxy = TestProxy::start(
        ProxyConfig::default(),
        canary_table_with(main.addr, vec![canary.addr], rule, sticky),
    )
    .await;
    let client = http1_client();
    let session = |headers: &[(&str, &str)]| {
        let mut req = Request::get(format!("http://{}/", proxy.addr)).header("host", "app.local");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        send(&client, req.body(Full::<Bytes>::default()).unwrap())
    };
    for (asked, backend) in [("always", "canary"), ("never", "main")] {
        let first = session(&[("x-canary", asked)]).await;
        assert_eq!(first.echo().backend(), backend);
        let cookie = first.headers["set-cookie"].to_str().unwrap();
        let cookie = cookie.split(';').next().unwrap().to_owned();
        // Weight 50: without the cookie about half of 200 requests would change backend.
        for _ in 0..200 {
            let next = session(&[("cookie", &cookie)]).await;
            assert_eq!(next.echo().backend(), backend, "session of {cookie}");
            assert!(next.headers.get("set-cookie").is_none());
        }
    }
}

/// Weights changed while requests flow (new tables published between requests, as a
/// rollout does): no request fails, and each step's split holds.
#[tokio::test]
async fn weights_change_while_requests_flow_without_a_failure() {
    let main = TestBackend::start("main").await;
    let canary = TestBackend::start("canary").await;
    let proxy = Arc::new(
        TestProxy::start(
            ProxyConfig::default(),
            canary_table(main.addr, vec![canary.addr], weight(0, 100)),
        )
        .await,
    );
    for step in [0, 10, 50, 100] {
        proxy.publish(canary_table(
            main.addr,
            vec![canary.addr],
            weight(step, 100),
        ));
        // 2,000 requests, sd at most 22.4: ±120 is more than five of them.
        let share = canary_share(&proxy, 2_000).await as i64;
        let expected = 20 * i64::from(step);
        assert!(
            (share - expected).abs() <= 120,
            "weight {step}: canary served {share} of 2000"
        );
    }
}

/// The `weir` binary with a main and a canary Ingress: the canary's requests count under the
/// canary Ingress and Service, and the access log names the canary's backend in
/// ingress-nginx's `[$proxy_alternative_upstream_name]` field.
#[tokio::test]
async fn metrics_and_the_access_log_name_the_backend_that_served() {
    let main = TestBackend::start("main").await;
    let canary = TestBackend::start("canary").await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "main-svc.yaml",
        &service_yaml("web", &[main.addr]),
    );
    write(
        dir.path(),
        "canary-svc.yaml",
        &service_yaml("web-v2", &[canary.addr]),
    );
    write(
        dir.path(),
        "main.yaml",
        &ingress_yaml("app", "app.local", "/", "web"),
    );
    write(
        dir.path(),
        "canary.yaml",
        &ingress_yaml_with(
            "app-canary",
            "app.local",
            "/",
            "web-v2",
            &[
                ("nginx.ingress.kubernetes.io/canary", "true"),
                ("nginx.ingress.kubernetes.io/canary-by-header", "x-canary"),
            ],
        ),
    );
    let weir = WeirProcess::spawn_with_env(
        &["--manifests", dir.path().to_str().unwrap()],
        &[("RUST_LOG", "info")],
    );
    weir.until_ready().await;
    let client = http1_client();
    let request = |canary: bool| {
        let mut req =
            Request::get(format!("http://{}/served", weir.http)).header("host", "app.local");
        if canary {
            req = req.header("x-canary", "always");
        }
        req.body(Full::<Bytes>::default()).unwrap()
    };
    for (canary, want) in [(true, "canary"), (false, "main"), (true, "canary")] {
        let answer = send(&client, request(canary)).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert_eq!(answer.echo().backend(), want);
    }
    scrape_until(&weir, "both backends' requests", LIMIT, |samples| {
        let count = |ingress, service| {
            sum(
                samples,
                "weir_requests_total",
                &[
                    ("ingress", ingress),
                    ("service", service),
                    ("status", "200"),
                ],
            )
        };
        count("app-canary", "web-v2") == 2.0 && count("app", "web") == 1.0
    })
    .await;
    let lines = weir
        .wait_for_access_lines(3, LIMIT, |line| line.contains("/served"))
        .await;
    assert!(
        lines[0].contains("[default-web-http] [default-web-v2-http]"),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains("[default-web-http] [] "), "{}", lines[1]);
}
