//! Who may use a route: the typed form of the access-control annotations (source IP lists,
//! basic authentication, how they combine), resolved once per table. The proxy enforces it in
//! phase 9 (`src/proxy/policy/access.rs`); nothing here is parsed per request.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderValue;
use ipnet::IpNet;
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// The access rules of a route; `None` in [`Policy`](super::Policy) when it has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// `whitelist-source-range` / `allowlist-source-range`: only these client addresses.
    pub allow: Option<IpList>,
    /// `denylist-source-range`: never these client addresses (checked before `allow`).
    pub deny: Option<IpList>,
    /// `auth-type: basic`: a user of this list must authenticate.
    pub basic: Option<BasicAuth>,
    /// `auth-url` (or the ConfigMap's `global-auth-url`): a service must let the request in.
    pub external: Option<Arc<super::ExternalAuth>>,
    /// `satisfy`: how the allowlist and authentication combine.
    pub satisfy: Satisfy,
}

/// How an allowlist and authentication combine (`satisfy`, nginx's directive of that name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Satisfy {
    /// Both must pass (the default).
    #[default]
    All,
    /// Either is enough: an allowed address needs no credentials, and valid credentials
    /// open the route from any address. The denylist applies either way.
    Any,
}

/// Request rate limits per client address (`limit-rps`, `limit-rpm`), as nginx's `limit_req`
/// with `burst` and `nodelay`: a client may send `burst` requests at once beyond its rate,
/// then one per interval; more get 503. Also `limit-connections`, nginx's `limit_conn`:
/// requests in progress per client address. Counted per replica, shared by the routes of an
/// Ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    /// Per second.
    pub per_second: Option<Rate>,
    /// Per minute.
    pub per_minute: Option<Rate>,
    /// `limit-whitelist` / `limit-allowlist`: clients never limited.
    pub exempt: Option<IpList>,
    /// The status of a refused request (the ConfigMap's `limit-req-status-code`, default 503).
    pub status: http::StatusCode,
    /// `limit-connections`: requests in progress per client address.
    pub connections: Option<u32>,
    /// The status of a request over `limit-connections` (`limit-conn-status-code`).
    pub connections_status: http::StatusCode,
}

/// One rate: `count` requests per `period`, with `burst` more at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    /// Requests per period (at least 1).
    pub count: u32,
    /// The period.
    pub period: std::time::Duration,
    /// Requests a client may send at once beyond its rate (`count` × `limit-burst-multiplier`).
    pub burst: u32,
}

/// Cross-origin resource sharing for a route (`enable-cors` and the `cors-*` annotations),
/// with the header values it sends made once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    /// Which `Origin`s get the headers.
    pub origins: CorsOrigins,
    /// `Access-Control-Allow-Credentials: true`.
    pub credentials: bool,
    /// `Access-Control-Allow-Methods`.
    pub methods: Option<HeaderValue>,
    /// `Access-Control-Allow-Headers`.
    pub headers: Option<HeaderValue>,
    /// `Access-Control-Expose-Headers`.
    pub expose: Option<HeaderValue>,
    /// `Access-Control-Max-Age`.
    pub max_age: Option<HeaderValue>,
}

/// The origins CORS answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// `*`: every request, with `Access-Control-Allow-Origin: *` (as ingress-nginx does).
    Any,
    /// These origins: a request whose `Origin` is one of them gets it back.
    List(Vec<OriginPattern>),
}

impl Cors {
    /// The `Access-Control-Allow-Origin` for a request with this `Origin` header, `None` when
    /// the origin is not allowed (no CORS headers then).
    pub fn allow_origin(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        match &self.origins {
            CorsOrigins::Any => Some(HeaderValue::from_static("*")),
            CorsOrigins::List(patterns) => {
                let origin = origin?;
                let text = origin.to_str().ok()?;
                patterns
                    .iter()
                    .any(|p| p.matches(text))
                    .then(|| origin.clone())
            }
        }
    }
}

