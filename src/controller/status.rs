//! The Ingress status writer (leader only): `status.loadBalancer.ingress` of weir's Ingresses
//! says where they are served, once the data plane serves them; an Ingress that leaves weir's
//! class gets that status cleared.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::Store;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::rebuild::Published;
use crate::model::{ObjectKind, ObjectRef};

/// Where weir's Ingresses are reachable, as the status should say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishFrom {
    /// The load-balancer addresses of this Service (`--publish-service NAMESPACE/NAME`), or its
    /// cluster IP when it has none.
    Service {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// Fixed IPs or hostnames (`--publish-status-address`).
    Addresses(Vec<String>),
}

/// One `status.loadBalancer.ingress` entry: an IP or a hostname.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum LbAddress {
    /// An IP address.
    Ip(String),
    /// A DNS name.
    Hostname(String),
}

impl LbAddress {
    /// An IP if it parses as one, else a hostname.
    pub fn parse(s: &str) -> Self {
        match s.parse::<IpAddr>() {
            Ok(_) => LbAddress::Ip(s.to_owned()),
            Err(_) => LbAddress::Hostname(s.to_owned()),
        }
    }

    fn to_json(&self) -> serde_json::Value {
        match self {
            LbAddress::Ip(ip) => json!({ "ip": ip }),
            LbAddress::Hostname(host) => json!({ "hostname": host }),
        }
    }
}

/// One load-balancer entry as an address (entries with neither an IP nor a hostname are skipped).
fn lb_address(ip: &Option<String>, hostname: &Option<String>) -> Option<LbAddress> {
    match (ip, hostname) {
        (Some(ip), _) => Some(LbAddress::Ip(ip.clone())),
        (None, Some(host)) => Some(LbAddress::Hostname(host.clone())),
        (None, None) => None,
    }
}

/// The addresses an Ingress's status currently lists.
fn current_addresses(ingress: &Ingress) -> BTreeSet<LbAddress> {
    let entries = ingress
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    entries
        .into_iter()
        .flatten()
        .filter_map(|e| lb_address(&e.ip, &e.hostname))
        .collect()
}

/// The status changes needed: `(ingress, desired addresses)`; an empty set clears the status.
/// weir's Ingresses get `ours_addresses`; any other Ingress whose status lists exactly those
/// addresses (it left weir's class) is cleared.
pub fn status_changes(
    ingresses: &[Arc<Ingress>],
    ours: &BTreeSet<ObjectRef>,
    addresses: &BTreeSet<LbAddress>,
) -> Vec<(ObjectRef, BTreeSet<LbAddress>)> {
    let mut changes = Vec::new();
    for ingress in ingresses {
        let object = ObjectRef::new(
            ObjectKind::Ingress,
            ingress
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_owned()),
            ingress.metadata.name.clone().unwrap_or_default(),
        );
        let current = current_addresses(ingress);
        if ours.contains(&object) {
            if current != *addresses && !addresses.is_empty() {
                changes.push((object, addresses.clone()));
            }
        } else if !current.is_empty() && current == *addresses {
            changes.push((object, BTreeSet::new()));
        }
    }
    changes
}

