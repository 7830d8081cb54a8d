//! Where Kubernetes objects come from. Every source produces the same [`crate::model::Input`].

pub mod cluster;
pub mod external_names;
pub mod manifests;
