//! Which of the input's Ingresses are weir's, and in which order a build takes them, kept from
//! one build to the next: a change adds and removes only the Ingresses it touched, so that a
//! build does not read and sort every Ingress again.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::super::classes::Classes;
use super::super::diagnostic::{ObjectKind, ObjectRef};
use super::super::objects;
use super::OurIngress;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Above this share of changed Ingresses, the order is sorted afresh rather than patched.
const PATCH_LIMIT: usize = 8;

/// An Ingress of the input, as a build read it.
#[derive(Debug)]
struct Seen {
    ingress: Arc<Ingress>,
    /// Shared with the sorted lists [`Order::sorted`] hands out, so that a new list copies
    /// pointers, not names.
    object: Arc<ObjectRef>,
    created: Option<Time>,
    has_rules: bool,
    /// Of weir's class.
    ours: bool,
    /// Another object of the same namespace and name is used instead (a manifests directory
    /// can declare one twice).
    shadowed: bool,
    /// The last build whose input held it.
    build: u64,
}

/// The input's Ingresses by address (the `Arc` kept here, so an address is never another
/// object's), and weir's in build order.
#[derive(Debug, Default)]
pub(super) struct Order {
    build: u64,
    /// The IngressClasses (by address) the `ours` of each Ingress was decided with, kept so
    /// that an address is never another object's.
    classes: Vec<Arc<IngressClass>>,
    seen: FastMap<usize, Seen>,
    /// The addresses of every Ingress with each (namespace, name).
    names: FastMap<ObjectRef, Vec<usize>>,
    /// weir's Ingresses (shadowed ones too), oldest first (see [`super::build`]).
    order: Vec<usize>,
    /// weir's Ingresses sorted by namespace and name, once asked for.
    sorted: Option<Arc<[Arc<ObjectRef>]>>,
}

impl Order {
    /// Forgets everything (the settings that decide which Ingresses are weir's changed).
    pub fn clear(&mut self) {
        *self = Order::default();
    }

    /// Brings the order up to date with `ingresses`, deciding which are weir's by `classes`
    /// (built from the IngressClasses `class_objects`).
    pub fn update(
        &mut self,
        ingresses: &[Arc<Ingress>],
        class_objects: &[Arc<IngressClass>],
        classes: &Classes<'_>,
    ) {
        let mut class_objects = class_objects.to_vec();
        class_objects.sort_unstable_by_key(|c| Arc::as_ptr(c) as usize);
        let same = class_objects.len() == self.classes.len()
            && class_objects
                .iter()
                .zip(&self.classes)
                .all(|(now, then)| Arc::ptr_eq(now, then));
        if !same {
            self.clear();
            self.classes = class_objects;
        }
        self.build += 1;
        let build = self.build;
        let mut added = Vec::new();
        let mut current = 0;
        for ingress in ingresses {
            let address = super::address(ingress);
            match self.seen.get_mut(&address) {
                Some(seen) if seen.build == build => {}
                Some(seen) => {
                    seen.build = build;
                    current += 1;
                }
                None => {
                    self.seen
                        .insert(address, Seen::new(ingress, classes, build));
                    added.push(address);
                    current += 1;
                }
            }
        }
        let gone: Vec<usize> = if self.seen.len() > current {
            self.seen
                .iter()
                .filter(|(_, seen)| seen.build != build)
                .map(|(address, _)| *address)
                .collect()
        } else {
            Vec::new()
        };
        if added.is_empty() && gone.is_empty() {
            return;
        }
        self.sorted = None;
        let mut touched: Vec<ObjectRef> = Vec::new();
        let mut removed = Vec::new();
        for address in &gone {
            let Some(seen) = self.seen.remove(address) else {
                continue;
            };
            if let Some(same) = self.names.get_mut(&seen.object) {
                same.retain(|a| a != address);
                if same.is_empty() {
                    self.names.remove(&seen.object);
                }
            }
            if seen.ours {
                removed.push(*address);
            }
            touched.push((*seen.object).clone());
        }
        for address in &added {
            let object = (*self.seen[address].object).clone();
            self.names.entry(object.clone()).or_default().push(*address);
            touched.push(object);
        }
        touched.sort();
        touched.dedup();
        for object in &touched {
            self.choose(object);
        }
        let added: Vec<usize> = added
            .into_iter()
            .filter(|address| self.seen[address].ours)
            .collect();
        if (added.len() + removed.len()) * PATCH_LIMIT > self.order.len() {
            let mut order: Vec<usize> = self
                .seen
                .iter()
                .filter(|(_, seen)| seen.ours)
                .map(|(address, _)| *address)
                .collect();
            order.sort_unstable_by(|a, b| self.seen[a].cmp_order(&self.seen[b]).then(a.cmp(b)));
            self.order = order;
            return;
        }
        self.order.retain(|address| !removed.contains(address));
        for address in added {
            let new = &self.seen[&address];
            let at = self.order.partition_point(|other| {
                let other_seen = &self.seen[other];
                other_seen.cmp_order(new).then(other.cmp(&address)).is_lt()
            });
            self.order.insert(at, address);
        }
    }

