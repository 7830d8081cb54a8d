//! ExternalName Services: what weir routes to for them.
//!
//! An ExternalName Service names a DNS name (`spec.externalName`) instead of selecting pods.
//! weir never resolves a name per request, and the model never resolves one at all: a task
//! outside it (`source::external_names`) resolves the names of the ExternalName Services that
//! weir's Ingresses reference ([`names_to_resolve`]), re-resolves each when its TTL runs out
//! and hands the answers to the build in [`Input::external_names`]; a changed answer is a
//! changed input, so it rebuilds the table like any other change. Here an answer becomes the
//! endpoints of a [`Backend`](super::Backend): plain socket addresses, so that the proxy's
//! connection pool (keyed by address) reuses connections to them like to any pod.
//!
//! - **Port**, as ingress-nginx maps it: the ServicePort the Ingress names (by number or by
//!   name) gives its `targetPort` when that is a number, else its `port`; a port *number* that
//!   no ServicePort has is used as it is (ExternalName Services often declare no ports at
//!   all). A port name the Service does not have, a non-TCP port or no port: no endpoints.
//! - **Addresses**: an `externalName` that is an IP address is used as it is; a name, with the
//!   addresses of its answer. A name not resolved yet, one that does not resolve or that is
//!   not a DNS name: no endpoints (503), and a [`Reason::ExternalNameNotResolved`].
//! - **Refused addresses** (server-side request forgery): unless
//!   [`ExternalNamePolicy::allow_local_addresses`], addresses of the machine itself or of its
//!   link ([`refused_address`]: loopback, unspecified, link-local, multicast/broadcast and the
//!   cloud metadata services) are never used, so that whoever may create a Service cannot make
//!   weir fetch `http://169.254.169.254/` for them. Private ranges (10/8, 172.16/12,
//!   192.168/16, fc00::/7) are allowed, as in ingress-nginx: names of services inside the
//!   cluster's network are the common use of ExternalName.
//! - `--disable-external-name` (ingress-nginx's `--disable-svc-external-name`): no endpoints
//!   and a [`Reason::UnsupportedServiceType`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::diagnostic::Reason;
use super::endpoints::{PortRef, Problem, find_service_port, port_number};
use super::objects::index_by_name;
use super::references::{ours, references};
use super::{BuildConfig, Input};

/// The answer of a DNS lookup of one name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NameAnswer {
    /// The addresses the name resolves to: sorted, without duplicates, never empty.
    Addresses(Vec<IpAddr>),
    /// Why it does not resolve (`NXDOMAIN`, no address records, no answer in time, …).
    Failed(String),
}

/// The DNS answers for the names of ExternalName Services, by name as [`target`] gives it.
/// A name missing from it has not been looked up yet.
pub type NameAnswers = BTreeMap<String, NameAnswer>;

/// How weir treats ExternalName Services (flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExternalNamePolicy {
    /// `--disable-external-name`: ExternalName Services are not routed to (503).
    pub disabled: bool,
    /// `--allow-external-name-local-addresses`: also use the addresses [`refused_address`]
    /// refuses (loopback, link-local, cloud metadata, …).
    pub allow_local_addresses: bool,
}

/// What an ExternalName Service points at.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// An IP address, used without a lookup.
    Ip(IpAddr),
    /// A DNS name, lower-case, as written otherwise (a trailing dot makes it absolute: the
    /// resolver's search domains are not tried).
    Name(String),
}

/// Whether `service` is of type ExternalName.
pub fn is_external_name(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .is_some_and(|t| t == "ExternalName")
}

/// What ExternalName Service `service` points at, or why that is not usable.
pub fn target(service: &Service) -> Result<Target, String> {
    let raw = service
        .spec
        .as_ref()
        .and_then(|s| s.external_name.as_deref())
        .map(str::trim)
        .unwrap_or("");
    if raw.is_empty() {
        return Err("has no spec.externalName".to_owned());
    }
    if let Ok(ip) = raw.parse::<IpAddr>() {
        return Ok(Target::Ip(ip));
    }
    let name = raw.to_ascii_lowercase();
    if is_dns_name(name.strip_suffix('.').unwrap_or(&name)) {
        Ok(Target::Name(name))
    } else {
        Err(format!(
            "has the externalName {raw:?}, which is neither a DNS name nor an IP address"
        ))
    }
}

