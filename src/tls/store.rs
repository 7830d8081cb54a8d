//! [`CertStore`]: certificates by SNI (exact host → wildcard → default), and the rustls
//! resolvers that serve from it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Certificates by SNI host name: an exact host first, then a wildcard (`*.example.com` covers
/// exactly one extra leftmost label, as Ingress hosts do), then the default certificate.
///
/// Immutable once built and cheap to clone (the keys are shared). `Debug` prints host names
/// only.
#[derive(Clone)]
pub struct CertStore {
    /// Lower-case exact hosts.
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Wildcards by the suffix after `*.` (`*.example.com` is stored as `example.com`).
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
    /// Which Secret serves which host, and until when (for the expiry metric).
    served: Vec<ServedCertificate>,
}

/// A host served a certificate of its own: from which Secret, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedCertificate {
    /// The TLS host (`a.example.com` or `*.example.com`).
    pub host: String,
    /// The Secret's namespace.
    pub namespace: String,
    /// The Secret's name.
    pub secret: String,
    /// The leaf certificate's notAfter, in Unix seconds (`None` if it could not be read).
    pub not_after: Option<i64>,
}

impl CertStore {
    /// A store that serves `default` for every name.
    pub fn new(default: Arc<CertifiedKey>) -> Self {
        CertStore {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default,
            served: Vec::new(),
        }
    }

    /// Notes which Secret serves `host` (see [`CertStore::served`]).
    pub(super) fn record(&mut self, served: ServedCertificate) {
        self.served.push(served);
    }

    /// The hosts served a certificate of their own, with their Secret and expiry.
    pub fn served(&self) -> &[ServedCertificate] {
        &self.served
    }

    /// Adds (or replaces) the certificate of `host`: an exact host (`a.example.com`) or a
    /// wildcard (`*.example.com`). The host is lower-cased. [`compile`](super::compile) is the
    /// normal way to fill a store; this is for it and for tests.
    pub fn insert(&mut self, host: &str, key: Arc<CertifiedKey>) {
        let host = host.to_ascii_lowercase();
        match host.strip_prefix("*.") {
            Some(suffix) => self.wildcard.insert(suffix.to_owned(), key),
            None => self.exact.insert(host, key),
        };
    }

    /// The certificate for a ClientHello's SNI; `None` (no SNI, for example a client connecting
    /// by IP address) and names without a certificate get the default. Case-insensitive; a
    /// trailing dot is ignored.
    pub fn resolve(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        sni.and_then(|name| self.lookup(name))
            .unwrap_or(&self.default)
            .clone()
    }

    /// Whether `host` has a certificate of its own (exact or wildcard), not the default.
    /// `host` is a name without port; case does not matter. A wildcard pattern
    /// (`*.example.com`) asks whether that wildcard itself has a certificate.
    pub fn has_host(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        match host.strip_prefix("*.") {
            Some(suffix) => self.wildcard.contains_key(suffix),
            None => self.lookup(&host).is_some(),
        }
    }

    /// The number of exact and wildcard entries (the default is not counted).
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    /// Whether the store holds only the default certificate.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lookup(&self, name: &str) -> Option<&Arc<CertifiedKey>> {
        let name = name.strip_suffix('.').unwrap_or(name);
        let lowered;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = name.to_ascii_lowercase();
            lowered.as_str()
        } else {
            name
        };
        if let Some(key) = self.exact.get(name) {
            return Some(key);
        }
        let (label, suffix) = name.split_once('.')?;
        if label.is_empty() || label == "*" || suffix.is_empty() {
            return None;
        }
        self.wildcard.get(suffix)
    }
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut hosts: Vec<String> = self.exact.keys().cloned().collect();
        hosts.extend(self.wildcard.keys().map(|s| format!("*.{s}")));
        hosts.sort();
        f.debug_struct("CertStore")
            .field("hosts", &hosts)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(CertStore::resolve(self, client_hello.server_name()))
    }
}

/// A resolver that asks for the current [`CertStore`] on every handshake, so one
/// [`rustls::ServerConfig`] serves certificates that change with each published snapshot,
/// e.g. `LiveResolver::new(move || state.snapshot().certs.clone())`.
pub struct LiveResolver {
    current: Box<dyn Fn() -> Arc<CertStore> + Send + Sync>,
}

impl LiveResolver {
    /// A resolver over `current`, called once per ClientHello (it should be cheap, like an
    /// `ArcSwap` load).
    pub fn new(current: impl Fn() -> Arc<CertStore> + Send + Sync + 'static) -> Self {
        LiveResolver {
            current: Box::new(current),
        }
    }
}

impl fmt::Debug for LiveResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveResolver").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for LiveResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some((self.current)().resolve(client_hello.server_name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::testutil::certified;

    fn store() -> (CertStore, [Arc<CertifiedKey>; 3]) {
        let default = certified(&["default.invalid"]);
        let exact = certified(&["a.example.com"]);
        let wild = certified(&["*.wild.example.com"]);
        let mut store = CertStore::new(default.clone());
        store.insert("a.example.com", exact.clone());
        store.insert("*.wild.example.com", wild.clone());
        (store, [default, exact, wild])
    }

    #[test]
    fn resolves_exact_then_wildcard_then_default() {
        let (store, [default, exact, wild]) = store();
        assert!(Arc::ptr_eq(&store.resolve(Some("a.example.com")), &exact));
        assert!(Arc::ptr_eq(
            &store.resolve(Some("b.wild.example.com")),
            &wild
        ));
        assert!(Arc::ptr_eq(
            &store.resolve(Some("x.b.wild.example.com")),
            &default
        ));
        assert!(Arc::ptr_eq(
            &store.resolve(Some("wild.example.com")),
            &default
        ));
        assert!(Arc::ptr_eq(
            &store.resolve(Some("unknown.example.com")),
            &default
        ));
        assert!(Arc::ptr_eq(&store.resolve(Some("example.com")), &default));
        assert!(Arc::ptr_eq(&store.resolve(None), &default));
    }

    #[test]
    fn exact_beats_wildcard() {
        let (mut store, [_, exact, _]) = store();
        store.insert("b.wild.example.com", exact.clone());
        assert!(Arc::ptr_eq(
            &store.resolve(Some("b.wild.example.com")),
            &exact
        ));
    }

    #[test]
    fn sni_is_case_insensitive() {
        let (store, [_, exact, wild]) = store();
        assert!(Arc::ptr_eq(&store.resolve(Some("A.Example.COM")), &exact));
        assert!(Arc::ptr_eq(
            &store.resolve(Some("B.WILD.example.com")),
            &wild
        ));
        assert!(Arc::ptr_eq(&store.resolve(Some("a.example.com.")), &exact));
    }

    #[test]
    fn has_host_and_len() {
        let (store, [default, ..]) = store();
        assert!(store.has_host("a.example.com"));
        assert!(store.has_host("b.wild.example.com"));
        assert!(store.has_host("*.wild.example.com"));
        assert!(!store.has_host("wild.example.com"));
        assert!(!store.has_host("other.example.com"));
        assert_eq!(store.len(), 2);
        assert!(!store.is_empty());
        let empty = CertStore::new(default);
        assert!(empty.is_empty());
        assert!(!empty.has_host("a.example.com"));
    }

    #[test]
    fn debug_shows_hosts_only() {
        let (store, _) = store();
        let shown = format!("{store:?}");
        assert_eq!(
            shown,
            r#"CertStore { hosts: ["*.wild.example.com", "a.example.com"], .. }"#
        );
    }
}
