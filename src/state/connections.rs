//! The counts behind `limit-connections`: requests in progress per client address, as nginx's
//! `limit_conn` counts them, shared by the routes of an Ingress and carried across tables.
//!
//! A [`ConnectionSlot`] is held while a request is served (until its response body is sent or
//! dropped) and gives its place back when dropped. Memory is bounded: an address is
//! remembered only while it has requests in progress, and at [`MAX_CLIENTS`] addresses with
//! requests in progress a new one is refused, as from a full nginx zone.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use super::MAX_CLIENTS;

/// Things in progress (requests, or connections: `--max-connections-per-client`) per client
/// address, at most `limit` each.
#[derive(Debug)]
pub struct ConnectionCounter {
    limit: u32,
    /// The most addresses with something in progress at once.
    max_clients: usize,
    counts: Mutex<HashMap<IpAddr, u32, foldhash::fast::RandomState>>,
}

/// One request in progress; its place is given back on drop.
#[derive(Debug)]
pub struct ConnectionSlot {
    counter: Arc<ConnectionCounter>,
    client: IpAddr,
}

impl ConnectionCounter {
    /// A counter allowing `limit` requests in progress per client address, for at most
    /// [`MAX_CLIENTS`] addresses at once.
    pub fn new(limit: u32) -> Self {
        Self::bounded(limit, MAX_CLIENTS)
    }

    /// A counter allowing `limit` per client address, for at most `max_clients` addresses at
    /// once (a new one beyond them is refused).
    pub fn bounded(limit: u32, max_clients: usize) -> Self {
        ConnectionCounter {
            limit,
            max_clients,
            counts: Mutex::new(HashMap::default()),
        }
    }

    /// A place for one more request of `client`, unless it has `limit` in progress already.
    pub fn acquire(self: &Arc<Self>, client: IpAddr) -> Option<ConnectionSlot> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.len() >= self.max_clients && !counts.contains_key(&client) {
            return None;
        }
        let count = counts.entry(client).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            counter: self.clone(),
            client,
        })
    }

    /// How many addresses have something in progress.
    #[cfg(test)]
    pub fn addresses(&self) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// How many requests of `client` are in progress.
    #[cfg(test)]
    pub fn in_progress(&self, client: IpAddr) -> u32 {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(&client).copied().unwrap_or(0)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = self
            .counter
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_gets_its_limit_and_places_come_back() {
        let counter = Arc::new(ConnectionCounter::new(2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = counter.acquire(a).unwrap();
        let _second = counter.acquire(a).unwrap();
        assert!(counter.acquire(a).is_none());
        assert!(counter.acquire(b).is_some(), "others are not affected");
        drop(first);
        assert_eq!(counter.in_progress(a), 1);
        assert!(counter.acquire(a).is_some());
    }

    #[test]
    fn addresses_are_forgotten_when_idle_and_bounded_when_busy() {
        let counter = Arc::new(ConnectionCounter::new(1));
        for i in 0..(2 * MAX_CLIENTS as u32) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(i));
            drop(counter.acquire(ip).unwrap());
        }
        assert_eq!(counter.counts.lock().unwrap().len(), 0);
        let held: Vec<ConnectionSlot> = (0..MAX_CLIENTS as u32)
            .map(|i| {
                counter
                    .acquire(IpAddr::from(std::net::Ipv4Addr::from(i)))
                    .unwrap()
            })
            .collect();
        let newcomer = IpAddr::from(std::net::Ipv4Addr::from(u32::MAX));
        assert!(counter.acquire(newcomer).is_none(), "a full zone refuses");
        drop(held);
        assert!(counter.acquire(newcomer).is_some());
    }
}
