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
            "{state} {}: {} {} {} {}",
            service.name,
            service.socket_label(),
            listen_label(service),
            if service.wait { "wait" } else { "nowait" },
            escape_line(&service.program_label()),
        );
    }
    print_errors(&loaded.errors);
    if !quiet {
        print_warnings(&loaded.warnings);
        let _ = writeln!(
            out,
            "{} services, {} errors",
            loaded.services.len(),
            loaded.errors.len()
        );
    }
    if loaded.errors.is_empty() {
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
    let rows: Vec<[String; 5]> = loaded
        .services
        .iter()
        .map(|s| {
            let name = if s.disabled {
                format!("{} (disabled)", s.name)
            } else {
                s.name.clone()
            };
            [
                name,
                s.socket_label().to_string(),
                listen_label(s),
                if s.wait { "yes" } else { "no" }.to_string(),
                escape_line(&s.program_label()),
            ]
        })
        .collect();
    let header = ["NAME", "SOCKET", "LISTEN", "WAIT", "PROGRAM"].map(String::from);
    let mut widths = [0usize; 5];
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
    print_errors(&loaded.errors);
    if loaded.errors.is_empty() {
        Exit::Success.into()
    } else {
        Exit::Config.into()
    }
}
