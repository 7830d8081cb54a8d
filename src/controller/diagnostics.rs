//! Reporting diagnostics once: a rebuild that finds the same problem again stays quiet.

use std::collections::BTreeSet;

use tracing::{info, warn};

use crate::model::Diagnostic;

/// Remembers which diagnostics were reported so that each is logged when it appears and when it
/// is resolved, not on every rebuild.
#[derive(Debug, Default)]
pub struct DiagnosticLog {
    reported: BTreeSet<Diagnostic>,
}

impl DiagnosticLog {
    /// Logs the diagnostics that are new since the last call and those that went away.
    /// Returns the new ones.
    pub fn update(&mut self, current: &[Diagnostic]) -> Vec<Diagnostic> {
        let current: BTreeSet<Diagnostic> = current.iter().cloned().collect();
        for gone in self.reported.difference(&current) {
            info!(object = %gone.object, reason = %gone.reason, "resolved: {}", gone.message);
        }
        let new: Vec<Diagnostic> = current.difference(&self.reported).cloned().collect();
        for d in &new {
            warn!(object = %d.object, reason = %d.reason, "{}", d.message);
        }
        self.reported = current;
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ObjectKind, ObjectRef, Reason};

    fn diag(name: &str) -> Diagnostic {
        Diagnostic::new(
            ObjectRef::new(ObjectKind::Ingress, "default", name),
            Reason::ServiceNotFound,
            "service missing",
        )
    }

    #[test]
    fn reports_each_diagnostic_once() {
        let mut log = DiagnosticLog::default();
        assert_eq!(log.update(&[diag("a")]), vec![diag("a")]);
        assert_eq!(log.update(&[diag("a")]), vec![]);
        assert_eq!(log.update(&[diag("a"), diag("b")]), vec![diag("b")]);
        assert_eq!(log.update(&[]), vec![]);
        assert_eq!(log.update(&[diag("a")]), vec![diag("a")]);
    }
}