/// Whether `name` (lower-case, without a trailing dot) is an RFC 1123 DNS name, as Kubernetes
/// validates `externalName`: labels of 1 to 63 letters, digits and `-`, neither first nor last
/// a `-`; 253 characters at most.
fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// The DNS names to resolve for `input`: those of the ExternalName Services that weir's
/// Ingresses (of `config`'s class) and the controller's default backend reference. None when
/// `--disable-external-name`; IP addresses and names that are not DNS names are not looked up.
pub fn names_to_resolve(input: &Input, config: &BuildConfig) -> BTreeSet<String> {
    if config.external_names.disabled || !input.services.iter().any(|s| is_external_name(s)) {
        return BTreeSet::new();
    }
    let services = index_by_name(&input.services, |s| &s.metadata);
    let referenced = ours(&input.ingresses, &input.ingress_classes, config)
        .flat_map(|ingress| references(ingress).services)
        .chain(config.default_backend_service.clone());
    referenced
        .filter_map(|s| {
            services
                .get(&(s.namespace.as_str(), s.name.as_str()))
                .copied()
        })
        .filter(|s| is_external_name(s))
        .filter_map(|s| match target(s) {
            Ok(Target::Name(name)) => Some(name),
            _ => None,
        })
        .collect()
}

/// Why weir refuses to connect to `ip` for an ExternalName Service (without
/// `--allow-external-name-local-addresses`), or `None` when it may: a cloud metadata service,
/// the machine itself (loopback, unspecified), its link (link-local, multicast, broadcast). An
/// IPv4 address written as IPv6 (`::ffff:a.b.c.d`, or NAT64's `64:ff9b::a.b.c.d`) is judged
/// as the IPv4 address it stands for.
pub fn refused_address(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

/// Cloud metadata and platform services on IPv4: AWS, Google Cloud, Azure, Oracle and most
/// others (169.254.169.254), Alibaba Cloud (100.100.100.200), Azure's WireServer
/// (168.63.129.16).
const METADATA_V4: [Ipv4Addr; 3] = [
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(100, 100, 100, 200),
    Ipv4Addr::new(168, 63, 129, 16),
];

/// Cloud metadata services on IPv6: AWS (fd00:ec2::254), Google Cloud (fd20:ce::254).
const METADATA_V6: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254),
    Ipv6Addr::new(0xfd20, 0xce, 0, 0, 0, 0, 0, 0x254),
];

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    if METADATA_V4.contains(&ip) {
        Some("a cloud metadata address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.octets()[0] == 0 {
        // 0.0.0.0/8, "this network": 0.0.0.0 reaches the machine itself.
        Some("an unspecified address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if ip.is_multicast() || ip.is_broadcast() {
        Some("a multicast or broadcast address")
    } else {
        None
    }
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return refused_v4(v4);
    }
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [a, b, c, d] = [segments[6] >> 8, segments[6], segments[7] >> 8, segments[7]];
        return refused_v4(Ipv4Addr::new(a as u8, b as u8, c as u8, d as u8));
    }
    if METADATA_V6.contains(&ip) {
        Some("a cloud metadata address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_unspecified() {
        Some("an unspecified address")
    } else if segments[0] & 0xffc0 == 0xfe80 {
        Some("a link-local address")
    } else if ip.is_multicast() {
        Some("a multicast or broadcast address")
    } else {
        None
    }
}

