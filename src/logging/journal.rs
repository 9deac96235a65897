//! The journal sink's format: the native protocol, one datagram of
//! `KEY=value` fields per line, with `SPAWND_EVENT` and `SPAWND_SERVICE`
//! from the line's key-values (`crate::event!`), not from its text.

use log::Level;

use super::datagram::{truncate, FACILITY_DAEMON, IDENTIFIER, MAX_MESSAGE};
use super::{severity, Fields};

/// The journal's native protocol: `KEY=value\n` fields; a value containing a
/// newline is sent as `KEY\n`, its length as 64-bit little endian, the value
/// and `\n`.
pub(super) fn packet(level: Level, message: &str, pid: u32, fields: &Fields) -> Vec<u8> {
    let text = truncate(message, MAX_MESSAGE);
    let mut packet = Vec::with_capacity(text.len() + 160);
    journal_field(&mut packet, "MESSAGE", text);
    journal_field(&mut packet, "PRIORITY", &severity(level).to_string());
    journal_field(&mut packet, "SYSLOG_IDENTIFIER", IDENTIFIER);
    journal_field(&mut packet, "SYSLOG_FACILITY", &FACILITY_DAEMON.to_string());
    journal_field(&mut packet, "SYSLOG_PID", &pid.to_string());
    if let Some(service) = &fields.service {
        journal_field(&mut packet, "SPAWND_SERVICE", service);
    }
    if let Some(event) = &fields.event {
        journal_field(&mut packet, "SPAWND_EVENT", event);
    }
    packet
}

fn journal_field(packet: &mut Vec<u8>, key: &str, value: &str) {
    packet.extend_from_slice(key.as_bytes());
    if value.contains('\n') {
        packet.push(b'\n');
        packet.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        packet.push(b'=');
    }
    packet.extend_from_slice(value.as_bytes());
    packet.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal_fields(packet: &[u8]) -> Vec<(String, String)> {
        let mut fields = Vec::new();
        let mut rest = packet;
        while !rest.is_empty() {
            let nl = rest.iter().position(|&b| b == b'\n').unwrap();
            let line = &rest[..nl];
            if let Some(eq) = line.iter().position(|&b| b == b'=') {
                fields.push((
                    String::from_utf8(line[..eq].to_vec()).unwrap(),
                    String::from_utf8(line[eq + 1..].to_vec()).unwrap(),
                ));
                rest = &rest[nl + 1..];
            } else {
                let key = String::from_utf8(line.to_vec()).unwrap();
                let len = u64::from_le_bytes(rest[nl + 1..nl + 9].try_into().unwrap()) as usize;
                let value = &rest[nl + 9..nl + 9 + len];
                assert_eq!(rest[nl + 9 + len], b'\n');
                fields.push((key, String::from_utf8(value.to_vec()).unwrap()));
                rest = &rest[nl + 10 + len..];
            }
        }
        fields
    }

    #[test]
    fn journal_native_fields() {
        let fields = Fields {
            event: Some("refuse".into()),
            service: Some("ctf".into()),
        };
        let packet = packet(
            Level::Warn,
            "refuse service=ctf peer=10.0.0.1:4000 reason=per_source",
            99,
            &fields,
        );
        let fields = journal_fields(&packet);
        let get = |k: &str| {
            fields
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            get("MESSAGE"),
            Some("refuse service=ctf peer=10.0.0.1:4000 reason=per_source")
        );
        assert_eq!(get("PRIORITY"), Some("4"));
        assert_eq!(get("SYSLOG_IDENTIFIER"), Some("spawnd"));
        assert_eq!(get("SYSLOG_FACILITY"), Some("3"));
        assert_eq!(get("SYSLOG_PID"), Some("99"));
        assert_eq!(get("SPAWND_SERVICE"), Some("ctf"));
        assert_eq!(get("SPAWND_EVENT"), Some("refuse"));
    }

    #[test]
    fn journal_binary_field_for_newlines() {
        let packet = packet(Level::Info, "two\nlines", 1, &Fields::default());
        assert!(packet.starts_with(b"MESSAGE\n\x09\0\0\0\0\0\0\0two\nlines\n"));
        let fields = journal_fields(&packet);
        assert_eq!(fields[0], ("MESSAGE".into(), "two\nlines".into()));
        // No service: no SPAWND_SERVICE field.
        assert!(!fields.iter().any(|(k, _)| k == "SPAWND_SERVICE"));
    }
}
