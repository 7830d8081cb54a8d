//! weir: a Kubernetes ingress controller with an embedded HTTP data plane.
//!
//! See `ARCHITECTURE.md`-style overview in the README. Data flows
//! `source` → `model::build` → `state` → `proxy`.

pub mod model;
pub mod source;
