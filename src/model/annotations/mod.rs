//! Ingress annotations: which ones weir reads, their typed values, and what it says about the
//! rest.
//!
//! weir's own annotations live under `weir.dev/`; ingress-nginx annotations
//! (`nginx.ingress.kubernetes.io/`) are read with ingress-nginx's meaning and value syntax
//! where weir supports the feature, and weir's own key wins when both are set. Every other
//! annotation under those two prefixes is reported (a Diagnostic), never silently
//! half-applied; annotations under other prefixes belong to other tools and are ignored.
//!
//! Annotations come in groups, one file each ([`GROUPS`]). A group declares its [`Key`]s —
//! the name, whether it applies to a route or to a whole host ([`Scope`]), and what an
//! invalid value does ([`OnInvalid`]: a tuning knob falls back to its default, anything that
//! could widen access or send traffic elsewhere makes the Ingress's routes answer 503) — and
//! reads them through a [`Reader`] into typed values. Everything is parsed once per table;
//! the data plane never sees annotation text.
//!
//! # Adding an annotation
//! 1. **Model**: add a [`Key`] to the `KEYS` of its group file here (or a new group file,
//!    listed in [`GROUPS`]), read it in the group's `parse` through the [`Reader`] (an invalid
//!    value goes to [`Reader::invalid`] or, for anything about access or where traffic goes,
//!    [`Reader::refuse`]) and put the typed value into [`Policy`](super::Policy) (or
//!    [`HostAnnotations`] for a host-scope key). If it names another object (a Secret, a
//!    ConfigMap), return it from the group's `references` as well.
//! 2. **Proxy**: enforce it in a file of its own under `src/proxy/policy/`, called from the
//!    phase list in `src/proxy/phases.rs` (keep a route without the annotation free of cost:
//!    test an `Option`, do nothing else).
//! 3. **Compatibility**: mark it supported in [`compat`]; the README's compatibility table is
//!    checked against that list by a test.
//! 4. **Tests**: table-driven model tests in the group file (valid and invalid values, both
//!    prefixes, precedence, scope) and a proxy test with a real backend under `tests/`.

mod backend;
mod balance;
mod basic_auth;
mod body;
mod canary;
mod client_auth;
pub mod compat;
mod cors;
mod custom_errors;
mod external_auth;
mod hosts;
mod https;
mod logging;
mod mirror;
mod passthrough;
mod rate_limits;
mod redirect;
mod retries;
mod rewrite;
mod service_upstream;
mod source_ranges;
mod timeouts;
pub(crate) mod values;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};

use super::access::Access;
use super::diagnostic::{Diagnostic, ObjectKind, ObjectRef, Reason};
use super::objects::{ByName, same_object};
use super::policy::{Defaults, Policy};
use compat::Support;

pub(crate) use canary::CanaryAnnotation;
pub(crate) use custom_errors::ErrorPagesSpec;
pub(crate) use hosts::HostAnnotations;
pub(crate) use https::HttpsAnnotations;

/// The prefix of weir's own annotations.
pub(crate) const WEIR_PREFIX: &str = "weir.dev/";
/// The prefix of ingress-nginx annotations.
pub(crate) const NGINX_PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// What an annotation applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every route (path) of the Ingress that carries it.
    Route,
    /// Every host the Ingress names (server-level settings); when several Ingresses name a
    /// host, the oldest one that sets the annotation decides for it.
    Host,
}

/// What an invalid value does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnInvalid {
    /// A tuning knob: reported, and the default (ConfigMap, else flag) is used.
    Default,
    /// Something about access or where traffic goes: reported, and every route of the
    /// Ingress answers 503 until it is fixed (fail closed).
    Refuse,
}

/// One annotation weir implements: its name without prefix, scope and failure mode.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// The name after the prefix, e.g. `proxy-read-timeout`.
    pub name: &'static str,
    /// Route or host.
    pub scope: Scope,
    /// What an invalid value does.
    pub on_invalid: OnInvalid,
}

