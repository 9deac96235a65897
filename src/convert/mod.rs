//! `spawnd convert`: xinetd and inetd.conf importers (to be written).

use std::process::ExitCode;

use crate::cli::ConvertCommand;

/// Runs a conversion; warnings go to stderr as `FILE:LINE: ...`.
pub fn run(command: &ConvertCommand) -> ExitCode {
    let _ = command;
    eprintln!("spawnd convert: not implemented yet");
    ExitCode::from(3)
}
