//! The classic internal services' data, pure: RFC 862 echo and 863 discard
//! need none; RFC 864 chargen's ring, RFC 867 daytime's text and RFC 868
//! time's 32-bit seconds since 1900 are built here and unit-tested, with
//! the guards that keep the UDP ones from being turned into reflectors.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use crate::config::units::{ListenAddr, Rate};
use crate::daemon::limits::TokenBucket;

/// Characters in the chargen ring: the 95 printable ASCII characters.
const RING: &[u8; 95] = b" !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~";
const LINE: usize = 72;

/// Seconds between 1900-01-01 and 1970-01-01 (RFC 868).
const EPOCH_OFFSET: u64 = 2_208_988_800;

/// Produces chargen lines: line `n` is 72 characters of the ring starting
/// at offset `n mod 95`, then CRLF.
#[derive(Debug, Default, Clone)]
pub struct Chargen {
    line: usize,
}

impl Chargen {
    /// Appends whole lines to `out` until it holds at least `want` bytes.
    pub fn fill(&mut self, out: &mut Vec<u8>, want: usize) {
        while out.len() < want {
            let start = self.line % RING.len();
            for i in 0..LINE {
                out.push(RING[(start + i) % RING.len()]);
            }
            out.extend_from_slice(b"\r\n");
            self.line += 1;
        }
    }

    /// One datagram's worth (RFC 864: at most 512 characters).
    pub fn datagram(&mut self, out: &mut Vec<u8>) {
        out.clear();
        self.fill(out, 512);
        out.truncate(512);
    }
}

/// chargen's stream repeats every 95 lines of 74 bytes.
pub const CHARGEN_PERIOD: usize = RING.len() * (LINE + 2);

/// Two periods of chargen's stream: a TCP connection writes from here, at
/// its position in the cycle, up to one period at a time, so it keeps no
/// buffer of its own. Built once, on first use.
pub fn chargen_cycle() -> &'static [u8] {
    static CYCLE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    CYCLE.get_or_init(|| {
        let mut cycle = Vec::with_capacity(2 * CHARGEN_PERIOD);
        Chargen::default().fill(&mut cycle, 2 * CHARGEN_PERIOD);
        cycle
    })
}

/// RFC 868: seconds since 1900 as 32 bits, big-endian (wraps in 2036).
pub fn time_bytes(unix_seconds: u64) -> [u8; 4] {
    ((unix_seconds + EPOCH_OFFSET) as u32).to_be_bytes()
}

/// RFC 867 leaves the format free; like inetd, use ctime's:
/// `Tue Nov 24 21:00:45 2026\r\n`.
pub fn daytime_text(
    year: i64,
    month: u32,
    day: u32,
    weekday: u32,
    h: u32,
    m: u32,
    s: u32,
) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {} {day:2} {h:02}:{m:02}:{s:02} {year}\r\n",
        DAYS[(weekday % 7) as usize],
        MONTHS[(month.clamp(1, 12) - 1) as usize]
    )
}

/// UDP responders never answer the privileged range, where the classic
/// UDP services of other hosts live: the classic guard against two servers
/// echoing to each other forever (or being used to reflect traffic at one).
pub fn udp_reply_allowed(source_port: u16) -> bool {
    source_port >= 1024
}

/// The addresses of spawnd's own datagram sockets. A datagram that claims
/// to come from one is never answered: one spoofed datagram from spawnd's
/// chargen to its echo would otherwise start a loop between the two that
/// never ends. A socket bound to every address (`*:P`, `0.0.0.0:P`) counts
/// for every source with port P.
#[derive(Debug, Default)]
pub struct OwnAddresses {
    any: HashMap<u16, u32>,
    exact: HashMap<SocketAddr, u32>,
}

impl OwnAddresses {
    /// The key a listen address is counted under, if it is an IP one.
    fn key(addr: &ListenAddr) -> Option<Result<SocketAddr, u16>> {
        match addr {
            ListenAddr::Inet(a) if a.ip().is_unspecified() => Some(Err(a.port())),
            ListenAddr::Inet(a) => Some(Ok(SocketAddr::new(a.ip().to_canonical(), a.port()))),
            ListenAddr::AnyInet(port) => Some(Err(*port)),
            ListenAddr::Unix(_) | ListenAddr::Abstract(_) => None,
        }
    }

    pub fn add(&mut self, addr: &ListenAddr) {
        match Self::key(addr) {
            Some(Ok(exact)) => *self.exact.entry(exact).or_insert(0) += 1,
            Some(Err(port)) => *self.any.entry(port).or_insert(0) += 1,
            None => {}
        }
    }

    pub fn remove(&mut self, addr: &ListenAddr) {
        fn down<K: std::hash::Hash + Eq>(map: &mut HashMap<K, u32>, key: K) {
            if let Some(count) = map.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    map.remove(&key);
                }
            }
        }
        match Self::key(addr) {
            Some(Ok(exact)) => down(&mut self.exact, exact),
            Some(Err(port)) => down(&mut self.any, port),
            None => {}
        }
    }

    /// Whether `source` is (or pretends to be) one of these sockets.
    pub fn contains(&self, source: SocketAddr) -> bool {
        self.any.contains_key(&source.port())
            || self
                .exact
                .contains_key(&SocketAddr::new(source.ip().to_canonical(), source.port()))
    }
}

/// Replies to one source address, per second, that the UDP internal
/// services send at most (burst as many). A loop between two hosts runs
/// one datagram back and forth as fast as they answer; the first reply
/// this budget holds back ends it.
pub const REPLIES_PER_SOURCE: u32 = 16;
/// How many sources the reply budget remembers: bounded, so a flood of
/// spoofed sources cannot grow memory (the oldest is forgotten).
pub const REPLY_SOURCES: usize = 4096;

