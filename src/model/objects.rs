//! Small helpers over Kubernetes object metadata shared by the build steps.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

/// The namespace of a namespaced object; a missing or empty namespace means `default` (as
/// `kubectl apply` without `-n` would place it).
pub(crate) fn namespace(meta: &ObjectMeta) -> &str {
    match meta.namespace.as_deref() {
        None | Some("") => "default",
        Some(ns) => ns,
    }
}

/// The name of an object (empty if missing, which only hand-written manifests can do).
pub(crate) fn name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

/// Namespaced objects by (namespace, name). A hash map: with 10,000 Ingresses an ordered map's
/// string comparisons were a tenth of a build; whoever iterates it sorts. The values are the
/// input's `Arc`s, so that an incremental build can keep what it read and compare by pointer.
pub(crate) type ByName<'a, T> =
    HashMap<(&'a str, &'a str), &'a Arc<T>, foldhash::fast::RandomState>;

/// Whether `now` is the very object `then` was (both absent counts): how incremental builds
/// tell that what they read is unchanged.
pub(crate) fn same_object<T>(now: Option<&Arc<T>>, then: Option<&Arc<T>>) -> bool {
    match (now, then) {
        (Some(now), Some(then)) => Arc::ptr_eq(now, then),
        (None, None) => true,
        _ => false,
    }
}

/// Indexes namespaced objects by (namespace, name).
///
/// The input should hold each object once, but a manifests directory can declare the same
/// object twice. Then one of them is kept, chosen by content (the smaller JSON form) so that
/// the choice does not depend on the order of the input.
pub(crate) fn index_by_name<T: Serialize>(
    items: &[Arc<T>],
    meta: impl Fn(&T) -> &ObjectMeta,
) -> ByName<'_, T> {
    let mut index = ByName::with_capacity_and_hasher(items.len(), Default::default());
    for item in items {
        let m = meta(item);
        match index.entry((namespace(m), name(m))) {
            Entry::Vacant(slot) => {
                slot.insert(item);
            }
            Entry::Occupied(mut slot) => {
                if json(item.as_ref()) < json(slot.get().as_ref()) {
                    slot.insert(item);
                }
            }
        }
    }
    index
}

fn json<T: Serialize>(item: &T) -> String {
    serde_json::to_string(item).unwrap_or_default()
}
