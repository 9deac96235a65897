//! The datagram sinks' socket: syslog's `/dev/log` or the journal's
//! native socket, unbound and non-blocking (a full queue drops the line),
//! above the descriptor slots.

use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

use log::Level;

use super::Fields;

/// The identifier (syslog tag) of every message.
pub(super) const IDENTIFIER: &str = "spawnd";

/// syslog facility `daemon` (3), shifted as it appears in `<PRI>`.
pub(super) const FACILITY_DAEMON: u8 = 3;

/// Longest message text sent in one datagram, in bytes. rsyslog's default
/// maximum message size is 8 KiB; spawnd's own lines are far shorter and
/// relayed child output is already split into shorter lines.
pub(super) const MAX_MESSAGE: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    Syslog,
    Journal,
}

#[derive(Debug)]
pub(super) struct Datagram {
    pub(super) protocol: Protocol,
    pub(super) socket: UnixDatagram,
    pub(super) path: PathBuf,
}

pub(super) fn open(protocol: Protocol) -> Result<Datagram, String> {
    let (default, variable) = match protocol {
        Protocol::Syslog => (SYSLOG_SOCKET, SYSLOG_SOCKET_ENV),
        Protocol::Journal => (JOURNAL_SOCKET, JOURNAL_SOCKET_ENV),
    };
    let path = std::env::var_os(variable)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    match std::fs::metadata(&path) {
        Ok(meta) if meta.file_type().is_socket() => {}
        Ok(_) => return Err(format!("{} is not a socket", path.display())),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    }
    // Created with SOCK_CLOEXEC by std; unbound and unconnected, so each
    // send looks the path up again and a restarted log daemon is found.
    let socket = UnixDatagram::unbound().map_err(|e| format!("socket: {e}"))?;
    let socket = out_of_the_way(socket).map_err(|e| format!("socket: {e}"))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| format!("socket: {e}"))?;
    Ok(Datagram {
        protocol,
        socket,
        path,
    })
}

/// Moves `socket` above the low descriptor slots (close-on-exec): the
/// server claims them for its children with dup3, which would silently
/// replace a log socket opened before it.
pub(super) fn out_of_the_way(socket: UnixDatagram) -> std::io::Result<UnixDatagram> {
    crate::daemon::slots::above(socket.into()).map(UnixDatagram::from)
}

impl Datagram {
    /// One non-blocking send; false if the line was dropped.
    pub(super) fn send(&self, level: Level, message: &str, pid: u32, fields: &Fields) -> bool {
        let packet = match self.protocol {
            Protocol::Syslog => super::syslog::packet(level, message, pid),
            Protocol::Journal => super::journal::packet(level, message, pid, fields),
        };
        matches!(self.socket.send_to(&packet, &self.path), Ok(n) if n == packet.len())
    }
}

/// At most `max` bytes of `text`, cut at a character boundary.
pub(super) fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Whether a syslog socket is there to log to.
pub fn syslog_available() -> bool {
    open(Protocol::Syslog).is_ok()
}

/// `/dev/log`, or `SPAWND_SYSLOG_SOCKET` (tests).
pub(super) const SYSLOG_SOCKET: &str = "/dev/log";

/// The journal's native socket, or `SPAWND_JOURNAL_SOCKET` (tests).
pub(super) const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

pub(super) const SYSLOG_SOCKET_ENV: &str = "SPAWND_SYSLOG_SOCKET";

pub(super) const JOURNAL_SOCKET_ENV: &str = "SPAWND_JOURNAL_SOCKET";

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn test_socket(dir: &Path, protocol: Protocol) -> (UnixDatagram, Datagram) {
        let path = dir.join("log.sock");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let socket = UnixDatagram::unbound().unwrap();
        socket.set_nonblocking(true).unwrap();
        (
            receiver,
            Datagram {
                protocol,
                socket,
                path,
            },
        )
    }

    #[test]
    fn datagrams_arrive_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (receiver, datagram) = test_socket(dir.path(), Protocol::Syslog);
        assert!(datagram.send(Level::Info, "accept service=a", 5, &Fields::default()));
        let mut buf = [0u8; 256];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"<30>spawnd[5]: accept service=a");
    }

    #[test]
    fn a_full_socket_drops_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let (_receiver, datagram) = test_socket(dir.path(), Protocol::Journal);
        let started = std::time::Instant::now();
        let mut sent = 0;
        let mut dropped = 0;
        for i in 0..5000 {
            if datagram.send(
                Level::Info,
                &format!("flood service=x n={i}"),
                1,
                &Fields::default(),
            ) {
                sent += 1;
            } else {
                dropped += 1;
            }
        }
        assert!(sent > 0, "nothing was sent");
        assert!(dropped > 0, "the receiver queue never filled ({sent} sent)");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn a_missing_socket_is_a_drop_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let (receiver, datagram) = test_socket(dir.path(), Protocol::Syslog);
        drop(receiver);
        std::fs::remove_file(dir.path().join("log.sock")).unwrap();
        assert!(!datagram.send(Level::Error, "gone", 1, &Fields::default()));
    }
}
