//! spawnd: an inetd-style super-server. `main` only parses the command line,
//! dispatches, and turns outcomes into exit codes.

mod activation;
mod childenv;
mod cli;
mod config;
mod convert;
mod daemon;
mod decimal;
mod fsafe;
#[cfg(test)]
mod fuzzing;
mod internal;
mod limits;
mod listener;
mod logging;
mod notify;
mod raw_syscall;
mod report;
mod server;
mod spawn;
mod status;
mod sys;
mod timers;

use std::process::ExitCode;

use cli::{Command, RunArgs};

const EXIT_RUNTIME: u8 = 3;

fn main() -> ExitCode {
    let cli = cli::parse();
    logging::init(
        cli.verbosity.log_level,
        cli.verbosity.verbose,
        cli.verbosity.quiet,
    );
    match &cli.command {
        Command::Run(args) => run(args),
        Command::Check(dir) => report::check(dir),
        Command::List(dir) => report::list(dir),
        Command::Status(args) => status::run(args),
        Command::Convert(command) => convert::run(command),
    }
}

fn run(args: &RunArgs) -> ExitCode {
    // Before anything opens a descriptor or clears the environment.
    spawn::prepare_descriptors();
    logging::never_block();
    let inherited = activation::take();
    notify::init();
    // Absolute from the start: reloads read the same directory after a
    // daemon's chdir("/"), and every service's file name (part of its
    // definition) must read the same at start and on reload, or the first
    // reload would take every service for a changed one.
    let mut config_dir = args.config.clone();
    if let Ok(absolute) = std::fs::canonicalize(&config_dir.dir) {
        config_dir.dir = absolute;
    }
    let loaded = match report::load(&config_dir) {
        Ok(loaded) => loaded,
        Err(errors) => {
            for error in &errors {
                log::error!("config_error {error}");
            }
            return ExitCode::from(report::EXIT_CONFIG);
        }
    };
    let (log_target, log_level) = (loaded.global.log_target, loaded.global.log_level);
    logging::apply_config(log_target, log_level, false);
    for error in &loaded.errors {
        log::error!("config_error {error}");
    }
    for warning in &loaded.warnings {
        log::warn!("config_warning {warning}");
    }
    if let Some(path) = &args.pid_file {
        if let Err(message) = daemon::check_pid_file(path) {
            log::error!("start_failed error=\"{message}\"");
            return ExitCode::from(EXIT_RUNTIME);
        }
    }
    let mut server = match server::Server::new(config_dir, loaded.global, inherited) {
        Ok(server) => server,
        Err(server::StartError(message)) => {
            log::error!("start_failed error=\"{message}\"");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let (started, failed) = server.start(loaded.services);
    server.open_control();
    sys::release_free_memory();
    if started == 0 && failed > 0 {
        log::error!("start_failed detail=\"no service could be started\"");
        return ExitCode::from(EXIT_RUNTIME);
    }
    if args.daemon {
        if let Err(e) = daemon::detach() {
            log::error!("start_failed error=\"cannot detach: {e}\"");
            return ExitCode::from(EXIT_RUNTIME);
        }
        // Detached, stderr is /dev/null: syslog unless spawnd.yaml says otherwise.
        logging::never_block();
        logging::apply_config(log_target, log_level, true);
        server.set_daemonized();
        if let Err(server::StartError(message)) = server.reopen_signals() {
            log::error!("start_failed error=\"{message}\"");
            return ExitCode::from(EXIT_RUNTIME);
        }
    }
    let _pid_file = match args
        .pid_file
        .as_deref()
        .map(daemon::PidFile::write)
        .transpose()
    {
        Ok(pid_file) => pid_file,
        Err(e) => {
            log::error!("start_failed error=\"cannot write pid file: {e}\"");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    server.open_accept_slot();
    log::info!(
        "ready services={started} failed={failed} config_errors={} dir={}",
        loaded.errors.len(),
        server.config_dir().display()
    );
    server.notify_ready();
    ExitCode::from(server.run())
}