/// One allowed origin: `https://app.example.com`, `https://*.example.com` (one more label),
/// with an optional port; without a scheme, any scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    scheme: Option<String>,
    wildcard: bool,
    host: String,
    port: Option<u16>,
}

impl OriginPattern {
    /// Parses one item of `cors-allow-origin` (ingress-nginx's syntax); `None` when it is not
    /// an origin.
    pub fn parse(item: &str) -> Option<OriginPattern> {
        let lower = item.trim().to_ascii_lowercase();
        let (scheme, rest) = match lower.split_once("://") {
            Some((scheme @ ("http" | "https"), rest)) => (Some(scheme.to_owned()), rest),
            Some(_) => return None,
            None => (None, lower.as_str()),
        };
        let (wildcard, rest) = match rest.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, rest),
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port.parse::<u16>().ok()?)),
            None => (rest, None),
        };
        let valid = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        valid.then(|| OriginPattern {
            scheme,
            wildcard,
            host: host.to_owned(),
            port,
        })
    }

    /// Whether a request's `Origin` (`scheme://host[:port]`) is this one.
    pub fn matches(&self, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        let Some((scheme, rest)) = origin.split_once("://") else {
            return false;
        };
        if self.scheme.as_deref().is_some_and(|s| s != scheme) {
            return false;
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => match port.parse::<u16>() {
                Ok(port) => (host, Some(port)),
                Err(_) => return false,
            },
            None => (rest, None),
        };
        if port != self.port {
            return false;
        }
        if !self.wildcard {
            return host == self.host;
        }
        host.strip_suffix(&self.host)
            .and_then(|label| label.strip_suffix('.'))
            .is_some_and(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    }
}

/// A list of networks (IPv4 and IPv6; a bare address is a /32 or /128).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpList {
    nets: Arc<[IpNet]>,
}

impl IpList {
    /// Parses a comma-separated list of CIDRs or addresses, as ingress-nginx does; the first
    /// item that is neither is the error. An empty list is an error too: it could only mean
    /// "nobody" or "everybody", and the writer should say which.
    pub fn parse(value: &str) -> Result<IpList, String> {
        let mut nets = Vec::new();
        for item in crate::model::annotations::values::list(value) {
            let net = match item.parse::<IpNet>() {
                Ok(net) => canonical_net(net).trunc(),
                Err(_) => match item.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(canonical(ip)),
                    Err(_) => return Err(item.to_owned()),
                },
            };
            nets.push(net);
        }
        if nets.is_empty() {
            return Err(String::new());
        }
        Ok(IpList { nets: nets.into() })
    }

    /// The list of `nets` (parsed already, as from a flag); empty: it contains nothing.
    pub fn from_nets(nets: &[IpNet]) -> IpList {
        let nets: Vec<IpNet> = nets.iter().map(|n| canonical_net(*n).trunc()).collect();
        IpList { nets: nets.into() }
    }

    /// Every IPv4 and IPv6 address.
    pub fn everyone() -> IpList {
        let all: [IpNet; 2] = ["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()];
        IpList::from_nets(&all)
    }

    /// Whether `ip` is in one of the networks (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|net| net.contains(&ip))
    }
}

impl fmt::Display for IpList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.nets.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

/// An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) as the IPv4 network it is, like a
/// mapped address, so that it matches IPv4 clients.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4),
            None => net,
        },
        other => other,
    }
}

/// `ip`, with an IPv4-mapped IPv6 address as the IPv4 address it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The user and password of the request's `Authorization: Basic …` header (the scheme in any
/// case); `None` when there is not exactly one such header, or it does not decode.
pub fn basic_credentials(headers: &http::HeaderMap) -> Option<(String, Vec<u8>)> {
    use base64::Engine;
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let value = value.to_str().ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

/// Basic authentication against a list of users (`auth-type: basic`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    /// The `WWW-Authenticate` value of a 401 (`Basic realm="…"`, from `auth-realm`).
    pub challenge: HeaderValue,
    /// The users and their password hashes, from the Secret.
    pub users: Arc<Users>,
}

