//! `weir check`: what weir would serve for a set of Ingresses, before anyone switches.
//!
//! The report comes from the same [`model::build`] the controller runs, so it cannot disagree
//! with it: per Ingress, its routes, what weir does with each of its annotations and every
//! Diagnostic. An Ingress "loses behaviour" when weir would not do everything its annotations
//! and rules ask for: an annotation weir does not implement, a value it cannot use, a path it
//! cannot match. `weir check` exits 1 when one does.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::model::annotations::compat::{self, Support};
use crate::model::annotations::{self, NGINX_PREFIX as NGINX, WEIR_PREFIX as WEIR};
use crate::model::{
    self, BuildConfig, Canary, Diagnostic, HeaderRule, Input, ObjectKind, ObjectRef, PathKind,
    Policy, Reason, configmap,
};

/// What weir would do with a set of Ingresses.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The IngressClass checked.
    pub ingress_class: String,
    /// Every Ingress of that class, sorted by namespace and name.
    pub ingresses: Vec<IngressReport>,
    /// Diagnostics about other objects: the controller ConfigMap, the default backend.
    pub other: Vec<DiagnosticReport>,
}

/// One Ingress.
#[derive(Debug, Serialize)]
pub struct IngressReport {
    /// `namespace/name`.
    pub ingress: String,
    /// What it serves.
    pub routes: Vec<RouteReport>,
    /// What weir does with each of its annotations (weir's and ingress-nginx's).
    pub annotations: Vec<AnnotationReport>,
    /// Everything weir reports about it.
    pub diagnostics: Vec<DiagnosticReport>,
    /// Whether weir would not do everything it asks for.
    pub loses_behaviour: bool,
}

/// One route of an Ingress.
#[derive(Debug, Serialize)]
pub struct RouteReport {
    /// The rule host (`*` for every host).
    pub host: String,
    /// The rule path (`""` for a default backend).
    pub path: String,
    /// `Exact`, `Prefix`, `Regex` or `DefaultBackend`.
    pub match_kind: &'static str,
    /// `service:port`.
    pub backend: String,
    /// Ready endpoints.
    pub endpoints: usize,
    /// What the route does beyond forwarding (rewrite, redirect, timeouts, …).
    pub behaviour: Vec<String>,
}

/// One annotation and what weir does with it.
#[derive(Debug, Serialize)]
pub struct AnnotationReport {
    /// The full key.
    pub key: String,
    /// The value as written.
    pub value: String,
    /// `honoured`, `differs`, `no effect`, `not yet`, `never`, `removed`, `unknown`,
    /// `invalid`.
    pub status: &'static str,
    /// Why, when it is not simply honoured.
    pub note: String,
}

/// A Diagnostic, flattened for output.
#[derive(Debug, Serialize)]
pub struct DiagnosticReport {
    /// `Kind namespace/name`.
    pub object: String,
    /// The Event reason.
    pub reason: &'static str,
    /// The message.
    pub message: String,
}

impl From<&Diagnostic> for DiagnosticReport {
    fn from(d: &Diagnostic) -> Self {
        DiagnosticReport {
            object: d.object.to_string(),
            reason: d.reason.as_str(),
            message: d.message.clone(),
        }
    }
}

/// Whether a Diagnostic means weir would not do what the object asks for (rather than a
/// problem ingress-nginx would have too, such as a missing Service).
fn loses_behaviour(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::UnsupportedAnnotation
            | Reason::UnknownAnnotation
            | Reason::InvalidAnnotationValue
            | Reason::InvalidPath
            | Reason::UnsupportedBackend
            | Reason::UnsupportedServiceType
            | Reason::ExternalNameRefused
            | Reason::UnsupportedConfigMapKey
            | Reason::InvalidConfigMapValue
    )
}

