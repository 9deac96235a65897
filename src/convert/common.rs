//! Pieces both importers need: program and argv handling, sizes, and the
//! output name rules.

use std::collections::{HashMap, HashSet};

use crate::convert::diag::Diags;
use crate::convert::model::{Socket, Unit};

/// The argv spawnd should run, from a program path and the argv the old
/// super-server passed (`argv[0]` first). spawnd passes `exec[0]`, the
/// path, as argv[0], so a different argv[0] cannot be kept; the exception is
/// TCP Wrappers' tcpd, which reads the real program from argv[0]: it is
/// unwrapped, since spawnd does its own access control.
///
/// Returns the argv and a warning, if something changes.
pub fn exec_argv(program: &str, argv: &[String]) -> (Vec<String>, Option<String>) {
    let Some((argv0, rest)) = argv.split_first() else {
        return (vec![program.to_string()], None);
    };
    if basename(program) == "tcpd" {
        // tcpd runs argv[0] itself, from REAL_DAEMON_DIR when it is relative.
        let real = if argv0.starts_with('/') {
            argv0.clone()
        } else {
            format!("/usr/sbin/{argv0}")
        };
        let mut out = vec![real.clone()];
        out.extend(rest.iter().cloned());
        return (
            out,
            Some(format!(
                "{program} (TCP Wrappers) removed: spawnd runs {real} itself; rules in \
                 /etc/hosts.allow and /etc/hosts.deny no longer apply, put them under access:"
            )),
        );
    }
    let mut out = vec![program.to_string()];
    out.extend(rest.iter().cloned());
    let warning = (basename(argv0) != basename(program)).then(|| {
        format!(
            "argv[0] '{argv0}' cannot be kept: spawnd passes the program path {program} as argv[0]"
        )
    });
    (out, warning)
}

pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// A byte count written with the largest K/M/G suffix that divides it.
pub fn size_text(bytes: u64) -> String {
    for (suffix, unit) in [("G", 1u64 << 30), ("M", 1 << 20), ("K", 1 << 10)] {
        if bytes >= unit && bytes % unit == 0 {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

/// spawnd's name rule: `[A-Za-z0-9_.-]+`, and a file name `NAME.yaml` the
/// loader reads: not starting with `.`, without `.rpm` or `.dpkg-` in it
/// (`config::load::is_ignored`: such files are package leftovers), and at
/// most 128 characters.
pub fn sanitize_name(raw: &str) -> String {
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut cleaned = cleaned.trim_start_matches('.').to_string();
    while crate::config::load::is_ignored(&format!("{cleaned}.yaml")) {
        let before = cleaned.clone();
        cleaned = cleaned.replace(".rpm", "-rpm").replace(".dpkg-", "-dpkg-");
        if cleaned == before {
            break;
        }
    }
    cleaned.truncate(128);
    if cleaned.is_empty() {
        "service".to_string()
    } else {
        cleaned
    }
}

/// Gives every unit a unique, valid file name. Units arrive with their wanted
/// name set; clashes (the same service on stream and dgram, say) get
/// `-stream`/`-dgram`, as xinetd's own `id = echo-stream` convention, and then
/// numbers.
pub fn assign_names(units: &mut [Unit], diags: &mut Diags) {
    let wanted: Vec<String> = units.iter().map(|u| sanitize_name(u.name())).collect();
    for (unit, name) in units.iter().zip(&wanted) {
        if name != unit.name() {
            let origin = unit.origin();
            diags.warn(
                &origin.file,
                origin.line,
                format!(
                    "'{}' is not a valid spawnd service name; written as '{name}'",
                    unit.name()
                ),
            );
        }
    }
    // Sockets used under each wanted name: a socket suffix only helps when
    // the clashing services differ in it.
    let mut sockets: HashMap<&str, (usize, Vec<Option<Socket>>)> = HashMap::new();
    for (unit, name) in units.iter().zip(&wanted) {
        let entry = sockets.entry(name.as_str()).or_default();
        entry.0 += 1;
        if !entry.1.contains(&unit.socket()) {
            entry.1.push(unit.socket());
        }
    }
    let mut taken: HashSet<String> = HashSet::new();
    let mut finals = Vec::with_capacity(units.len());
    for (unit, name) in units.iter().zip(&wanted) {
        let mut candidate = name.clone();
        let (uses, kinds) = sockets.get(name.as_str()).cloned().unwrap_or_default();
        if uses > 1 && kinds.len() > 1 {
            if let Some(socket) = unit.socket() {
                let suffix = match socket {
                    Socket::Stream => "-stream",
                    Socket::Dgram => "-dgram",
                };
                if !name.ends_with(suffix) {
                    candidate = format!("{name}{suffix}");
                }
            }
        }
        let base = candidate.clone();
        let mut n = 2;
        while taken.contains(&candidate) {
            candidate = format!("{base}-{n}");
            n += 1;
        }
        if candidate != *name {
            let origin = unit.origin();
            diags.warn(
                &origin.file,
                origin.line,
                format!("more than one service is called '{name}'; this one is written as '{candidate}'"),
            );
        }
        taken.insert(candidate.clone());
        finals.push(candidate);
    }
    for (unit, name) in units.iter_mut().zip(finals) {
        unit.set_name(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::model::{Action, Origin, Service};

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn argv_zero() {
        assert_eq!(
            exec_argv("/usr/bin/rsync", &args(&["rsync", "--daemon"])),
            (args(&["/usr/bin/rsync", "--daemon"]), None)
        );
        assert_eq!(exec_argv("/bin/x", &[]), (args(&["/bin/x"]), None));
        let (argv, warning) = exec_argv("/usr/sbin/tcpd", &args(&["in.telnetd", "-h"]));
        assert_eq!(argv, args(&["/usr/sbin/in.telnetd", "-h"]));
        assert!(warning.is_some_and(|w| w.contains("hosts.allow")));
        let (argv, warning) = exec_argv("/usr/bin/busybox", &args(&["httpd", "-i"]));
        assert_eq!(argv, args(&["/usr/bin/busybox", "-i"]));
        assert!(warning.is_some_and(|w| w.contains("argv[0] 'httpd'")));
    }

    #[test]
    fn sizes() {
        assert_eq!(size_text(8 << 20), "8M");
        assert_eq!(size_text(1 << 30), "1G");
        assert_eq!(size_text(1536), "1536");
        assert_eq!(size_text(2048), "2K");
        assert_eq!(size_text(0), "0");
    }

    fn unit(name: &str, socket: Socket) -> Unit {
        let origin = Origin {
            file: "f".into(),
            line: 1,
        };
        let mut s = Service::new(name.into(), origin, socket, Action::Internal("echo".into()));
        s.name = name.into();
        Unit::Service(Box::new(s))
    }

    #[test]
    fn names_are_made_unique_and_valid() {
        let mut units = vec![
            unit("echo", Socket::Stream),
            unit("echo", Socket::Dgram),
            unit("a b", Socket::Stream),
            unit("x", Socket::Stream),
            unit("x", Socket::Stream),
            unit(".hidden", Socket::Stream),
            unit("tool.rpmx", Socket::Stream),
            unit("a.dpkg-b", Socket::Stream),
        ];
        let mut diags = Diags::default();
        assign_names(&mut units, &mut diags);
        let names: Vec<&str> = units.iter().map(Unit::name).collect();
        assert_eq!(
            names,
            [
                "echo-stream",
                "echo-dgram",
                "a_b",
                "x",
                "x-2",
                "hidden",
                "tool-rpmx",
                "a-dpkg-b"
            ]
        );
        assert_eq!(diags.list.len(), 7);
        for name in names {
            let file = format!("{name}.yaml");
            assert!(
                !crate::config::load::is_ignored(&file),
                "{file} would be ignored"
            );
        }
    }
}
