//! Admission of a new client: access rules, instance and per-source counts,
//! token-bucket rates with pauses. Pure: the current time and the client's
//! address come in as parameters, so every rule is unit-tested directly.
//!
//! Two xinetd bugs are designed out: a rate pause never touches the
//! instance count, and a child counts against the limits until it is
//! reaped, not merely until it has exited.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Instant;

use crate::config::model::Rare;
use crate::config::units::Rate;
use crate::config::{Access, Limits, OnLimit};

/// Who a client is for per-source limits: its IP address (v4-mapped
/// addresses folded to IPv4), or for Unix sockets the peer's uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKey {
    Ip(IpAddr),
    Uid(u32),
}

impl SourceKey {
    pub fn ip(ip: IpAddr) -> SourceKey {
        SourceKey::Ip(ip.to_canonical())
    }
}

impl std::fmt::Display for SourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            SourceKey::Ip(ip) => write!(f, "{ip}"),
            SourceKey::Uid(uid) => write!(f, "uid:{uid}"),
        }
    }
}

/// Why a client was turned away; shown in the log as `reason=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Denied,
    NotAllowed,
    OutsideTimes,
    Instances,
    PerSource,
    MaxChildren,
    MaxInProcess,
    MaxLoad,
    RatePaused,
    SourceRatePaused,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Denied => "access_deny",
            Refusal::NotAllowed => "access_allow",
            Refusal::OutsideTimes => "access_times",
            Refusal::Instances => "instances",
            Refusal::PerSource => "per_source",
            Refusal::MaxChildren => "max_children",
            Refusal::MaxInProcess => "max_in_process",
            Refusal::MaxLoad => "max_load",
            Refusal::RatePaused => "rate",
            Refusal::SourceRatePaused => "per_source_rate",
        }
    }

    /// Refusals counted as access rules rather than limits.
    pub fn is_access(self) -> bool {
        matches!(
            self,
            Refusal::Denied | Refusal::NotAllowed | Refusal::OutsideTimes
        )
    }
}

/// The access decision alone: deny wins over allow; an empty allow list
/// lets everyone in. IPv4-mapped IPv6 addresses are taken as IPv4.
pub fn check_access(
    access: &Access,
    peer: Option<IpAddr>,
    minute_of_day: Option<u16>,
) -> Result<(), Refusal> {
    if let Some(ip) = peer.map(|ip| ip.to_canonical()) {
        if access.deny.iter().any(|rule| rule.contains(ip)) {
            return Err(Refusal::Denied);
        }
        if !access.allow.is_empty() && !access.allow.iter().any(|rule| rule.contains(ip)) {
            return Err(Refusal::NotAllowed);
        }
    } else if !access.allow.is_empty() {
        // A client without an IP address (Unix socket) cannot match an
        // allow list; address rules do not apply to Unix sockets.
    }
    if let Some(minute) = minute_of_day {
        if !access.times.is_empty() && !access.times.iter().any(|w| w.contains(minute)) {
            return Err(Refusal::OutsideTimes);
        }
    }
    Ok(())
}

/// `count` tokens per `per`, burst `count`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    tokens: f64,
    per_second: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: Rate, now: Instant) -> Self {
        let capacity = f64::from(rate.count);
        TokenBucket {
            capacity,
            tokens: capacity,
            per_second: capacity / rate.per.as_secs_f64(),
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.last = now;
    }

    /// Takes one token; false when the bucket is empty.
    pub fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Full again (after a pause the client starts with a fresh burst).
    pub fn reset(&mut self, now: Instant) {
        self.tokens = self.capacity;
        self.last = now;
    }
}

#[derive(Debug, Clone)]
struct SourceEntry {
    bucket: TokenBucket,
    paused_until: Option<Instant>,
}

