//! One manifest file's text → the objects weir reads, or the errors that stop the file.

use std::hash::BuildHasher;
use std::path::Path;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{ByteString, Metadata, Resource};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::ManifestError;

/// One object weir reads, with the 1-based index of the document it came from.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Parsed {
    pub document: usize,
    pub object: Object,
    /// A hash of the object's [`Object::identity`], made once when parsed: a load merges
    /// every cached file's objects and checks them for duplicates by it, without reading the
    /// names of objects that did not change.
    pub identity: u64,
}

impl Parsed {
    fn new(document: usize, object: Object) -> Self {
        let identity = IDENTITY_HASH.hash_one(object.identity());
        Parsed {
            document,
            object,
            identity,
        }
    }
}

/// The hasher of [`Parsed::identity`] (fixed: every file's hashes must agree).
const IDENTITY_HASH: foldhash::fast::FixedState = foldhash::fast::FixedState::with_seed(0);

/// The seven kinds weir reads. Shared (`Arc`): every load puts the cached objects of every file
/// into a new [`Input`](crate::model::Input), which then costs a reference count per object
/// instead of a deep copy.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Object {
    Ingress(Arc<Ingress>),
    IngressClass(Arc<IngressClass>),
    Service(Arc<Service>),
    EndpointSlice(Arc<EndpointSlice>),
    Endpoints(Arc<Endpoints>),
    Secret(Arc<Secret>),
    ConfigMap(Arc<ConfigMap>),
}

impl Object {
    /// `(Kind, namespace, name)`: the identity used for duplicate detection, borrowed.
    pub fn identity(&self) -> (&'static str, Option<&str>, &str) {
        let (kind, meta) = match self {
            Object::Ingress(o) => (Ingress::KIND, &o.metadata),
            Object::IngressClass(o) => (IngressClass::KIND, &o.metadata),
            Object::Service(o) => (Service::KIND, &o.metadata),
            Object::EndpointSlice(o) => (EndpointSlice::KIND, &o.metadata),
            Object::Endpoints(o) => (Endpoints::KIND, &o.metadata),
            Object::Secret(o) => (Secret::KIND, &o.metadata),
            Object::ConfigMap(o) => (ConfigMap::KIND, &o.metadata),
        };
        let name = meta.name.as_deref().unwrap_or_default();
        (kind, meta.namespace.as_deref(), name)
    }

    /// `Kind namespace/name` (or `Kind name` when cluster-scoped): the identity for messages.
    pub fn key(&self) -> String {
        match self.identity() {
            (kind, Some(ns), name) => format!("{kind} {ns}/{name}"),
            (kind, None, name) => format!("{kind} {name}"),
        }
    }
}

