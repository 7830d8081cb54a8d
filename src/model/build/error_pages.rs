//! The build's part of custom error pages: the error backend of each Ingress's routes
//! (`default-backend`, else `--default-backend-service`) resolved like any other backend and
//! put into the routes' policy ([`ErrorPages`]).

use std::sync::Arc;

use super::super::annotations::ErrorPagesSpec;
use super::super::diagnostic::{ObjectRef, Reason};
use super::super::endpoints::Upstream;
use super::super::error_pages::ErrorPages;
use super::super::table::Backend;
use super::Builder;

impl Builder<'_> {
    /// The error pages `spec` asks for on the routes of `me` (an Ingress, or the controller's
    /// default backend Service): `None` when there is nothing to intercept or no error backend.
    pub(super) fn error_pages(
        &mut self,
        me: &ObjectRef,
        spec: &ErrorPagesSpec,
        controller: Option<&ObjectRef>,
    ) -> Option<Arc<ErrorPages>> {
        if spec.codes.is_empty() && spec.service.is_none() {
            return None;
        }
        let own = spec
            .service
            .as_ref()
            .and_then(|service| self.error_backend(me, service, true));
        let when_no_endpoints = own.is_some();
        let backend = match own {
            Some(backend) => backend,
            None if spec.codes.is_empty() => return None,
            None => match controller.and_then(|c| self.error_backend(me, c, false)) {
                Some(backend) => backend,
                None => {
                    if spec.service.is_none() && controller.is_none() {
                        let message = "custom-http-errors has no effect: there is no error \
                                       backend (no default-backend annotation and no \
                                       --default-backend-service); error responses are sent \
                                       as they are";
                        self.report(me, Reason::DefaultBackendNotUsable, message.to_owned());
                    }
                    return None;
                }
            },
        };
        Some(Arc::new(ErrorPages {
            codes: spec.codes.clone(),
            backend,
            when_no_endpoints,
        }))
    }

    /// The backend of the error Service `service` (its first TCP port); `None` when it does
    /// not exist or has no TCP port, reported on `me` when `own` (its `default-backend`; the
    /// controller's default backend is reported once, by the build).
    fn error_backend(
        &mut self,
        me: &ObjectRef,
        service: &ObjectRef,
        own: bool,
    ) -> Option<Arc<Backend>> {
        match self.backends.first_port(service) {
            Ok(port) => {
                let resolved =
                    self.backends
                        .resolve(&service.namespace, &port, Upstream::Endpoints);
                if own {
                    for problem in resolved.problems {
                        let message = format!(
                            "default-backend: {}; error responses are sent as they are while \
                             it has no ready endpoints",
                            problem.what
                        );
                        self.report(me, problem.reason, message);
                    }
                }
                Some(resolved.backend)
            }
            Err(why) => {
                if own {
                    let message = format!(
                        "default-backend: Service {}/{} {why}; the controller's default \
                         backend (if any) serves the error pages instead",
                        service.namespace, service.name
                    );
                    self.report(me, Reason::ServiceNotFound, message);
                }
                None
            }
        }
    }
}