/// Per-source rate state, bounded, so a flood of spoofed sources cannot
/// grow memory. When full, the oldest entry that is not paused is evicted:
/// a flood of new sources must not end a paused client's pause (it would
/// come back with a fresh bucket). Paused entries met on the way are moved
/// to the back; the search looks at `EVICTION_SCAN` entries at most, so a
/// table full of paused sources costs a bounded step per new source (and
/// then loses its oldest pause: memory stays bounded first).
#[derive(Debug, Default)]
pub struct SourceTable {
    entries: HashMap<SourceKey, SourceEntry>,
    order: VecDeque<SourceKey>,
    capacity: usize,
}

pub const SOURCE_TABLE_CAPACITY: usize = 4096;
/// Most entries one eviction looks at.
const EVICTION_SCAN: usize = 16;

impl SourceTable {
    pub fn with_capacity(capacity: usize) -> Self {
        SourceTable {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn entry(&mut self, ip: SourceKey, rate: Rate, now: Instant) -> &mut SourceEntry {
        if !self.entries.contains_key(&ip) {
            while self.entries.len() >= self.capacity {
                if !self.evict_one(now) {
                    break;
                }
            }
            self.order.push_back(ip);
            self.entries.insert(
                ip,
                SourceEntry {
                    bucket: TokenBucket::new(rate, now),
                    paused_until: None,
                },
            );
        }
        // The entry was inserted just above if it was missing.
        self.entries.entry(ip).or_insert_with(|| SourceEntry {
            bucket: TokenBucket::new(rate, now),
            paused_until: None,
        })
    }

    /// Removes one entry (see the type's doc); false when there is none.
    fn evict_one(&mut self, now: Instant) -> bool {
        for _ in 0..EVICTION_SCAN.min(self.order.len()) {
            let Some(oldest) = self.order.pop_front() else {
                return false;
            };
            if self.paused(oldest, now) {
                self.order.push_back(oldest);
                continue;
            }
            self.entries.remove(&oldest);
            return true;
        }
        // Every entry looked at is paused: the oldest of them goes.
        match self.order.pop_front() {
            Some(oldest) => self.entries.remove(&oldest).is_some(),
            None => false,
        }
    }

    fn paused(&self, ip: SourceKey, now: Instant) -> bool {
        self.entries
            .get(&ip)
            .and_then(|e| e.paused_until)
            .is_some_and(|until| now < until)
    }
}

/// Per-client state, allocated only for services that limit per source.
#[derive(Debug, Default)]
struct PerSource {
    rates: SourceTable,
    counts: HashMap<SourceKey, u32>,
}

/// A service-wide rate and its pause, allocated only for services with a
/// `rate`.
#[derive(Debug)]
struct ServiceRate {
    bucket: TokenBucket,
    paused_until: Option<Instant>,
}

/// What a service may still admit, and its rate state. It owns the
/// service's limits (the timers read `timeout` and `kill_after` here too),
/// and a service with no limits carries four words and no allocation: a
/// host may configure thousands of services.
#[derive(Debug)]
pub struct Admission {
    limits: Rare<Limits>,
    rate: Option<Box<ServiceRate>>,
    sources: Option<Box<PerSource>>,
    active: u32,
}

/// A started rate pause, so the caller can log it and arm a resume timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseStarted {
    Service { until: Instant },
    Source { ip: SourceKey, until: Instant },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Admit,
    Refuse(Refusal, Option<PauseStarted>),
    /// `on_limit: queue`: leave the client in the kernel backlog.
    Queue,
}

impl Admission {
    pub fn new(limits: impl Into<Rare<Limits>>, now: Instant) -> Self {
        let limits = limits.into();
        Admission {
            rate: Self::rate_state(&limits, now),
            sources: None,
            limits,
            active: 0,
        }
    }

    fn rate_state(limits: &Limits, now: Instant) -> Option<Box<ServiceRate>> {
        limits.rate.map(|rate| {
            Box::new(ServiceRate {
                bucket: TokenBucket::new(rate, now),
                paused_until: None,
            })
        })
    }

