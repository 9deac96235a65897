//! The per-connection part of a child's environment (the UCSPI variables),
//! written into a reusable buffer as NUL-terminated `NAME=value` entries so
//! the accept path does not allocate. The constant part is built once per
//! service in `spawn::ExecPlan`.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};

use crate::config::units::canonical_ip;

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
    SocketAddr::new(canonical_ip(addr.ip()), addr.port())
}

/// Appends the UCSPI variables for `peer` to `out` (which is cleared first).
pub fn write_connection_env(out: &mut Vec<u8>, transport: Transport, peer: &Peer) {
    out.clear();
    match *peer {
        Peer::Inet { local, remote } => {
            let remote = canonical(remote);
            let v6 = matches!(remote.ip(), IpAddr::V6(_));
            let (proto, prefix) = match (transport, v6) {
                (Transport::Tcp, false) => ("TCP", "TCP"),
                (Transport::Tcp, true) => ("TCP6", "TCP"),
                (Transport::Udp, false) => ("UDP", "UDP"),
                (Transport::Udp, true) => ("UDP6", "UDP"),
            };
            let _ = write!(out, "PROTO={proto}\0");
            let _ = write!(
                out,
                "{prefix}REMOTEIP={}\0{prefix}REMOTEPORT={}\0",
                remote.ip(),
                remote.port()
            );
            if let Some(local) = local.map(canonical) {
                let _ = write!(
                    out,
                    "{prefix}LOCALIP={}\0{prefix}LOCALPORT={}\0",
                    local.ip(),
                    local.port()
                );
            }
            let _ = write!(out, "REMOTE_ADDR={}\0", remote.ip());
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
