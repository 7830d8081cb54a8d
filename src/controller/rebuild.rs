//! The rebuild loop: new input → `model::build` → publish.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use super::DiagnosticLog;
use crate::metrics::ControlMetrics;
use crate::metrics::control::gauge;
use crate::model::{self, BuildConfig, Diagnostic, IncrementalBuild, Input, ObjectRef};
use crate::state::State;
use crate::tls::{self, CertStore, Certified};

/// Where the certificate for hosts without one of their own comes from.
#[derive(Debug, Clone)]
pub struct DefaultCertificate {
    /// The self-signed certificate made at start-up.
    pub generated: Certified,
    /// `--default-ssl-certificate`: a TLS Secret to use instead, when it exists and is valid.
    pub secret: Option<ObjectRef>,
}

/// The model's build plus the certificate store for its TLS bindings, with the diagnostics of
/// both in one sorted list.
fn build_with_certificates(
    builds: &mut IncrementalBuild,
    input: &Input,
    config: &BuildConfig,
    default: &DefaultCertificate,
) -> (model::Built, CertStore) {
    let mut built = builds.build(input, config);
    let (default, problem) =
        tls::default_certificate(default.secret.as_ref(), &input.secrets, &default.generated);
    let (certs, tls_diagnostics) = tls::compile(&built.tls, &input.secrets, default);
    built.diagnostics.extend(problem);
    built.diagnostics.extend(tls_diagnostics);
    built.diagnostics.sort();
    built.diagnostics.dedup();
    (built, certs)
}

/// Sets the gauges of what was built: Ingresses of weir's class and Diagnostics by reason
/// (what the table holds is counted when `/metrics` is scraped: `State::count_table`).
fn report(metrics: &ControlMetrics, ingresses: usize, diagnostics: &[Diagnostic]) {
    metrics.ingresses.set(gauge(ingresses));
    let mut by_reason: BTreeMap<&str, usize> = BTreeMap::new();
    for diagnostic in diagnostics {
        *by_reason.entry(diagnostic.reason.as_str()).or_default() += 1;
    }
    let by_reason = by_reason
        .into_iter()
        .map(|(reason, count)| (vec![reason.to_owned()], count as f64));
    metrics.diagnostics.replace(by_reason);
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Sets `weir_ssl_certificate_expire_time_seconds` to the certificates `certs` serves.
fn report_certificates(metrics: &ControlMetrics, certs: &CertStore) {
    let expiries = certs.served().iter().filter_map(|served| {
        let labels = vec![
            served.namespace.clone(),
            served.secret.clone(),
            served.host.clone(),
        ];
        Some((labels, served.not_after? as f64))
    });
    metrics.certificate_expiry.replace(expiries);
}

/// What the data plane serves now, for the writers that report it to the API (status, Events).
#[derive(Debug)]
pub struct Published {
    /// The generation of the snapshot the data plane serves.
    pub generation: u64,
    /// The input it was built from.
    pub input: Arc<Input>,
    /// Every Ingress of weir's class, as of the served table (also those whose rules were all
    /// rejected: their status still says where weir serves them).
    pub ingresses: Arc<[Arc<ObjectRef>]>,
    /// What was wrong with the input.
    pub diagnostics: Vec<Diagnostic>,
}

/// Builds and publishes a table for every input the source sends, until `cancel` fires or the
/// source goes away. `None` means "not synced yet": nothing is published before the first
/// complete input, so `/readyz` stays unready until then. After each publish, `published`
/// says what is now served.
pub async fn run_rebuild_loop(
    mut inputs: watch::Receiver<Option<Arc<Input>>>,
    state: Arc<State>,
    config: BuildConfig,
    default_certificate: DefaultCertificate,
    published: watch::Sender<Option<Arc<Published>>>,
    cancel: CancellationToken,
) {
    let mut diagnostics = DiagnosticLog::default();
    // What the last build computed, so that the next computes only what changed (a build
    // that panicked leaves nothing: the next computes everything).
    let mut builds = IncrementalBuild::default();
    loop {
        let input = inputs.borrow_and_update().clone();
        if let Some(input) = input {
            // A fresh seed per build, so that rebuilds and replicas do not all start their
            // round-robins on the same endpoint (the model itself stays deterministic).

            let config = config.clone();
            let started = Instant::now();
            let (for_build, default_certificate) = (input.clone(), default_certificate.clone());
            let publisher = state.clone();
            // The build and the metric handles of its routes take milliseconds with thousands
            // of Ingresses: off the async workers.
            let mut taken = std::mem::take(&mut builds);
            let built = tokio::task::spawn_blocking(move || {
                let (built, certs) =
                    build_with_certificates(&mut taken, &for_build, &config, &default_certificate);
                let build_elapsed = started.elapsed();
                let routes = built.table.route_count();
                let generation = publisher.publish(built.table, Arc::new(certs));
                let publish_elapsed = started.elapsed() - build_elapsed;
                // After the swap, so that it does not delay the new table.
                let served = publisher.snapshot();
                report_certificates(&publisher.metrics().control, &served.certs);
                let tls_hosts = served.certs.len();
                (
                    generation,
                    routes,
                    tls_hosts,
                    built.ingresses,
                    built.diagnostics,
                    (build_elapsed, publish_elapsed),
                    taken,
                )
            })
            .instrument(info_span!("rebuild"))
            .await;
            let metrics = &state.metrics().control;
            match built {
                Ok((
                    generation,
                    routes,
                    tls_hosts,
                    ingresses,
                    built_diagnostics,
                    (build, publish),
                    kept,
                )) => {
                    builds = kept;
                    diagnostics.update(&built_diagnostics);
                    let elapsed = started.elapsed();
                    report(metrics, ingresses.len(), &built_diagnostics);
                    metrics.rebuilds.with_label_values(&["success"]).inc();
                    metrics.rebuild_duration.observe(elapsed.as_secs_f64());
                    metrics.last_successful.set(1);
                    metrics.last_success.set(unix_now());
                    info!(
                        generation,
                        routes,
                        tls_hosts,
                        ingresses = ingresses.len(),
                        ?elapsed,
                        ?build,
                        ?publish,
                        "published routing table"
                    );
                    published.send_replace(Some(Arc::new(Published {
                        generation,
                        input,
                        ingresses,
                        diagnostics: built_diagnostics,
                    })));
                }
                Err(error) => {
                    metrics.rebuilds.with_label_values(&["failure"]).inc();
                    metrics.last_successful.set(0);
                    warn!(%error, "building the routing table failed; the last good table keeps serving")
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = inputs.changed() => if changed.is_err() { return },
        }
    }
}
