//! `spawnd convert inetd`: the classic inetd.conf format, as openbsd-inetd
//! (Debian's default inetd) and GNU inetutils-inetd read it:
//!
//! ```text
//! # comment
//! [host:]service  socket-type  protocol  wait|nowait[.max]  user[:group|.group]  program  [argv0 args...]
//! host:                  (alone: the default host of the lines that follow; `*:` resets it)
//! ```
//!
//! - protocol: `tcp`/`udp` (IPv4), `tcp6`/`udp6` (IPv6 only), `tcp46`/`udp46`
//!   (both), `unix` (the service field is a socket path), `rpc/...`;
//! - `.max` is openbsd-inetd's most invocations per minute; past it the
//!   service is shut for ten minutes. FreeBSD's `nowait/children/per-ip-per-minute/per-ip`
//!   is read too;
//! - `internal` runs a built-in service; otherwise the arguments start with
//!   argv[0];
//! - a line ending in `\` continues on the next (inetutils);
//! - Debian's update-inetd comments services out as `#<off># ...`: those
//!   become `disabled: true` services.
//!
//! Entries that differ only in protocol family (the same service on tcp and
//! tcp6) are merged into one service with two listen addresses.

use std::net::IpAddr;

use crate::convert::common::{basename, exec_argv, sanitize_name};
use crate::convert::diag::Diags;
use crate::convert::model::{Action, Limits, NotConverted, Noted, Origin, Service, Socket, Unit};
use crate::convert::services_db::ServicesDb;

const BUILTINS: &[&str] = &["echo", "discard", "daytime", "time", "chargen"];
const OFF_MARK: &str = "#<off>#";

/// One logical line: continuation lines joined, with its first line number.
struct Line {
    number: usize,
    text: String,
    /// Behind Debian's `#<off>#`.
    off: bool,
    raw: Vec<String>,
}

fn logical_lines(text: &str) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut pending: Option<Line> = None;
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let mut current = match pending.take() {
            Some(mut line) => {
                line.text.push(' ');
                line.raw.push(raw.to_string());
                line
            }
            None => {
                let trimmed = raw.trim_start();
                let (off, rest) = match trimmed.strip_prefix(OFF_MARK) {
                    Some(rest) => (true, rest),
                    None => (false, trimmed),
                };
                if rest.trim().is_empty() || (!off && rest.starts_with('#')) {
                    continue;
                }
                Line {
                    number,
                    text: String::new(),
                    off,
                    raw: vec![raw.to_string()],
                }
            }
        };
        let body = if current.raw.len() == 1 {
            let trimmed = raw.trim_start();
            trimmed.strip_prefix(OFF_MARK).unwrap_or(trimmed)
        } else {
            raw
        };
        match body.trim_end().strip_suffix('\\') {
            Some(head) => {
                current.text.push_str(head);
                pending = Some(current);
            }
            None => {
                current.text.push_str(body);
                lines.push(current);
            }
        }
    }
    lines.extend(pending);
    lines
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
    Both,
}

pub fn convert(text: &str, file: &str, db: &ServicesDb, diags: &mut Diags) -> Vec<Unit> {
    let mut units: Vec<Unit> = Vec::new();
    let mut default_host: Option<String> = None;
    for line in logical_lines(text) {
        let fields: Vec<&str> = line.text.split_whitespace().collect();
        // `host:` alone sets the default host of the following lines.
        if let [only] = fields.as_slice() {
            if let Some(host) = only.strip_suffix(':') {
                if !line.off {
                    default_host = (host != "*").then(|| host.to_string());
                }
                continue;
            }
        }
        // A `#<off>#` line that does not read as an entry is just a comment.
        let mut scratch = Diags::default();
        let sink = if line.off { &mut scratch } else { &mut *diags };
        let entry = Entry {
            file,
            line: &line,
            fields: &fields,
            default_host: default_host.as_deref(),
            db,
        };
        if let Some(unit) = entry.convert(sink) {
            if line.off && scratch.has_errors() {
                continue;
            }
            if line.off {
                diags.extend(scratch);
            }
            merge_or_push(&mut units, unit);
        }
    }
    units
}