impl Key {
    const fn route(name: &'static str, on_invalid: OnInvalid) -> Key {
        Key {
            name,
            scope: Scope::Route,
            on_invalid,
        }
    }

    const fn host(name: &'static str, on_invalid: OnInvalid) -> Key {
        Key {
            name,
            scope: Scope::Host,
            on_invalid,
        }
    }
}

/// The annotation groups, each a file of this module: its name and its keys.
pub const GROUPS: &[(&str, &[Key])] = &[
    ("https", https::KEYS),
    ("redirect", redirect::KEYS),
    ("rewrite", rewrite::KEYS),
    ("timeouts", timeouts::KEYS),
    ("body", body::KEYS),
    ("hosts", hosts::KEYS),
    ("logging", logging::KEYS),
    ("source-ranges", source_ranges::KEYS),
    ("basic-auth", basic_auth::KEYS),
    ("external-auth", external_auth::KEYS),
    ("client-auth", client_auth::KEYS),
    ("cors", cors::KEYS),
    ("rate-limits", rate_limits::KEYS),
    ("backend", backend::KEYS),
    ("service-upstream", service_upstream::KEYS),
    ("passthrough", passthrough::KEYS),
    ("canary", canary::KEYS),
    ("balance", balance::KEYS),
    ("custom-errors", custom_errors::KEYS),
    ("mirror", mirror::KEYS),
    ("retries", retries::KEYS),
];

/// Every annotation weir reads, with its group.
pub fn keys() -> impl Iterator<Item = (&'static str, &'static Key)> {
    GROUPS
        .iter()
        .flat_map(|(group, keys)| keys.iter().map(move |key| (*group, key)))
}

fn find_key(name: &str) -> Option<&'static Key> {
    keys().map(|(_, key)| key).find(|key| key.name == name)
}

/// What annotations are read against: the global defaults, the Secrets and ConfigMaps they
/// may name, and whether they may name objects in other namespaces.
pub(crate) struct Context<'a> {
    /// The flags' defaults, overridden by the controller ConfigMap.
    pub defaults: &'a Defaults,
    /// Every Secret of the input, by (namespace, name).
    pub secrets: &'a ByName<'a, Secret>,
    /// Every ConfigMap of the input, by (namespace, name).
    pub config_maps: &'a ByName<'a, ConfigMap>,
    /// `--allow-cross-namespace-resources`: `auth-secret` (and the other annotations that
    /// name an object) may name `namespace/name`.
    pub allow_cross_namespace: bool,
    /// `--enable-ssl-passthrough`: `ssl-passthrough` may be honoured.
    pub ssl_passthrough: bool,
    /// The Secrets and ConfigMaps looked up since [`Context::take_reads`], found or not: what
    /// the annotations read, for an incremental build to know when to read them again.
    pub reads: RefCell<Vec<ObjectRead>>,
}

/// A Secret or ConfigMap an Ingress's annotations looked up, and what was found (the input's
/// `Arc`, compared by identity).
#[derive(Debug, Clone)]
pub(crate) enum ObjectRead {
    /// A Secret (namespace, name).
    Secret(ObjectRef, Option<Arc<Secret>>),
    /// A ConfigMap (namespace, name).
    ConfigMap(ObjectRef, Option<Arc<ConfigMap>>),
}

