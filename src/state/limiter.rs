//! The request counts behind `limit-rps` and `limit-rpm`: per client address, the generic cell
//! rate algorithm (one timestamp per client: when its next request would be on schedule),
//! which behaves like nginx's `limit_req` with `burst` and `nodelay`. The controller uses the
//! same counts, keyed by object, to pace Events.
//!
//! Memory is bounded whatever number of addresses a client rotates through: at
//! [`MAX_CLIENTS`] addresses, those back on schedule (which hold nothing) are dropped, and if
//! that is not enough, half of the others — they start afresh, as in a full nginx zone.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::model::Rate;

/// The most client addresses (keys) one limiter remembers.
pub const MAX_CLIENTS: usize = 65_536;

/// One rate's counts per key (a client address unless said otherwise), shared by the routes
/// of an Ingress.
#[derive(Debug)]
pub struct Limiter<K = IpAddr> {
    /// Nanoseconds between two requests on schedule.
    interval: u64,
    /// How far ahead of schedule a client may be (its burst).
    tolerance: u64,
    epoch: Instant,
    /// Per client: when its next request is on schedule (nanoseconds since `epoch`).
    schedule: Mutex<HashMap<K, u64, foldhash::fast::RandomState>>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// A limiter for `rate`.
    pub fn new(rate: Rate) -> Self {
        let period = u64::try_from(rate.period.as_nanos()).unwrap_or(u64::MAX);
        let interval = period / u64::from(rate.count.max(1));
        Limiter {
            interval,
            tolerance: interval.saturating_mul(u64::from(rate.burst)),
            epoch: Instant::now(),
            schedule: Mutex::new(HashMap::default()),
        }
    }

    fn nanos(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether `client` may send a request at `now` (and counts it when it may).
    pub fn allow(&self, client: K, now: Instant) -> bool {
        let now = self.nanos(now);
        let mut schedule = self.schedule.lock().unwrap_or_else(|e| e.into_inner());
        if schedule.len() >= MAX_CLIENTS && !schedule.contains_key(&client) {
            schedule.retain(|_, next| *next > now);
            if schedule.len() >= MAX_CLIENTS / 2 {
                let drop: Vec<K> = schedule.keys().take(MAX_CLIENTS / 2).cloned().collect();
                for key in drop {
                    schedule.remove(&key);
                }
            }
        }
        let next = schedule.get(&client).copied().unwrap_or(now).max(now);
        if next - now > self.tolerance {
            return false;
        }
        schedule.insert(client, next.saturating_add(self.interval));
        true
    }

    /// How long from `now` until `client` may send again: zero when [`Limiter::allow`] would
    /// allow it now. Counts nothing.
    pub fn delay(&self, client: &K, now: Instant) -> Duration {
        let now = self.nanos(now);
        let schedule = self.schedule.lock().unwrap_or_else(|e| e.into_inner());
        let next = schedule.get(client).copied().unwrap_or(now).max(now);
        Duration::from_nanos((next - now).saturating_sub(self.tolerance))
    }

    /// How many client addresses it remembers.
    #[cfg(test)]
    pub fn clients(&self) -> usize {
        self.schedule.lock().map_or(0, |s| s.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(count: u32, burst: u32) -> Rate {
        Rate {
            count,
            period: Duration::from_secs(1),
            burst,
        }
    }

    #[test]
    fn a_burst_then_one_per_interval_per_client() {
        let limiter = Limiter::new(rate(10, 5));
        let start = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let allowed = (0..20).filter(|_| limiter.allow(a, start)).count();
        assert_eq!(allowed, 6, "the request on schedule and a burst of 5");
        assert!(limiter.allow(b, start), "other clients are not affected");
        // 100 ms later, one more is on schedule; 1 s later, the whole burst again.
        let later = start + Duration::from_millis(100);
        assert!(limiter.allow(a, later));
        assert!(!limiter.allow(a, later));
        let much_later = start + Duration::from_secs(2);
        let allowed = (0..20).filter(|_| limiter.allow(a, much_later)).count();
        assert_eq!(allowed, 6);
    }

    #[test]
    fn the_delay_is_when_the_next_is_allowed() {
        let limiter = Limiter::new(rate(10, 1));
        let start = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(limiter.delay(&a, start), Duration::ZERO);
        assert!(limiter.allow(a, start) && limiter.allow(a, start));
        let delay = limiter.delay(&a, start);
        assert_eq!(delay, Duration::from_millis(100));
        assert!(!limiter.allow(a, start + delay - Duration::from_millis(1)));
        assert_eq!(limiter.delay(&a, start + delay), Duration::ZERO);
        assert!(limiter.allow(a, start + delay));
    }

    #[test]
    fn memory_stays_bounded_while_addresses_rotate() {
        let limiter = Limiter::new(rate(1, 0));
        let now = Instant::now();
        for i in 0..(3 * MAX_CLIENTS as u32) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(i));
            assert!(limiter.allow(ip, now));
            assert!(limiter.clients() <= MAX_CLIENTS);
        }
    }
}