    /// Per-client state, made on the first client of a service that limits
    /// per source: an idle service needs none.
    fn sources_mut(sources: &mut Option<Box<PerSource>>) -> &mut PerSource {
        sources.get_or_insert_with(|| {
            Box::new(PerSource {
                rates: SourceTable::with_capacity(SOURCE_TABLE_CAPACITY),
                counts: HashMap::new(),
            })
        })
    }

    /// New limits from a reload; counts of running children are kept.
    pub fn update(&mut self, limits: impl Into<Rare<Limits>>, now: Instant) {
        let limits = limits.into();
        if limits.rate != self.limits.rate {
            self.rate = Self::rate_state(&limits, now);
        }
        if limits.per_source_rate != self.limits.per_source_rate {
            if let Some(sources) = &mut self.sources {
                sources.rates = SourceTable::with_capacity(SOURCE_TABLE_CAPACITY);
            }
        }
        self.limits = limits;
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn active(&self) -> u32 {
        self.active
    }

    pub fn rate_paused_until(&self, now: Instant) -> Option<Instant> {
        self.rate
            .as_ref()
            .and_then(|rate| rate.paused_until)
            .filter(|until| now < *until)
    }

    /// True when `instances` is reached (the queue mode stops accepting).
    pub fn at_instance_limit(&self) -> bool {
        self.limits.instances.is_some_and(|max| self.active >= max)
    }

    pub fn queues(&self) -> bool {
        self.limits.on_limit == OnLimit::Queue
    }

    /// Decides on one client. `global_full` names the spawnd-wide limit
    /// that is reached (`max_children`, `max_in_process`), if one is; `load`
    /// is the 1-minute load average, read only if `max_load` is set.
    pub fn decide(
        &mut self,
        peer: Option<SourceKey>,
        now: Instant,
        global_full: Option<Refusal>,
        load: impl FnOnce() -> Option<f64>,
    ) -> Decision {
        if self.rate_paused_until(now).is_some() {
            return Decision::Refuse(Refusal::RatePaused, None);
        }
        if let Some(ip) = peer {
            if self.limits.per_source_rate.is_some()
                && self
                    .sources
                    .as_ref()
                    .is_some_and(|s| s.rates.paused(ip, now))
            {
                return Decision::Refuse(Refusal::SourceRatePaused, None);
            }
        }
        if let Some(limit) = global_full {
            return if self.queues() {
                Decision::Queue
            } else {
                Decision::Refuse(limit, None)
            };
        }
        if self.at_instance_limit() {
            return if self.queues() {
                Decision::Queue
            } else {
                Decision::Refuse(Refusal::Instances, None)
            };
        }
        if let (Some(max), Some(ip)) = (self.limits.per_source, peer) {
            let count = self
                .sources
                .as_ref()
                .and_then(|s| s.counts.get(&ip).copied())
                .unwrap_or(0);
            if count >= max {
                return Decision::Refuse(Refusal::PerSource, None);
            }
        }
        if let Some(max) = self.limits.max_load {
            if load().is_some_and(|l| l > max) {
                return Decision::Refuse(Refusal::MaxLoad, None);
            }
        }
        if let Some(rate) = &mut self.rate {
            if !rate.bucket.take(now) {
                let until = now + self.limits.rate_pause;
                rate.paused_until = Some(until);
                rate.bucket.reset(until);
                return Decision::Refuse(
                    Refusal::RatePaused,
                    Some(PauseStarted::Service { until }),
                );
            }
        }
        if let (Some(rate), Some(ip)) = (self.limits.per_source_rate, peer) {
            let pause = self.limits.per_source_pause;
            let entry = Self::sources_mut(&mut self.sources)
                .rates
                .entry(ip, rate, now);
            if !entry.bucket.take(now) {
                let until = now + pause;
                entry.paused_until = Some(until);
                entry.bucket.reset(until);
                return Decision::Refuse(
                    Refusal::SourceRatePaused,
                    Some(PauseStarted::Source { ip, until }),
                );
            }
        }
        Decision::Admit
    }

    /// A child was started for `peer`.
    pub fn started(&mut self, peer: Option<SourceKey>) {
        self.active += 1;
        if let (Some(ip), Some(_)) = (peer, self.limits.per_source) {
            *Self::sources_mut(&mut self.sources)
                .counts
                .entry(ip)
                .or_insert(0) += 1;
        }
    }

    /// A child was reaped.
    pub fn finished(&mut self, peer: Option<SourceKey>) {
        debug_assert!(self.active > 0, "more children reaped than started");
        self.active = self.active.saturating_sub(1);
        if let (Some(ip), Some(sources)) = (peer, self.sources.as_mut()) {
            if let Some(count) = sources.counts.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    sources.counts.remove(&ip);
                }
            }
        }
    }