/// Users and their password hashes, read from an htpasswd file or a map of user → hash.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Users {
    hashes: HashMap<String, PasswordHash>,
}

impl fmt::Debug for Users {
    /// The user names only: hashes stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.hashes.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("Users").field("names", &names).finish()
    }
}

/// One password hash in a format `htpasswd` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PasswordHash {
    /// A crypt(3) hash: `$apr1$…` (htpasswd's default MD5), `$2y$`/`$2b$`/`$2a$` (bcrypt,
    /// `htpasswd -B`), 13 characters of DES (`htpasswd -d`), and the other formats nginx reads
    /// through the C library (`$1$`, `$5$`, `$6$`).
    Crypt(String),
    /// `{SHA}` and the Base64 of the password's SHA-1 (`htpasswd -s`).
    Sha1([u8; 20]),
}

/// The most work one password check may take: bcrypt's cost (2^14 rounds, about a second) and
/// SHA-crypt's rounds. A hash above it could let anyone who knows a user name keep the CPU
/// busy with one request each.
const MAX_BCRYPT_COST: u32 = 14;
const MAX_SHA_CRYPT_ROUNDS: u64 = 1_000_000;

/// Why an htpasswd file or map gives no user at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsersError {
    /// The Secret's content is not UTF-8 text.
    #[error("it is not text")]
    NotText,
    /// Nobody could ever log in.
    #[error("it lists no user with a password hash weir can verify")]
    Empty,
}

/// A line or user that was left out (the rest still apply), for a Diagnostic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Skipped {
    /// A line is not `user:hash` (1-based).
    #[error("line {0} is not \"user:hash\"")]
    Line(usize),
    /// A hash weir will not verify: in no format it knows (plain text among them: nginx
    /// accepts `{PLAIN}`, weir does not), or too costly.
    #[error("user {user:?} cannot log in: {why}")]
    User {
        /// Whose.
        user: String,
        /// Why.
        why: &'static str,
    },
}

impl Users {
    /// Reads an htpasswd file as nginx does: `user:hash[:comment]` lines; empty lines and `#`
    /// comments are skipped. Lines and users that cannot be used are left out and listed; an
    /// error only when nobody could log in.
    pub fn from_htpasswd(data: &[u8]) -> Result<(Users, Vec<Skipped>), UsersError> {
        let text = std::str::from_utf8(data).map_err(|_| UsersError::NotText)?;
        let mut skipped = Vec::new();
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once(':') {
                Some((user, rest)) if !user.is_empty() && !rest.is_empty() => {
                    let hash = rest.split_once(':').map_or(rest, |(hash, _comment)| hash);
                    entries.push((user, hash));
                }
                _ => skipped.push(Skipped::Line(i + 1)),
            }
        }
        Users::from_entries(entries, skipped)
    }

    /// Reads a map of user → hash (`auth-secret-type: auth-map`: one Secret key per user).
    pub fn from_map<'a>(
        entries: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<(Users, Vec<Skipped>), UsersError> {
        let mut checked = Vec::new();
        for (user, hash) in entries {
            let hash = std::str::from_utf8(hash).map_err(|_| UsersError::NotText)?;
            checked.push((user, hash.trim()));
        }
        Users::from_entries(checked, Vec::new())
    }

    fn from_entries(
        entries: Vec<(&str, &str)>,
        mut skipped: Vec<Skipped>,
    ) -> Result<(Users, Vec<Skipped>), UsersError> {
        let mut hashes = HashMap::new();
        for (user, hash) in entries {
            match PasswordHash::parse(hash) {
                // htpasswd and nginx use the first line of a user.
                Ok(parsed) => {
                    hashes.entry(user.to_owned()).or_insert(parsed);
                }
                Err(why) => skipped.push(Skipped::User {
                    user: user.to_owned(),
                    why,
                }),
            }
        }
        if hashes.is_empty() {
            return Err(UsersError::Empty);
        }
        Ok((Users { hashes }, skipped))
    }

    /// How many users there are.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// True when there is no user (never for a list that parsed).
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Whether `password` is `user`'s. Slow on purpose for bcrypt (its cost); compares in
    /// constant time. An unknown user costs a check against one of the listed hashes, so that
    /// timing says little about which users exist.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.hashes.get(user) {
            Some(hash) => hash.verify(password),
            None => {
                if let Some(any) = self.hashes.values().next() {
                    let _ = any.verify(password);
                }
                false
            }
        }
    }
}

