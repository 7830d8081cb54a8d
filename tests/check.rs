//! `weir check` as a user runs it: on a directory of ingress-nginx Ingresses, before switching.

mod common;

use std::process::{Command, Output};

use common::manifests::{ingress_yaml_with, service_yaml, write};

fn weir_check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("check")
        .args(args)
        .output()
        .expect("the weir binary runs")
}

const EXAMPLE: [&str; 6] = [
    "--manifests",
    "examples/ingress-nginx",
    "--ingress-class",
    "nginx",
    "--configmap",
    "ingress-nginx/ingress-nginx-controller",
];

#[test]
fn the_example_cluster_is_reported_ingress_by_ingress_and_exits_1() {
    let output = weir_check(&EXAMPLE);
    let text = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(1), "{text}");
    for line in [
        "Ingress shop/shop-api: ok",
        "        at most 20 requests/s per client (burst 100)",
        "  route shop.example.com Regex /api(/|$)(.*) -> shop-api:http (1 endpoint)",
        "        rewrites the path to /$2",
        "  honoured  nginx.ingress.kubernetes.io/rewrite-target: \"/$2\"",
        "Ingress default/docs: ok",
        "Ingress monitoring/grafana: LOSES BEHAVIOUR",
        "        answers 503: an annotation weir cannot apply (fail closed)",
        "Ingress monitoring/prometheus: ok",
        "        allows only clients from 10.0.0.0/8,172.16.0.0/12,192.168.0.0/16",
        "        asks for a password (Basic realm=\"Authentication Required - Prometheus\", 1 user(s))",
        "  invalid   nginx.ingress.kubernetes.io/proxy-read-timeout: \"60s\"",
        "ConfigMap ingress-nginx/ingress-nginx-controller UnsupportedConfigMapKey: weir does not support key \"use-gzip\" (yet); it is ignored",
        "  route shop.example.com Regex / -> shop-frontend-canary:http (1 endpoint)",
        "        canary of Ingress shop/shop-frontend: takes 10 of every 100 requests",
        "12 Ingress(es) of class \"nginx\": 9 served as they ask, 3 would lose behaviour",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing line {line:?} in:\n{text}"
        );
    }
    // The classless Ingress is checked too: nginx is the default class.
    assert!(text.contains("Ingress default/docs"), "{text}");
}

#[test]
fn json_output_is_the_same_report_for_scripts() {
    let mut args = EXAMPLE.to_vec();
    args.extend(["--output", "json"]);
    let output = weir_check(&args);
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let ingresses = report["ingresses"].as_array().unwrap();
    assert_eq!(ingresses.len(), 12);
    let losing = ingresses
        .iter()
        .filter(|i| i["loses_behaviour"] == true)
        .count();
    assert_eq!(losing, 3);
    let docs = ingresses
        .iter()
        .find(|i| i["ingress"] == "default/docs")
        .unwrap();
    assert_eq!(docs["annotations"][0]["status"], "honoured");
}

#[test]
fn ingresses_weir_serves_as_asked_exit_0_and_weirs_own_class_is_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let addr = "127.0.0.1:9".parse().unwrap();
    write(dir.path(), "web.yaml", &service_yaml("web", &[addr]));
    write(
        dir.path(),
        "app.yaml",
        &ingress_yaml_with(
            "app",
            "app.local",
            "/",
            "web",
            &[
                ("nginx.ingress.kubernetes.io/proxy-body-size", "8m"),
                ("nginx.ingress.kubernetes.io/app-root", "/home"),
            ],
        ),
    );
    let output = weir_check(&["--manifests", dir.path().to_str().unwrap()]);
    let text = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("Ingress default/app: ok"), "{text}");
    assert!(
        text.ends_with(
            "1 Ingress(es) of class \"weir\": 1 served as they ask, 0 would lose behaviour\n"
        ),
        "{text}"
    );
}