/// A token bucket per source address for the UDP internal services'
/// replies, across services (a loop may go through several).
#[derive(Debug, Default)]
pub struct ReplyBudget {
    buckets: HashMap<IpAddr, TokenBucket>,
    order: VecDeque<IpAddr>,
}

impl ReplyBudget {
    /// Whether one more reply to `source` may go out at `now`.
    pub fn allow(&mut self, source: IpAddr, now: Instant) -> bool {
        let source = source.to_canonical();
        if !self.buckets.contains_key(&source) {
            while self.buckets.len() >= REPLY_SOURCES {
                match self.order.pop_front() {
                    Some(oldest) => {
                        self.buckets.remove(&oldest);
                    }
                    None => break,
                }
            }
            self.order.push_back(source);
        }
        let rate = Rate {
            count: REPLIES_PER_SOURCE,
            per: std::time::Duration::from_secs(1),
        };
        self.buckets
            .entry(source)
            .or_insert_with(|| TokenBucket::new(rate, now))
            .take(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chargen_lines_rotate_through_the_ring() {
        let mut generator = Chargen::default();
        let mut out = Vec::new();
        generator.fill(&mut out, 1);
        assert_eq!(out.len(), 74);
        assert!(out.starts_with(
            b" !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefg\r\n"
        ));
        out.clear();
        generator.fill(&mut out, 1);
        assert!(
            out.starts_with(b"!\"#$"),
            "the next line starts one character later"
        );
        // After 95 lines the ring starts over.
        let mut generator = Chargen::default();
        let mut all = Vec::new();
        generator.fill(&mut all, 96 * 74);
        assert_eq!(all[..74], all[95 * 74..96 * 74]);
    }

    #[test]
    fn the_chargen_cycle_is_the_stream_twice() {
        let cycle = chargen_cycle();
        assert_eq!(cycle.len(), 2 * CHARGEN_PERIOD);
        let mut stream = Vec::new();
        Chargen::default().fill(&mut stream, 3 * CHARGEN_PERIOD);
        assert_eq!(cycle, &stream[..2 * CHARGEN_PERIOD]);
        assert_eq!(
            &stream[..CHARGEN_PERIOD],
            &stream[CHARGEN_PERIOD..2 * CHARGEN_PERIOD]
        );
    }

    #[test]
    fn chargen_datagram_is_at_most_512() {
        let mut generator = Chargen::default();
        let mut out = Vec::new();
        generator.datagram(&mut out);
        assert_eq!(out.len(), 512);
        assert!(out
            .iter()
            .all(|b| b.is_ascii_graphic() || *b == b' ' || *b == b'\r' || *b == b'\n'));
    }

    #[test]
    fn time_is_seconds_since_1900() {
        assert_eq!(time_bytes(0), 2_208_988_800u32.to_be_bytes());
        assert_eq!(u32::from_be_bytes(time_bytes(1_000_000_000)), 3_208_988_800);
    }

    #[test]
    fn daytime_looks_like_ctime() {
        assert_eq!(
            daytime_text(2026, 11, 4, 3, 9, 5, 7),
            "Wed Nov  4 09:05:07 2026\r\n"
        );
    }

    #[test]
    fn own_addresses_are_never_answered() {
        let mut own = OwnAddresses::default();
        let chargen: ListenAddr = "127.0.0.1:9019".parse().unwrap();
        let any: ListenAddr = "*:9007".parse().unwrap();
        let zero: ListenAddr = "0.0.0.0:9013".parse().unwrap();
        let unix: ListenAddr = "/run/x.sock".parse().unwrap();
        for addr in [&chargen, &any, &zero, &unix] {
            own.add(addr);
        }
        let at = |text: &str| own.contains(text.parse().unwrap());
        assert!(at("127.0.0.1:9019"));
        assert!(
            at("[::ffff:127.0.0.1]:9019"),
            "a mapped address is the same one"
        );
        assert!(!at("127.0.0.2:9019"), "another address, same port");
        assert!(at("10.0.0.1:9007") && at("[::1]:9007") && at("127.0.0.5:9013"));
        assert!(!at("127.0.0.1:40000"));
        // Counted: a second socket on the same address keeps it own.
        own.add(&chargen);
        own.remove(&chargen);
        assert!(own.contains("127.0.0.1:9019".parse().unwrap()));
        own.remove(&chargen);
        own.remove(&any);
        assert!(!own.contains("127.0.0.1:9019".parse().unwrap()));
        assert!(!own.contains("10.0.0.1:9007".parse().unwrap()));
    }

    #[test]
    fn replies_per_source_are_budgeted_and_the_table_bounded() {
        let mut budget = ReplyBudget::default();
        let t0 = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..REPLIES_PER_SOURCE {
            assert!(budget.allow(a, t0));
        }
        assert!(
            !budget.allow(a, t0),
            "a loop is cut at the first reply held back"
        );
        assert!(
            budget.allow("10.0.0.2".parse().unwrap(), t0),
            "others are unaffected"
        );
        assert!(budget.allow(a, t0 + std::time::Duration::from_secs(1)));
        for n in 0..(REPLY_SOURCES as u32 * 2) {
            budget.allow(IpAddr::from(n.to_be_bytes()), t0);
        }
        assert!(budget.buckets.len() <= REPLY_SOURCES);
        assert_eq!(budget.buckets.len(), budget.order.len());
    }

    #[test]
    fn reflection_guard() {
        for port in [7, 13, 19, 37, 53, 1023] {
            assert!(!udp_reply_allowed(port));
        }
        assert!(udp_reply_allowed(40000));
    }
}
