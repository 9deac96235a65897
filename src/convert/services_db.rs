//! Service names to port numbers, as getservbyname(3) would answer from
//! /etc/services, with a small built-in table for machines without one
//! (containers, minimal images).

use std::collections::HashMap;

#[derive(Debug, Clone, Default)]
pub struct ServicesDb {
    /// (name or alias, protocol) -> port
    ports: HashMap<(String, String), u16>,
}

/// The well-known services that inetd and xinetd configurations name most,
/// from IANA's registry (as shipped in Debian's netbase).
const BUILTIN: &[(&str, u16, &str)] = &[
    ("tcpmux", 1, "tcp"),
    ("echo", 7, "tcp udp"),
    ("discard", 9, "tcp udp"),
    ("systat", 11, "tcp"),
    ("daytime", 13, "tcp udp"),
    ("netstat", 15, "tcp"),
    ("qotd", 17, "tcp"),
    ("chargen", 19, "tcp udp"),
    ("ftp-data", 20, "tcp"),
    ("ftp", 21, "tcp"),
    ("ssh", 22, "tcp"),
    ("telnet", 23, "tcp"),
    ("smtp", 25, "tcp"),
    ("time", 37, "tcp udp"),
    ("whois", 43, "tcp"),
    ("tacacs", 49, "tcp udp"),
    ("domain", 53, "tcp udp"),
    ("bootps", 67, "udp"),
    ("bootpc", 68, "udp"),
    ("tftp", 69, "udp"),
    ("gopher", 70, "tcp"),
    ("finger", 79, "tcp"),
    ("http", 80, "tcp"),
    ("kerberos", 88, "tcp udp"),
    ("pop3", 110, "tcp"),
    ("sunrpc", 111, "tcp udp"),
    ("auth", 113, "tcp"),
    ("ident", 113, "tcp"),
    ("nntp", 119, "tcp"),
    ("ntp", 123, "udp"),
    ("netbios-ns", 137, "udp"),
    ("netbios-ssn", 139, "tcp"),
    ("imap2", 143, "tcp"),
    ("imap", 143, "tcp"),
    ("snmp", 161, "tcp udp"),
    ("ldap", 389, "tcp"),
    ("https", 443, "tcp"),
    ("microsoft-ds", 445, "tcp"),
    ("exec", 512, "tcp"),
    ("biff", 512, "udp"),
    ("login", 513, "tcp"),
    ("who", 513, "udp"),
    ("shell", 514, "tcp"),
    ("syslog", 514, "udp"),
    ("printer", 515, "tcp"),
    ("talk", 517, "udp"),
    ("ntalk", 518, "udp"),
    ("uucp", 540, "tcp"),
    ("klogin", 543, "tcp"),
    ("kshell", 544, "tcp"),
    ("submission", 587, "tcp"),
    ("ldaps", 636, "tcp"),
    ("rsync", 873, "tcp"),
    ("swat", 901, "tcp"),
    ("imaps", 993, "tcp"),
    ("pop3s", 995, "tcp"),
    ("cvspserver", 2401, "tcp"),
    ("svn", 3690, "tcp"),
    ("nrpe", 5666, "tcp"),
    ("checkmk-agent", 6556, "tcp"),
    ("sane-port", 6566, "tcp"),
    ("git", 9418, "tcp"),
    ("amanda", 10080, "tcp udp"),
];

impl ServicesDb {
    /// Parses the /etc/services format: `name port/proto [alias...] [# comment]`.
    /// Malformed lines are skipped, as the C library does.
    pub fn parse(text: &str) -> Self {
        let mut db = ServicesDb::default();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut fields = line.split_whitespace();
            let (Some(name), Some(port_proto)) = (fields.next(), fields.next()) else {
                continue;
            };
            let Some((port, proto)) = port_proto.split_once('/') else {
                continue;
            };
            let Ok(port) = port.parse::<u16>() else {
                continue;
            };
            for alias in std::iter::once(name).chain(fields) {
                // The first entry wins, like getservbyname's linear scan.
                db.ports
                    .entry((alias.to_string(), proto.to_ascii_lowercase()))
                    .or_insert(port);
            }
        }
        db
    }

    pub fn builtin() -> Self {
        let mut db = ServicesDb::default();
        for (name, port, protos) in BUILTIN {
            for proto in protos.split(' ') {
                db.ports
                    .insert((name.to_string(), proto.to_string()), *port);
            }
        }
        db
    }

    pub fn lookup(&self, name: &str, proto: &str) -> Option<u16> {
        self.ports
            .get(&(name.to_string(), proto.to_string()))
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_aliases_and_comments() {
        let db = ServicesDb::parse(
            "# comment\n\
             tcpmux\t\t1/tcp\t\t\t\t# TCP port service multiplexer\n\
             auth\t\t113/tcp\t\tauthentication tap ident\n\
             broken\tnotaport/tcp\n\
             rsync\t\t873/tcp\n",
        );
        assert_eq!(db.lookup("tcpmux", "tcp"), Some(1));
        assert_eq!(db.lookup("ident", "tcp"), Some(113));
        assert_eq!(db.lookup("tap", "tcp"), Some(113));
        assert_eq!(db.lookup("rsync", "udp"), None);
        assert_eq!(db.lookup("broken", "tcp"), None);
        assert_eq!(db.lookup("TCP port", "tcp"), None);
    }

    #[test]
    fn builtin_has_the_internal_services_on_both_protocols() {
        let db = ServicesDb::builtin();
        for (name, port) in [
            ("echo", 7),
            ("discard", 9),
            ("daytime", 13),
            ("chargen", 19),
            ("time", 37),
        ] {
            assert_eq!(db.lookup(name, "tcp"), Some(port));
            assert_eq!(db.lookup(name, "udp"), Some(port));
        }
        assert_eq!(db.lookup("tftp", "udp"), Some(69));
    }
}