/// The report for `input` built with `config` (whose class selects the Ingresses).
pub fn report(input: &Input, config: &BuildConfig) -> Report {
    let built = model::build(input, config);
    let mut ignored = Vec::new();
    let defaults = configmap::defaults(
        input,
        config.config_map.as_ref(),
        &config.defaults,
        &mut ignored,
    );
    let plain = Policy::from_defaults(&defaults);
    let mut by_ingress: BTreeMap<&ObjectRef, Vec<&Diagnostic>> = BTreeMap::new();
    let mut other = Vec::new();
    for diagnostic in &built.diagnostics {
        if diagnostic.object.kind == ObjectKind::Ingress {
            by_ingress
                .entry(&diagnostic.object)
                .or_default()
                .push(diagnostic);
        } else {
            other.push(DiagnosticReport::from(diagnostic));
        }
    }
    let passed_through: BTreeMap<String, String> = built
        .table
        .host_settings()
        .filter_map(|(host, settings)| {
            let passthrough = settings.passthrough.as_ref()?;
            let line = match passthrough.backend() {
                Some(backend) => format!(
                    "its host's TLS connections go unopened to {}:{} (ssl-passthrough); this \
                     route serves plain HTTP",
                    backend.service.name, backend.port
                ),
                None => "its host's TLS connections are closed: ssl-passthrough without a \
                         backend for path /"
                    .to_owned(),
            };
            Some((host.to_string(), line))
        })
        .collect();
    let mut routes: BTreeMap<&ObjectRef, Vec<RouteReport>> = BTreeMap::new();
    for entry in built.table.entries() {
        let route = entry.route;
        let host = match entry.host.to_string() {
            host if host.is_empty() => "*".to_owned(),
            host => host,
        };
        let match_kind = match entry.kind {
            Some(PathKind::Exact) => "Exact",
            Some(PathKind::Prefix) => "Prefix",
            Some(PathKind::Regex) => "Regex",
            None => "DefaultBackend",
        };
        let mut behaviour = describe(&route.policy, &plain, route.https.redirect);
        match built.table.client_auth(&host) {
            Some(Err(_)) => behaviour.insert(
                0,
                "answers 503: the host's client-certificate settings cannot be used".to_owned(),
            ),
            Some(Ok(auth)) => {
                let verify = match auth.verify {
                    crate::model::VerifyClient::On => "required",
                    crate::model::VerifyClient::Optional => "optional",
                    crate::model::VerifyClient::OptionalNoCa => "optional, not verified",
                };
                behaviour.insert(
                    0,
                    format!(
                        "asks for a client certificate ({verify}; CA from Secret {}/{})",
                        auth.secret.namespace, auth.secret.name
                    ),
                );
            }
            None => {}
        }
        if let Some(line) = passed_through.get(&host) {
            behaviour.insert(0, line.clone());
        }
        if let Some(canary) = &route.canary {
            routes
                .entry(&canary.ingress)
                .or_default()
                .push(RouteReport {
                    host: host.clone(),
                    path: entry.path.to_owned(),
                    match_kind,
                    backend: format!("{}:{}", canary.backend.service.name, canary.backend.port),
                    endpoints: canary.backend.endpoints.len(),
                    behaviour: vec![describe_canary(canary, &route.ingress)],
                });
        }
        routes.entry(&route.ingress).or_default().push(RouteReport {
            host,
            path: entry.path.to_owned(),
            match_kind,
            backend: format!("{}:{}", route.backend.service.name, route.backend.port),
            endpoints: route.backend.endpoints.len(),
            behaviour,
        });
    }
    let index: BTreeMap<(String, String), &k8s_openapi::api::networking::v1::Ingress> = input
        .ingresses
        .iter()
        .map(|i| {
            let ns = i
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            (
                (ns, i.metadata.name.clone().unwrap_or_default()),
                i.as_ref(),
            )
        })
        .collect();
    let mut ingresses = Vec::new();
    for object in built.ingresses.iter().map(|o| &**o) {
        let diagnostics = by_ingress.remove(object).unwrap_or_default();
        let mut object_routes = routes.remove(object).unwrap_or_default();
        object_routes.sort_by(|a, b| (&a.host, &a.path).cmp(&(&b.host, &b.path)));
        object_routes.dedup_by(|a, b| a.host == b.host && a.path == b.path);
        let ingress = index.get(&(object.namespace.clone(), object.name.clone()));
        let annotations = ingress
            .and_then(|i| i.metadata.annotations.as_ref())
            .map(|a| annotation_reports(a, &diagnostics))
            .unwrap_or_default();
        ingresses.push(IngressReport {
            ingress: format!("{}/{}", object.namespace, object.name),
            routes: object_routes,
            annotations,
            loses_behaviour: diagnostics.iter().any(|d| loses_behaviour(d.reason)),
            diagnostics: diagnostics
                .into_iter()
                .map(DiagnosticReport::from)
                .collect(),
        });
    }
    Report {
        ingress_class: config.classes.ingress_class.clone(),
        ingresses,
        other,
    }
}

