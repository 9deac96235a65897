//! Values with units that appear in service files: durations, sizes, rates,
//! listen addresses and CIDR prefixes. Parsing is pure and each type also
//! deserializes itself, so serde_yaml reports a bad value at its exact line
//! and column.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A scalar given as a YAML string or number, handed to `FromStr`.
fn deserialize_scalar<'de, D, T>(deserializer: D, expecting: &'static str) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = String>,
{
    struct ScalarVisitor<T>(&'static str, std::marker::PhantomData<T>);
    impl<T: FromStr<Err = String>> Visitor<'_> for ScalarVisitor<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            v.parse().map_err(E::custom)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
            self.visit_str(&v.to_string())
        }
    }
    deserializer.deserialize_any(ScalarVisitor(expecting, std::marker::PhantomData))
}

macro_rules! scalar_deserialize {
    ($type:ty, $expecting:literal) => {
        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserialize_scalar(deserializer, $expecting)
            }
        }
    };
}

/// A limit, or `unlimited`: a service says `instances: unlimited` to lift a
/// limit that `spawnd.yaml`'s defaults set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OrUnlimited<T> {
    Unlimited,
    Value(T),
}

impl<T> OrUnlimited<T> {
    /// The limit, `None` for unlimited.
    pub fn value(self) -> Option<T> {
        match self {
            OrUnlimited::Unlimited => None,
            OrUnlimited::Value(value) => Some(value),
        }
    }
}

impl<T: FromStr> FromStr for OrUnlimited<T>
where
    T::Err: fmt::Display,
{
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if text.trim() == "unlimited" {
            return Ok(OrUnlimited::Unlimited);
        }
        text.trim()
            .parse()
            .map(OrUnlimited::Value)
            .map_err(|e: T::Err| {
                // A message that already shows the value (rates) is kept.
                let message = e.to_string();
                let value = format!("{:?}", text.trim());
                if message.contains(&value) {
                    format!("{message} (or unlimited)")
                } else {
                    format!("invalid value {value}: {message} (or unlimited)")
                }
            })
    }
}

impl<'de, T: FromStr> Deserialize<'de> for OrUnlimited<T>
where
    T::Err: fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_scalar(deserializer, "a limit, or unlimited")
    }
}

/// Splits `"10ms"` into `(10.0, "ms")`; the number may have a fraction.
fn split_number(text: &str) -> Option<(f64, &str)> {
    let text = text.trim();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let number: f64 = text[..end].parse().ok()?;
    Some((number, text[end..].trim()))
}

/// A duration: `500ms`, `10s`, `5m`, `2h`; a bare number is seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub Duration);

impl FromStr for Span {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let invalid = || format!("invalid duration {text:?} (expected e.g. 500ms, 10s, 5m, 2h)");
        let (number, unit) = split_number(text).ok_or_else(invalid)?;
        let scale = match unit {
            "ms" => 0.001,
            "" | "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            _ => return Err(invalid()),
        };
        let seconds = number * scale;
        if !seconds.is_finite() || seconds > 10.0 * 365.0 * 86_400.0 {
            return Err(format!("duration {text:?} is too long"));
        }
        Ok(Span(Duration::from_secs_f64(seconds)))
    }
}
scalar_deserialize!(Span, "a duration such as 10s or 5m");

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms % 1000 != 0 {
            write!(f, "{ms}ms")
        } else if ms % 3_600_000 == 0 && ms > 0 {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms % 60_000 == 0 && ms > 0 {
            write!(f, "{}m", ms / 60_000)
        } else {
            write!(f, "{}s", ms / 1000)
        }
    }
}

/// A resource limit value: a number with an optional unit, or `unlimited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Value(u64),
    Unlimited,
}

impl Limit {
    pub fn as_rlim(self) -> u64 {
        match self {
            Limit::Value(v) => v,
            Limit::Unlimited => u64::MAX,
        }
    }
}

/// A size in bytes: `64K`, `256M`, `1G` (powers of 1024), or `unlimited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub Limit);

