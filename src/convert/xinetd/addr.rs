//! xinetd's host specifications (`only_from`, `no_access`) to the CIDR
//! blocks spawnd's `access:` takes.
//!
//! xinetd accepts, besides `a.b.c.d` and `net/len`:
//! - trailing zero octets as wildcards: `128.138.12.0` is 128.138.12.0/24,
//!   `10.0.0.0` is 10.0.0.0/8 and `0.0.0.0` is everyone;
//! - fewer octets: `10.0.0.` (or `10.0.0`) is 10.0.0.0/24;
//! - factored octets at the end: `192.168.{1,2,3}` is three /24 networks,
//!   `10.0.0.{1,2}` two hosts;
//! - host, domain (`.example.com`) and network names, matched by a lookup at
//!   connection time; spawnd matches addresses only, so those are reported
//!   and kept as comments (`localhost` alone is translated).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::convert::model::Noted;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostSpec {
    /// CIDR blocks or addresses, in spawnd's syntax.
    Nets(Vec<Noted<String>>),
    /// A name spawnd cannot match.
    Name(String),
}

pub fn parse(token: &str) -> Result<HostSpec, String> {
    if token == "localhost" {
        return Ok(HostSpec::Nets(vec![
            Noted::with("127.0.0.1".to_string(), "xinetd: localhost"),
            Noted::with("::1".to_string(), "xinetd: localhost"),
        ]));
    }
    if token.contains('{') {
        return factored(token).map(HostSpec::Nets);
    }
    if let Some((addr, len)) = token.split_once('/') {
        return with_prefix(token, addr, len).map(|net| HostSpec::Nets(vec![net]));
    }
    if let Ok(v6) = token.parse::<Ipv6Addr>() {
        return Ok(HostSpec::Nets(vec![Noted::plain(v6.to_string())]));
    }
    if token.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return dotted(token);
    }
    if token
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Ok(HostSpec::Name(token.to_string()));
    }
    Err(format!("'{token}' is not an address, network or host name"))
}

/// `a.b.c.d`, `a.b.c.0`, `a.b.c.`, `a.b`.
fn dotted(token: &str) -> Result<HostSpec, String> {
    let bad = || format!("'{token}' is not an IPv4 address");
    let body = token.strip_suffix('.').unwrap_or(token);
    let octets = octets(body).ok_or_else(bad)?;
    if octets.is_empty() || octets.len() > 4 || (octets.len() == 4 && body != token) {
        return Err(bad());
    }
    let note = format!("xinetd: {token}");
    if octets.len() < 4 {
        return Ok(HostSpec::Nets(vec![Noted::with(network(&octets), note)]));
    }
    let zeros = octets.iter().rev().take_while(|o| **o == 0).count();
    Ok(HostSpec::Nets(match zeros {
        0 => vec![Noted::plain(token.to_string())],
        4 => vec![
            Noted::with("0.0.0.0/0".to_string(), "xinetd: 0.0.0.0 (every address)"),
            Noted::with("::/0".to_string(), "xinetd: 0.0.0.0 (every address)"),
        ],
        _ => vec![Noted::with(network(&octets[..4 - zeros]), note)],
    }))
}

/// `192.168.{1,2,3}`: the braces must be last and hold single octets.
fn factored(token: &str) -> Result<Vec<Noted<String>>, String> {
    let bad = || format!("'{token}' is not a factored address like 192.168.{{1,2,3}}");
    let (head, rest) = token.split_once('{').ok_or_else(bad)?;
    let list = rest.strip_suffix('}').ok_or_else(bad)?;
    let head = head.strip_suffix('.').ok_or_else(bad)?;
    let prefix = octets(head).ok_or_else(bad)?;
    if prefix.is_empty() || prefix.len() > 3 {
        return Err(bad());
    }
    let mut nets = Vec::new();
    for item in list.split(',') {
        let octet: u8 = item.trim().parse().map_err(|_| bad())?;
        let mut all = prefix.clone();
        all.push(octet);
        let text = if all.len() == 4 {
            all.iter().map(u8::to_string).collect::<Vec<_>>().join(".")
        } else {
            network(&all)
        };
        nets.push(Noted::with(text, format!("xinetd: {token}")));
    }
    Ok(nets)
}

/// `net/len` or `net/255.255.0.0`, with host bits cleared.
fn with_prefix(token: &str, addr: &str, len: &str) -> Result<Noted<String>, String> {
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("'{token}': '{addr}' is not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match len.parse::<u8>() {
        Ok(n) if n <= max => n,
        _ => match (addr, len.parse::<Ipv4Addr>()) {
            (IpAddr::V4(_), Ok(mask)) => mask_length(mask)
                .ok_or_else(|| format!("'{token}': '{len}' is not a contiguous netmask"))?,
            _ => return Err(format!("'{token}': '{len}' is not a prefix length")),
        },
    };
    let cidr = Cidr { addr, prefix }.network();
    let text = format!("{}/{}", cidr.addr, cidr.prefix);
    Ok(if text == token {
        Noted::plain(text)
    } else {
        Noted::with(text, format!("xinetd: {token}"))
    })
}