/// What each annotation under weir's or ingress-nginx's prefix becomes.
fn annotation_reports(
    annotations: &BTreeMap<String, String>,
    diagnostics: &[&Diagnostic],
) -> Vec<AnnotationReport> {
    let mut out = Vec::new();
    for (key, value) in annotations {
        let Some(name) = key.strip_prefix(NGINX).or_else(|| key.strip_prefix(WEIR)) else {
            continue;
        };
        let quoted = format!("{key:?}");
        let invalid = diagnostics
            .iter()
            .find(|d| d.reason == Reason::InvalidAnnotationValue && d.message.contains(&quoted));
        let read = annotations::keys().any(|(_, k)| k.name == name);
        let refuses = diagnostics
            .iter()
            .any(|d| d.message.contains(&quoted) && d.message.contains("fail closed"));
        let (status, mut note) = match (invalid, compat::support(name)) {
            (Some(d), _) => ("invalid", d.message.clone()),
            (None, Some(Support::Supported)) if read => ("honoured", String::new()),
            (None, Some(Support::Differs(note))) if read => ("differs", note.to_owned()),
            (None, Some(Support::Accepted(note))) => ("no effect", note.to_owned()),
            (None, Some(Support::NotYet(note))) => ("not yet", note.to_owned()),
            (None, Some(Support::Never(note))) => ("never", note.to_owned()),
            (None, Some(Support::Removed(note))) => ("removed", note.to_owned()),
            (None, _) if read => ("honoured", String::new()),
            (None, _) => ("unknown", compat::explain(name)),
        };
        if refuses && invalid.is_none() {
            note.push_str("; the Ingress answers 503 meanwhile (fail closed)");
        }
        out.push(AnnotationReport {
            key: key.clone(),
            value: value.clone(),
            status,
            note,
        });
    }
    out
}

/// What a route's policy does beyond what a route without annotations does.
/// What a canary takes of its main Ingress's route, for the report.
fn describe_canary(canary: &Canary, main: &ObjectRef) -> String {
    let rule = &canary.rule;
    let mut takes = vec![format!("{} of every {} requests", rule.weight, rule.total)];
    if let Some((name, header)) = &rule.header {
        takes.push(match header {
            HeaderRule::AlwaysNever => format!("header {name}: always"),
            HeaderRule::Value(value) => format!("header {name}: {value}"),
            HeaderRule::Pattern(regex) => format!("header {name} matching {}", regex.as_str()),
        });
    }
    if let Some(cookie) = &rule.cookie {
        takes.push(format!("cookie {cookie}: always"));
    }
    format!(
        "canary of Ingress {}/{}: takes {}",
        main.namespace,
        main.name,
        takes.join(", ")
    )
}

