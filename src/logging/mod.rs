//! A small `log` backend: one event per line, `key=value` fields, to one of
//! three targets (`log.target` in `spawnd.yaml`):
//!
//! - **stderr** (the default in the foreground): written with a single
//!   `write` so lines from spawnd never interleave mid-line with lines from
//!   children sharing the same stderr. Lines carry an RFC 3339 time stamp,
//!   unless stderr is the systemd journal's stream (`JOURNAL_STREAM` names
//!   our fd 2), which stamps lines itself; then each line starts with a
//!   `<N>` syslog priority prefix that the journal turns into the entry's
//!   priority (systemd's `SyslogLevelPrefix=`, on by default).
//! - **syslog**: one datagram per line to `/dev/log`, RFC 3164 style
//!   `<PRI>spawnd[PID]: message` with facility `daemon`. No time stamp and
//!   no host name: glibc's `syslog(3)` omits the host name on the local
//!   socket, and both rsyslog's imuxsock and journald stamp a message that
//!   has no time stamp with the time of reception.
//! - **journal**: the journal's native protocol, one datagram of
//!   `KEY=value` fields per line to `/run/systemd/journal/socket`, with
//!   `MESSAGE`, `PRIORITY`, `SYSLOG_IDENTIFIER=spawnd`, `SYSLOG_FACILITY`,
//!   `SYSLOG_PID`, and `SPAWND_SERVICE`/`SPAWND_EVENT` from the record's
//!   key-values (every line is logged through `crate::event!`).
//!
//! One file per sink: `stderr`, `syslog` and `journal` (formats), and
//! `datagram` (the socket both of the last two write to); `line` renders the
//! pieces of a line.
//!
//! Logging never blocks the event loop (`spawnd run`, from
//! `never_block`): the datagram socket is non-blocking, and so is stderr,
//! through a descriptor of its own (a pipe or a terminal is opened again
//! from `/proc/self/fd/2` with `O_NONBLOCK`, so the shared one is left as
//! it is; a socket, such as the journal's stream, is written with
//! `MSG_DONTWAIT`). A line that does not fit (a reader that stopped
//! reading, a full queue, a log daemon gone) is dropped and counted, and
//! the count is reported as `log_dropped count=N` ahead of the next line
//! that gets through; a line already partly written is finished first, so
//! no line is ever cut. Nothing here panics.
//!
//! For tests only, `SPAWND_SYSLOG_SOCKET` and `SPAWND_JOURNAL_SOCKET` replace
//! the two socket paths.

mod datagram;
mod journal;
pub mod line;
mod stderr;
mod syslog;

pub use datagram::syslog_available;
use datagram::{open, Datagram, Protocol};
pub use stderr::stderr_can_be_kept;
use stderr::{
    append_stderr_line, nonblocking_stderr, stderr_style, write_pending, Stamp, StderrOut,
    StderrStyle,
};

/// Logs one event: `event!(log::Level::Info, "accept", service = name;
/// "peer={} pid={pid}", peer)` writes `accept service=NAME peer=... pid=...`.
/// The event and the service also travel as the record's key-values
/// (`Fields`): the journal's `SPAWND_EVENT` and `SPAWND_SERVICE` come from
/// them, not from the text.
#[macro_export]
macro_rules! event {
    ($level:expr, $event:literal, service = $service:expr; $($rest:tt)+) => {{
        let service: &str = &$service;
        log::log!($level, event = $event, service = service;
            "{} service={} {}", $event, service, format_args!($($rest)+))
    }};
    ($level:expr, $event:literal, service = $service:expr) => {{
        let service: &str = &$service;
        log::log!($level, event = $event, service = service; "{} service={}", $event, service)
    }};
    ($level:expr, $event:literal; $($rest:tt)+) => {
        log::log!($level, event = $event; "{} {}", $event, format_args!($($rest)+))
    };
    ($level:expr, $event:literal) => {
        log::log!($level, event = $event; "{}", $event)
    };
}

/// What a line carries besides its text, read from the record's
/// key-values (see `event!`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fields {
    pub event: Option<String>,
    pub service: Option<String>,
}

impl Fields {
    fn of(record: &Record) -> Fields {
        let source = record.key_values();
        let get = |key: &str| {
            source
                .get(log::kv::Key::from_str(key))
                .map(|v| v.to_string())
        };
        Fields {
            event: get("event"),
            service: get("service"),
        }
    }
}

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::config::LogTarget;