/// Runs until `cancel` fires: while `leader` is true, brings the status of Ingresses in line
/// with what is published, after every publish and every minute (someone may have changed it).
/// Current statuses are read from `live`, the source's Ingress store (published inputs are not
/// renewed for status-only changes). Failures are retried with exponential backoff (1 s
/// doubling to 1 min).
pub async fn run_status_writer(
    client: Client,
    from: PublishFrom,
    live: Store<Ingress>,
    mut published: watch::Receiver<Option<Arc<Published>>>,
    mut leader: watch::Receiver<bool>,
    cancel: CancellationToken,
) {
    const RESYNC: Duration = Duration::from_secs(60);
    let mut backoff = Duration::from_secs(1);
    let mut next_pass_in = RESYNC;
    loop {
        let is_leader = *leader.borrow_and_update();
        let current = published.borrow_and_update().clone();
        if let (true, Some(current)) = (is_leader, current) {
            let failures = write_statuses(&client, &from, &current, &live, &leader).await;
            if failures == 0 {
                backoff = Duration::from_secs(1);
                next_pass_in = RESYNC;
            } else {
                warn!(failures, retry_in = ?backoff, "some Ingress statuses could not be written");
                next_pass_in = backoff;
                backoff = (backoff * 2).min(RESYNC);
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = published.changed() => if changed.is_err() { return },
            changed = leader.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(next_pass_in) => {}
        }
    }
}

/// One pass: patches every Ingress whose status differs from what it should say. Stops as soon
/// as this replica is no longer the leader. Returns how many writes failed.
async fn write_statuses(
    client: &Client,
    from: &PublishFrom,
    published: &Published,
    live: &Store<Ingress>,
    leader: &watch::Receiver<bool>,
) -> usize {
    const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
    let addresses =
        match tokio::time::timeout(REQUEST_TIMEOUT, publish_addresses(client, from)).await {
            Ok(Ok(addresses)) => addresses,
            Ok(Err(error)) => {
                warn!(%error, "cannot read the addresses to publish");
                return 1;
            }
            Err(_) => {
                warn!("reading the addresses to publish timed out");
                return 1;
            }
        };
    if addresses.is_empty() {
        debug!("no address to publish yet");
    }
    let ours: BTreeSet<ObjectRef> = published.ingresses.iter().map(|o| (**o).clone()).collect();
    let mut failures = 0;
    for (object, desired) in status_changes(&live.state(), &ours, &addresses) {
        if !*leader.borrow() {
            break;
        }
        let api: Api<Ingress> = Api::namespaced(client.clone(), &object.namespace);
        let entries: Vec<_> = desired.iter().map(LbAddress::to_json).collect();
        let patch = if entries.is_empty() {
            json!({ "status": { "loadBalancer": { "ingress": null } } })
        } else {
            json!({ "status": { "loadBalancer": { "ingress": entries } } })
        };
        let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
        let patched = api.patch_status(&object.name, &params, &patch);
        match tokio::time::timeout(REQUEST_TIMEOUT, patched).await {
            Ok(Ok(_)) => info!(ingress = %object, addresses = ?desired, "wrote Ingress status"),
            // Deleted since the table was built: nothing to write.
            Ok(Err(kube::Error::Api(status))) if status.code == 404 => {}
            Ok(Err(error)) => {
                warn!(ingress = %object, %error, "cannot write Ingress status");
                failures += 1;
            }
            Err(_) => {
                warn!(ingress = %object, "writing Ingress status timed out");
                failures += 1;
            }
        }
    }
    failures
}

async fn publish_addresses(
    client: &Client,
    from: &PublishFrom,
) -> Result<BTreeSet<LbAddress>, kube::Error> {
    match from {
        PublishFrom::Addresses(addresses) => {
            Ok(addresses.iter().map(|a| LbAddress::parse(a)).collect())
        }
        PublishFrom::Service { namespace, name } => {
            let service = Api::<Service>::namespaced(client.clone(), namespace)
                .get(name)
                .await?;
            Ok(service_addresses(&service))
        }
    }
}

/// A Service's load-balancer IPs and hostnames, or its cluster IPs when it has none.
pub fn service_addresses(service: &Service) -> BTreeSet<LbAddress> {
    let lb: BTreeSet<LbAddress> = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|e| lb_address(&e.ip, &e.hostname))
        .collect();
    if !lb.is_empty() {
        return lb;
    }
    let spec = service.spec.as_ref();
    spec.and_then(|s| s.cluster_ips.clone())
        .or_else(|| spec.and_then(|s| s.cluster_ip.clone()).map(|ip| vec![ip]))
        .unwrap_or_default()
        .into_iter()
        .filter(|ip| ip.parse::<IpAddr>().is_ok())
        .map(LbAddress::Ip)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ingress(name: &str, status_ips: &[&str]) -> Ingress {
        let entries: Vec<_> = status_ips.iter().map(|ip| json!({ "ip": ip })).collect();
        serde_json::from_value(json!({
            "metadata": { "name": name, "namespace": "default" },
            "status": { "loadBalancer": { "ingress": entries } }
        }))
        .unwrap()
    }

    fn obj(name: &str) -> ObjectRef {
        ObjectRef::new(ObjectKind::Ingress, "default", name)
    }

    #[test]
    fn ours_get_the_addresses_and_those_that_left_are_cleared() {
        let addrs: BTreeSet<LbAddress> = [LbAddress::parse("203.0.113.7")].into();
        let ingresses = [
            ingress("new", &[]),
            ingress("done", &["203.0.113.7"]),
            ingress("stale", &["198.51.100.1"]),
            ingress("left", &["203.0.113.7"]),
            ingress("someone-elses", &["192.0.2.99"]),
        ]
        .map(Arc::new);
        let ours: BTreeSet<ObjectRef> = [obj("new"), obj("done"), obj("stale")].into();
        let changes = status_changes(&ingresses, &ours, &addrs);
        assert_eq!(
            changes,
            vec![
                (obj("new"), addrs.clone()),
                (obj("stale"), addrs.clone()),
                (obj("left"), BTreeSet::new())
            ]
        );
        assert!(
            status_changes(&ingresses, &ours, &BTreeSet::new()).is_empty(),
            "nothing to publish yet"
        );
    }

    #[test]
    fn service_addresses_prefer_the_load_balancer() {
        let with_lb: Service = serde_json::from_value(json!({
            "spec": { "clusterIP": "10.96.0.10" },
            "status": { "loadBalancer": { "ingress": [{ "ip": "203.0.113.7" }, { "hostname": "lb.example.com" }] } }
        }))
        .unwrap();
        assert_eq!(
            service_addresses(&with_lb),
            [
                LbAddress::Ip("203.0.113.7".into()),
                LbAddress::Hostname("lb.example.com".into())
            ]
            .into()
        );
        let cluster_ip: Service =
            serde_json::from_value(json!({ "spec": { "clusterIP": "10.96.0.10" } })).unwrap();
        assert_eq!(
            service_addresses(&cluster_ip),
            [LbAddress::Ip("10.96.0.10".into())].into()
        );
        let headless: Service =
            serde_json::from_value(json!({ "spec": { "clusterIP": "None" } })).unwrap();
        assert!(service_addresses(&headless).is_empty());
        assert_eq!(
            LbAddress::parse("lb.example.com"),
            LbAddress::Hostname("lb.example.com".into())
        );
    }
}