fn describe(policy: &Policy, plain: &Policy, https_redirect: bool) -> Vec<String> {
    let mut out = Vec::new();
    if policy.refused.is_some() {
        out.push("answers 503: an annotation weir cannot apply (fail closed)".to_owned());
    }
    if let Some(redirect) = &policy.redirect {
        let location = redirect.location.to_str().unwrap_or("?");
        out.push(format!(
            "redirects {} to {location}",
            redirect.code.as_u16()
        ));
    }
    if https_redirect {
        out.push("redirects plain HTTP to HTTPS".to_owned());
    }
    if let Some(access) = &policy.access {
        if let Some(deny) = &access.deny {
            out.push(format!("denies clients from {deny}"));
        }
        if let Some(allow) = &access.allow {
            out.push(format!("allows only clients from {allow}"));
        }
        if let Some(basic) = &access.basic {
            let challenge = basic.challenge.to_str().unwrap_or("?");
            let users = basic.users.len();
            out.push(format!(
                "asks for a password ({challenge}, {users} user(s))"
            ));
        }
        if let Some(external) = &access.external {
            let source = if external.global {
                "the ConfigMap's global-auth-url"
            } else {
                "auth-url"
            };
            out.push(format!(
                "asks {} whether a request may pass ({source})",
                external.url.source()
            ));
            if let Some(signin) = &external.signin {
                out.push(format!("sends the unauthenticated to {}", signin.source()));
            }
        }
        if access.satisfy == crate::model::Satisfy::Any {
            out.push("an allowed client needs no password (satisfy: any)".to_owned());
        }
    }
    if let Some(limits) = &policy.rate_limits {
        for (rate, unit) in [(limits.per_second, "s"), (limits.per_minute, "min")] {
            if let Some(rate) = rate {
                out.push(format!(
                    "at most {} requests/{unit} per client (burst {})",
                    rate.count, rate.burst
                ));
            }
        }
        if let Some(exempt) = &limits.exempt {
            out.push(format!("no rate limit for {exempt}"));
        }
    }
    if let Some(cors) = &policy.cors {
        let origins = match &cors.origins {
            crate::model::CorsOrigins::Any => "every origin".to_owned(),
            crate::model::CorsOrigins::List(list) => format!("{} origin(s)", list.len()),
        };
        out.push(format!("answers CORS preflights for {origins}"));
    }
    let rewrite = &policy.rewrite;
    if let Some(target) = &rewrite.target {
        out.push(format!("rewrites the path to {target}"));
    }
    if let Some(prefix) = &rewrite.forwarded_prefix {
        out.push(format!("X-Forwarded-Prefix: {prefix}"));
    }
    if let Some(host) = &rewrite.upstream_vhost {
        out.push(format!("Host: {}", host.to_str().unwrap_or("?")));
    }
    let (t, p) = (&policy.timeouts, &plain.timeouts);
    for (what, value, default) in [
        ("connect", t.connect, p.connect),
        ("send", t.send, p.send),
        ("read", t.read, p.read),
    ] {
        if value != default {
            out.push(format!("{what} timeout {}s", value.as_secs()));
        }
    }
    if policy.max_body_size != plain.max_body_size {
        match policy.max_body_size {
            Some(bytes) => out.push(format!("bodies up to {bytes} bytes")),
            None => out.push("bodies of any size".to_owned()),
        }
    }
    if !policy.access_log {
        out.push("not in the access log".to_owned());
    }
    out
}

impl Report {
    /// Whether any Ingress (or the ConfigMap) would lose behaviour.
    pub fn loses_behaviour(&self) -> bool {
        self.ingresses.iter().any(|i| i.loses_behaviour)
            || self.other.iter().any(|d| {
                d.reason == "UnsupportedConfigMapKey" || d.reason == "InvalidConfigMapValue"
            })
    }

