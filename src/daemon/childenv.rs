//! The per-connection part of a child's environment (the UCSPI variables),
//! written into a reusable buffer as NUL-terminated `NAME=value` entries so
//! the accept path does not allocate. The constant part is built once per
//! service in `spawn::ExecPlan`.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};

use crate::sys::decimal::{push_decimal, push_ipv4};

/// What is known about the two ends of a connection or datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Inet {
        local: Option<SocketAddr>,
        remote: SocketAddr,
    },
    Unix {
        pid: Option<i32>,
        uid: Option<u32>,
        gid: Option<u32>,
    },
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Starts an entry: `prefix` + `name` (`TCP` + `REMOTEIP=`); the caller
/// appends the value and the closing NUL.
fn push_name(out: &mut Vec<u8>, prefix: &[u8], name: &[u8]) {
    out.extend_from_slice(prefix);
    out.extend_from_slice(name);
}

/// `{prefix}{end}IP=...` and `{prefix}{end}PORT=...`, each NUL-terminated.
fn push_end(out: &mut Vec<u8>, prefix: &[u8], end: &[u8], addr: SocketAddr) {
    push_name(out, prefix, end);
    out.extend_from_slice(b"IP=");
    push_ip(out, addr.ip());
    out.push(0);
    push_name(out, prefix, end);
    out.extend_from_slice(b"PORT=");
    push_decimal(out, u32::from(addr.port()));
    out.push(0);
}

/// The address as `Display` writes it; IPv4, the common case, without
/// `core::fmt` (see `crate::sys::decimal`).
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(ip) => push_ipv4(out, ip),
        IpAddr::V6(ip) => {
            let _ = write!(out, "{ip}");
        }
    }
}

/// Appends the UCSPI variables for `peer` to `out` (which is cleared first).
pub fn write_connection_env(out: &mut Vec<u8>, transport: Transport, peer: &Peer) {
    out.clear();
    match *peer {
        Peer::Inet { local, remote } => {
            let remote = canonical(remote);
            let v6 = matches!(remote.ip(), IpAddr::V6(_));
            let (proto, prefix): (&[u8], &[u8]) = match (transport, v6) {
                (Transport::Tcp, false) => (b"TCP", b"TCP"),
                (Transport::Tcp, true) => (b"TCP6", b"TCP"),
                (Transport::Udp, false) => (b"UDP", b"UDP"),
                (Transport::Udp, true) => (b"UDP6", b"UDP"),
            };
            push_name(out, b"PROTO=", proto);
            out.push(0);
            push_end(out, prefix, b"REMOTE", remote);
            if let Some(local) = local.map(canonical) {
                push_end(out, prefix, b"LOCAL", local);
            }
            out.extend_from_slice(b"REMOTE_ADDR=");
            push_ip(out, remote.ip());
            out.push(0);
        }
        Peer::Unix { pid, uid, gid } => {
            out.extend_from_slice(b"PROTO=UNIX\0");
            if let Some(pid) = pid {
                let _ = write!(out, "UNIXREMOTEPID={pid}\0");
            }
            if let Some(uid) = uid {
                let _ = write!(out, "UNIXREMOTEEUID={uid}\0");
            }
            if let Some(gid) = gid {
                let _ = write!(out, "UNIXREMOTEEGID={gid}\0");
            }
        }
        Peer::Unknown => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(buffer: &[u8]) -> Vec<String> {
        buffer
            .split(|b| *b == 0)
            .filter(|e| !e.is_empty())
            .map(|e| String::from_utf8_lossy(e).into_owned())
            .collect()
    }

    #[test]
    fn tcp_v4() {
        let mut out = Vec::new();
        let peer = Peer::Inet {
            local: Some("127.0.0.1:8013".parse().unwrap()),
            remote: "127.0.0.2:50312".parse().unwrap(),
        };
        write_connection_env(&mut out, Transport::Tcp, &peer);
        assert_eq!(
            entries(&out),
            [
                "PROTO=TCP",
                "TCPREMOTEIP=127.0.0.2",
                "TCPREMOTEPORT=50312",
                "TCPLOCALIP=127.0.0.1",
                "TCPLOCALPORT=8013",
                "REMOTE_ADDR=127.0.0.2"
            ]
        );
        assert_eq!(out.last(), Some(&0));
    }

    #[test]
    fn v4_mapped_is_reported_as_ipv4() {
        let mut out = Vec::new();
        let peer = Peer::Inet {
            local: Some("[::ffff:127.0.0.1]:80".parse().unwrap()),
            remote: "[::ffff:10.0.0.1]:4000".parse().unwrap(),
        };
        write_connection_env(&mut out, Transport::Tcp, &peer);
        let env = entries(&out);
        assert!(env.contains(&"PROTO=TCP".to_string()));
        assert!(env.contains(&"TCPREMOTEIP=10.0.0.1".to_string()));
        assert!(env.contains(&"TCPLOCALIP=127.0.0.1".to_string()));
    }

    #[test]
    fn udp_v6_and_unix_and_reuse() {
        let mut out = Vec::new();
        let peer = Peer::Inet {
            local: None,
            remote: "[::1]:69".parse().unwrap(),
        };
        write_connection_env(&mut out, Transport::Udp, &peer);
        assert_eq!(
            entries(&out),
            [
                "PROTO=UDP6",
                "UDPREMOTEIP=::1",
                "UDPREMOTEPORT=69",
                "REMOTE_ADDR=::1"
            ]
        );
        write_connection_env(
            &mut out,
            Transport::Tcp,
            &Peer::Unix {
                pid: Some(7),
                uid: Some(1000),
                gid: None,
            },
        );
        assert_eq!(
            entries(&out),
            ["PROTO=UNIX", "UNIXREMOTEPID=7", "UNIXREMOTEEUID=1000"]
        );
        write_connection_env(&mut out, Transport::Tcp, &Peer::Unknown);
        assert!(out.is_empty());
    }
}
