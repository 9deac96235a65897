//! `spawnd run`: the daemon. `run` starts it (configuration, sockets,
//! detaching, readiness) and hands over to the event loop (`server`).
//! Everything here exists for serving: the spawn path (`spawn`, `slots`,
//! `raw_syscall`, `childenv`), admission (`limits`), sockets (`listener`,
//! `activation`), the in-process services' data (`internal`), systemd
//! (`notify`), `--daemon` and `--pid-file` (`detach`) and timers.

pub mod activation;
pub mod childenv;
pub mod detach;
pub mod internal;
pub mod limits;
pub mod listener;
pub mod notify;
pub mod raw_syscall;
pub mod server;
pub mod slots;
pub mod spawn;
pub mod timers;

use std::process::ExitCode;

use crate::cli::RunArgs;
use crate::config;
use crate::exit::Exit;
use crate::logging;
use crate::sys;

pub fn run(args: &RunArgs) -> ExitCode {
    // Before anything opens a descriptor or clears the environment.
    slots::prepare();
    logging::never_block();
    let inherited = activation::take();
    notify::init();
    // Absolute from the start: reloads read the same directory after a
    // daemon's chdir("/"), and every service's file name (part of its
    // definition) must read the same at start and on reload, or the first
    // reload would take every service for a changed one.
    let mut config_dir = crate::cli::location(&args.config);
    config_dir.dir = crate::control::absolute(&config_dir.dir);
    let loaded = match config_dir.load() {
        Ok(loaded) => loaded,
        Err(errors) => {
            for error in &errors {
                crate::event!(log::Level::Error, "config_error"; "{error}");
            }
            return Exit::Config.into();
        }
    };
    let (log_target, log_level) = (loaded.global.log_target, loaded.global.log_level);
    logging::apply_config(log_target, log_level, false);
    for error in &loaded.errors {
        crate::event!(log::Level::Error, "config_error"; "{error}");
    }
    for warning in &loaded.warnings {
        crate::event!(log::Level::Warn, "config_warning"; "{warning}");
    }
    // Written after a daemon's chdir("/"): relative to where spawnd started.
    let pid_file = args.pid_file.as_ref().map(|path| {
        std::env::current_dir()
            .map(|dir| dir.join(path))
            .unwrap_or_else(|_| path.clone())
    });
    // Until it detaches, a daemon's failures also go to the starting
    // command's stderr, whatever the log target.
    let fail = |message: &str| {
        crate::event!(log::Level::Error, "start_failed"; "error={message}", message = crate::logging::line::Quoted(&message));
        if args.daemon && log_target.is_some_and(|t| t != config::LogTarget::Stderr) {
            eprintln!("spawnd: {message}");
        }
        Exit::Runtime.into()
    };
    if let Some(path) = &pid_file {
        if let Err(message) = detach::check_pid_file(path) {
            return fail(&message);
        }
    }
    let mut server = match server::Server::new(config_dir, loaded.global, inherited) {
        Ok(server) => server,
        Err(server::StartError(message)) => return fail(&message),
    };
    server.note_included(&loaded.services, &loaded.refused, &loaded.broken);
    server.follow_includes(&loaded.watch);
    let (started, failed) = server.start(loaded.services, &loaded.errors);
    server.open_control();
    sys::release_free_memory();
    if started == 0 && failed > 0 {
        return fail("no service could be started");
    }
    let mut readiness = None;
    if args.daemon {
        // Detached, stderr is /dev/null and the log goes to syslog, unless
        // spawnd.yaml says otherwise. Without syslog the log stays on the
        // stderr spawnd was started with, where that is seen and nobody
        // waits for its end (a terminal, a file, the journal's stream); a
        // pipe cannot be kept (`$(spawnd run --daemon)` would never end).
        let no_syslog = log_target.is_none() && !logging::syslog_available();
        let keep_stderr = no_syslog && logging::stderr_can_be_kept();
        if keep_stderr {
            eprintln!(
                "spawnd: no syslog socket (/dev/log): the daemon logs to this stderr (set log.target in spawnd.yaml)"
            );
        } else if no_syslog {
            eprintln!(
                "spawnd: no syslog socket (/dev/log) and stderr is a pipe: the daemon's log is lost; set log.target in spawnd.yaml, or send stderr to a file"
            );
        }
        match detach::detach(keep_stderr) {
            Ok(ready) => readiness = Some(ready),
            Err(e) => return fail(&format!("cannot detach: {e}")),
        }
        logging::never_block();
        logging::apply_config(log_target, log_level, !keep_stderr);
        server.set_daemonized();
        if let Err(server::StartError(message)) = server.reopen_signals() {
            if let Some(readiness) = readiness {
                readiness.failed(&message);
            }
            return fail(&message);
        }
    }
    let _pid_file = match pid_file.as_deref().map(detach::PidFile::write).transpose() {
        Ok(pid_file) => pid_file,
        Err(e) => {
            let message = format!("cannot write pid file: {e}");
            if let Some(readiness) = readiness {
                readiness.failed(&message);
            }
            return fail(&message);
        }
    };
    if let Some(readiness) = readiness {
        readiness.ready();
    }
    server.open_accept_slot();
    crate::event!(log::Level::Info, "ready"; "services={started} failed={failed} config_errors={} dir={}", loaded.errors.len(), server.config_dir().display());
    server.notify_ready();
    server.run().into()
}
