//! The rebuild loop: new input → `model::build` → publish.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use super::DiagnosticLog;
use crate::model::{self, BuildConfig, Diagnostic, Input, ObjectRef};
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
    input: &Input,
    config: &BuildConfig,
    default: &DefaultCertificate,
) -> (model::Built, CertStore) {
    let mut built = model::build(input, config);
    let (default, problem) =
        tls::default_certificate(default.secret.as_ref(), &input.secrets, &default.generated);
    let (certs, tls_diagnostics) = tls::compile(&built.tls, &input.secrets, default);
    built.diagnostics.extend(problem);
    built.diagnostics.extend(tls_diagnostics);
    built.diagnostics.sort();
    built.diagnostics.dedup();
    (built, certs)
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
    pub ingresses: Vec<ObjectRef>,
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
    mut config: BuildConfig,
    default_certificate: DefaultCertificate,
    published: watch::Sender<Option<Arc<Published>>>,
    cancel: CancellationToken,
) {
    let mut diagnostics = DiagnosticLog::default();
    loop {
        let input = inputs.borrow_and_update().clone();
        if let Some(input) = input {
            // A fresh seed per build, so that rebuilds and replicas do not all start their
            // round-robins on the same endpoint (the model itself stays deterministic).
            config.balance_seed = fastrand::u64(..);
            let config = config.clone();
            let started = Instant::now();
            let (for_build, default_certificate) = (input.clone(), default_certificate.clone());
            let built = tokio::task::spawn_blocking(move || {
                build_with_certificates(&for_build, &config, &default_certificate)
            })
            .instrument(info_span!("rebuild"))
            .await;
            match built {
                Ok((built, certs)) => {
                    diagnostics.update(&built.diagnostics);
                    let routes = built.table.route_count();
                    let tls_hosts = certs.len();
                    let generation = state.publish(built.table, Arc::new(certs));
                    info!(generation, routes, tls_hosts, ingresses = built.ingresses.len(), elapsed = ?started.elapsed(), "published routing table");
                    published.send_replace(Some(Arc::new(Published {
                        generation,
                        input,
                        ingresses: built.ingresses,
                        diagnostics: built.diagnostics,
                    })));
                }
                Err(error) => {
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