/// Merges `unit` into an earlier service that differs only in where it
/// listens (the tcp and tcp6 lines of one service).
fn merge_or_push(units: &mut Vec<Unit>, unit: Unit) {
    let Unit::Service(new) = unit else {
        units.push(unit);
        return;
    };
    let key = |s: &Service| {
        let mut s = s.clone();
        s.listen.clear();
        s.origin = Origin {
            file: String::new(),
            line: 0,
        };
        s.merged.clear();
        s.label.clear();
        s
    };
    let new_key = key(&new);
    for unit in units.iter_mut() {
        let Unit::Service(old) = unit else { continue };
        if key(old) != new_key {
            continue;
        }
        let fresh: Vec<_> = new
            .listen
            .iter()
            .filter(|a| !old.listen.iter().any(|b| b.value == a.value))
            .cloned()
            .collect();
        old.listen.extend(fresh);
        old.merged.push(new.origin.clone());
        old.label = format!("{}; {}", old.label, new.label);
        dual_stack(&mut old.listen);
        return;
    }
    units.push(Unit::Service(new));
}

/// `0.0.0.0:P` and `[::]:P` together are `*:P`.
fn dual_stack(listen: &mut Vec<Noted<String>>) {
    let ports: Vec<String> = listen
        .iter()
        .filter_map(|a| a.value.strip_prefix("0.0.0.0:").map(str::to_string))
        .collect();
    for port in ports {
        let v6 = format!("[::]:{port}");
        if let Some(at) = listen.iter().position(|a| a.value == v6) {
            listen.remove(at);
            if let Some(v4) = listen
                .iter_mut()
                .find(|a| a.value == format!("0.0.0.0:{port}"))
            {
                *v4 = Noted::with(format!("*:{port}"), "IPv4 and IPv6 (tcp and tcp6 lines)");
            }
        }
    }
}

struct Entry<'a> {
    file: &'a str,
    line: &'a Line,
    fields: &'a [&'a str],
    default_host: Option<&'a str>,
    db: &'a ServicesDb,
}

