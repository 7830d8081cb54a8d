//! ExternalName Services and `service-upstream`, through the real `weir` binary in
//! `--manifests` mode, to real local backends. The names used resolve without a network:
//! `localhost` is answered by the resolver itself, and `.invalid` never exists (RFC 6761).

mod common;

use std::time::{Duration, Instant};

use common::manifests::{ingress_yaml, ingress_yaml_with, write};
use common::process::WeirProcess;
use common::*;

/// An ExternalName Service `name` naming `external_name`, port `http` 80 → `target_port`.
fn external_name_yaml(name: &str, external_name: &str, target_port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  type: ExternalName\n  externalName: {external_name}\n\
         \x20 ports: [{{name: http, port: 80, targetPort: {target_port}}}]\n"
    )
}

/// GETs `host` `/` through weir until it answers `status`; returns the last answer.
async fn until_status(weir: &WeirProcess, host: &str, status: u16) -> Answer {
    let client = http1_client();
    let started = Instant::now();
    loop {
        let answer = get(&client, weir.http, host, "/").await;
        if answer.status == status {
            return answer;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{host} still answers {} instead of {status}; log:\n{}",
            answer.status,
            weir.log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn an_external_name_service_pointing_at_a_local_name() {
    let backend = TestBackend::start("local").await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "service.yaml",
        &external_name_yaml("ext", "localhost", backend.addr.port()),
    );
    write(
        dir.path(),
        "ingress.yaml",
        &ingress_yaml("ext", "ext.test", "/", "ext"),
    );
    let weir = WeirProcess::start(dir.path(), &["--allow-external-name-local-addresses"]);
    weir.until_ready().await;

    let answer = until_status(&weir, "ext.test", 200).await;
    let echo = answer.echo();
    assert_eq!(echo.backend(), "local");
    // As in ingress-nginx, the endpoint gets the request's Host (upstream-vhost changes it).
    assert_eq!(echo.header("host").as_deref(), Some("ext.test"));

    // Resolved once, not per request; one pooled connection serves them all.
    let client = http1_client();
    for _ in 0..5 {
        assert_eq!(get(&client, weir.http, "ext.test", "/").await.status, 200);
    }
    assert_eq!(
        backend
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "weir reuses its connection to the resolved address"
    );
    weir.wait_for_line("the resolved name", Duration::from_secs(5), |l| {
        l.contains("ExternalName resolved") && l.contains("localhost")
    })
    .await;
}

#[tokio::test]
async fn local_addresses_are_refused_without_the_flag() {
    let backend = TestBackend::start("local").await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "service.yaml",
        &external_name_yaml("ext", "localhost", backend.addr.port()),
    );
    write(
        dir.path(),
        "ingress.yaml",
        &ingress_yaml("ext", "ext.test", "/", "ext"),
    );
    let weir = WeirProcess::start(dir.path(), &[]);
    weir.until_ready().await;
    until_status(&weir, "ext.test", 503).await;
    weir.wait_for_line(
        "with the ExternalNameRefused diagnostic",
        Duration::from_secs(5),
        |l| l.contains("ExternalNameRefused") && l.contains("127.0.0.1 (a loopback address)"),
    )
    .await;
    assert_eq!(
        backend
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[tokio::test]
async fn a_name_that_does_not_resolve_answers_503_until_the_service_is_fixed() {
    let backend = TestBackend::start("local").await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "service.yaml",
        &external_name_yaml("ext", "does-not-exist.invalid", backend.addr.port()),
    );
    write(
        dir.path(),
        "ingress.yaml",
        &ingress_yaml("ext", "ext.test", "/", "ext"),
    );
    let weir = WeirProcess::start(dir.path(), &["--allow-external-name-local-addresses"]);
    weir.until_ready().await;
    until_status(&weir, "ext.test", 503).await;
    weir.wait_for_line(
        "with the ExternalNameNotResolved diagnostic",
        Duration::from_secs(5),
        |l| {
            l.contains("ExternalNameNotResolved")
                && l.contains("does-not-exist.invalid")
                && l.contains("NXDOMAIN")
        },
    )
    .await;

    // The Service now names a name that resolves: the new name is looked up and the table
    // rebuilt.
    write(
        dir.path(),
        "service.yaml",
        &external_name_yaml("ext", "localhost", backend.addr.port()),
    );
    let answer = until_status(&weir, "ext.test", 200).await;
    assert_eq!(answer.echo().backend(), "local");
}

#[tokio::test]
async fn service_upstream_sends_to_the_cluster_ip_for_its_ingress_only() {
    // The Service's "cluster IP" is 127.0.0.1 and its port the address of `cluster`; its
    // endpoints are `pods`.
    let cluster = TestBackend::start("cluster-ip").await;
    let pods = TestBackend::start("pods").await;
    let service = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: default}}\n\
         spec:\n  clusterIP: 127.0.0.1\n  ports: [{{name: http, port: {}, targetPort: 8080}}]\n\
         ---\napiVersion: v1\nkind: Endpoints\nmetadata: {{name: web, namespace: default}}\n\
         subsets:\n- addresses: [{{ip: \"127.0.0.1\"}}]\n  ports: [{{name: http, port: {}}}]\n",
        cluster.addr.port(),
        pods.addr.port()
    );
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "service.yaml", &service);
    write(
        dir.path(),
        "direct.yaml",
        &ingress_yaml("direct", "direct.test", "/", "web"),
    );
    write(
        dir.path(),
        "upstream.yaml",
        &ingress_yaml_with(
            "upstream",
            "upstream.test",
            "/",
            "web",
            &[("nginx.ingress.kubernetes.io/service-upstream", "true")],
        ),
    );
    let weir = WeirProcess::start(dir.path(), &[]);
    weir.until_ready().await;
    let client = http1_client();
    let direct = get(&client, weir.http, "direct.test", "/").await;
    assert_eq!(direct.status, 200, "{}", weir.log());
    assert_eq!(direct.echo().backend(), "pods");
    let upstream = get(&client, weir.http, "upstream.test", "/").await;
    assert_eq!(upstream.status, 200, "{}", weir.log());
    assert_eq!(upstream.echo().backend(), "cluster-ip");
    assert!(!weir.log().contains("WARN"), "{}", weir.log());
}