impl PasswordHash {
    fn parse(hash: &str) -> Result<PasswordHash, &'static str> {
        use base64::Engine;
        const UNKNOWN: &str = "its hash is in no format weir verifies (apr1, bcrypt, SHA, crypt)";
        if let Some(encoded) = hash.strip_prefix("{SHA}") {
            let digest = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|_| UNKNOWN)?;
            return digest
                .try_into()
                .map(PasswordHash::Sha1)
                .map_err(|_| UNKNOWN);
        }
        // The format only: computing a hash here would cost a bcrypt round per user and
        // rebuild. A hash whose parameters turn out unusable never matches.
        let known = match hash.split('$').nth(1) {
            Some("apr1" | "1") => true,
            Some("2a" | "2b" | "2y") => {
                let cost = hash.split('$').nth(2).and_then(|c| c.parse::<u32>().ok());
                if cost.is_some_and(|c| c > MAX_BCRYPT_COST) {
                    return Err("its bcrypt cost is over 14");
                }
                true
            }
            Some("5" | "6") => {
                let rounds = hash
                    .split('$')
                    .nth(2)
                    .and_then(|r| r.strip_prefix("rounds="))
                    .map(|r| r.parse::<u64>().unwrap_or(u64::MAX));
                if rounds.is_some_and(|r| r > MAX_SHA_CRYPT_ROUNDS) {
                    return Err("its SHA-crypt rounds are over 1000000");
                }
                true
            }
            Some(_) => false,
            // DES crypt: 13 characters of crypt's alphabet. (Checked here: crypt3_rs decodes
            // a control character in the salt with an overflowing subtraction, a panic where
            // overflow checks are on; found by the `htpasswd` fuzz target.)
            None => {
                hash.len() == 13
                    && hash
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
            }
        };
        if known && crypt3_rs::Hash::try_from(hash).is_ok() {
            Ok(PasswordHash::Crypt(hash.to_owned()))
        } else {
            Err(UNKNOWN)
        }
    }

    fn verify(&self, password: &[u8]) -> bool {
        match self {
            PasswordHash::Crypt(hash) => crypt3_rs::unix::crypt(password, hash)
                .is_ok_and(|computed| computed.as_bytes().ct_eq(hash.as_bytes()).into()),
            PasswordHash::Sha1(digest) => {
                let actual: [u8; 20] = Sha1::digest(password).into();
                actual.ct_eq(digest).into()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use proptest::prelude::*;

    // The password "secret" hashed by other tools: `openssl passwd -apr1`, Python's bcrypt
    // (`$2b$`) and a `$2y$` hash it verifies, SHA-1 in Base64 (`htpasswd -s`), crypt(3).
    const APR1: &str = "alice:$apr1$Bd6nIVYA$3BZloI3Mo8X5Hld57gVzL.";
    const BCRYPT: &str = "bob:$2y$05$KzDnLdNDVX3p.8IVXyuUmONaz0awLFIKsAyrFdKZTd5Clj5OTvwBi";
    const BCRYPT_2B: &str = "bo:$2b$05$wa8YqC/Vsousq2giWRrn9OGNNDg8P44nl3waSaesfIGkKexlGqyG.";
    const SHA: &str = "carol:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=";
    const DES: &str = "dave:abNANd1rDfiNc";

    #[test]
    fn ip_lists_take_cidrs_and_addresses_of_both_families() {
        let list = IpList::parse("10.0.0.0/8, 192.168.1.7,2001:db8::/32 ,::1").unwrap();
        for inside in [
            "10.1.2.3",
            "192.168.1.7",
            "2001:db8::1",
            "::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(list.contains(inside.parse().unwrap()), "{inside}");
        }
        for outside in ["11.0.0.1", "192.168.1.8", "2001:db9::1", "::2"] {
            assert!(!list.contains(outside.parse().unwrap()), "{outside}");
        }
        assert_eq!(
            IpList::parse("10.0.0.1/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(IpList::parse("10.0.0.0/8,nope").unwrap_err(), "nope");
        assert_eq!(IpList::parse("10.0.0.0/33").unwrap_err(), "10.0.0.0/33");
        assert_eq!(IpList::parse(" , ").unwrap_err(), "");
    }

    #[test]
    fn origin_patterns_match_scheme_host_and_port() {
        let p = |s: &str| OriginPattern::parse(s).unwrap();
        assert!(p("https://a.test").matches("https://a.test"));
        assert!(p("https://a.test").matches("HTTPS://A.TEST"));
        assert!(!p("https://a.test").matches("http://a.test"));
        assert!(!p("https://a.test").matches("https://a.test:8443"));
        assert!(!p("https://a.test").matches("https://xa.test"));
        assert!(!p("https://a.test").matches("https://a.test.evil"));
        assert!(p("a.test").matches("http://a.test"), "no scheme: any");
        assert!(p("https://a.test:8443").matches("https://a.test:8443"));
        let wild = p("https://*.b.test");
        assert!(wild.matches("https://x.b.test"));
        assert!(!wild.matches("https://b.test"));
        assert!(
            !wild.matches("https://x.y.b.test"),
            "one label, as ingress-nginx"
        );
        assert!(!wild.matches("https://xb.test"));
        assert!(!wild.matches("null"));
        for bad in [
            "ftp://a.test",
            "https://a.test/x",
            "https://",
            "https://a.test:x",
            "*",
        ] {
            assert_eq!(OriginPattern::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn htpasswd_hashes_of_every_format_verify() {
        let file = format!("# team\n{APR1}\n\n{BCRYPT}:a comment\n{BCRYPT_2B}\n{SHA}\n{DES}\n");
        let (users, skipped) = Users::from_htpasswd(file.as_bytes()).unwrap();
        assert_eq!((users.len(), skipped), (5, vec![]));
        for user in ["alice", "bob", "bo", "carol", "dave"] {
            assert!(users.verify(user, b"secret"), "{user}");
            assert!(!users.verify(user, b"Secret"), "{user}");
            assert!(!users.verify(user, b""), "{user}");
        }
        assert!(!users.verify("eve", b"secret"));
        assert!(
            !format!("{users:?}").contains("$apr1$"),
            "no hashes in logs"
        );
    }

    #[test]
    fn unusable_lines_and_users_are_left_out_and_listed() {
        let file = format!(
            "{APR1}\nnocolon\nplain:secret\nlocked:!\nslow:$2y$15$KzDnLdNDVX3p.8IVXyuUmONaz0awLFIKsAyrFdKZTd5Clj5OTvwBi\n\
             slowsha:$6$rounds=9999999$salt$x\nbsdi:_J9..CCCCXBrJUJV154M\n"
        );
        let (users, skipped) = Users::from_htpasswd(file.as_bytes()).unwrap();
        assert_eq!(users.len(), 1);
        assert!(users.verify("alice", b"secret"));
        let said: Vec<String> = skipped.iter().map(ToString::to_string).collect();
        assert_eq!(said.len(), 6, "{said:?}");
        assert_eq!(said[0], "line 2 is not \"user:hash\"");
        for (user, why) in [
            ("plain", "no format"),
            ("locked", "no format"),
            ("slow", "cost is over 14"),
            ("slowsha", "rounds are over"),
            ("bsdi", "no format"),
        ] {
            assert!(
                said.iter()
                    .any(|s| s.contains(&format!("{user:?}")) && s.contains(why)),
                "{user}: {said:?}"
            );
        }
    }

    #[test]
    fn a_file_nobody_can_log_in_with_is_an_error() {
        assert_eq!(Users::from_htpasswd(b""), Err(UsersError::Empty));
        assert_eq!(Users::from_htpasswd(b"# only\n"), Err(UsersError::Empty));
        assert_eq!(Users::from_htpasswd(b"alice\n"), Err(UsersError::Empty));
        assert_eq!(
            Users::from_htpasswd(b"alice:secret\n"),
            Err(UsersError::Empty)
        );
        assert_eq!(
            Users::from_htpasswd(b"a:{SHA}notbase64!"),
            Err(UsersError::Empty)
        );
        assert_eq!(
            Users::from_htpasswd(&[0xff, b':']),
            Err(UsersError::NotText)
        );
    }

    #[test]
    fn a_des_hash_outside_crypts_alphabet_is_refused_not_checked() {
        // The `htpasswd` fuzz target's crash: 13 bytes with control characters as a DES hash.
        let file = b"<:\x00\x0e\x00\x00\x00\x00\x00\x00\x00\x00<\x00<\nalice:abNANd1rDfiNc\n";
        let (users, skipped) = Users::from_htpasswd(file).unwrap();
        assert_eq!(users.len(), 1);
        assert!(matches!(&skipped[..], [Skipped::User { user, .. }] if user == "<"));
        assert!(!users.verify("<", b"x"));
        assert!(users.verify("alice", b"secret"));
    }

    #[test]
    fn auth_maps_have_one_user_per_key() {
        let (_, hash) = APR1.split_once(':').unwrap();
        let (users, _) = Users::from_map([("alice", hash.as_bytes())]).unwrap();
        assert!(users.verify("alice", b"secret"));
        assert!(Users::from_map([]).is_err());
    }

    /// A network as an allow/deny list may write it, for [`ip_lists_match_like_a_mask_compare`].
    #[derive(Debug, Clone)]
    enum Written {
        /// `a.b.c.d/p` (host bits may be set) or, with `None`, `a.b.c.d`.
        V4(u32, Option<u8>),
        /// `x:…:y/p` or `x:…:y`.
        V6(u128, Option<u8>),
        /// `::ffff:a.b.c.d/(96 + p)` or `::ffff:a.b.c.d`: an IPv4 network written as IPv6.
        Mapped(u32, Option<u8>),
    }

    impl Written {
        fn text(&self) -> String {
            let suffix =
                |p: &Option<u8>, plus: u8| p.map(|p| format!("/{}", p + plus)).unwrap_or_default();
            match self {
                Written::V4(a, p) => format!("{}{}", Ipv4Addr::from(*a), suffix(p, 0)),
                Written::V6(a, p) => format!("{}{}", Ipv6Addr::from(*a), suffix(p, 0)),
                Written::Mapped(a, p) => format!("::ffff:{}{}", Ipv4Addr::from(*a), suffix(p, 96)),
            }
        }

        /// Whether `ip` is in the network, by comparing the first prefix bits: an IPv4 client
        /// (also one that arrives IPv4-mapped) is in IPv4 networks (also mapped ones) only.
        fn contains(&self, ip: IpAddr) -> bool {
            fn same_prefix(a: u128, b: u128, bits: u32, prefix: u32) -> bool {
                prefix == 0 || (a ^ b) >> (bits - prefix) == 0
            }
            let v4 = match ip {
                IpAddr::V4(v4) => Some(u32::from(v4)),
                IpAddr::V6(v6) => {
                    let bits = u128::from(v6);
                    (bits >> 32 == 0xffff).then_some(bits as u32)
                }
            };
            // An IPv6 network inside `::ffff:0:0/96` is the IPv4 network it maps.
            let net = match self {
                Written::V6(a, p) if a >> 32 == 0xffff && p.is_none_or(|p| p >= 96) => {
                    &Written::Mapped(*a as u32, p.map(|p| p - 96))
                }
                other => other,
            };
            match (net, v4, ip) {
                (Written::V4(a, p) | Written::Mapped(a, p), Some(ip), _) => same_prefix(
                    u128::from(*a),
                    u128::from(ip),
                    32,
                    u32::from(p.unwrap_or(32)),
                ),
                (Written::V6(a, p), None, IpAddr::V6(ip)) => {
                    same_prefix(*a, u128::from(ip), 128, u32::from(p.unwrap_or(128)))
                }
                _ => false,
            }
        }

        /// An address near the network: its own with bit `flip` (from the top) flipped.
        fn near(&self, flip: u8, mapped: bool) -> IpAddr {
            match self {
                Written::V4(a, _) | Written::Mapped(a, _) => {
                    let a = a ^ (1u32 << 31).checked_shr(u32::from(flip)).unwrap_or(0);
                    if mapped {
                        IpAddr::V6(Ipv4Addr::from(a).to_ipv6_mapped())
                    } else {
                        IpAddr::V4(Ipv4Addr::from(a))
                    }
                }
                Written::V6(a, _) => IpAddr::V6(Ipv6Addr::from(
                    a ^ (1u128 << 127).checked_shr(u32::from(flip)).unwrap_or(0),
                )),
            }
        }
    }

    fn written() -> impl Strategy<Value = Written> {
        let v4 = prop_oneof![
            Just(0x0a00_0000u32),
            Just(0xc0a8_0100),
            Just(0),
            Just(u32::MAX),
            any::<u32>()
        ];
        let v6 = prop_oneof![
            Just(0x2001_0db8u128 << 96),
            Just(1u128),
            Just(0),
            any::<u128>()
        ];
        prop_oneof![
            (v4.clone(), proptest::option::of(0u8..=32)).prop_map(|(a, p)| Written::V4(a, p)),
            (v6, proptest::option::of(0u8..=128)).prop_map(|(a, p)| Written::V6(a, p)),
            (v4, proptest::option::of(0u8..=32)).prop_map(|(a, p)| Written::Mapped(a, p)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Membership agrees with comparing prefix bits, for lists of IPv4, IPv6 and
        /// IPv4-mapped networks and addresses however they are spaced, and the list written
        /// back parses to itself.
        #[test]
        fn ip_lists_match_like_a_mask_compare(
            nets in proptest::collection::vec(written(), 1..5),
            separators in proptest::collection::vec(prop_oneof![Just(","), Just(" , "), Just(",,"), Just(" ,\t")], 5),
            probes in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..=130, any::<bool>()), 8),
            random in proptest::collection::vec(prop_oneof![
                any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
                any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
            ], 2),
        ) {
            let mut text = String::new();
            for (i, net) in nets.iter().enumerate() {
                if i > 0 {
                    text.push_str(separators[i]);
                }
                text.push_str(&net.text());
            }
            let list = IpList::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
            let ips = probes
                .iter()
                .map(|(net, flip, mapped)| nets[net.index(nets.len())].near(*flip, *mapped))
                .chain(random);
            for ip in ips {
                let want = nets.iter().any(|net| net.contains(ip));
                prop_assert_eq!(list.contains(ip), want, "{} in {}", ip, text);
            }
            prop_assert_eq!(IpList::parse(&list.to_string()), Ok(list.clone()), "{}", list);
        }
    }

    /// `password` hashed in one of the formats htpasswd writes (and nginx reads), with `salt`
    /// (eight characters of crypt's alphabet): 0 apr1, 1 MD5-crypt, 2 SHA-256-crypt, 3
    /// SHA-512-crypt (both at the fewest rounds), 4 DES, 5 `{SHA}`, 6 bcrypt at its lowest
    /// cost (4).
    #[allow(deprecated)] // the old formats' hash functions: htpasswd files still hold them
    fn hash(scheme: u8, password: &str, salt: &str) -> String {
        use base64::Engine;
        use crypt3_rs::HashSetup;
        use crypt3_rs::crypt::{apr1, bcrypt, md5, sha256, sha512, unix};
        let setup = |rounds| HashSetup {
            salt: Some(salt),
            rounds,
        };
        let hashed = match scheme {
            0 => apr1::hash_with(setup(None), password),
            1 => md5::hash_with(setup(None), password),
            2 => sha256::hash_with(setup(Some(1000)), password),
            3 => sha512::hash_with(setup(Some(1000)), password),
            4 => unix::hash_with(&salt[..2], password),
            5 => {
                let digest = Sha1::digest(password.as_bytes());
                return format!(
                    "{{SHA}}{}",
                    base64::engine::general_purpose::STANDARD.encode(digest)
                );
            }
            _ => bcrypt::hash_with(
                bcrypt::BcryptSetup {
                    salt: Some(&format!("{salt}KzDnLdNDVX3p.8")),
                    cost: Some(4),
                    variant: Some(bcrypt::BcryptVariant::V2y),
                },
                password,
            ),
        };
        hashed.expect("a hash").into()
    }

    proptest! {
        // Few cases: a check costs 5 to 20 ms in a debug build (bcrypt, SHA-crypt), and a case
        // makes five or so per user.
        #![proptest_config(ProptestConfig::with_cases(16))]

        /// A file of `user:hash` lines (with comments, blank lines, `:comment` suffixes,
        /// surrounding spaces and CRLF endings) verifies each user's password and refuses a
        /// different one, another user's and an unknown user, whatever the hash format.
        #[test]
        fn generated_htpasswd_lines_verify_their_password(
            users in proptest::collection::btree_map(
                "[a-z][a-z0-9._-]{0,8}",
                (
                    "[ -~]{1,12}",
                    // bcrypt is slow on purpose: one case in twenty.
                    prop_oneof![19 => 0u8..6, 1 => Just(6u8)],
                    "[./0-9A-Za-z]{8}",
                    0u8..5,
                ),
                1..4,
            ),
        ) {
            let mut file = String::from("# generated\n\n");
            for (user, (password, scheme, salt, layout)) in &users {
                let line = format!("{user}:{}", hash(*scheme, password, salt));
                match layout {
                    0 => file.push_str(&format!("{line}\n")),
                    1 => file.push_str(&format!("{line}:a comment\n")),
                    2 => file.push_str(&format!("  {line}\t\r\n")),
                    3 => file.push_str(&format!("{line}\r\n# after\n\n")),
                    _ => file.push_str(&line),
                }
                if *layout == 4 {
                    file.push('\n');
                }
            }
            let (parsed, skipped) = Users::from_htpasswd(file.as_bytes())
                .map_err(|e| TestCaseError::fail(format!("{e}: {file}")))?;
            prop_assert_eq!(skipped, vec![], "{}", file);
            prop_assert_eq!(parsed.len(), users.len());
            for (user, (password, scheme, ..)) in &users {
                prop_assert!(parsed.verify(user, password.as_bytes()), "{} ({}): {}", user, scheme, file);
                // Another byte in the first eight (DES reads no more than eight).
                let mut wrong = password.clone().into_bytes();
                wrong[0] ^= 1;
                prop_assert!(!parsed.verify(user, &wrong), "{} ({})", user, scheme);
                let first8 = |p: &str| p.as_bytes()[..p.len().min(8)].to_vec();
                let other = users.iter().find(|(other, _)| *other != user);
                if let Some((other, (theirs, ..))) = other
                    && first8(theirs) != first8(password)
                {
                    prop_assert!(!parsed.verify(user, theirs.as_bytes()), "{}: {}'s password", user, other);
                }
                let unknown = format!("{user}x");
                if !users.contains_key(&unknown) {
                    prop_assert!(!parsed.verify(&unknown, password.as_bytes()));
                }
            }
        }
    }

    proptest! {
        #[test]
        fn parsers_never_panic(text in ".{0,64}", raw in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = IpList::parse(&text);
            if let Ok((users, _)) = Users::from_htpasswd(text.as_bytes()) {
                prop_assert!(!users.is_empty());
            }
            let _ = Users::from_htpasswd(&raw);
        }
    }
}
