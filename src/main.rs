//! spawnd: an inetd-style super-server. `main` only parses the command line,
//! dispatches, and turns outcomes into exit codes.

mod cli;
mod config;
mod control;
mod convert;
mod daemon;
mod exit;
#[cfg(test)]
mod fuzzing;
mod logging;
mod sys;

use std::process::ExitCode;

use cli::Command;

fn main() -> ExitCode {
    let cli = cli::parse();
    logging::init(
        cli.verbosity.log_level,
        cli.verbosity.verbose,
        cli.verbosity.quiet,
    );
    match &cli.command {
        Command::Run(args) => daemon::run(args),
        Command::Check(dir) => cli::check::check(dir, cli.verbosity.quiet > 0),
        Command::List(dir) => cli::check::list(dir),
        Command::Status(args) => cli::status::run(args),
        Command::Convert(command) => convert::run(command),
    }
}