impl FromStr for Size {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if text.trim().eq_ignore_ascii_case("unlimited") {
            return Ok(Size(Limit::Unlimited));
        }
        let invalid =
            || format!("invalid size {text:?} (expected e.g. 4096, 64K, 256M, 1G or unlimited)");
        let (number, unit) = split_number(text).ok_or_else(invalid)?;
        let scale: u64 = match unit {
            "" | "B" => 1,
            "K" | "k" | "KB" | "KiB" => 1 << 10,
            "M" | "MB" | "MiB" => 1 << 20,
            "G" | "GB" | "GiB" => 1 << 30,
            "T" | "TB" | "TiB" => 1 << 40,
            _ => return Err(invalid()),
        };
        let bytes = number * scale as f64;
        if !bytes.is_finite() || bytes >= u64::MAX as f64 || bytes.fract() != 0.0 {
            return Err(invalid());
        }
        Ok(Size(Limit::Value(bytes as u64)))
    }
}
scalar_deserialize!(Size, "a size such as 64M");

/// A plain count for a resource limit (`files: 1024`) or `unlimited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count(pub Limit);

impl FromStr for Count {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("unlimited") {
            return Ok(Count(Limit::Unlimited));
        }
        text.parse::<u64>()
            .map(|v| Count(Limit::Value(v)))
            .map_err(|_| format!("invalid count {text:?} (expected a whole number or unlimited)"))
    }
}
scalar_deserialize!(Count, "a whole number or unlimited");

/// CPU time: a duration rounded up to whole seconds, or `unlimited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTime(pub Limit);

impl FromStr for CpuTime {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if text.trim().eq_ignore_ascii_case("unlimited") {
            return Ok(CpuTime(Limit::Unlimited));
        }
        let span: Span = text.parse()?;
        Ok(CpuTime(Limit::Value(span.0.as_secs_f64().ceil() as u64)))
    }
}
scalar_deserialize!(CpuTime, "a duration such as 10s, or unlimited");

/// `N/s`, `N/m`, `N/h`: N tokens refilled per period, burst N.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let invalid = || format!("invalid rate {text:?} (expected e.g. 50/s, 10/m, 100/h)");
        let (count, period) = text.trim().split_once('/').ok_or_else(invalid)?;
        let count: u32 = count.trim().parse().map_err(|_| invalid())?;
        let per = match period.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => other.parse::<Span>().map_err(|_| invalid())?.0,
        };
        if count == 0 || per.is_zero() {
            return Err(format!(
                "rate {text:?} must allow at least one connection per non-zero period"
            ));
        }
        Ok(Rate { count, per })
    }
}
scalar_deserialize!(Rate, "a rate such as 50/s");

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.per.as_secs() {
            1 => write!(f, "{}/s", self.count),
            60 => write!(f, "{}/m", self.count),
            3600 => write!(f, "{}/h", self.count),
            _ => write!(f, "{}/{}", self.count, Span(self.per)),
        }
    }
}

/// Where a service listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ListenAddr {
    /// One explicit IPv4 or IPv6 address (IPv6 sockets are v6-only).
    Inet(SocketAddr),
    /// `*:PORT`: every address, IPv4 and IPv6.
    AnyInet(u16),
    /// A Unix socket file. `./NAME` in a file is relative to the
    /// configuration directory (made absolute by `validate`).
    Unix(PathBuf),
    /// `@name`: a Linux abstract Unix socket.
    Abstract(String),
}