/// The port weir connects to for ExternalName Service `service` (see the module docs), or
/// what is wrong (what, and a detail that helps to fix it).
fn port(service: &Service, port: &PortRef) -> Result<u16, (String, String)> {
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    if let PortRef::Number(n) = port
        && !ports.iter().any(|p| p.port == *n)
    {
        return port_number(*n).ok_or_else(|| {
            (
                format!("is referenced with port {n}"),
                "a port must be 1 to 65535".to_owned(),
            )
        });
    }
    let found: &ServicePort = find_service_port(ports, port)?;
    let target = match &found.target_port {
        Some(IntOrString::Int(n)) if *n != 0 => *n,
        // A named targetPort names a container port, and an ExternalName Service has no pods.
        _ => found.port,
    };
    port_number(target).ok_or_else(|| {
        (
            format!("port {} has the target port {target}", found.port),
            "a port must be 1 to 65535".to_owned(),
        )
    })
}

/// The endpoints of ExternalName Service `service` (`display` is its `namespace/name`) for
/// the Ingress port `port`: `Err` with what is wrong when there are none, else the endpoints
/// and, in `notes`, what is wrong with some of its addresses.
pub(crate) fn endpoints(
    service: &Service,
    display: &str,
    port_ref: &PortRef,
    answers: &NameAnswers,
    policy: ExternalNamePolicy,
    notes: &mut Vec<Problem>,
) -> Result<Vec<SocketAddr>, Problem> {
    if policy.disabled {
        return Err(Problem {
            reason: Reason::UnsupportedServiceType,
            what: format!(
                "service {display:?} is of type ExternalName, which --disable-external-name \
                 turns off"
            ),
            hint: "requests there are answered 503; point the Ingress at a Service with \
                   endpoints, or drop the flag"
                .into(),
        });
    }
    let port = port(service, port_ref).map_err(|(what, detail)| Problem {
        reason: Reason::ServicePortNotFound,
        what: format!("service {display:?} (ExternalName) {what}"),
        hint: format!(
            "{detail}; requests there are answered 503 until the Ingress or the Service is fixed"
        ),
    })?;
    let not_resolved = |what: String, hint: &str| Problem {
        reason: Reason::ExternalNameNotResolved,
        what: format!("service {display:?} (ExternalName) {what}"),
        hint: hint.to_owned(),
    };
    let (name, addresses) = match target(service) {
        Ok(Target::Ip(ip)) => (ip.to_string(), vec![ip]),
        Ok(Target::Name(name)) => match answers.get(&name) {
            Some(NameAnswer::Addresses(addresses)) => (name, addresses.clone()),
            Some(NameAnswer::Failed(why)) => {
                return Err(not_resolved(
                    format!("names {name:?}, which does not resolve: {why}"),
                    "requests there are answered 503 until it resolves (weir asks again \
                     regularly)",
                ));
            }
            None => {
                return Err(not_resolved(
                    format!("names {name:?}, which has not been resolved yet"),
                    "requests there are answered 503 until it resolves",
                ));
            }
        },
        Err(what) => {
            return Err(not_resolved(
                what,
                "requests there are answered 503 until the Service is fixed",
            ));
        }
    };
    if policy.allow_local_addresses {
        return Ok(addresses
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect());
    }
    let (allowed, refused): (Vec<IpAddr>, Vec<IpAddr>) = addresses
        .into_iter()
        .partition(|ip| refused_address(*ip).is_none());
    let described: Vec<String> = refused
        .iter()
        .map(|ip| format!("{ip} ({})", refused_address(*ip).unwrap_or_default()))
        .collect();
    let hint = "weir never connects to the machine's own or its link's addresses, nor to cloud \
                metadata services, for an ExternalName Service unless \
                --allow-external-name-local-addresses is set";
    if allowed.is_empty() {
        return Err(Problem {
            reason: Reason::ExternalNameRefused,
            what: format!(
                "service {display:?} (ExternalName) names {name:?}, which resolves only to \
                 addresses weir refuses: {}",
                described.join(", ")
            ),
            hint: format!("requests there are answered 503; {hint}"),
        });
    }
    if !refused.is_empty() {
        notes.push(Problem {
            reason: Reason::ExternalNameRefused,
            what: format!(
                "service {display:?} (ExternalName) names {name:?}, which also resolves to \
                 addresses weir refuses: {}",
                described.join(", ")
            ),
            hint: format!("its other addresses are used; {hint}"),
        });
    }
    Ok(allowed
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::{ingress, service, shared};
    use crate::model::{ObjectKind, ObjectRef};

    fn external(name: &str, external_name: &str, ports: &[(Option<&str>, i32, i32)]) -> Service {
        let mut s = service("d", name, ports);
        let spec = s.spec.as_mut().unwrap();
        spec.type_ = Some("ExternalName".into());
        spec.external_name = Some(external_name.into());
        s
    }

    #[test]
    fn refuses_local_and_metadata_addresses_and_allows_private_ones() {
        let rows: &[(&str, Option<&str>)] = &[
            ("127.0.0.1", Some("loopback")),
            ("127.1.2.3", Some("loopback")),
            ("0.0.0.0", Some("unspecified")),
            ("169.254.169.254", Some("metadata")),
            ("169.254.1.1", Some("link-local")),
            ("100.100.100.200", Some("metadata")),
            ("168.63.129.16", Some("metadata")),
            ("224.0.0.1", Some("multicast")),
            ("255.255.255.255", Some("broadcast")),
            ("::1", Some("loopback")),
            ("::", Some("unspecified")),
            ("fe80::1", Some("link-local")),
            ("febf::1", Some("link-local")),
            ("fd00:ec2::254", Some("metadata")),
            ("fd20:ce::254", Some("metadata")),
            ("ff02::1", Some("multicast")),
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:169.254.169.254", Some("metadata")),
            ("64:ff9b::a9fe:a9fe", Some("metadata")),
            ("10.0.0.1", None),
            ("172.16.0.1", None),
            ("192.168.1.1", None),
            ("100.64.0.1", None),
            ("93.184.216.34", None),
            ("fd00::1", None),
            ("fd00:ec2::253", None),
            ("2001:db8::1", None),
            ("::ffff:10.0.0.1", None),
            ("64:ff9b::5db8:d822", None),
        ];
        for (ip, want) in rows {
            let got = refused_address(ip.parse().unwrap());
            match want {
                Some(word) => assert!(got.is_some_and(|g| g.contains(word)), "{ip}: {got:?}"),
                None => assert_eq!(got, None, "{ip}"),
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn any_external_name_is_read_without_panicking(raw in "\\PC{0,80}|[a-zA-Z0-9.-]{0,80}") {
            if let Ok(Target::Name(name)) = target(&external("x", &raw, &[])) {
                let bare = name.strip_suffix('.').unwrap_or(&name);
                proptest::prop_assert!(is_dns_name(bare), "{name:?}");
                proptest::prop_assert_eq!(name.clone(), raw.trim().to_ascii_lowercase());
            }
        }

        #[test]
        fn ipv4_written_as_ipv6_is_judged_as_ipv4(bits in proptest::prelude::any::<u32>()) {
            let v4 = Ipv4Addr::from(bits);
            let verdict = refused_address(IpAddr::V4(v4));
            proptest::prop_assert_eq!(refused_address(IpAddr::V6(v4.to_ipv6_mapped())), verdict);
            let [a, b, c, d] = v4.octets();
            let nat64 = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
            proptest::prop_assert_eq!(refused_address(IpAddr::V6(nat64)), verdict);
        }
    }

    #[test]
    fn targets_are_addresses_or_dns_names() {
        let t = |name: &str| target(&external("x", name, &[]));
        assert_eq!(
            t("db.example.com"),
            Ok(Target::Name("db.example.com".into()))
        );
        assert_eq!(
            t(" DB.Example.com. "),
            Ok(Target::Name("db.example.com.".into()))
        );
        assert_eq!(t("localhost"), Ok(Target::Name("localhost".into())));
        assert_eq!(t("10.0.0.5"), Ok(Target::Ip("10.0.0.5".parse().unwrap())));
        assert_eq!(
            t("2001:db8::1"),
            Ok(Target::Ip("2001:db8::1".parse().unwrap()))
        );
        let too_long = format!("{}.com", "a".repeat(64));
        for bad in [
            "",
            "-a.com",
            "a-.com",
            "a..com",
            "a_b.com",
            "a b",
            ".",
            too_long.as_str(),
        ] {
            assert!(t(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ports_are_mapped_as_ingress_nginx_maps_them() {
        type Ports<'a> = &'a [(Option<&'a str>, i32, i32)];
        let rows: &[(&str, Ports<'_>, PortRef, Result<u16, &str>)] = &[
            (
                "number → targetPort",
                &[(Some("http"), 80, 8080)],
                PortRef::Number(80),
                Ok(8080),
            ),
            (
                "name → targetPort",
                &[(Some("http"), 80, 8080)],
                PortRef::Name("http".into()),
                Ok(8080),
            ),
            (
                "no targetPort → port",
                &[(Some("http"), 80, 0)],
                PortRef::Number(80),
                Ok(80),
            ),
            ("number without ports", &[], PortRef::Number(443), Ok(443)),
            (
                "number no port has",
                &[(Some("http"), 80, 8080)],
                PortRef::Number(9000),
                Ok(9000),
            ),
            (
                "unknown name",
                &[(Some("http"), 80, 8080)],
                PortRef::Name("grpc".into()),
                Err("no port \"grpc\""),
            ),
            (
                "no port",
                &[(Some("http"), 80, 8080)],
                PortRef::Missing,
                Err("without a port"),
            ),
            (
                "out of range",
                &[],
                PortRef::Number(70000),
                Err("1 to 65535"),
            ),
        ];
        for (what, ports, port_ref, want) in rows {
            let got = port(&external("x", "a.com", ports), port_ref);
            match want {
                Ok(n) => assert_eq!(got, Ok(*n), "{what}"),
                Err(word) => {
                    let (message, detail) = got.expect_err(what);
                    assert!(
                        format!("{message} {detail}").contains(word),
                        "{what}: {message} / {detail}"
                    );
                }
            }
        }
        // A named targetPort names a container port, which an ExternalName Service has none of.
        let mut named = external("x", "a.com", &[(Some("http"), 80, 8080)]);
        named.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].target_port =
            Some(IntOrString::String("web".into()));
        assert_eq!(port(&named, &PortRef::Number(80)), Ok(80));
        // UDP is not forwarded.
        let mut udp = external("x", "a.com", &[(Some("dns"), 53, 53)]);
        udp.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].protocol = Some("UDP".into());
        assert!(port(&udp, &PortRef::Number(53)).is_err());
    }

    #[test]
    fn answers_become_endpoints_or_problems() {
        let answers: NameAnswers = [
            (
                "db.example.com",
                NameAnswer::Addresses(vec![
                    "10.1.0.1".parse().unwrap(),
                    "2001:db8::1".parse().unwrap(),
                ]),
            ),
            (
                "localhost",
                NameAnswer::Addresses(vec!["127.0.0.1".parse().unwrap()]),
            ),
            (
                "metadata.internal",
                NameAnswer::Addresses(vec!["169.254.169.254".parse().unwrap()]),
            ),
            (
                "mixed.example.com",
                NameAnswer::Addresses(vec![
                    "10.1.0.2".parse().unwrap(),
                    "127.0.0.1".parse().unwrap(),
                ]),
            ),
            ("gone.example.com", NameAnswer::Failed("NXDOMAIN".into())),
        ]
        .into_iter()
        .map(|(name, answer)| (name.to_owned(), answer))
        .collect();
        let strict = ExternalNamePolicy::default();
        let loose = ExternalNamePolicy {
            allow_local_addresses: true,
            ..strict
        };
        let disabled = ExternalNamePolicy {
            disabled: true,
            ..loose
        };
        type Row<'a> = (
            &'a str,
            &'a str,
            ExternalNamePolicy,
            Result<&'a [&'a str], Reason>,
            Option<Reason>,
        );
        let rows: &[Row<'_>] = &[
            (
                "db.example.com",
                "resolved",
                strict,
                Ok(&["10.1.0.1:8080", "[2001:db8::1]:8080"]),
                None,
            ),
            (
                "localhost",
                "loopback refused",
                strict,
                Err(Reason::ExternalNameRefused),
                None,
            ),
            (
                "localhost",
                "loopback allowed",
                loose,
                Ok(&["127.0.0.1:8080"]),
                None,
            ),
            (
                "metadata.internal",
                "metadata refused",
                strict,
                Err(Reason::ExternalNameRefused),
                None,
            ),
            (
                "mixed.example.com",
                "some refused",
                strict,
                Ok(&["10.1.0.2:8080"]),
                Some(Reason::ExternalNameRefused),
            ),
            (
                "gone.example.com",
                "does not resolve",
                loose,
                Err(Reason::ExternalNameNotResolved),
                None,
            ),
            (
                "new.example.com",
                "not resolved yet",
                loose,
                Err(Reason::ExternalNameNotResolved),
                None,
            ),
            (
                "10.2.0.1",
                "an IP address",
                strict,
                Ok(&["10.2.0.1:8080"]),
                None,
            ),
            (
                "169.254.169.254",
                "a metadata IP address",
                strict,
                Err(Reason::ExternalNameRefused),
                None,
            ),
            (
                "not a name",
                "invalid",
                loose,
                Err(Reason::ExternalNameNotResolved),
                None,
            ),
            (
                "db.example.com",
                "disabled",
                disabled,
                Err(Reason::UnsupportedServiceType),
                None,
            ),
        ];
        for (name, what, policy, want, note) in rows {
            let svc = external("x", name, &[(Some("http"), 80, 8080)]);
            let mut notes = Vec::new();
            let got = endpoints(
                &svc,
                "d/x",
                &PortRef::Number(80),
                &answers,
                *policy,
                &mut notes,
            );
            match want {
                Ok(want) => {
                    let got: Vec<String> = got
                        .unwrap_or_else(|p| panic!("{what}: {}", p.what))
                        .iter()
                        .map(ToString::to_string)
                        .collect();
                    assert_eq!(got, *want, "{what}");
                }
                Err(reason) => {
                    let problem = got.expect_err(what);
                    assert_eq!(problem.reason, *reason, "{what}: {}", problem.what);
                    assert!(problem.hint.contains("503"), "{what}: {}", problem.hint);
                }
            }
            assert_eq!(notes.first().map(|n| n.reason), *note, "{what}");
        }
        // An unmappable port comes before the name.
        let svc = external("x", "db.example.com", &[(Some("http"), 80, 8080)]);
        let problem = endpoints(
            &svc,
            "d/x",
            &PortRef::Name("grpc".into()),
            &answers,
            strict,
            &mut Vec::new(),
        )
        .expect_err("no such port");
        assert_eq!(problem.reason, Reason::ServicePortNotFound);
    }

    #[test]
    fn names_to_resolve_are_those_weir_s_ingresses_reference() {
        let input = Input {
            ingresses: shared([
                ingress("d", "mine")
                    .class("weir")
                    .prefix("a.com", "/", "db", 80)
                    .prefix("a.com", "/ip", "by-ip", 80)
                    .prefix("a.com", "/web", "web", 80)
                    .build(),
                ingress("d", "theirs")
                    .class("nginx")
                    .prefix("b.com", "/", "theirs", 80)
                    .build(),
            ]),
            services: shared([
                external("db", "DB.example.com.", &[]),
                external("by-ip", "10.0.0.1", &[]),
                external("theirs", "theirs.example.com", &[]),
                external("fallback", "fallback.example.com", &[]),
                external("unused", "unused.example.com", &[]),
                service("d", "web", &[(Some("http"), 80, 8080)]),
            ]),
            ..Input::default()
        };
        let config = BuildConfig {
            default_backend_service: Some(ObjectRef::new(ObjectKind::Service, "d", "fallback")),
            ..BuildConfig::default()
        };
        let names: Vec<String> = names_to_resolve(&input, &config).into_iter().collect();
        assert_eq!(names, ["db.example.com.", "fallback.example.com"]);
        let disabled = BuildConfig {
            external_names: ExternalNamePolicy {
                disabled: true,
                ..ExternalNamePolicy::default()
            },
            ..config
        };
        assert!(names_to_resolve(&input, &disabled).is_empty());
    }
}