struct Logger {
    /// One lock for all of it: it is taken for every line.
    state: Mutex<State>,
    batching: AtomicBool,
    /// Lines lost since the last one that got through.
    dropped: AtomicU64,
    /// The level came from the command line or `RUST_LOG`, so `log.level`
    /// in `spawnd.yaml` does not override it.
    level_from_command_line: AtomicBool,
}

struct State {
    sink: Sink,
    /// Lines for stderr gathered during one turn of the event loop, written
    /// with one `write` by `flush` (a busy spawnd logs a line per
    /// connection; a syscall for each would be a tenth of its work).
    pending: Vec<u8>,
    stamp: Stamp,
    out: StderrOut,
}

#[derive(Debug)]
enum Sink {
    Stderr(StderrStyle),
    Datagram(Datagram),
}

static LOGGER: Logger = Logger {
    state: Mutex::new(State {
        sink: Sink::Stderr(StderrStyle {
            timestamps: true,
            level_prefix: false,
        }),
        pending: Vec::new(),
        stamp: Stamp::new(),
        out: StderrOut::Blocking,
    }),
    batching: AtomicBool::new(false),
    dropped: AtomicU64::new(0),
    level_from_command_line: AtomicBool::new(false),
};

/// Installs the logger, writing to stderr. `explicit` wins over `RUST_LOG`;
/// `-v`/`-q` shift the default level of `info`.
pub fn init(explicit: Option<LevelFilter>, verbose: u8, quiet: u8) {
    let from_env = std::env::var("RUST_LOG").ok().and_then(|v| parse_level(&v));
    let given = explicit.is_some() || from_env.is_some() || verbose > 0 || quiet > 0;
    let level = explicit
        .or(from_env)
        .unwrap_or_else(|| shift_level(LevelFilter::Info, verbose, quiet));
    LOGGER
        .level_from_command_line
        .store(given, Ordering::Relaxed);
    LOGGER.lock_state().sink = Sink::Stderr(stderr_style());
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

/// Sends every following line to `target`. A `journal` target whose socket
/// does not exist falls back to syslog, and a `syslog` target without
/// `/dev/log` to stderr, with a warning through whatever is used instead.
/// Calling it again (on reload, after `--daemon` detaches) re-opens the
/// socket, which also picks up a changed process id.
pub fn set_target(target: LogTarget) {
    let mut fallback = None;
    let sink = match target {
        LogTarget::Stderr => Sink::Stderr(stderr_style()),
        LogTarget::Journal => match open(Protocol::Journal) {
            Ok(datagram) => Sink::Datagram(datagram),
            Err(journal_error) => {
                fallback = Some(("journal", journal_error));
                match open(Protocol::Syslog) {
                    Ok(datagram) => Sink::Datagram(datagram),
                    Err(_) => Sink::Stderr(stderr_style()),
                }
            }
        },
        LogTarget::Syslog => match open(Protocol::Syslog) {
            Ok(datagram) => Sink::Datagram(datagram),
            Err(error) => {
                fallback = Some(("syslog", error));
                Sink::Stderr(stderr_style())
            }
        },
    };
    let using = sink.label();
    LOGGER.lock_state().sink = sink;
    if let Some((wanted, reason)) = fallback {
        crate::event!(log::Level::Warn, "log_target_unavailable";
            "wanted={wanted} using={using} error={reason}",
            reason = crate::logging::line::Quoted(&reason)
        );
    }
}

/// Sets the level, whatever the command line said.
pub fn set_level(level: LevelFilter) {
    log::set_max_level(level);
}

/// Whether `--log-level`, `-v`, `-q` or `RUST_LOG` chose the level; then a
/// `log.level` in `spawnd.yaml` should not override it.
pub fn level_from_command_line() -> bool {
    LOGGER.level_from_command_line.load(Ordering::Relaxed)
}

/// Applies the `log:` section of `spawnd.yaml` at start, on reload and after
/// `--daemon` detaches: the configured target, else syslog when daemonized
/// (stderr is gone then), else stderr; the configured level unless the
/// command line chose one.
pub fn apply_config(target: Option<LogTarget>, level: Option<LevelFilter>, daemonized: bool) {
    let target = target.unwrap_or(if daemonized {
        LogTarget::Syslog
    } else {
        LogTarget::Stderr
    });
    set_target(target);
    if let Some(level) = level {
        if !level_from_command_line() {
            set_level(level);
        }
    }
}

/// Accepts `debug` or the last plain level in a `RUST_LOG`-style list
/// (`spawnd=debug,info`), ignoring module filters we do not support.
fn parse_level(spec: &str) -> Option<LevelFilter> {
    spec.rsplit(',')
        .filter_map(|part| part.rsplit('=').next())
        .find_map(|level| level.trim().parse().ok())
}

fn shift_level(base: LevelFilter, verbose: u8, quiet: u8) -> LevelFilter {
    const LEVELS: [LevelFilter; 6] = [
        LevelFilter::Off,
        LevelFilter::Error,
        LevelFilter::Warn,
        LevelFilter::Info,
        LevelFilter::Debug,
        LevelFilter::Trace,
    ];
    let index =
        LEVELS.iter().position(|l| *l == base).unwrap_or(3) as i32 + verbose as i32 - quiet as i32;
    LEVELS[index.clamp(0, 5) as usize]
}

impl Sink {
    fn label(&self) -> &'static str {
        match self {
            Sink::Stderr(_) => "stderr",
            Sink::Datagram(d) if d.protocol == Protocol::Syslog => "syslog",
            Sink::Datagram(_) => "journal",
        }
    }
}