impl Context<'_> {
    /// The data of the Secret `object`, when it exists (a Secret without data has none).
    pub fn secret_data(&self, object: &ObjectRef) -> Option<&BTreeMap<String, ByteString>> {
        static EMPTY: BTreeMap<String, ByteString> = BTreeMap::new();
        let secret = self
            .secrets
            .get(&(object.namespace.as_str(), object.name.as_str()));
        let read = ObjectRead::Secret(object.clone(), secret.map(|s| Arc::clone(s)));
        self.reads.borrow_mut().push(read);
        Some(secret?.data.as_ref().unwrap_or(&EMPTY))
    }

    /// The data of the ConfigMap `object`, when it exists (a ConfigMap without data has none).
    pub fn config_map_data(&self, object: &ObjectRef) -> Option<&BTreeMap<String, String>> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        let config_map = self
            .config_maps
            .get(&(object.namespace.as_str(), object.name.as_str()));
        let read = ObjectRead::ConfigMap(object.clone(), config_map.map(|c| Arc::clone(c)));
        self.reads.borrow_mut().push(read);
        Some(config_map?.data.as_ref().unwrap_or(&EMPTY))
    }

    /// The objects looked up since the last call.
    pub fn take_reads(&self) -> Vec<ObjectRead> {
        std::mem::take(&mut *self.reads.borrow_mut())
    }

    /// Whether every read in `reads` would find the same object now.
    pub fn still_reads(&self, reads: &[ObjectRead]) -> bool {
        reads.iter().all(|read| match read {
            ObjectRead::Secret(o, then) => same_object(
                self.secrets
                    .get(&(o.namespace.as_str(), o.name.as_str()))
                    .copied(),
                then.as_ref(),
            ),
            ObjectRead::ConfigMap(o, then) => same_object(
                self.config_maps
                    .get(&(o.namespace.as_str(), o.name.as_str()))
                    .copied(),
                then.as_ref(),
            ),
        })
    }
}

/// The object of `kind` an annotation names: `name` in the Ingress's namespace, or
/// `namespace/name` (`None` for a value that is neither). Also what
/// [`references`](crate::model::references) reports, so that the object is watched.
pub(crate) fn object_ref(
    kind: ObjectKind,
    ingress_namespace: &str,
    value: &str,
) -> Option<ObjectRef> {
    let value = value.trim();
    let (namespace, name) = value.split_once('/').unwrap_or((ingress_namespace, value));
    let valid = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b))
    };
    (valid(namespace) && valid(name)).then(|| ObjectRef::new(kind, namespace, name))
}

/// The value of annotation `name` in `annotations`: weir's key, else ingress-nginx's.
pub(crate) fn value<'a>(
    annotations: Option<&'a BTreeMap<String, String>>,
    name: &str,
) -> Option<&'a str> {
    let annotations = annotations?;
    [WEIR_PREFIX, NGINX_PREFIX]
        .iter()
        .find_map(|prefix| annotations.get(&format!("{prefix}{name}")))
        .map(String::as_str)
}

/// One annotation as found on an Ingress.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Found<'a> {
    /// The name without prefix.
    pub name: &'a str,
    /// The full key it was found under (weir's, else ingress-nginx's).
    pub key: &'a str,
    /// Its value, as written.
    pub value: &'a str,
}

impl Found<'_> {
    /// The value without surrounding white space.
    pub fn trimmed(&self) -> &str {
        self.value.trim()
    }
}

/// Reads one Ingress's annotations for the groups, collecting what is wrong with them.
pub(crate) struct Reader<'a> {
    object: &'a ObjectRef,
    context: &'a Context<'a>,
    /// The annotations under weir's or ingress-nginx's prefix, by name; weir's wins.
    ours: BTreeMap<&'a str, Found<'a>>,
    diagnostics: &'a mut Vec<Diagnostic>,
    /// Why the routes must refuse (fail closed), one sentence per bad annotation.
    refusals: Vec<String>,
}

impl<'a> Reader<'a> {
    fn new(
        object: &'a ObjectRef,
        context: &'a Context<'a>,
        annotations: Option<&'a BTreeMap<String, String>>,
        diagnostics: &'a mut Vec<Diagnostic>,
    ) -> Self {
        let mut ours: BTreeMap<&str, Found<'_>> = BTreeMap::new();
        for (key, value) in annotations.into_iter().flatten() {
            if let Some(name) = key.strip_prefix(WEIR_PREFIX) {
                ours.insert(name, Found { name, key, value });
            } else if let Some(name) = key.strip_prefix(NGINX_PREFIX) {
                ours.entry(name).or_insert(Found { name, key, value });
            }
        }
        Reader {
            object,
            context,
            ours,
            diagnostics,
            refusals: Vec::new(),
        }
    }

