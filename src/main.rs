//! spawnd: an inetd-style super-server. `main` only parses the command line,
//! dispatches, and turns outcomes into exit codes.

mod cli;
mod config;
mod convert;
mod logging;
mod report;

use std::process::ExitCode;

use cli::Command;

fn main() -> ExitCode {
    let cli = cli::parse();
    logging::init(cli.verbosity.log_level, cli.verbosity.verbose, cli.verbosity.quiet);
    match &cli.command {
        Command::Convert(command) => convert::run(command),
        Command::Check(dir) => report::check(dir),
        Command::List(dir) => report::list(dir),
        _ => {
            eprintln!("not implemented yet");
            ExitCode::from(3)
        }
    }
}