    /// Ends a service-wide pause if it is over; true when it just ended.
    pub fn resume_if_due(&mut self, now: Instant) -> bool {
        if let Some(rate) = &mut self.rate {
            if rate.paused_until.is_some_and(|until| now >= until) {
                rate.paused_until = None;
                return true;
            }
        }
        false
    }
}

/// Caps how many refusals a service logs, so a flood of refused clients or
/// datagrams cannot flood the log: up to 20 a second (burst 20), and the
/// number left out is reported with the next line that is logged.
#[derive(Debug, Clone)]
pub struct LogBudget {
    bucket: TokenBucket,
    suppressed: u64,
}

impl LogBudget {
    pub fn new(now: Instant) -> Self {
        let rate = Rate {
            count: 20,
            per: std::time::Duration::from_secs(1),
        };
        LogBudget {
            bucket: TokenBucket::new(rate, now),
            suppressed: 0,
        }
    }

    /// `Some(n)`: log this one, mentioning `n` left out before it.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.bucket.take(now) {
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

/// Minutes since local midnight, for `access.times`.
pub fn minute_of_day(unix_seconds: i64, utc_offset_seconds: i64) -> u16 {
    ((unix_seconds + utc_offset_seconds).rem_euclid(86_400) / 60) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::{Empty, TimeWindow, DEFAULT_KILL_AFTER};
    use std::time::Duration;

    fn limits() -> Limits {
        Limits {
            instances: None,
            on_limit: OnLimit::Refuse,
            per_source: None,
            rate: None,
            rate_pause: Duration::from_secs(10),
            per_source_rate: None,
            per_source_pause: Duration::from_secs(60),
            timeout: None,
            kill_after: DEFAULT_KILL_AFTER,
            idle_timeout: Some(crate::config::model::DEFAULT_IDLE_TIMEOUT),
            connect_timeout: crate::config::model::DEFAULT_CONNECT_TIMEOUT,
            max_load: None,
            rlimits: Default::default(),
        }
    }

    fn ip(text: &str) -> Option<SourceKey> {
        Some(SourceKey::ip(text.parse().unwrap()))
    }

    fn addr(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    fn no_load() -> Option<f64> {
        None
    }

    #[test]
    fn deny_wins_and_empty_allow_admits_all() {
        let access = Access {
            allow: vec!["127.0.0.0/8".parse().unwrap()],
            deny: vec!["127.0.0.2".parse().unwrap()],
            times: vec![],
        };
        assert_eq!(check_access(&access, addr("127.0.0.1"), None), Ok(()));
        assert_eq!(
            check_access(&access, addr("127.0.0.2"), None),
            Err(Refusal::Denied)
        );
        assert_eq!(
            check_access(&access, addr("::ffff:127.0.0.2"), None),
            Err(Refusal::Denied)
        );
        assert_eq!(
            check_access(&access, addr("::1"), None),
            Err(Refusal::NotAllowed)
        );
        assert_eq!(
            check_access(&Access::default(), addr("192.0.2.1"), None),
            Ok(())
        );
    }

    #[test]
    fn access_times() {
        let access = Access {
            times: vec![TimeWindow {
                start: 8 * 60,
                end: 18 * 60,
            }],
            ..Default::default()
        };
        assert_eq!(check_access(&access, None, Some(9 * 60)), Ok(()));
        assert_eq!(
            check_access(&access, None, Some(20 * 60)),
            Err(Refusal::OutsideTimes)
        );
        assert_eq!(minute_of_day(86_400 + 3_600, 0), 60);
        assert_eq!(minute_of_day(0, 3_600 * 2), 120);
        assert_eq!(minute_of_day(0, -60), 1439);
    }

    #[test]
    fn instances_count_until_reaped() {
        let now = Instant::now();
        let mut a = Admission::new(
            &Limits {
                instances: Some(2),
                ..limits()
            },
            now,
        );
        for _ in 0..2 {
            assert_eq!(
                a.decide(ip("127.0.0.1"), now, None, no_load),
                Decision::Admit
            );
            a.started(ip("127.0.0.1"));
        }
        assert_eq!(
            a.decide(ip("127.0.0.1"), now, None, no_load),
            Decision::Refuse(Refusal::Instances, None)
        );
        a.finished(ip("127.0.0.1"));
        assert_eq!(
            a.decide(ip("127.0.0.1"), now, None, no_load),
            Decision::Admit
        );
    }

    #[test]
    fn queue_mode_and_global_cap() {
        let now = Instant::now();
        let mut a = Admission::new(
            &Limits {
                instances: Some(1),
                on_limit: OnLimit::Queue,
                ..limits()
            },
            now,
        );
        a.started(None);
        assert_eq!(a.decide(None, now, None, no_load), Decision::Queue);
        let mut b = Admission::new(&limits(), now);
        assert_eq!(
            b.decide(None, now, Some(Refusal::MaxChildren), no_load),
            Decision::Refuse(Refusal::MaxChildren, None)
        );
        assert_eq!(
            b.decide(None, now, Some(Refusal::MaxInProcess), no_load),
            Decision::Refuse(Refusal::MaxInProcess, None)
        );
    }

    #[test]
    fn unix_peers_count_by_uid() {
        let now = Instant::now();
        let mut a = Admission::new(
            &Limits {
                per_source: Some(1),
                ..limits()
            },
            now,
        );
        a.started(Some(SourceKey::Uid(1000)));
        assert_eq!(
            a.decide(Some(SourceKey::Uid(1000)), now, None, no_load),
            Decision::Refuse(Refusal::PerSource, None)
        );
        assert_eq!(
            a.decide(Some(SourceKey::Uid(0)), now, None, no_load),
            Decision::Admit
        );
    }

    #[test]
    fn per_source_counts_each_address() {
        let now = Instant::now();
        let mut a = Admission::new(
            &Limits {
                per_source: Some(1),
                ..limits()
            },
            now,
        );
        a.started(ip("127.0.0.1"));
        assert_eq!(
            a.decide(ip("127.0.0.1"), now, None, no_load),
            Decision::Refuse(Refusal::PerSource, None)
        );
        assert_eq!(
            a.decide(ip("::ffff:127.0.0.1"), now, None, no_load),
            Decision::Refuse(Refusal::PerSource, None)
        );
        assert_eq!(
            a.decide(ip("127.0.0.2"), now, None, no_load),
            Decision::Admit
        );
        a.finished(ip("127.0.0.1"));
        assert_eq!(
            a.decide(ip("127.0.0.1"), now, None, no_load),
            Decision::Admit
        );
    }

    #[test]
    fn rate_pause_then_resume_with_fresh_burst() {
        let t0 = Instant::now();
        let rate = "2/s".parse().unwrap();
        let mut a = Admission::new(
            &Limits {
                rate: Some(rate),
                rate_pause: Duration::from_secs(10),
                ..limits()
            },
            t0,
        );
        assert_eq!(a.decide(None, t0, None, no_load), Decision::Admit);
        assert_eq!(a.decide(None, t0, None, no_load), Decision::Admit);
        let until = t0 + Duration::from_secs(10);
        assert_eq!(
            a.decide(None, t0, None, no_load),
            Decision::Refuse(Refusal::RatePaused, Some(PauseStarted::Service { until }))
        );
        // Refused attempts during the pause do not extend it.
        let t5 = t0 + Duration::from_secs(5);
        assert_eq!(
            a.decide(None, t5, None, no_load),
            Decision::Refuse(Refusal::RatePaused, None)
        );
        assert_eq!(a.rate_paused_until(t5), Some(until));
        assert!(!a.resume_if_due(t5));
        assert!(a.resume_if_due(until));
        assert_eq!(a.decide(None, until, None, no_load), Decision::Admit);
        assert_eq!(a.decide(None, until, None, no_load), Decision::Admit);
    }

    #[test]
    fn a_reload_keeps_counts_and_restarts_only_a_changed_rate() {
        let now = Instant::now();
        let with_rate = |rate: &str| Limits {
            per_source: Some(1),
            rate: Some(rate.parse().unwrap()),
            ..limits()
        };
        let mut a = Admission::new(&with_rate("1/m"), now);
        assert_eq!(
            a.decide(ip("127.0.0.1"), now, None, no_load),
            Decision::Admit
        );
        a.started(ip("127.0.0.1"));
        assert!(matches!(
            a.decide(ip("127.0.0.2"), now, None, no_load),
            Decision::Refuse(Refusal::RatePaused, Some(_))
        ));
        // Unchanged limits: the pause goes on.
        a.update(&with_rate("1/m"), now);
        assert_eq!(
            a.decide(ip("127.0.0.2"), now, None, no_load),
            Decision::Refuse(Refusal::RatePaused, None)
        );
        // A new rate starts with a full bucket; the running child still counts.
        a.update(&with_rate("2/m"), now);
        assert_eq!(a.rate_paused_until(now), None);
        assert_eq!(
            a.decide(ip("127.0.0.1"), now, None, no_load),
            Decision::Refuse(Refusal::PerSource, None)
        );
        assert_eq!(
            a.decide(ip("127.0.0.2"), now, None, no_load),
            Decision::Admit
        );
        a.update(&limits(), now);
        assert_eq!(a.limits(), Limits::EMPTY);
        a.finished(ip("127.0.0.1"));
        assert_eq!(a.active(), 0);
    }

    #[test]
    fn rate_pause_keeps_instance_count() {
        let t0 = Instant::now();
        let mut a = Admission::new(
            &Limits {
                instances: Some(1),
                rate: Some("1/s".parse().unwrap()),
                ..limits()
            },
            t0,
        );
        assert_eq!(a.decide(None, t0, None, no_load), Decision::Admit);
        a.started(None);
        a.finished(None);
        assert!(matches!(
            a.decide(None, t0, None, no_load),
            Decision::Refuse(Refusal::RatePaused, Some(_))
        ));
        a.started(None); // a child admitted before the pause still runs
        let after = t0 + Duration::from_secs(11);
        a.resume_if_due(after);
        assert_eq!(a.active(), 1, "the pause must not reset the instance count");
        assert_eq!(
            a.decide(None, after, None, no_load),
            Decision::Refuse(Refusal::Instances, None)
        );
    }

    #[test]
    fn per_source_rate_blocks_only_that_source() {
        let t0 = Instant::now();
        let mut a = Admission::new(
            &Limits {
                per_source_rate: Some("2/m".parse().unwrap()),
                per_source_pause: Duration::from_secs(30),
                ..limits()
            },
            t0,
        );
        assert_eq!(
            a.decide(ip("127.0.0.1"), t0, None, no_load),
            Decision::Admit
        );
        assert_eq!(
            a.decide(ip("127.0.0.1"), t0, None, no_load),
            Decision::Admit
        );
        let until = t0 + Duration::from_secs(30);
        assert_eq!(
            a.decide(ip("127.0.0.1"), t0, None, no_load),
            Decision::Refuse(
                Refusal::SourceRatePaused,
                Some(PauseStarted::Source {
                    ip: SourceKey::ip("127.0.0.1".parse().unwrap()),
                    until
                })
            )
        );
        assert_eq!(
            a.decide(ip("127.0.0.2"), t0, None, no_load),
            Decision::Admit
        );
        assert_eq!(
            a.decide(ip("127.0.0.1"), t0 + Duration::from_secs(29), None, no_load),
            Decision::Refuse(Refusal::SourceRatePaused, None)
        );
        assert_eq!(
            a.decide(ip("127.0.0.1"), until, None, no_load),
            Decision::Admit
        );
    }

    #[test]
    fn source_table_is_bounded() {
        let t0 = Instant::now();
        let mut table = SourceTable::with_capacity(100);
        let rate: Rate = "1/s".parse().unwrap();
        for n in 0..10_000u32 {
            table.entry(SourceKey::ip(IpAddr::from(n.to_be_bytes())), rate, t0);
        }
        assert_eq!(table.len(), 100);
    }

    #[test]
    fn a_flood_of_new_sources_does_not_end_a_pause() {
        let t0 = Instant::now();
        let rate: Rate = "1/s".parse().unwrap();
        let mut table = SourceTable::with_capacity(100);
        let client = SourceKey::ip(IpAddr::from([192, 0, 2, 1]));
        // The client is the oldest entry, and paused.
        table.entry(client, rate, t0).paused_until = Some(t0 + Duration::from_secs(60));
        for n in 0..10_000u32 {
            table.entry(SourceKey::ip(IpAddr::from(n.to_be_bytes())), rate, t0);
        }
        assert_eq!(table.len(), 100);
        assert!(table.paused(client, t0 + Duration::from_secs(1)));
        // Once the pause is over, the client is an entry like any other.
        let later = t0 + Duration::from_secs(61);
        for n in 10_000..10_200u32 {
            table.entry(SourceKey::ip(IpAddr::from(n.to_be_bytes())), rate, later);
        }
        assert!(!table.entries.contains_key(&client));
    }

    #[test]
    fn a_table_full_of_pauses_stays_bounded() {
        let t0 = Instant::now();
        let rate: Rate = "1/s".parse().unwrap();
        let mut table = SourceTable::with_capacity(50);
        for n in 0..1_000u32 {
            table
                .entry(SourceKey::ip(IpAddr::from(n.to_be_bytes())), rate, t0)
                .paused_until = Some(t0 + Duration::from_secs(60));
        }
        assert_eq!(table.len(), 50);
        assert_eq!(table.order.len(), 50);
    }

    #[test]
    fn refusal_logging_is_budgeted() {
        let t0 = Instant::now();
        let mut budget = LogBudget::new(t0);
        let logged = (0..1000).filter(|_| budget.allow(t0).is_some()).count();
        assert_eq!(logged, 20);
        assert_eq!(
            budget.allow(t0 + std::time::Duration::from_secs(1)),
            Some(980)
        );
        assert_eq!(
            budget.allow(t0 + std::time::Duration::from_secs(1)),
            Some(0)
        );
    }

    #[test]
    fn max_load() {
        let now = Instant::now();
        let mut a = Admission::new(
            &Limits {
                max_load: Some(2.0),
                ..limits()
            },
            now,
        );
        assert_eq!(
            a.decide(None, now, None, || Some(3.5)),
            Decision::Refuse(Refusal::MaxLoad, None)
        );
        assert_eq!(a.decide(None, now, None, || Some(0.5)), Decision::Admit);
    }

    #[test]
    fn token_bucket_refills_over_time() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new("10/s".parse().unwrap(), t0);
        for _ in 0..10 {
            assert!(bucket.take(t0));
        }
        assert!(!bucket.take(t0));
        assert!(bucket.take(t0 + Duration::from_millis(100)));
        assert!(!bucket.take(t0 + Duration::from_millis(100)));
    }
}