    /// The Ingress whose annotations these are.
    pub fn object(&self) -> &'a ObjectRef {
        self.object
    }

    /// What the annotations are read against.
    pub fn context(&self) -> &'a Context<'a> {
        self.context
    }

    /// A boolean annotation (Go's `strconv.ParseBool` syntax), else `default`.
    pub fn flag(&mut self, name: &str, default: bool) -> bool {
        let Some(found) = self.get(name) else {
            return default;
        };
        values::boolean(found.value).unwrap_or_else(|| {
            self.invalid(found, values::BOOLEAN, default);
            default
        })
    }

    /// The annotation `name` (weir's key, else ingress-nginx's).
    pub fn get(&self, name: &str) -> Option<Found<'a>> {
        debug_assert!(find_key(name).is_some(), "{name} is not in a group's KEYS");
        self.ours.get(name).copied()
    }

    /// Reports a value that cannot be used. `accepted` says what is accepted; the key's
    /// [`OnInvalid`] decides the rest: a tuning knob keeps `fallback` (described for the
    /// message), anything else makes the Ingress's routes refuse.
    pub fn invalid(&mut self, found: Found<'_>, accepted: &str, fallback: impl fmt::Display) {
        let on_invalid = find_key(found.name).map_or(OnInvalid::Default, |k| k.on_invalid);
        match on_invalid {
            OnInvalid::Default => self.report(
                Reason::InvalidAnnotationValue,
                format!(
                    "annotation {:?} has the value {:?}, but {accepted}; {fallback} is used instead",
                    found.key, found.value
                ),
            ),
            OnInvalid::Refuse => self.refuse(found, accepted),
        }
    }

    /// Reports a value that cannot be used for something about access or where traffic
    /// goes: every route of the Ingress answers 503 until it is fixed.
    pub fn refuse(&mut self, found: Found<'_>, accepted: &str) {
        self.report(
            Reason::InvalidAnnotationValue,
            format!(
                "annotation {:?} has the value {:?}, but {accepted}; the Ingress's routes \
                 answer 503 until it is fixed (weir fails closed rather than serve without it)",
                found.key, found.value
            ),
        );
        self.refusals
            .push(format!("annotation {:?} is invalid", found.key));
    }

    /// Reports that the routes must refuse for a reason that is not one annotation's value
    /// (`why` says what is wrong).
    pub fn refuse_for(&mut self, why: &str) {
        self.refuse_because(Reason::InvalidAnnotationValue, why);
    }

    /// Like [`Reader::refuse_for`], reported with `reason`.
    pub fn refuse_because(&mut self, reason: Reason, why: &str) {
        self.report(
            reason,
            format!("{why}; the Ingress's routes answer 503 until it is fixed (fail closed)"),
        );
        self.refusals.push(why.to_owned());
    }

    /// The Secret the annotation `found` names (`name`, or `namespace/name` with
    /// `--allow-cross-namespace-resources`) and its data; `None` (refused, reported) when it is
    /// not a Secret name, is in another namespace without the flag, or does not exist.
    pub fn secret(
        &mut self,
        found: Found<'_>,
    ) -> Option<(ObjectRef, &'a BTreeMap<String, ByteString>)> {
        let context = self.context;
        self.named(found, ObjectKind::Secret, |object| {
            context.secret_data(object)
        })
    }

    /// The ConfigMap the annotation `found` names and its data, like [`Reader::secret`].
    pub fn config_map(
        &mut self,
        found: Found<'_>,
    ) -> Option<(ObjectRef, &'a BTreeMap<String, String>)> {
        let context = self.context;
        self.named(found, ObjectKind::ConfigMap, |object| {
            context.config_map_data(object)
        })
    }

    /// The object of `kind` that `found` names, and what `data` finds of it; refused and
    /// reported when the value names none, another namespace without the flag, or one that
    /// does not exist.
    fn named<T>(
        &mut self,
        found: Found<'_>,
        kind: ObjectKind,
        data: impl FnOnce(&ObjectRef) -> Option<T>,
    ) -> Option<(ObjectRef, T)> {
        let kind_name = kind.as_str();
        let Some(object) = object_ref(kind, &self.object.namespace, found.value) else {
            self.refuse(
                found,
                &format!("it must name a {kind_name}: \"name\" or \"namespace/name\""),
            );
            return None;
        };
        if object.namespace != self.object.namespace && !self.context.allow_cross_namespace {
            self.refuse(
                found,
                &format!(
                    "it names a {kind_name} in another namespace, which weir reads only with \
                     --allow-cross-namespace-resources"
                ),
            );
            return None;
        }
        let Some(data) = data(&object) else {
            let missing = format!(
                "the {kind_name} {}/{} does not exist",
                object.namespace, object.name
            );
            self.refuse(found, &missing);
            return None;
        };
        Some((object, data))
    }

    /// `parse` applied to the key `key` of the Secret `object` (named by `found`), when the
    /// Secret has it: `Ok(None)` without the key, `Err(())` (refused, reported) when `parse`
    /// says the value is unusable.
    pub fn secret_key<T>(
        &mut self,
        found: Found<'_>,
        (object, data): (&ObjectRef, &BTreeMap<String, ByteString>),
        key: &str,
        parse: impl FnOnce(&[u8]) -> Result<T, String>,
    ) -> Result<Option<T>, ()> {
        let Some(value) = data.get(key) else {
            return Ok(None);
        };
        parse(&value.0).map(Some).map_err(|why| {
            let why = format!(
                "the {key} of Secret {}/{} is unusable: {why}",
                object.namespace, object.name
            );
            self.refuse(found, &why);
        })
    }

    /// Whether something read so far makes the routes refuse.
    pub fn refuses(&self) -> bool {
        !self.refusals.is_empty()
    }

    /// Reports something else about an annotation.
    pub fn report(&mut self, reason: Reason, message: String) {
        self.diagnostics
            .push(Diagnostic::new(self.object.clone(), reason, message));
    }

    /// Reports every annotation under the two prefixes that no group reads.
    fn report_unread(&mut self) {
        let unread: Vec<(&str, &str)> = self
            .ours
            .iter()
            .filter(|(name, _)| find_key(name).is_none())
            .map(|(name, found)| (*name, found.key))
            .collect();
        for (name, key) in unread {
            let (reason, message) = if key.starts_with(WEIR_PREFIX) {
                match compat::support(name) {
                    Some(_) => (
                        Reason::UnsupportedAnnotation,
                        format!(
                            "weir does not implement annotation {key:?} yet and ignores it ({})",
                            compat::explain(name)
                        ),
                    ),
                    None => (
                        Reason::UnknownAnnotation,
                        format!(
                            "weir does not know annotation {key:?}; it is ignored (check its spelling)"
                        ),
                    ),
                }
            } else {
                (
                    Reason::UnsupportedAnnotation,
                    format!("annotation {key:?} is ignored: {}", compat::explain(name)),
                )
            };
            if !matches!(compat::support(name), Some(Support::Accepted(_))) {
                // Accepted annotations (obsolete ones) change nothing and are not reported.
                self.report(reason, message);
            }
        }
    }
}

