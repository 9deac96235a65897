//! The syslog sink's format: one datagram per line to `/dev/log`,
//! RFC 3164 style `<PRI>spawnd[PID]: message`, facility `daemon`, no time
//! stamp and no host name (the local socket's readers add them).

use std::io::Write;

use log::Level;

use super::datagram::{truncate, FACILITY_DAEMON, IDENTIFIER, MAX_MESSAGE};
use super::severity;

/// `<PRI>spawnd[PID]: message`, one line, at most `MAX_MESSAGE` bytes of text.
pub(super) fn packet(level: Level, message: &str, pid: u32) -> Vec<u8> {
    let pri = FACILITY_DAEMON * 8 + severity(level);
    let text = truncate(message, MAX_MESSAGE);
    let mut packet = Vec::with_capacity(text.len() + 32);
    let _ = write!(packet, "<{pri}>{IDENTIFIER}[{pid}]: ");
    // One datagram is one message; keep it one line for the readers of
    // plain-text log files.
    packet.extend(
        text.bytes()
            .map(|b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
    );
    packet
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_priorities_are_facility_daemon() {
        let line = "accept service=tftp peer=127.0.0.1:5000 pid=9";
        assert_eq!(
            packet(Level::Info, line, 42),
            b"<30>spawnd[42]: accept service=tftp peer=127.0.0.1:5000 pid=9".to_vec()
        );
        assert!(packet(Level::Error, "x", 1).starts_with(b"<27>spawnd[1]: "));
        assert!(packet(Level::Warn, "x", 1).starts_with(b"<28>"));
        assert!(packet(Level::Debug, "x", 1).starts_with(b"<31>"));
        assert!(packet(Level::Trace, "x", 1).starts_with(b"<31>"));
    }

    #[test]
    fn syslog_is_one_line_and_bounded() {
        assert_eq!(
            packet(Level::Info, "a\nb\r\nc", 7),
            b"<30>spawnd[7]: a b  c".to_vec()
        );
        let long = "é".repeat(MAX_MESSAGE); // two bytes each
        let packet = packet(Level::Info, &long, 7);
        let text = std::str::from_utf8(&packet[b"<30>spawnd[7]: ".len()..]).unwrap();
        assert_eq!(text.len(), MAX_MESSAGE);
        assert!(text.chars().all(|c| c == 'é'));
    }
}