impl Logger {
    fn lock_state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves a usable sink.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut state = self.lock_state();
        let State {
            sink,
            pending,
            stamp,
            out,
        } = &mut *state;
        match sink {
            Sink::Stderr(style) => {
                if pending.len() >= MAX_PENDING {
                    // The reader is behind by a whole batch: this line is lost.
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let dropped = self.dropped.swap(0, Ordering::Relaxed);
                if dropped > 0 {
                    let stamp = style.timestamps.then_some(&mut *stamp);
                    let notice = format_args!("log_dropped count={dropped}");
                    append_stderr_line(pending, *style, stamp, Level::Warn, notice);
                }
                let stamp = style.timestamps.then_some(stamp);
                append_stderr_line(pending, *style, stamp, record.level(), *record.args());
                if !self.batching.load(Ordering::Relaxed) || pending.len() >= MAX_PENDING {
                    write_pending(out, pending, &self.dropped);
                }
            }
            Sink::Datagram(datagram) => {
                let message = record.args().to_string();
                let pid = std::process::id();
                let dropped = self.dropped.load(Ordering::Relaxed);
                if dropped > 0 {
                    let notice = format!("log_dropped count={dropped}");
                    let fields = Fields {
                        event: Some("log_dropped".into()),
                        service: None,
                    };
                    if datagram.send(Level::Warn, &notice, pid, &fields) {
                        self.dropped.fetch_sub(dropped, Ordering::Relaxed);
                    }
                }
                if !datagram.send(record.level(), &message, pid, &Fields::of(record)) {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    fn flush(&self) {
        flush();
    }
}

/// The syslog severity of a `log` level.
fn severity(level: Level) -> u8 {
    match level {
        Level::Error => 3, // err
        Level::Warn => 4,  // warning
        Level::Info => 6,  // info
        Level::Debug | Level::Trace => 7,
    }
}

/// Past this, a batch is written at once rather than at the end of the turn.
const MAX_PENDING: usize = 64 * 1024;

/// Gathers stderr lines until `flush` (called by the event loop at the end
/// of every turn) instead of writing each one.
pub fn set_batching(on: bool) {
    LOGGER.batching.store(on, Ordering::Relaxed);
    if !on {
        flush();
    }
}

/// Writes the lines gathered so far (as much of them as fits).
pub fn flush() {
    let mut state = LOGGER.lock_state();
    let State { pending, out, .. } = &mut *state;
    if !pending.is_empty() {
        write_pending(out, pending, &LOGGER.dropped);
    }
}

/// From now on stderr is written without ever blocking (see the module
/// comment). Call again when fd 2 changes (`--daemon`).
pub fn never_block() {
    let out = nonblocking_stderr();
    LOGGER.lock_state().out = out;
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_spec() {
        assert_eq!(parse_level("debug"), Some(LevelFilter::Debug));
        assert_eq!(parse_level("spawnd=trace,warn"), Some(LevelFilter::Warn));
        assert_eq!(parse_level("nonsense"), None);
    }

    #[test]
    fn verbosity_shifts_and_clamps() {
        assert_eq!(shift_level(LevelFilter::Info, 1, 0), LevelFilter::Debug);
        assert_eq!(shift_level(LevelFilter::Info, 9, 0), LevelFilter::Trace);
        assert_eq!(shift_level(LevelFilter::Info, 0, 9), LevelFilter::Off);
    }
}