    /// Decides which object with the namespace and name of `object` is used: the one with the
    /// smaller JSON form, so that the choice does not depend on the order of the input.
    fn choose(&mut self, object: &ObjectRef) {
        let Some(same) = self.names.get(object) else {
            return;
        };
        let chosen = if same.len() == 1 {
            same[0]
        } else {
            let json = |address: &usize| {
                serde_json::to_string(self.seen[address].ingress.as_ref()).unwrap_or_default()
            };
            *same
                .iter()
                .min_by(|a, b| json(a).cmp(&json(b)).then(a.cmp(b)))
                .expect("not empty")
        };
        for address in same.clone() {
            if let Some(seen) = self.seen.get_mut(&address) {
                seen.shadowed = address != chosen;
            }
        }
    }

    /// Build order of two of the input's Ingresses, by address (see [`Order::ours`]).
    pub fn cmp_addresses(&self, a: usize, b: usize) -> std::cmp::Ordering {
        self.seen[&a].cmp_order(&self.seen[&b]).then(a.cmp(&b))
    }

    /// weir's Ingresses (each (namespace, name) once) sorted by namespace and name.
    pub fn sorted(&mut self) -> Arc<[Arc<ObjectRef>]> {
        if let Some(sorted) = &self.sorted {
            return sorted.clone();
        }
        let mut objects: Vec<Arc<ObjectRef>> =
            self.ours_seen().map(|seen| seen.object.clone()).collect();
        objects.sort();
        let sorted: Arc<[Arc<ObjectRef>]> = objects.into();
        self.sorted = Some(sorted.clone());
        sorted
    }

    /// weir's Ingresses, oldest first, each (namespace, name) once.
    pub fn ours(&self) -> Vec<OurIngress<'_>> {
        self.ours_seen().map(Seen::our).collect()
    }

    fn ours_seen(&self) -> impl Iterator<Item = &Seen> {
        self.order
            .iter()
            .map(|address| &self.seen[address])
            .filter(|seen| !seen.shadowed)
    }

    /// The Ingress at `address`, one of weir's.
    pub fn our(&self, address: usize) -> OurIngress<'_> {
        self.seen[&address].our()
    }
}

impl Seen {
    fn new(ingress: &Arc<Ingress>, classes: &Classes<'_>, build: u64) -> Seen {
        let meta = &ingress.metadata;
        Seen {
            ingress: ingress.clone(),
            object: Arc::new(ObjectRef::new(
                ObjectKind::Ingress,
                objects::namespace(meta),
                objects::name(meta),
            )),
            created: meta.creation_timestamp.clone(),
            has_rules: ingress
                .spec
                .as_ref()
                .and_then(|s| s.rules.as_ref())
                .is_some_and(|r| !r.is_empty()),
            ours: classes.is_ours(ingress),
            shadowed: false,
            build,
        }
    }

    fn our(&self) -> OurIngress<'_> {
        OurIngress {
            object: &self.object,
            created: self.created.as_ref(),
            has_rules: self.has_rules,
            ingress: &self.ingress,
        }
    }

    /// Build order: by creation time (none last), then namespace and name.
    fn cmp_order(&self, other: &Seen) -> std::cmp::Ordering {
        fn key(s: &Seen) -> (bool, Option<&Time>) {
            (s.created.is_none(), s.created.as_ref())
        }
        key(self)
            .cmp(&key(other))
            .then_with(|| self.object.cmp(&other.object))
    }
}