/// The typed values of the annotations of one Ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IngressAnnotations {
    /// Route-scope behaviour, shared by the Ingress's routes.
    pub policy: Arc<Policy>,
    /// HTTPS redirect settings (combined with each host's TLS by the build).
    pub https: HttpsAnnotations,
    /// `use-regex` or `rewrite-target`: the paths of every host of this Ingress are regexes
    /// (for every Ingress of those hosts, as in ingress-nginx).
    pub regex: bool,
    /// Host-scope settings.
    pub host: HostAnnotations,
    /// `canary` and `canary-*`: whether the Ingress is a canary of another, and its rule.
    pub canary: CanaryAnnotation,
    /// `service-upstream`: the routes send to their Services' cluster IPs.
    pub service_upstream: bool,
    /// `custom-http-errors` and `default-backend`, before the build resolves the Service.
    pub error_pages: ErrorPagesSpec,
}

/// Reads the annotations of `object` (an Ingress of weir's class) into their typed form with
/// `defaults` for what they do not set, and reports the ones under `weir.dev/` or
/// `nginx.ingress.kubernetes.io/` that weir does not implement.
pub(crate) fn parse(
    object: &ObjectRef,
    annotations: Option<&BTreeMap<String, String>>,
    context: &Context<'_>,
    diagnostics: &mut Vec<Diagnostic>,
) -> IngressAnnotations {
    let defaults = context.defaults;
    let mut reader = Reader::new(object, context, annotations, diagnostics);
    let mut policy = Policy::from_defaults(defaults);
    let https = https::parse(&mut reader, defaults);
    policy.redirect = redirect::parse_redirect(&mut reader);
    let (rewrite, regex) = rewrite::parse(&mut reader);
    policy.rewrite = rewrite;
    policy.timeouts = timeouts::parse(&mut reader, &defaults.timeouts);
    policy.max_body_size = body::parse(&mut reader, defaults.max_body_size);
    policy.access_log = logging::parse(&mut reader);
    policy.use_port_in_redirects = redirect::parse_use_port(&mut reader, defaults);
    policy.relative_redirects = redirect::parse_relative(&mut reader, defaults);
    let mut host = hosts::parse(&mut reader);
    host.client_auth = client_auth::parse(&mut reader);
    host.passthrough = passthrough::parse(&mut reader);
    let sources = source_ranges::parse(&mut reader);
    let basic = basic_auth::parse(&mut reader);
    // Err: refused, and reported.
    let external = external_auth::parse(&mut reader).unwrap_or(None);
    policy.cors = cors::parse(&mut reader);
    policy.rate_limits = rate_limits::parse(&mut reader);
    policy.response_rate = rate_limits::response_rate(&mut reader);
    policy.upstream = backend::parse(&mut reader);
    policy.retry = retries::parse(&mut reader, defaults);
    let service_upstream = service_upstream::parse(&mut reader);
    let canary = canary::parse(&mut reader);
    policy.balance = balance::parse(&mut reader, regex);
    let error_pages = custom_errors::parse(&mut reader, defaults);
    policy.mirror = mirror::parse(&mut reader);
    if sources.allow.is_some() || sources.deny.is_some() || basic.is_some() || external.is_some() {
        policy.access = Some(Arc::new(Access {
            allow: sources.allow,
            deny: sources.deny,
            basic,
            external,
            satisfy: sources.satisfy,
        }));
    }
    reader.report_unread();
    if !reader.refusals.is_empty() {
        policy.refused = Some(Arc::from(reader.refusals.join("; ")));
    }
    IngressAnnotations {
        policy: Arc::new(policy),
        https,
        regex,
        host,
        canary,
        service_upstream,
        error_pages,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The Ingress the annotation tests read.
    pub(crate) fn object() -> ObjectRef {
        ObjectRef::new(ObjectKind::Ingress, "d", "i")
    }

    /// Parses annotations given as `(key, value)` pairs with ingress-nginx's defaults.
    pub(crate) fn parse_pairs(pairs: &[(&str, &str)]) -> (IngressAnnotations, Vec<Diagnostic>) {
        parse_with(pairs, &Defaults::default())
    }

    /// Parses annotations given as `(key, value)` pairs with `defaults`.
    pub(crate) fn parse_with(
        pairs: &[(&str, &str)],
        defaults: &Defaults,
    ) -> (IngressAnnotations, Vec<Diagnostic>) {
        read(pairs, defaults, &[], &[], false)
    }

    /// Parses annotations given as `(key, value)` pairs, with `--enable-ssl-passthrough` or
    /// without.
    pub(crate) fn parse_with_flags(
        pairs: &[(&str, &str)],
        ssl_passthrough: bool,
    ) -> (IngressAnnotations, Vec<Diagnostic>) {
        read_with(
            pairs,
            &Defaults::default(),
            &[],
            &[],
            false,
            ssl_passthrough,
        )
    }

    /// Parses annotations given as `(key, value)` pairs of an Ingress in namespace `d`, with
    /// these Secrets in the cluster, and cross-namespace references allowed or not.
    pub(crate) fn parse_in(
        pairs: &[(&str, &str)],
        secrets: &[Arc<Secret>],
        allow_cross_namespace: bool,
    ) -> (IngressAnnotations, Vec<Diagnostic>) {
        read(
            pairs,
            &Defaults::default(),
            secrets,
            &[],
            allow_cross_namespace,
        )
    }

    /// Like [`parse_in`], with these ConfigMaps in the cluster (and no Secrets).
    pub(crate) fn parse_with_config_maps(
        pairs: &[(&str, &str)],
        config_maps: &[Arc<ConfigMap>],
        allow_cross_namespace: bool,
    ) -> (IngressAnnotations, Vec<Diagnostic>) {
        read(
            pairs,
            &Defaults::default(),
            &[],
            config_maps,
            allow_cross_namespace,
        )
    }

    fn read(
        pairs: &[(&str, &str)],
        defaults: &Defaults,
        secrets: &[Arc<Secret>],
        config_maps: &[Arc<ConfigMap>],
        allow_cross_namespace: bool,
    ) -> (IngressAnnotations, Vec<Diagnostic>) {
        read_with(
            pairs,
            defaults,
            secrets,
            config_maps,
            allow_cross_namespace,
            false,
        )
    }

    fn read_with(
        pairs: &[(&str, &str)],
        defaults: &Defaults,
        secrets: &[Arc<Secret>],
        config_maps: &[Arc<ConfigMap>],
        allow_cross_namespace: bool,
        ssl_passthrough: bool,
    ) -> (IngressAnnotations, Vec<Diagnostic>) {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let secrets = crate::model::objects::index_by_name(secrets, |s| &s.metadata);
        let config_maps = crate::model::objects::index_by_name(config_maps, |c| &c.metadata);
        let context = Context {
            defaults,
            secrets: &secrets,
            config_maps: &config_maps,
            allow_cross_namespace,
            ssl_passthrough,
            reads: RefCell::default(),
        };
        let mut diagnostics = Vec::new();
        let parsed = parse(&object(), Some(&map), &context, &mut diagnostics);
        (parsed, diagnostics)
    }

    #[test]
    fn object_references() {
        assert_eq!(
            object_ref(ObjectKind::Secret, "apps", " users "),
            Some(ObjectRef::new(ObjectKind::Secret, "apps", "users"))
        );
        assert_eq!(
            object_ref(ObjectKind::ConfigMap, "apps", "auth/headers"),
            Some(ObjectRef::new(ObjectKind::ConfigMap, "auth", "headers"))
        );
        for bad in ["", "/x", "x/", "a/b/c", "Users", "x y"] {
            assert_eq!(object_ref(ObjectKind::Secret, "apps", bad), None, "{bad:?}");
        }
    }

    /// Both full keys of annotation `name`: weir's and ingress-nginx's.
    pub(crate) fn both(name: &str) -> [String; 2] {
        [
            format!("{WEIR_PREFIX}{name}"),
            format!("{NGINX_PREFIX}{name}"),
        ]
    }

    #[test]
    fn reports_unknown_and_unsupported_annotations() {
        let (_, diagnostics) = parse_pairs(&[
            ("weir.dev/nope", "1"),
            ("nginx.ingress.kubernetes.io/ssl-ciphers", "HIGH"),
            ("nginx.ingress.kubernetes.io/server-snippet", "return 200;"),
            ("nginx.ingress.kubernetes.io/configuration-snippet", "x"),
            ("nginx.ingress.kubernetes.io/no-such-thing", "x"),
            ("nginx.ingress.kubernetes.io/http2-push-preload", "true"),
            ("kubernetes.io/ingress.class", "weir"),
            ("example.com/other", "x"),
        ]);
        let got: Vec<(Reason, &str)> = diagnostics
            .iter()
            .map(|d| (d.reason, d.message.as_str()))
            .collect();
        assert_eq!(got.len(), 5, "{got:#?}");
        let find = |needle: &str| {
            got.iter()
                .find(|(_, m)| m.contains(needle))
                .unwrap_or_else(|| panic!("no diagnostic about {needle}: {got:#?}"))
        };
        assert_eq!(
            find("configuration-snippet").0,
            Reason::UnsupportedAnnotation
        );
        assert!(find("configuration-snippet").1.contains("never"));
        assert!(find("server-snippet").1.contains("never"));
        assert!(
            find("ssl-ciphers")
                .1
                .contains("not implement it yet (issue")
        );
        assert!(
            find("no-such-thing")
                .1
                .contains("not an ingress-nginx annotation")
        );
        assert_eq!(find("weir.dev/nope").0, Reason::UnknownAnnotation);

        let (parsed, none) = parse_pairs(&[]);
        assert_eq!(parsed.policy.as_ref(), &Policy::default());
        assert!(none.is_empty());
    }

    #[test]
    fn every_key_is_in_one_group_once_and_marked_supported() {
        let mut seen = std::collections::BTreeSet::new();
        for (group, key) in keys() {
            assert!(seen.insert(key.name), "{} twice (group {group})", key.name);
            let support = compat::support(key.name);
            assert!(
                matches!(support, Some(Support::Supported | Support::Differs(_))),
                "{} is read by group {group} but compat says {support:?}",
                key.name
            );
        }
        for row in compat::ANNOTATIONS {
            if matches!(row.support, Support::Supported | Support::Differs(_)) {
                assert!(
                    find_key(row.name).is_some(),
                    "compat says {} is supported but no group reads it",
                    row.name
                );
            }
        }
    }

    #[test]
    fn unimplemented_annotations_are_reported_and_change_nothing() {
        let (parsed, diagnostics) =
            parse_pairs(&[("nginx.ingress.kubernetes.io/enable-modsecurity", "true")]);
        assert!(parsed.policy.refused.is_none());
        assert_eq!(diagnostics.len(), 1);
    }

    #[test]
    fn an_invalid_access_annotation_refuses_and_a_knob_falls_back() {
        let (parsed, diagnostics) = parse_pairs(&[
            (
                "nginx.ingress.kubernetes.io/rewrite-target",
                "http://elsewhere/",
            ),
            ("nginx.ingress.kubernetes.io/proxy-read-timeout", "soon"),
        ]);
        let refused = parsed.policy.refused.as_deref().unwrap();
        assert!(refused.contains("rewrite-target"), "{refused}");
        assert_eq!(diagnostics.len(), 2, "{diagnostics:#?}");
        assert!(diagnostics.iter().any(|d| d.message.contains("answer 503")));
        assert!(
            diagnostics
                .iter()
                .any(|d| d.message.contains("proxy-read-timeout") && d.message.contains("instead"))
        );
    }
}