impl Entry<'_> {
    fn not_converted(&self, name: &str, reason: String, diags: &mut Diags) -> Option<Unit> {
        diags.warn(
            self.file,
            self.line.number,
            format!("'{name}' not converted: {reason}; kept as a commented copy"),
        );
        Some(Unit::NotConverted(NotConverted {
            name: name.to_string(),
            origin: self.origin(),
            label: self.label(),
            reason,
            original: self.line.raw.clone(),
        }))
    }

    fn origin(&self) -> Origin {
        Origin {
            file: self.file.to_string(),
            line: self.line.number,
        }
    }

    fn label(&self) -> String {
        self.fields[..self.fields.len().min(3)].join(" ")
    }

    fn convert(&self, diags: &mut Diags) -> Option<Unit> {
        let (file, number) = (self.file, self.line.number);
        let [service_field, socket, proto, wait_field, user_field, program, args @ ..] =
            self.fields
        else {
            diags.error(
                file,
                number,
                format!(
                    "expected 'service socket-type protocol wait user program [arguments]', found '{}'",
                    self.line.text.trim()
                ),
            );
            return None;
        };
        let (host, service) = split_host(service_field);
        let host = host.or(self.default_host);

        if proto.starts_with("rpc/") {
            let name = service.split('/').next().unwrap_or(service);
            return self.not_converted(
                name,
                "RPC services need the portmapper, which spawnd does not use".into(),
                diags,
            );
        }
        if let Some(name) = service.strip_prefix("tcpmux/") {
            return self.not_converted(
                name.trim_start_matches('+'),
                "TCPMUX services (RFC 1078) are not supported".into(),
                diags,
            );
        }
        let socket = match *socket {
            "stream" => Socket::Stream,
            "dgram" => Socket::Dgram,
            "raw" | "rdm" | "seqpacket" => {
                return self.not_converted(
                    service,
                    format!("socket type {socket}: spawnd serves stream and dgram sockets only"),
                    diags,
                )
            }
            other => {
                diags.error(
                    file,
                    number,
                    format!("socket type '{other}': expected stream or dgram"),
                );
                return None;
            }
        };
        let (base, family) = match *proto {
            "tcp" | "tcp4" => ("tcp", Family::V4),
            "udp" | "udp4" => ("udp", Family::V4),
            "tcp6" => ("tcp", Family::V6),
            "udp6" => ("udp", Family::V6),
            "tcp46" => ("tcp", Family::Both),
            "udp46" => ("udp", Family::Both),
            "unix" => ("unix", Family::V4),
            other => {
                diags.error(
                    file,
                    number,
                    format!(
                        "protocol '{other}': expected tcp, udp, tcp6, udp6, tcp46, udp46 or unix"
                    ),
                );
                return None;
            }
        };
        if (base == "tcp" && socket != Socket::Stream) || (base == "udp" && socket != Socket::Dgram)
        {
            diags.error(
                file,
                number,
                format!(
                    "protocol {proto} does not go with socket type {}",
                    socket.as_str()
                ),
            );
            return None;
        }

        // Name, port and listen address.
        let (name, listen) = if base == "unix" {
            if !service.starts_with('/') {
                diags.error(
                    file,
                    number,
                    format!("unix socket '{service}': expected an absolute path"),
                );
                return None;
            }
            let stem = service.rsplit('/').next().unwrap_or(service);
            let stem = stem.strip_suffix(".sock").unwrap_or(stem);
            (sanitize_name(stem), vec![Noted::plain(service.to_string())])
        } else {
            let port = match service.parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => match self.db.lookup(service, base) {
                    Some(port) => port,
                    None => {
                        diags.error(
                            file,
                            number,
                            format!("'{service}/{base}' is not in /etc/services; write the port number instead"),
                        );
                        return None;
                    }
                },
            };
            // A bare port number makes a poor file name: use the program's.
            let name = if service.parse::<u16>().is_ok() {
                let program = match (*program, args.first()) {
                    ("internal", _) => "port",
                    // tcpd runs the program its argv[0] names.
                    (wrapper, Some(argv0)) if basename(wrapper) == "tcpd" => basename(argv0),
                    _ => basename(program),
                };
                sanitize_name(&format!("{program}-{port}"))
            } else {
                service.to_string()
            };
            (name, vec![self.listen(host, family, port, diags)?])
        };

        // What to run.
        let action = if *program == "internal" {
            if !BUILTINS.contains(&service) {
                return self.not_converted(
                    &name,
                    format!(
                        "internal service '{service}' has no spawnd counterpart (spawnd has {})",
                        BUILTINS.join(", ")
                    ),
                    diags,
                );
            }
            Action::Internal(service.to_string())
        } else {
            let argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            let (argv, warning) = exec_argv(program, &argv);
            if let Some(warning) = warning {
                diags.warn(file, number, warning);
            }
            if !program.starts_with('/') {
                diags.warn(
                    file,
                    number,
                    format!("program '{program}': spawnd needs an absolute path"),
                );
            }
            Action::Exec(argv)
        };

        let mut out = Service::new(self.label(), self.origin(), socket, action);
        out.name = name;
        // tcpd checks /etc/hosts.allow and hosts.deny under the name of the
        // program it runs (argv[0]'s last component).
        if basename(program) == "tcpd" {
            out.tcp_wrappers = args.first().map(|argv0| basename(argv0).to_string());
        }
        out.listen = listen;
        if self.line.off {
            out.disabled = Some(Noted::with(
                true,
                "commented out with #<off># (update-inetd)",
            ));
        }
        self.wait(wait_field, &mut out, diags)?;
        self.user(user_field, &mut out, diags);
        Some(Unit::Service(Box::new(out)))
    }

    fn listen(
        &self,
        host: Option<&str>,
        family: Family,
        port: u16,
        diags: &mut Diags,
    ) -> Option<Noted<String>> {
        let Some(host) = host else {
            return Some(Noted::plain(match family {
                Family::V4 => format!("0.0.0.0:{port}"),
                Family::V6 => format!("[::]:{port}"),
                Family::Both => format!("*:{port}"),
            }));
        };
        let addr: IpAddr = if host == "localhost" {
            if family == Family::V6 {
                IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])
            } else {
                IpAddr::from([127, 0, 0, 1])
            }
        } else if let Ok(addr) = host.parse() {
            addr
        } else {
            diags.error(
                self.file,
                self.line.number,
                format!("host '{host}': expected an IP address (spawnd listens on addresses)"),
            );
            return None;
        };
        if (addr.is_ipv6() && family == Family::V4) || (addr.is_ipv4() && family == Family::V6) {
            diags.warn(
                self.file,
                self.line.number,
                format!(
                    "host {host} does not match the protocol's address family; listening on {host}"
                ),
            );
        }
        Some(Noted::plain(match addr {
            IpAddr::V4(v4) => format!("{v4}:{port}"),
            IpAddr::V6(v6) => format!("[{v6}]:{port}"),
        }))
    }

    /// `wait`/`nowait`, with openbsd's `.max` or FreeBSD's `/a/b/c`.
    fn wait(&self, field: &str, out: &mut Service, diags: &mut Diags) -> Option<()> {
        let (file, number) = (self.file, self.line.number);
        let (word, openbsd_max, freebsd) = if let Some((word, max)) = field.split_once('.') {
            (word, Some(max), Vec::new())
        } else {
            let mut parts = field.split('/');
            let word = parts.next().unwrap_or("");
            (word, None, parts.collect())
        };
        let wait = match word {
            "wait" => true,
            "nowait" => false,
            other => {
                diags.error(file, number, format!("'{other}': expected wait or nowait"));
                return None;
            }
        };
        let number_of = |text: &str, what: &str, diags: &mut Diags| -> Option<u32> {
            let parsed = text.parse::<u32>().ok();
            if parsed.is_none() {
                diags.error(
                    file,
                    number,
                    format!("{field}: '{text}' is not a number ({what})"),
                );
            }
            parsed
        };
        let mut limits = Limits::default();
        if let Some(max) = openbsd_max {
            let max = number_of(max, "invocations per minute", diags)?;
            if max > 0 {
                let note = format!(
                    "{field}: at most {max} a minute, then closed for 10 minutes, as openbsd-inetd"
                );
                limits.rate = Some(Noted::with(format!("{max}/m"), note));
                limits.rate_pause = Some(Noted::plain("10m".to_string()));
            }
        }
        let freebsd: Vec<u32> = freebsd
            .iter()
            .zip([
                "most children",
                "connections per address per minute",
                "children per address",
            ])
            .map(|(text, what)| number_of(text, what, diags))
            .collect::<Option<_>>()?;
        let note = || Some(format!("{field} (FreeBSD inetd)"));
        if let Some(&n) = freebsd.first().filter(|n| **n > 0) {
            limits.instances = Some(Noted {
                value: n.to_string(),
                note: note(),
            });
        }
        if let Some(&n) = freebsd.get(1).filter(|n| **n > 0) {
            limits.per_source_rate = Some(Noted {
                value: format!("{n}/m"),
                note: note(),
            });
            limits.per_source_pause = Some(Noted {
                value: "1m".to_string(),
                note: note(),
            });
        }
        if let Some(&n) = freebsd.get(2).filter(|n| **n > 0) {
            limits.per_source = Some(Noted {
                value: n.to_string(),
                note: note(),
            });
        }
        out.limits = limits;
        // Internal services take no wait.
        if let Action::Exec(_) = out.action {
            out.wait = Some(if out.socket == Socket::Dgram && !wait {
                diags.warn(
                    file,
                    number,
                    "nowait on a dgram service: spawnd starts datagram programs with wait: true \
                     (one at a time, reading the socket itself)",
                );
                Noted::with(true, "inetd.conf: nowait")
            } else {
                Noted::plain(wait)
            });
        }
        Some(())
    }

    /// `user`, `user:group`, `user.group`, FreeBSD's `user:group/class`.
    fn user(&self, field: &str, out: &mut Service, diags: &mut Diags) {
        let (field, class) = match field.split_once('/') {
            Some((field, class)) => (field, Some(class)),
            None => (field, None),
        };
        let (user, group) = match field.split_once(':').or_else(|| field.split_once('.')) {
            Some((user, group)) => (user, Some(group)),
            None => (field, None),
        };
        if let Action::Internal(_) = out.action {
            if user != "root" || group.is_some() {
                out.kept.push(format!(
                    "inetd.conf: user {field} (not needed: internal services run inside spawnd)"
                ));
            }
        } else {
            out.user = Some(Noted::plain(user.to_string()));
            out.group = group.map(|g| Noted::plain(g.to_string()));
        }
        if let Some(class) = class {
            diags.warn(
                self.file,
                self.line.number,
                format!("login class '{class}' is not supported; kept as a comment"),
            );
            out.kept
                .push(format!("inetd.conf: login class {class} (not supported)"));
        }
    }
}

