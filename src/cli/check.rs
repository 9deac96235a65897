//! `spawnd check` and `spawnd list`: human-readable views of a loaded
//! configuration.

use std::io::Write;
use std::process::ExitCode;

use crate::exit::Exit;

use crate::cli::status::escape_line;
use crate::cli::ConfigDir;
use crate::config::{self, Service};

fn listen_label(service: &Service) -> String {
    service
        .listen
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// ` (from FILE:LINE)` for a service of an included inetd.conf or xinetd
/// file.
fn from_label(service: &Service) -> String {
    if service.line.is_some() {
        format!(" (from {})", escape_line(&service.source()))
    } else {
        String::new()
    }
}

fn print_warnings(warnings: &[config::ConfigError]) {
    let mut err = std::io::stderr().lock();
    for warning in warnings {
        let _ = writeln!(err, "warning: {warning}");
    }
}

fn print_errors(errors: &[config::ConfigError]) {
    let mut err = std::io::stderr().lock();
    for error in errors {
        let _ = writeln!(err, "error: {error}");
    }
}

/// `spawnd check`; `quiet` (`-q`, for cron and CI) prints errors only.
pub fn check(dir: &ConfigDir, quiet: bool) -> ExitCode {
    let loaded = match super::location(dir).load() {
        Ok(loaded) => loaded,
        Err(errors) => {
            print_errors(&errors);
            return Exit::Config.into();
        }
    };
    let mut out = std::io::stdout().lock();
    for service in loaded.services.iter().filter(|_| !quiet) {
        let state = if service.disabled { "disabled" } else { "ok" };
        let _ = writeln!(
            out,
            "{state} {}: {} {} {} {}{}",
            service.name,
            service.socket_label(),
            listen_label(service),
            if service.wait { "wait" } else { "nowait" },
            escape_line(&service.program_label()),
            from_label(service),
        );
    }
    // An included entry that is not served is an error: the file says
    // something spawnd does not do.
    let refused: Vec<config::ConfigError> =
        loaded.refused.iter().map(|r| r.error.clone()).collect();
    print_errors(&loaded.errors);
    print_errors(&refused);
    if !quiet {
        print_warnings(&loaded.warnings);
        let _ = writeln!(
            out,
            "{} services, {} errors",
            loaded.services.len(),
            loaded.errors.len() + refused.len()
        );
    }
    if loaded.errors.is_empty() && refused.is_empty() {
        Exit::Success.into()
    } else {
        Exit::Config.into()
    }
}

pub fn list(dir: &ConfigDir) -> ExitCode {
    let loaded = match super::location(dir).load() {
        Ok(loaded) => loaded,
        Err(errors) => {
            print_errors(&errors);
            return Exit::Config.into();
        }
    };
    // A FROM column only when some service comes from an included file.
    let any_included = loaded.services.iter().any(|s| s.line.is_some());
    let rows: Vec<Vec<String>> = loaded
        .services
        .iter()
        .map(|s| {
            let name = if s.disabled {
                format!("{} (disabled)", s.name)
            } else {
                s.name.clone()
            };
            let mut row = vec![
                name,
                s.socket_label().to_string(),
                listen_label(s),
                if s.wait { "yes" } else { "no" }.to_string(),
                escape_line(&s.program_label()),
            ];
            if any_included {
                let from = if s.line.is_some() {
                    s.source()
                } else {
                    "services.d".to_string()
                };
                row.insert(4, escape_line(&from));
            }
            row
        })
        .collect();
    let mut header: Vec<String> = ["NAME", "SOCKET", "LISTEN", "WAIT", "PROGRAM"]
        .map(String::from)
        .to_vec();
    if any_included {
        header.insert(4, "FROM".to_string());
    }
    let mut widths = vec![0usize; header.len()];
    for row in std::iter::once(&header).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = std::io::stdout().lock();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            if index + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[index]));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let refused: Vec<config::ConfigError> =
        loaded.refused.iter().map(|r| r.error.clone()).collect();
    print_errors(&loaded.errors);
    print_errors(&refused);
    if loaded.errors.is_empty() && refused.is_empty() {
        Exit::Success.into()
    } else {
        Exit::Config.into()
    }
}
