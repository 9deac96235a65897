//! Decimal digits (on itoa) and IPv4 addresses without `core::fmt` and
//! without allocating: for the per-connection log line and environment, and for the
//! child between clone and exec, where only async-signal-safe work is
//! allowed. `core::fmt` walks a format description and pads every argument;
//! on the accept path that was a tenth of spawnd's own user time. Fields are
//! built in small fixed arrays and copied whole, so that no copy of a few
//! bytes becomes a call to `memcpy`.

use std::net::Ipv4Addr;

/// The decimal digits of `value`, written into `buffer` (itoa: no
/// allocation, no `core::fmt`; safe between clone and exec).
pub fn digits(value: u32, buffer: &mut itoa::Buffer) -> &[u8] {
    buffer.format(value).as_bytes()
}

/// Writes `value` at the start of `field`; returns how many digits.
fn put_decimal(field: &mut [u8], value: u32) -> usize {
    let mut buffer = itoa::Buffer::new();
    let digits = buffer.format(value).as_bytes();
    field[..digits.len()].copy_from_slice(digits);
    digits.len()
}

/// Appends the first `len` bytes of `field` to `out`, copying the whole
/// array (a fixed-size copy) and cutting it back.
fn push_prefix<const N: usize>(out: &mut Vec<u8>, field: &[u8; N], len: usize) {
    let start = out.len();
    out.extend_from_slice(field);
    out.truncate(start + len);
}

/// Appends the decimal digits of `value` to `out`.
pub fn push_decimal(out: &mut Vec<u8>, value: u32) {
    let mut field = [0u8; 10];
    let len = put_decimal(&mut field, value);
    push_prefix(out, &field, len);
}

/// The longest dotted quad with a port: `255.255.255.255:65535`.
pub const IPV4_WITH_PORT_MAX: usize = 21;

/// `a.b.c.d` written into the start of `buffer`; returns its length.
fn put_ipv4(ip: Ipv4Addr, buffer: &mut [u8; IPV4_WITH_PORT_MAX]) -> usize {
    let mut at = 0;
    for (index, octet) in ip.octets().into_iter().enumerate() {
        if index > 0 {
            buffer[at] = b'.';
            at += 1;
        }
        at += put_decimal(&mut buffer[at..], u32::from(octet));
    }
    at
}

/// Appends `a.b.c.d` to `out`.
pub fn push_ipv4(out: &mut Vec<u8>, ip: Ipv4Addr) {
    let mut buffer = [0u8; IPV4_WITH_PORT_MAX];
    let len = put_ipv4(ip, &mut buffer);
    push_prefix(out, &buffer, len);
}

/// `a.b.c.d:port` written into `buffer`.
pub fn ipv4_with_port(ip: Ipv4Addr, port: u16, buffer: &mut [u8; IPV4_WITH_PORT_MAX]) -> &str {
    let mut at = put_ipv4(ip, buffer);
    buffer[at] = b':';
    at += 1;
    at += put_decimal(&mut buffer[at..], u32::from(port));
    // Only ASCII digits, dots and a colon were written.
    std::str::from_utf8(&buffer[..at]).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_match_std() {
        for value in [
            0,
            7,
            9,
            10,
            99,
            100,
            65_535,
            4_194_304,
            999_999_999,
            u32::MAX,
        ] {
            let mut buffer = itoa::Buffer::new();
            assert_eq!(digits(value, &mut buffer), value.to_string().as_bytes());
            let mut out = b"x=".to_vec();
            push_decimal(&mut out, value);
            assert_eq!(out, format!("x={value}").into_bytes());
        }
    }

    #[test]
    fn ipv4_matches_std() {
        for ip in ["0.0.0.0", "127.0.0.1", "10.20.3.255", "255.255.255.255"] {
            let ip: Ipv4Addr = ip.parse().unwrap();
            let mut out = b"ip=".to_vec();
            push_ipv4(&mut out, ip);
            assert_eq!(out, format!("ip={ip}").into_bytes());
            for port in [0u16, 80, 65_535] {
                let mut buffer = [0u8; IPV4_WITH_PORT_MAX];
                assert_eq!(
                    ipv4_with_port(ip, port, &mut buffer),
                    format!("{ip}:{port}")
                );
            }
        }
    }
}