impl FromStr for ListenAddr {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let invalid = |why: &str| {
            format!(
                "invalid listen address {text:?}: {why} (expected 127.0.0.1:PORT, \"[::1]:PORT\", \"*:PORT\", /path, ./path or @name)"
            )
        };
        if text.starts_with('/') || text.starts_with("./") {
            if text.len() > 107 {
                return Err(invalid("a Unix socket path is at most 107 bytes"));
            }
            return Ok(ListenAddr::Unix(PathBuf::from(text)));
        }
        if let Some(name) = text.strip_prefix('@') {
            if name.is_empty() || name.len() > 106 {
                return Err(invalid("an abstract name is 1 to 106 bytes"));
            }
            return Ok(ListenAddr::Abstract(name.to_string()));
        }
        let parse_port = |port: &str| -> Result<u16, String> {
            match port.parse::<u16>() {
                Ok(0) => Err(invalid("port 0 is not allowed")),
                Ok(port) => Ok(port),
                Err(_) => Err(invalid("the port must be 1 to 65535")),
            }
        };
        if let Ok(port) = text.parse::<u32>() {
            return Ok(ListenAddr::AnyInet(parse_port(&port.to_string())?));
        }
        if let Some(port) = text.strip_prefix("*:").or_else(|| text.strip_prefix(':')) {
            return Ok(ListenAddr::AnyInet(parse_port(port)?));
        }
        let (host, port) = text.rsplit_once(':').ok_or_else(|| invalid("no port"))?;
        let port = parse_port(port)?;
        let ip: IpAddr = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'))
        {
            IpAddr::V6(
                v6.parse::<Ipv6Addr>()
                    .map_err(|_| invalid("bad IPv6 address"))?,
            )
        } else {
            IpAddr::V4(host.parse::<Ipv4Addr>().map_err(|_| {
                invalid("bad IPv4 address (host names are not resolved; put IPv6 in brackets)")
            })?)
        };
        Ok(ListenAddr::Inet(SocketAddr::new(ip, port)))
    }
}
scalar_deserialize!(ListenAddr, "a listen address such as 127.0.0.1:8013");

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            ListenAddr::Inet(addr) => write!(f, "{addr}"),
            ListenAddr::AnyInet(port) => write!(f, "*:{port}"),
            ListenAddr::Unix(path) => write!(f, "{}", path.display()),
            ListenAddr::Abstract(name) => write!(f, "@{name}"),
        }
    }
}

impl ListenAddr {
    /// Two addresses that cannot both be bound for the same protocol.
    pub fn overlaps(&self, other: &ListenAddr) -> bool {
        match (self, other) {
            (ListenAddr::AnyInet(a), ListenAddr::AnyInet(b)) => a == b,
            (ListenAddr::AnyInet(port), ListenAddr::Inet(addr))
            | (ListenAddr::Inet(addr), ListenAddr::AnyInet(port)) => addr.port() == *port,
            (ListenAddr::Inet(a), ListenAddr::Inet(b)) => {
                a.port() == b.port()
                    && (a.ip() == b.ip()
                        || (a.is_ipv4() == b.is_ipv4()
                            && (a.ip().is_unspecified() || b.ip().is_unspecified())))
            }
            (a, b) => a == b,
        }
    }
}