fn octets(text: &str) -> Option<Vec<u8>> {
    text.split('.')
        .map(|part| part.parse::<u8>().ok())
        .collect()
}

/// The network whose leading octets are `octets`: `[10, 0, 0]` is 10.0.0.0/24.
fn network(octets: &[u8]) -> String {
    let mut full = [0u8; 4];
    for (slot, octet) in full.iter_mut().zip(octets) {
        *slot = *octet;
    }
    format!("{}/{}", Ipv4Addr::from(full), octets.len() * 8)
}

fn mask_length(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

/// An address block, for comparing allow and deny lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr.parse().ok()?, prefix.parse().ok()?),
            None => {
                let addr: IpAddr = text.parse().ok()?;
                (addr, if addr.is_ipv4() { 32 } else { 128 })
            }
        };
        Some(Cidr { addr, prefix })
    }

    fn bits(&self) -> (u128, u32) {
        match self.addr {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        }
    }

    fn mask(&self) -> u128 {
        let (_, width) = self.bits();
        let prefix = u32::from(self.prefix).min(width);
        let all = if width == 32 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        };
        all & !(all.checked_shr(prefix).unwrap_or(0))
    }

    pub fn network(&self) -> Cidr {
        let (bits, _) = self.bits();
        let net = bits & self.mask();
        let addr = match self.addr {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(net as u32)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(net)),
        };
        Cidr {
            addr,
            prefix: self.prefix,
        }
    }

    /// Whether every address of `other` is in `self`.
    pub fn contains(&self, other: &Cidr) -> bool {
        self.addr.is_ipv4() == other.addr.is_ipv4()
            && other.prefix >= self.prefix
            && (other.bits().0 & self.mask()) == (self.bits().0 & self.mask())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(token: &str) -> Vec<String> {
        match parse(token) {
            Ok(HostSpec::Nets(nets)) => nets.into_iter().map(|n| n.value).collect(),
            other => panic!("{token}: {other:?}"),
        }
    }

    #[test]
    fn xinetd_forms() {
        assert_eq!(nets("10.1.2.3"), ["10.1.2.3"]);
        assert_eq!(nets("128.138.12.0"), ["128.138.12.0/24"]);
        assert_eq!(nets("10.0.0.0"), ["10.0.0.0/8"]);
        assert_eq!(nets("0.0.0.0"), ["0.0.0.0/0", "::/0"]);
        assert_eq!(nets("10.0.0."), ["10.0.0.0/24"]);
        assert_eq!(nets("172.16"), ["172.16.0.0/16"]);
        assert_eq!(
            nets("192.168.{1,2,3}"),
            ["192.168.1.0/24", "192.168.2.0/24", "192.168.3.0/24"]
        );
        assert_eq!(nets("10.0.0.{1,20}"), ["10.0.0.1", "10.0.0.20"]);
        assert_eq!(nets("10.1.2.3/8"), ["10.0.0.0/8"]);
        assert_eq!(nets("10.1.0.0/255.255.0.0"), ["10.1.0.0/16"]);
        assert_eq!(nets("2001:db8::/32"), ["2001:db8::/32"]);
        assert_eq!(nets("::1"), ["::1"]);
        assert_eq!(nets("localhost"), ["127.0.0.1", "::1"]);
    }

    #[test]
    fn names_and_garbage() {
        assert_eq!(
            parse("nagios.example.com"),
            Ok(HostSpec::Name("nagios.example.com".into()))
        );
        assert_eq!(
            parse(".example.com"),
            Ok(HostSpec::Name(".example.com".into()))
        );
        for bad in [
            "300.1.2.3",
            "1.2.3.4.",
            "1.2.3.4.5",
            "10.{1,2}.0",
            "1.2/40",
            "a/8",
            "x!y",
            "1.2.3.{a}",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn containment() {
        let net = Cidr::parse("10.0.0.0/8").unwrap_or_else(|| panic!());
        let host = Cidr::parse("10.1.2.3").unwrap_or_else(|| panic!());
        assert!(net.contains(&host));
        assert!(!host.contains(&net));
        assert!(net.contains(&net));
        let v6 = Cidr::parse("::/0").unwrap_or_else(|| panic!());
        assert!(!v6.contains(&host));
        assert!(Cidr::parse("0.0.0.0/0").is_some_and(|all| all.contains(&host)));
    }
}