    /// The report as text for a terminal.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for ingress in &self.ingresses {
            let verdict = if ingress.loses_behaviour {
                "LOSES BEHAVIOUR"
            } else {
                "ok"
            };
            let _ = writeln!(out, "Ingress {}: {verdict}", ingress.ingress);
            if ingress.routes.is_empty() {
                let _ = writeln!(out, "  routes: none");
            }
            for route in &ingress.routes {
                let plural = if route.endpoints == 1 { "" } else { "s" };
                let _ = writeln!(
                    out,
                    "  route {} {} {} -> {} ({} endpoint{plural})",
                    route.host, route.match_kind, route.path, route.backend, route.endpoints
                );
                for b in &route.behaviour {
                    let _ = writeln!(out, "        {b}");
                }
            }
            for a in &ingress.annotations {
                let _ = write!(out, "  {:<9} {}: {:?}", a.status, a.key, a.value);
                if !a.note.is_empty() {
                    let _ = write!(out, "\n            {}", a.note);
                }
                out.push('\n');
            }
            // Diagnostics about annotations are in the annotation lines already.
            let about_annotations = |d: &&DiagnosticReport| {
                matches!(d.reason, "UnsupportedAnnotation" | "InvalidAnnotationValue")
                    && ingress
                        .annotations
                        .iter()
                        .any(|a| d.message.contains(&format!("{:?}", a.key)))
            };
            for d in ingress.diagnostics.iter().filter(|d| !about_annotations(d)) {
                let _ = writeln!(out, "  {}: {}", d.reason, d.message);
            }
            out.push('\n');
        }
        for d in &self.other {
            let _ = writeln!(out, "{} {}: {}", d.object, d.reason, d.message);
        }
        if !self.other.is_empty() {
            out.push('\n');
        }
        let losing = self.ingresses.iter().filter(|i| i.loses_behaviour).count();
        let _ = writeln!(
            out,
            "{} Ingress(es) of class {:?}: {} served as they ask, {losing} would lose behaviour",
            self.ingresses.len(),
            self.ingress_class,
            self.ingresses.len() - losing,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ingress(annotations: serde_json::Value) -> Arc<k8s_openapi::api::networking::v1::Ingress> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "app", "namespace": "shop", "annotations": annotations},
                "spec": {"ingressClassName": "nginx", "rules": [{"host": "shop.test", "http": {"paths": [
                    {"path": "/api(/|$)(.*)", "pathType": "ImplementationSpecific",
                     "backend": {"service": {"name": "api", "port": {"number": 80}}}}
                ]}}]}
            }))
            .unwrap(),
        )
    }

    fn check(annotations: serde_json::Value) -> Report {
        let input = Input {
            ingresses: vec![ingress(annotations)],
            ..Input::default()
        };
        let mut config = BuildConfig::default();
        config.classes.ingress_class = "nginx".into();
        report(&input, &config)
    }

    #[test]
    fn a_passthrough_host_says_where_its_tls_goes() {
        let annotations =
            serde_json::json!({"nginx.ingress.kubernetes.io/ssl-passthrough": "true"});
        let input = Input {
            ingresses: vec![ingress(annotations)],
            ..Input::default()
        };
        let mut config = BuildConfig::default();
        config.classes.ingress_class = "nginx".into();
        // Without the flag, the Ingress would answer 503: it loses behaviour.
        let report = report(&input, &config);
        assert!(report.loses_behaviour(), "{}", report.to_text());
        config.ssl_passthrough = true;
        let report = super::report(&input, &config);
        let ingress = &report.ingresses[0];
        assert_eq!(ingress.annotations[0].status, "differs");
        // The rule's path is not "/": the host has no backend for its TLS.
        assert!(
            ingress.routes[0].behaviour[0].contains("TLS connections are closed"),
            "{:?}",
            ingress.routes[0].behaviour
        );
    }

    #[test]
    fn reports_routes_annotations_and_the_verdict() {
        let report = check(serde_json::json!({
            "nginx.ingress.kubernetes.io/rewrite-target": "/$2",
            "nginx.ingress.kubernetes.io/proxy-buffering": "off",
            "nginx.ingress.kubernetes.io/ssl-ciphers": "HIGH",
            "nginx.ingress.kubernetes.io/configuration-snippet": "more_set_headers \"X: y\";",
            "nginx.ingress.kubernetes.io/proxy-read-timeout": "60s",
            "cert-manager.io/cluster-issuer": "letsencrypt",
        }));
        assert!(report.loses_behaviour());
        let ingress = &report.ingresses[0];
        assert_eq!(ingress.ingress, "shop/app");
        assert!(ingress.loses_behaviour);
        let route = &ingress.routes[0];
        assert_eq!(
            (route.host.as_str(), route.match_kind),
            ("shop.test", "Regex")
        );
        assert!(
            route
                .behaviour
                .iter()
                .any(|b| b.contains("rewrites the path to /$2")),
            "{:?}",
            route.behaviour
        );
        let status: BTreeMap<&str, &str> = ingress
            .annotations
            .iter()
            .map(|a| (a.key.trim_start_matches(NGINX), a.status))
            .collect();
        assert_eq!(
            status,
            BTreeMap::from([
                ("configuration-snippet", "never"),
                ("ssl-ciphers", "not yet"),
                ("proxy-buffering", "differs"),
                ("proxy-read-timeout", "invalid"),
                ("rewrite-target", "honoured"),
            ]),
            "other tools' annotations are not listed"
        );
        let text = report.to_text();
        assert!(text.contains("Ingress shop/app: LOSES BEHAVIOUR"), "{text}");
        assert!(
            text.ends_with(
                "1 Ingress(es) of class \"nginx\": 0 served as they ask, 1 would lose behaviour\n"
            ),
            "{text}"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["ingresses"][0]["routes"][0]["backend"], "api:80");
    }

    #[test]
    fn supported_annotations_alone_keep_the_behaviour() {
        let report = check(serde_json::json!({
            "nginx.ingress.kubernetes.io/rewrite-target": "/$2",
            "nginx.ingress.kubernetes.io/proxy-body-size": "8m",
        }));
        assert!(!report.loses_behaviour(), "{}", report.to_text());
        assert!(report.to_text().contains("bodies up to 8388608 bytes"));
    }
}
