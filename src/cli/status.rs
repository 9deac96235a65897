//! `spawnd status`: the running spawnd's services, states and counters, read
//! over its control socket (a Unix stream socket, mode 0600, so only
//! spawnd's own user — and root — can ask). spawnd writes one JSON document
//! to each client and closes; the client prints it as a table or as is.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

use crate::exit::Exit;
use std::time::Duration;

use crate::cli::StatusArgs;
use crate::control::{absolute, default_socket, Report};

/// The most `spawnd status` reads: a report of 10,000 services is about
/// 2 MB.
const MAX_REPORT: u64 = 64 << 20;

/// Only root or the caller's own user can be the spawnd answering: the
/// socket is 0600 in a directory only its owner controls, so anyone else
/// answering there means the path was taken over.
fn check_server(stream: &UnixStream) -> std::io::Result<()> {
    let peer = nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)?;
    let me = nix::unistd::geteuid().as_raw();
    if peer.uid() == 0 || peer.uid() == me {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "the socket is served by uid {} (pid {}), neither root nor you; not trusted",
            peer.uid(),
            peer.pid()
        )))
    }
}

pub fn run(args: &StatusArgs) -> ExitCode {
    let config_dir = absolute(&args.config.dir);
    let path = match &args.socket {
        Some(path) => path.clone(),
        None => match super::location(&args.config).load_global() {
            Ok(global) => global
                .control_socket
                .unwrap_or_else(|| default_socket(&config_dir)),
            Err(errors) => {
                for error in errors {
                    eprintln!("error: {error}");
                }
                return Exit::Config.into();
            }
        },
    };
    let mut text = String::new();
    let result = UnixStream::connect(&path).and_then(|stream| {
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        check_server(&stream)?;
        stream.take(MAX_REPORT + 1).read_to_string(&mut text)?;
        if text.len() as u64 > MAX_REPORT {
            return Err(std::io::Error::other("the answer is larger than 64 MiB"));
        }
        Ok(())
    });
    if let Err(e) = result {
        eprintln!(
            "spawnd status: cannot reach {}: {e} (is spawnd running?)",
            path.display()
        );
        return Exit::Runtime.into();
    }
    let report: Report = match serde_json::from_str(&text) {
        Ok(report) => report,
        Err(e) => {
            eprintln!(
                "spawnd status: unexpected answer from {}: {e}",
                path.display()
            );
            return Exit::Runtime.into();
        }
    };
    // Found by way of the directory: the spawnd answering must serve it.
    let serves = std::path::Path::new(&report.config_dir) == config_dir;
    if args.socket.is_none() && !serves {
        eprintln!(
            "spawnd status: the spawnd at {} (pid {}) serves {}, not {}",
            path.display(),
            report.pid,
            report.config_dir,
            config_dir.display()
        );
        return Exit::Runtime.into();
    }
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("spawnd status: {e}");
                return Exit::Runtime.into();
            }
        }
    } else {
        print!("{}", table(&report));
    }
    Exit::Success.into()
}

/// The human-readable form.
pub fn table(report: &Report) -> String {
    // A FROM column when some service comes from an included inetd.conf
    // or xinetd file.
    let any_included = report.services.iter().any(|s| s.source.is_some());
    let mut header = vec![
        "SERVICE", "STATE", "CHILDREN", "ACCEPTED", "REFUSED", "FAILED", "ABNORMAL", "LISTEN",
    ];
    if any_included {
        header.push("FROM");
    }
    let mut rows = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
    for s in &report.services {
        let mut row = vec![
            s.name.clone(),
            s.state.clone(),
            s.children.to_string(),
            s.accepted.to_string(),
            (s.refused_access + s.refused_limits).to_string(),
            s.spawn_failures.to_string(),
            s.abnormal_exits.to_string(),
            s.listen.join(","),
        ];
        if any_included {
            row.push(escape_line(s.source.as_deref().unwrap_or("services.d")));
        }
        rows.push(row);
    }
    let mut widths = vec![0usize; rows[0].len()];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = format!(
        "spawnd {} pid {}, config {}, {} children\n",
        report.version, report.pid, report.config_dir, report.children
    );
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}", w = *w))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    for s in &report.services {
        if let Some(reason) = &s.reason {
            out.push_str(&format!(
                "{} {}: {}\n",
                s.name,
                s.state,
                escape_line(reason)
            ));
        }
    }
    out
}

/// Text on one line: control characters (a newline in a reason or a
/// command line) shown escaped, so a table row stays one row.
pub fn escape_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_stay_on_one_line() {
        assert_eq!(escape_line("a\nb\tc \"d\" é"), "a\\nb\\tc \"d\" é");
    }
}