/// An address prefix: `10.0.0.0/8`, `::1/128`, or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let invalid =
            || format!("invalid address or CIDR prefix {text:?} (expected e.g. 10.0.0.0/8 or ::1)");
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr = addr.trim_start_matches('[').trim_end_matches(']');
        let addr = addr
            .parse::<IpAddr>()
            .map_err(|_| invalid())?
            .to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => {
                let p: u8 = p.parse().map_err(|_| invalid())?;
                // A v4-mapped prefix (::ffff:10.0.0.0/104) becomes its IPv4 form.
                let p = if addr.is_ipv4() && text.contains(':') {
                    p.checked_sub(96).ok_or_else(invalid)?
                } else {
                    p
                };
                if p > max {
                    return Err(invalid());
                }
                p
            }
        };
        Ok(Cidr { addr, prefix })
    }
}
scalar_deserialize!(Cidr, "an address or CIDR prefix");

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_match(u32::from(net).into(), u32::from(ip).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_match(u128::from(net), u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn prefix_match(net: u128, ip: u128, prefix: u8, bits: u32) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = bits - u32::from(prefix);
    (net >> shift) == (ip >> shift)
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!("10s".parse::<Span>().unwrap().0, Duration::from_secs(10));
        assert_eq!("5m".parse::<Span>().unwrap().0, Duration::from_secs(300));
        assert_eq!(
            "250ms".parse::<Span>().unwrap().0,
            Duration::from_millis(250)
        );
        assert_eq!("7".parse::<Span>().unwrap().0, Duration::from_secs(7));
        assert_eq!(
            "1.5s".parse::<Span>().unwrap().0,
            Duration::from_millis(1500)
        );
        for bad in ["", "5x", "s", "-1s", "1e99h", "ten"] {
            assert!(bad.parse::<Span>().is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(Span(Duration::from_secs(300)).to_string(), "5m");
        assert_eq!(Span(Duration::from_millis(1500)).to_string(), "1500ms");
    }

    #[test]
    fn sizes_and_counts() {
        assert_eq!("64K".parse::<Size>().unwrap(), Size(Limit::Value(65_536)));
        assert_eq!(
            "256M".parse::<Size>().unwrap(),
            Size(Limit::Value(256 << 20))
        );
        assert_eq!("1G".parse::<Size>().unwrap(), Size(Limit::Value(1 << 30)));
        assert_eq!("100".parse::<Size>().unwrap(), Size(Limit::Value(100)));
        assert_eq!("unlimited".parse::<Size>().unwrap(), Size(Limit::Unlimited));
        assert!("12Q".parse::<Size>().is_err());
        assert!("0.5".parse::<Size>().is_err());
        assert_eq!("1024".parse::<Count>().unwrap(), Count(Limit::Value(1024)));
        assert!("-3".parse::<Count>().is_err());
        assert_eq!(
            "1500ms".parse::<CpuTime>().unwrap(),
            CpuTime(Limit::Value(2))
        );
    }

    #[test]
    fn rates() {
        let rate: Rate = "50/s".parse().unwrap();
        assert_eq!((rate.count, rate.per), (50, Duration::from_secs(1)));
        assert_eq!("10/m".parse::<Rate>().unwrap().per, Duration::from_secs(60));
        assert_eq!(
            "3/10s".parse::<Rate>().unwrap().per,
            Duration::from_secs(10)
        );
        for bad in ["50", "0/s", "x/s", "5/fortnight", "5/0s"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            "127.0.0.1:13".parse::<ListenAddr>().unwrap(),
            ListenAddr::Inet("127.0.0.1:13".parse().unwrap())
        );
        assert_eq!(
            "[::1]:13".parse::<ListenAddr>().unwrap(),
            ListenAddr::Inet("[::1]:13".parse().unwrap())
        );
        assert_eq!(
            "*:13".parse::<ListenAddr>().unwrap(),
            ListenAddr::AnyInet(13)
        );
        assert_eq!("13".parse::<ListenAddr>().unwrap(), ListenAddr::AnyInet(13));
        assert_eq!(
            "/run/x.sock".parse::<ListenAddr>().unwrap(),
            ListenAddr::Unix("/run/x.sock".into())
        );
        assert_eq!(
            "@x".parse::<ListenAddr>().unwrap(),
            ListenAddr::Abstract("x".into())
        );
        for bad in [
            "localhost:13",
            "127.0.0.1",
            "127.0.0.1:0",
            "127.0.0.1:70000",
            "::1:13",
            "@",
            "relative/path",
            "[::1:13",
        ] {
            assert!(
                bad.parse::<ListenAddr>().is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn overlapping_addresses() {
        let addr = |s: &str| s.parse::<ListenAddr>().unwrap();
        assert!(addr("*:13").overlaps(&addr("127.0.0.1:13")));
        assert!(addr("0.0.0.0:13").overlaps(&addr("127.0.0.1:13")));
        assert!(!addr("0.0.0.0:13").overlaps(&addr("[::1]:13")));
        assert!(!addr("127.0.0.1:13").overlaps(&addr("127.0.0.2:13")));
        assert!(!addr("127.0.0.1:13").overlaps(&addr("127.0.0.1:14")));
        assert!(addr("/a").overlaps(&addr("/a")));
    }

    #[test]
    fn cidr_matching() {
        let net: Cidr = "10.1.2.0/24".parse().unwrap();
        assert!(net.contains("10.1.2.77".parse().unwrap()));
        assert!(!net.contains("10.1.3.1".parse().unwrap()));
        assert!(
            net.contains("::ffff:10.1.2.3".parse().unwrap()),
            "v4-mapped peers match as IPv4"
        );
        let single: Cidr = "::1".parse().unwrap();
        assert!(single.contains("::1".parse().unwrap()));
        assert!(!single.contains("::2".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        assert!(!all.contains("::1".parse().unwrap()));
        let mapped: Cidr = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(mapped, "10.0.0.0/8".parse().unwrap());
        for bad in ["10.0.0.0/33", "::/129", "host.example", "10.0.0.0/x"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?} should be rejected");
        }
    }
}
