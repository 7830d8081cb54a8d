//! The fault battery: for each way an endpoint can misbehave, what the client sees, the status
//! in the access log, the upstream error counted, and that nothing is left behind (weir's
//! client and endpoint connections closed, its connection tasks gone). Real sockets: a scripted
//! endpoint (`common::scripted`) and a raw client that reads everything weir sends.

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::scripted::{ScriptedBackend, Step};
use common::*;
use weir::model::PathRule;
use weir::proxy::ProxyConfig;

const LIMIT: Duration = Duration::from_secs(5);
const GET: &[u8] = b"GET /f HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";

/// A proxy in front of `backend`, with a 300 ms read timeout and an access log in memory.
async fn proxy_for(backend: &ScriptedBackend) -> (TestProxy, Arc<Mutex<String>>) {
    let (log, lines) = memory_access_log();
    let config = ProxyConfig {
        access_log: Some(log),
        ..ProxyConfig::default()
    };
    let rows = [("h", PathRule::prefix("/"), "s", vec![backend.addr])];
    let table = table_with(&rows, |policy| {
        policy.timeouts.read = Duration::from_millis(300);
    });
    (TestProxy::start(config, table).await, lines)
}

fn metric(proxy: &TestProxy, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = proxy.state.metrics().encode();
    common::metrics::sum(&common::metrics::parse(&text), name, labels)
}

/// What one fault must come to.
struct Expect {
    /// The start of what the client reads.
    starts: &'static str,
    /// The access log's status.
    logged: u16,
    /// `weir_upstream_errors_total{reason}`, when one is counted.
    upstream_error: Option<&'static str>,
    /// The endpoint connection ended the exchange sound: it is pooled and serves the next
    /// request (else weir must have closed it).
    reused: bool,
}

/// Sends one request through a proxy in front of an endpoint playing `script`, and checks what
/// the client read (returned), the access log, the metric, and that every connection and task
/// is gone afterwards.
async fn fault(script: Vec<Step>, expect: Expect) -> String {
    let backend = ScriptedBackend::start(script).await;
    let (proxy, lines) = proxy_for(&backend).await;
    let idle_tasks = proxy.tasks.len();
    let answer = raw(proxy.addr, GET).await;
    assert!(answer.starts_with(expect.starts), "{answer:?}");
    let status = format!("\"GET /f HTTP/1.1\" {} ", expect.logged);
    wait_until("the request is logged", LIMIT, || {
        lines.lock().unwrap().contains(&status)
    })
    .await;
    if let Some(reason) = expect.upstream_error {
        let counted = metric(&proxy, "weir_upstream_errors_total", &[("reason", reason)]);
        assert_eq!(counted, 1.0, "{}", proxy.state.metrics().encode());
    }
    if expect.reused {
        let again = raw(proxy.addr, GET).await;
        assert!(again.starts_with(expect.starts), "{again:?}");
        assert_eq!(
            backend.accepted.load(Ordering::SeqCst),
            1,
            "one pooled connection"
        );
    } else {
        wait_until("the endpoint connection is closed", LIMIT, || {
            backend.open.load(Ordering::SeqCst) == 0
        })
        .await;
    }
    // A pooled endpoint connection has a task of its own.
    let pooled = usize::from(expect.reused);
    wait_until("the client connection is gone", LIMIT, || {
        metric(&proxy, "weir_client_connections_active", &[]) == 0.0
            && proxy.tasks.len() == idle_tasks + pooled
    })
    .await;
    answer
}

fn head(extra: &str) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\n{extra}\r\n").into_bytes()
}

#[tokio::test]
async fn an_endpoint_resetting_mid_response_leaves_the_response_visibly_cut() {
    let mut start = head("Content-Length: 100\r\n");
    start.extend([b'x'; 10]);
    let answer = fault(
        vec![
            Step::Send(start),
            Step::Pause(Duration::from_millis(50)),
            Step::Reset,
        ],
        Expect {
            starts: "HTTP/1.1 200 OK",
            logged: 200,
            upstream_error: None,
            reused: false,
        },
    )
    .await;
    let body = answer.split_once("\r\n\r\n").unwrap().1;
    assert!(body.len() < 100, "the client got a whole body: {answer:?}");
}

#[tokio::test]
async fn an_endpoint_closing_mid_body_never_yields_a_complete_looking_response() {
    // Content-Length: fewer bytes than announced, then the connection ends.
    let mut start = head("Content-Length: 100\r\n");
    start.extend([b'x'; 10]);
    let answer = fault(
        vec![Step::Send(start), Step::Close],
        Expect {
            starts: "HTTP/1.1 200 OK",
            logged: 200,
            upstream_error: None,
            reused: false,
        },
    )
    .await;
    assert!(answer.split_once("\r\n\r\n").unwrap().1.len() < 100);

    // Chunked: never the last chunk.
    let mut start = head("Transfer-Encoding: chunked\r\n");
    start.extend(b"5\r\nhello\r\n");
    let answer = fault(
        vec![Step::Send(start), Step::Close],
        Expect {
            starts: "HTTP/1.1 200 OK",
            logged: 200,
            upstream_error: None,
            reused: false,
        },
    )
    .await;
    assert!(answer.contains("hello"), "{answer:?}");
    assert!(!answer.ends_with("0\r\n\r\n"), "a last chunk: {answer:?}");
}

#[tokio::test]
async fn an_endpoint_that_never_answers_gets_504_after_the_read_timeout() {
    fault(
        vec![],
        Expect {
            starts: "HTTP/1.1 504",
            logged: 504,
            upstream_error: Some("response_timeout"),
            reused: false,
        },
    )
    .await;
}

#[tokio::test]
async fn a_trickling_response_within_the_read_timeout_arrives_whole() {
    let answer = fault(
        vec![
            Step::Send(head("Content-Length: 8\r\n")),
            Step::Trickle(b"trickled".to_vec(), Duration::from_millis(60)),
        ],
        Expect {
            starts: "HTTP/1.1 200 OK",
            logged: 200,
            upstream_error: None,
            reused: true,
        },
    )
    .await;
    assert!(answer.ends_with("\r\n\r\ntrickled"), "{answer:?}");
}

#[tokio::test]
async fn invalid_http_from_the_endpoint_is_502() {
    fault(
        vec![Step::Send(b"HELLO THERE\r\n\r\n".to_vec()), Step::Close],
        Expect {
            starts: "HTTP/1.1 502",
            logged: 502,
            upstream_error: Some("request_failed"),
            reused: false,
        },
    )
    .await;
}

#[tokio::test]
async fn informational_responses_before_the_final_one_are_passed_over() {
    // A 103 Early Hints and a stray 100 Continue, then the response.
    let mut script = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n".to_vec();
    script.extend(b"HTTP/1.1 100 Continue\r\n\r\n");
    script.extend(head("Content-Length: 2\r\n"));
    script.extend(b"ok");
    let answer = fault(
        vec![Step::Send(script)],
        Expect {
            starts: "HTTP/1.1 200 OK",
            logged: 200,
            upstream_error: None,
            reused: true,
        },
    )
    .await;
    assert!(answer.ends_with("\r\n\r\nok"), "{answer:?}");
}

#[tokio::test]
async fn a_response_head_larger_than_the_limit_is_502() {
    let mut big = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
    big.extend(vec![b'a'; 1024 * 1024]);
    big.extend(b"\r\nContent-Length: 0\r\n\r\n");
    fault(
        vec![Step::Send(big)],
        Expect {
            starts: "HTTP/1.1 502",
            logged: 502,
            upstream_error: Some("request_failed"),
            reused: false,
        },
    )
    .await;
}
