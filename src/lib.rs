//! weir: a Kubernetes ingress controller with an embedded HTTP data plane.
//!
//! Data flows `source` → `controller` (which calls the pure `model::build`) → `state` → `proxy`.
//! `proxy` and `controller` never import each other; they meet in `state`.

pub mod access_log;
pub mod admin;
pub mod check;
pub mod config;
pub mod controller;
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics;
pub mod model;
pub mod proxy;
pub mod source;
pub mod state;
pub mod tls;