/// Parses a whole file. `Err` holds every problem found; the caller then keeps the file's
/// previous good objects, so a file applies all-or-nothing (a half-applied file could, say,
/// drop a TLS Secret while keeping the Ingress that needs it).
pub(super) fn parse_file(path: &Path, text: &str) -> Result<Vec<Parsed>, Vec<ManifestError>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if is_json {
        if !text.trim().is_empty() {
            match serde_json::from_str::<Value>(text) {
                Ok(v) => document(path, 1, v, &mut out, &mut errors),
                Err(e) => errors.push(parse_error(path, 1, Some((e.line(), e.column())), &e)),
            }
        }
    } else {
        for (i, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
            let doc = i + 1;
            match yaml_to_json(de) {
                Ok(Value::Null) => {} // empty document
                Ok(v) => document(path, doc, v, &mut out, &mut errors),
                Err(e) => {
                    let at = e.location().map(|l| (l.line(), l.column()));
                    errors.push(parse_error(path, doc, at, &e));
                    break; // the parser cannot resynchronise after a syntax error
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// YAML document → JSON value, resolving `<<` merge keys as kubectl does.
fn yaml_to_json(de: serde_yaml_ng::Deserializer<'_>) -> Result<Value, serde_yaml_ng::Error> {
    let mut v = serde_yaml_ng::Value::deserialize(de)?;
    v.apply_merge()?;
    // Fails only on values JSON cannot hold (non-string keys); report those as YAML errors.
    serde_json::to_value(v).map_err(<serde_yaml_ng::Error as serde::de::Error>::custom)
}

fn parse_error(
    path: &Path,
    document: usize,
    at: Option<(usize, usize)>,
    e: &dyn std::fmt::Display,
) -> ManifestError {
    ManifestError::Parse {
        path: path.to_owned(),
        document,
        line: at.map(|a| a.0),
        column: at.map(|a| a.1),
        message: e.to_string(),
    }
}

/// One document (or, recursively, one item of a List) → objects.
fn document(
    path: &Path,
    doc: usize,
    v: Value,
    out: &mut Vec<Parsed>,
    errors: &mut Vec<ManifestError>,
) {
    let mut push = |object| out.push(Parsed::new(doc, object));
    if let Err(message) = one(v, "", &mut push) {
        errors.push(parse_error(path, doc, None, &message));
    }
}

/// Decodes one object; `at` prefixes messages with the place in the document (`items[2]: `).
/// Items of a List are decoded independently so every bad item is reported.
fn one(v: Value, at: &str, out: &mut dyn FnMut(Object)) -> Result<(), String> {
    let field = |name: &str| v.get(name).and_then(Value::as_str).map(str::to_owned);
    let (Some(api_version), Some(kind)) = (field("apiVersion"), field("kind")) else {
        return Err(format!("{at}missing apiVersion or kind"));
    };
    if kind == "List" || (kind.ends_with("List") && v.get("items").is_some()) {
        return list(v, at, &api_version, &kind, out);
    }
    let name = v
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let ctx = |e: String| format!("{at}{kind} {name:?}: {e}");
    let object = match (api_version.as_str(), kind.as_str()) {
        ("networking.k8s.io/v1", "Ingress") => {
            Object::Ingress(Arc::new(decode(v, true).map_err(ctx)?))
        }
        ("networking.k8s.io/v1", "IngressClass") => {
            Object::IngressClass(Arc::new(decode(v, false).map_err(ctx)?))
        }
        ("v1", "Service") => Object::Service(Arc::new(decode(v, true).map_err(ctx)?)),
        ("v1", "Endpoints") => Object::Endpoints(Arc::new(decode(v, true).map_err(ctx)?)),
        ("v1", "Secret") => {
            Object::Secret(Arc::new(merge_string_data(decode(v, true).map_err(ctx)?)))
        }
        ("v1", "ConfigMap") => Object::ConfigMap(Arc::new(decode(v, true).map_err(ctx)?)),
        ("discovery.k8s.io/v1", "EndpointSlice") => {
            Object::EndpointSlice(Arc::new(decode(v, true).map_err(ctx)?))
        }
        _ => {
            tracing::debug!(%api_version, %kind, %name, "skipping a kind weir does not read");
            return Ok(());
        }
    };
    out(object);
    Ok(())
}

/// `kind: List` (what `kubectl get -o yaml` prints) or a typed `<Kind>List` from the API, whose
/// items may omit apiVersion/kind.
fn list(
    mut v: Value,
    at: &str,
    api_version: &str,
    kind: &str,
    out: &mut dyn FnMut(Object),
) -> Result<(), String> {
    let items = match v.get_mut("items").map(Value::take) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(format!("{at}{kind}: items is not a list")),
    };
    let item_kind = kind.strip_suffix("List").filter(|k| !k.is_empty());
    let mut problems = Vec::new();
    for (i, mut item) in items.into_iter().enumerate() {
        if let (Some(k), Some(map)) = (item_kind, item.as_object_mut()) {
            map.entry("apiVersion")
                .or_insert_with(|| api_version.into());
            map.entry("kind").or_insert_with(|| k.into());
        }
        if let Err(e) = one(item, &format!("{at}items[{i}]: "), out) {
            problems.push(e);
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Deserializes a known kind; fills `metadata.namespace` with `default` for namespaced kinds
/// (as kubectl does) and requires `metadata.name`.
fn decode<T>(v: Value, namespaced: bool) -> Result<T, String>
where
    T: DeserializeOwned + Metadata<Ty = ObjectMeta>,
{
    let mut o: T = serde_json::from_value(v).map_err(|e| e.to_string())?;
    let meta = o.metadata_mut();
    if meta.name.as_deref().unwrap_or_default().is_empty() {
        return Err("metadata.name is required".to_owned());
    }
    if namespaced {
        if meta.namespace.as_deref().unwrap_or_default().is_empty() {
            meta.namespace = Some("default".to_owned());
        }
    } else {
        meta.namespace = None;
    }
    Ok(o)
}

/// Moves `stringData` into `data`, as the API server does on write (`stringData` wins on a
/// shared key), so hand-written TLS Secrets look like the ones read from a cluster.
fn merge_string_data(mut s: Secret) -> Secret {
    if let Some(strings) = s.string_data.take() {
        let data = s.data.get_or_insert_with(Default::default);
        for (k, v) in strings {
            data.insert(k, ByteString(v.into_bytes()));
        }
    }
    s
}
