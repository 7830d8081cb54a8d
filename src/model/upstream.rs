//! How weir talks to a route's endpoints: the protocol (`backend-protocol`, `secure-backends`)
//! and, for TLS, the `proxy-ssl-*` settings — read once per table into the typed values below.
//! The proxy opens connections accordingly (`src/proxy/upstream.rs`) and compiles the TLS
//! settings into a rustls configuration (`src/tls/upstream.rs`).

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::diagnostic::ObjectRef;

/// The protocol spoken to a route's endpoints (`backend-protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    /// HTTP/1.1 in cleartext (`HTTP`, the default; `AUTO_HTTP` too).
    #[default]
    Http,
    /// HTTP/1.1 over TLS (`HTTPS`, or `secure-backends: "true"`).
    Https,
    /// gRPC: HTTP/2 in cleartext (`GRPC`).
    Grpc,
    /// gRPC over TLS (HTTP/2, ALPN `h2`) (`GRPCS`).
    Grpcs,
    /// HTTP/2 in cleartext with prior knowledge (`H2C`).
    H2c,
}

impl Protocol {
    /// The connection is TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Protocol::Https | Protocol::Grpcs)
    }

    /// The connection speaks HTTP/2.
    pub fn is_http2(self) -> bool {
        matches!(self, Protocol::Grpc | Protocol::Grpcs | Protocol::H2c)
    }

    /// The endpoints speak gRPC: responses weir makes itself are gRPC-shaped.
    pub fn is_grpc(self) -> bool {
        matches!(self, Protocol::Grpc | Protocol::Grpcs)
    }

    /// The annotation value that selects it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "HTTP",
            Protocol::Https => "HTTPS",
            Protocol::Grpc => "GRPC",
            Protocol::Grpcs => "GRPCS",
            Protocol::H2c => "H2C",
        }
    }
}

/// How a route reaches its endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Upstream {
    /// The protocol.
    pub protocol: Protocol,
    /// The TLS settings; set exactly when the protocol is TLS.
    pub tls: Option<Arc<UpstreamTls>>,
}

/// The TLS versions weir may offer to an endpoint (`proxy-ssl-protocols`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TlsVersions {
    /// TLS 1.2.
    pub tls12: bool,
    /// TLS 1.3.
    pub tls13: bool,
}

impl Default for TlsVersions {
    fn default() -> Self {
        TlsVersions {
            tls12: true,
            tls13: true,
        }
    }
}

/// A client certificate weir presents to endpoints (`tls.crt` and `tls.key` of
/// `proxy-ssl-secret`), as PEM. `Debug` never prints the key.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ClientIdentity {
    /// The certificate chain (PEM), the client's certificate first.
    pub chain_pem: Vec<u8>,
    /// The private key (PEM).
    pub key_pem: Vec<u8>,
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientIdentity { .. }")
    }
}

/// The `proxy-ssl-*` settings of a route whose endpoints speak TLS.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamTls {
    /// `proxy-ssl-secret`, when set.
    pub secret: Option<ObjectRef>,
    /// `proxy-ssl-verify: on`: the endpoint's certificate must chain to `ca` (or, without a
    /// Secret, to the system's trust store) and name the verification name.
    pub verify: bool,
    /// The CA certificates (DER) of `ca.crt`; empty: the system's trust store.
    pub ca: Vec<Vec<u8>>,
    /// `proxy-ssl-verify-depth`: the longest chain from the endpoint's certificate to a CA,
    /// in certificates above the endpoint's.
    pub verify_depth: u8,
    /// The client certificate (`tls.crt`, `tls.key`), for endpoints that ask for one.
    pub identity: Option<ClientIdentity>,
    /// `proxy-ssl-name`: the name verified (and sent as SNI); `None`: the Service's DNS name
    /// (`service.namespace.svc`).
    pub name: Option<String>,
    /// `proxy-ssl-server-name: on`: the name is sent as SNI.
    pub sni: bool,
    /// `proxy-ssl-protocols`.
    pub versions: TlsVersions,
    /// ALPN: `h2` for gRPC over TLS, `http/1.1` otherwise.
    pub http2: bool,
}

impl UpstreamTls {
    /// A digest of every setting, the same for equal settings in every table: the pool's key
    /// for connections and compiled configurations (compared in full on a match).
    pub fn digest(&self) -> u64 {
        let mut hasher = std::hash::DefaultHasher::new();
        self.hash(&mut hasher);
        hasher.finish()
    }

    /// The name verified and sent as SNI towards `service`'s endpoints.
    pub fn server_name<'a>(&'a self, service: &ObjectRef) -> std::borrow::Cow<'a, str> {
        match &self.name {
            Some(name) => std::borrow::Cow::Borrowed(name),
            None => std::borrow::Cow::Owned(format!("{}.{}.svc", service.name, service.namespace)),
        }
    }
}
