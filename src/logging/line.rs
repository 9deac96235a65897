//! The pieces of spawnd's log lines, rendered one way. Every line is an
//! event name and `key=value` pairs; a value that may hold spaces, quotes
//! or anything a client or a file controls is written through `Quoted`,
//! so one line stays one line and a reader can split it. The per-connection
//! lines (`AcceptLine`, `PeerLabel`) are rendered by hand, without
//! `core::fmt`'s machinery, on the accept path (see `crate::sys::decimal`).

use std::fmt::{self, Display, Write};
use std::net::{IpAddr, SocketAddr};

use crate::daemon::childenv::Peer;
use crate::sys::decimal::{ipv4_with_port, IPV4_WITH_PORT_MAX};

/// A value in double quotes, with `"` and `\` escaped by a backslash and
/// control characters (a newline included) written as `\n`, `\r`, `\t` or
/// `\u{..}`. Nothing is allocated: the value is escaped as it is written.
pub struct Quoted<T>(pub T);

impl<T: Display> Display for Quoted<T> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_char('"')?;
        write!(Escaper(f), "{}", self.0)?;
        f.write_char('"')
    }
}

struct Escaper<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl Write for Escaper<'_, '_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut plain = 0;
        for (at, c) in text.char_indices() {
            if c != '"' && c != '\\' && !c.is_control() {
                continue;
            }
            self.0.write_str(&text[plain..at])?;
            match c {
                '"' => self.0.write_str("\\\"")?,
                '\\' => self.0.write_str("\\\\")?,
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                other => write!(self.0, "{}", other.escape_unicode())?,
            }
            plain = at + c.len_utf8();
        }
        self.0.write_str(&text[plain..])
    }
}

/// `ip:port`, or `-` when the client has no IP address.
pub struct PeerLabel<'a>(pub &'a Peer);

impl Display for PeerLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.0 {
            Peer::Inet { remote, .. } => match remote.ip().to_canonical() {
                // The common case, on every accept line: no formatting machinery.
                IpAddr::V4(ip) => {
                    let mut buffer = [0u8; IPV4_WITH_PORT_MAX];
                    f.write_str(ipv4_with_port(ip, remote.port(), &mut buffer))
                }
                ip => write!(f, "{}", SocketAddr::new(ip, remote.port())),
            },
            Peer::Unix {
                uid: Some(uid),
                pid,
                ..
            } => match pid {
                Some(pid) => write!(f, "unix:uid={uid},pid={pid}"),
                None => write!(f, "unix:uid={uid}"),
            },
            _ => f.write_str("-"),
        }
    }
}

/// `accept service=NAME peer=IP:PORT pid=PID`, the one line per connection
/// at the default level, written piece by piece: through `format_args!` its
/// six arguments cost more than the rest of the line's work.
pub struct AcceptLine<'a> {
    pub service: &'a str,
    pub peer: &'a Peer,
    pub pid: i32,
}

impl Display for AcceptLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let mut buffer = [0u8; 128];
        if let Some(line) = self.render_ipv4(&mut buffer) {
            return f.write_str(line);
        }
        f.write_str("accept service=")?;
        f.write_str(self.service)?;
        f.write_str(" peer=")?;
        Display::fmt(&PeerLabel(self.peer), f)?;
        write!(f, " pid={}", self.pid)
    }
}

impl AcceptLine<'_> {
    /// The whole line in `buffer`, when the client has an IPv4 address and
    /// the line fits: it then reaches the log as one piece.
    fn render_ipv4<'b>(&self, buffer: &'b mut [u8; 128]) -> Option<&'b str> {
        let Peer::Inet { remote, .. } = self.peer else {
            return None;
        };
        let IpAddr::V4(ip) = remote.ip().to_canonical() else {
            return None;
        };
        let pid = u32::try_from(self.pid).ok()?;
        let mut peer = [0u8; IPV4_WITH_PORT_MAX];
        let peer = ipv4_with_port(ip, remote.port(), &mut peer);
        let mut digits = itoa::Buffer::new();
        let pid = crate::sys::decimal::digits(pid, &mut digits);
        let mut at = 0;
        for piece in [
            b"accept service=".as_slice(),
            self.service.as_bytes(),
            b" peer=",
            peer.as_bytes(),
            b" pid=",
            pid,
        ] {
            buffer.get_mut(at..at + piece.len())?.copy_from_slice(piece);
            at += piece.len();
        }
        std::str::from_utf8(&buffer[..at]).ok()
    }
}

/// ` suppressed=N` after a budgeted line, when lines were left out before it.
pub struct Suppressed(pub u64);

impl Display for Suppressed {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.0 {
            0 => Ok(()),
            n => write!(f, " suppressed={n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_line_reads_as_its_format_would() {
        let long_name = "n".repeat(200);
        for remote in ["127.0.0.1:8013", "[::ffff:10.0.0.1]:9", "[2001:db8::1]:53"] {
            let peer = Peer::Inet {
                local: None,
                remote: remote.parse().unwrap(),
            };
            for service in ["echo-1", &long_name] {
                for pid in [1, 4_194_304, -1] {
                    let line = AcceptLine {
                        service,
                        peer: &peer,
                        pid,
                    };
                    assert_eq!(
                        line.to_string(),
                        format!(
                            "accept service={service} peer={} pid={pid}",
                            PeerLabel(&peer)
                        )
                    );
                }
            }
        }
        let unix = Peer::Unix {
            pid: Some(7),
            uid: Some(1000),
            gid: None,
        };
        let line = AcceptLine {
            service: "s",
            peer: &unix,
            pid: 42,
        };
        assert_eq!(
            line.to_string(),
            "accept service=s peer=unix:uid=1000,pid=7 pid=42"
        );
    }

    #[test]
    fn mapped_ipv4_peers_are_shown_as_ipv4() {
        let mapped: SocketAddr = "[::ffff:192.0.2.7]:4000".parse().unwrap();
        let peer = Peer::Inet {
            local: None,
            remote: mapped,
        };
        assert_eq!(PeerLabel(&peer).to_string(), "192.0.2.7:4000");
        let v6: SocketAddr = "[2001:db8::1]:53".parse().unwrap();
        let peer = Peer::Inet {
            local: None,
            remote: v6,
        };
        assert_eq!(PeerLabel(&peer).to_string(), "[2001:db8::1]:53");
    }

    #[test]
    fn quoted_values_stay_one_word_on_one_line() {
        assert_eq!(Quoted("plain text").to_string(), "\"plain text\"");
        assert_eq!(
            Quoted("say \"hi\"\\now").to_string(),
            "\"say \\\"hi\\\"\\\\now\""
        );
        assert_eq!(
            Quoted("two\nlines\tand\r\u{7}bell").to_string(),
            "\"two\\nlines\\tand\\r\\u{7}bell\""
        );
        assert_eq!(Quoted("é ✓").to_string(), "\"é ✓\"");
        let error = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(Quoted(&error).to_string(), format!("\"{error}\""));
    }

    #[test]
    fn suppressed_appears_only_when_lines_were_left_out() {
        assert_eq!(Suppressed(0).to_string(), "");
        assert_eq!(Suppressed(7).to_string(), " suppressed=7");
    }
}
