//! The control loop: turns every new [`Input`](crate::model::Input) from a source into a
//! routing table, publishes it, and reports what was wrong with the input.

mod diagnostics;
mod rebuild;

pub use diagnostics::DiagnosticLog;
pub use rebuild::run_rebuild_loop;
