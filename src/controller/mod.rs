//! The control loop: turns every new [`Input`](crate::model::Input) from a source into a
//! routing table and publishes it; on a cluster, the leader also reports to the API what is
//! served (Ingress status) and what is wrong (Events).

mod diagnostics;
pub mod events;
pub mod leader;
mod rebuild;
pub mod status;

pub use diagnostics::DiagnosticLog;
pub use rebuild::{DefaultCertificate, Published, run_rebuild_loop};