/// `127.0.0.1:ftp` -> (Some(host), "ftp"); `[::1]:ftp`, `::1:ftp` too.
fn split_host(field: &str) -> (Option<&str>, &str) {
    if let Some(rest) = field.strip_prefix('[') {
        if let Some((host, service)) = rest.split_once("]:") {
            return (Some(host), service);
        }
    }
    if field.starts_with('/') {
        return (None, field); // a unix socket path
    }
    match field.rsplit_once(':') {
        Some((host, service)) => (Some(host), service),
        None => (None, field),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICES: &str = "daytime 13/tcp\ndaytime 13/udp\nident 113/tcp auth\ntftp 69/udp\nftp 21/tcp\nrstatd 0/udp\n";

    fn run(text: &str) -> (Vec<Unit>, Vec<String>) {
        let mut diags = Diags::default();
        let units = convert(text, "f", &ServicesDb::parse(SERVICES), &mut diags);
        (units, diags.list.iter().map(ToString::to_string).collect())
    }

    fn service(unit: &Unit) -> &Service {
        match unit {
            Unit::Service(s) => s,
            other => panic!("{other:?}"),
        }
    }

    fn listens(s: &Service) -> Vec<&str> {
        s.listen.iter().map(|a| a.value.as_str()).collect()
    }

    #[test]
    fn classic_lines() {
        let (units, diags) = run("# comment\n\
             ident\tstream\ttcp\twait\tidentd:nogroup\t/usr/sbin/identd\tidentd -b\n\
             tftp dgram udp4 wait.60 root /usr/sbin/in.tftpd in.tftpd -s /srv/tftp\n\
             daytime stream tcp6 nowait root internal\n");
        assert!(diags.is_empty(), "{diags:?}");
        let ident = service(&units[0]);
        assert_eq!(
            ident.action,
            Action::Exec(vec!["/usr/sbin/identd".into(), "-b".into()])
        );
        assert_eq!(
            ident.group.as_ref().map(|g| g.value.as_str()),
            Some("nogroup")
        );
        assert_eq!(ident.wait, Some(Noted::plain(true)));
        assert_eq!(listens(ident), ["0.0.0.0:113"]);
        let tftp = service(&units[1]);
        assert_eq!(
            tftp.limits.rate.as_ref().map(|r| r.value.as_str()),
            Some("60/m")
        );
        assert_eq!(
            tftp.limits.rate_pause.as_ref().map(|r| r.value.as_str()),
            Some("10m")
        );
        let daytime = service(&units[2]);
        assert_eq!(daytime.action, Action::Internal("daytime".into()));
        assert_eq!(daytime.wait, None);
        assert_eq!(listens(daytime), ["[::]:13"]);
    }

    #[test]
    fn hosts_continuations_and_merging() {
        let (units, diags) = run("127.0.0.1:\n\
             ftp stream tcp nowait root /usr/sbin/ftpd \\\n   ftpd -l\n\
             *:\n\
             [::1]:daytime stream tcp6 nowait root internal\n\
             daytime stream tcp nowait root internal\n\
             daytime dgram udp wait root internal\n\
             daytime dgram udp6 wait root internal\n");
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(units.len(), 3);
        let ftp = service(&units[0]);
        assert_eq!(listens(ftp), ["127.0.0.1:21"]);
        assert_eq!(
            ftp.action,
            Action::Exec(vec!["/usr/sbin/ftpd".into(), "-l".into()])
        );
        assert_eq!(listens(service(&units[1])), ["[::1]:13", "0.0.0.0:13"]);
        assert_eq!(listens(service(&units[2])), ["*:13"]);
        assert_eq!(service(&units[2]).merged.len(), 1);
    }

    #[test]
    fn off_lines_rpc_and_errors() {
        let (units, diags) = run(
            "#<off># ftp stream tcp nowait root /usr/sbin/tcpd /usr/sbin/in.ftpd\n\
             #<off># this is just a comment\n\
             rstatd/1-3 dgram rpc/udp wait root /usr/sbin/rpc.rstatd rpc.rstatd\n\
             ftp stream tcp\n",
        );
        assert_eq!(units.len(), 2);
        let ftp = service(&units[0]);
        assert!(ftp.disabled.as_ref().is_some_and(|d| d.value));
        assert_eq!(ftp.action, Action::Exec(vec!["/usr/sbin/in.ftpd".into()]));
        assert!(matches!(units[1], Unit::NotConverted(ref n) if n.name == "rstatd"));
        assert_eq!(diags.len(), 3, "{diags:?}"); // tcpd, rpc, the short line
        assert!(diags[2].starts_with("f:4: error: expected 'service socket-type"));
    }

    #[test]
    fn host_forms() {
        assert_eq!(split_host("127.0.0.1:ftp"), (Some("127.0.0.1"), "ftp"));
        assert_eq!(split_host("[::1]:ftp"), (Some("::1"), "ftp"));
        assert_eq!(split_host("::1:ftp"), (Some("::1"), "ftp"));
        assert_eq!(split_host("ftp"), (None, "ftp"));
        assert_eq!(split_host("/run/x.sock"), (None, "/run/x.sock"));
    }
}
