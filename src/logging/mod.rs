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
//!   `SYSLOG_PID`, and `SPAWND_SERVICE`/`SPAWND_EVENT` taken from the line.
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

pub mod line;

use std::io::Write;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::config::LogTarget;

/// `/dev/log`, or `SPAWND_SYSLOG_SOCKET` (tests).
const SYSLOG_SOCKET: &str = "/dev/log";
/// The journal's native socket, or `SPAWND_JOURNAL_SOCKET` (tests).
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
const SYSLOG_SOCKET_ENV: &str = "SPAWND_SYSLOG_SOCKET";
const JOURNAL_SOCKET_ENV: &str = "SPAWND_JOURNAL_SOCKET";

/// The identifier (syslog tag) of every message.
const IDENTIFIER: &str = "spawnd";
/// syslog facility `daemon` (3), shifted as it appears in `<PRI>`.
const FACILITY_DAEMON: u8 = 3;
/// Longest message text sent in one datagram, in bytes. rsyslog's default
/// maximum message size is 8 KiB; spawnd's own lines are far shorter and
/// relayed child output is already split into shorter lines.
const MAX_MESSAGE: usize = 8 * 1024;

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

/// How stderr is written.
#[derive(Debug)]
enum StderrOut {
    /// As it is (command-line use, and before `never_block`).
    Blocking,
    /// fd 2 is a socket: `send` with `MSG_DONTWAIT`.
    Socket,
    /// fd 2 opened again, non-blocking, for spawnd alone.
    Reopened(std::fs::File),
}

#[derive(Debug)]
enum Sink {
    Stderr(StderrStyle),
    Datagram(Datagram),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StderrStyle {
    timestamps: bool,
    /// `<N>` priority prefixes for the journal's stream reader.
    level_prefix: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Syslog,
    Journal,
}

#[derive(Debug)]
struct Datagram {
    protocol: Protocol,
    socket: UnixDatagram,
    path: PathBuf,
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
        log::warn!(
            "log_target_unavailable wanted={wanted} using={using} error={reason}",
            reason = crate::logging::line::Quoted(&reason)
        );
    }
}

/// Whether a daemon may keep stderr for its log: a terminal, a file or a
/// socket (the journal's stream), not a pipe whose reader waits for its end.
pub fn stderr_can_be_kept() -> bool {
    use nix::sys::stat::SFlag;
    nix::sys::stat::fstat(std::io::stderr()).is_ok_and(|stat| {
        let kind = SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits());
        kind != SFlag::S_IFIFO
    })
}

/// Whether a syslog socket is there to log to.
pub fn syslog_available() -> bool {
    open(Protocol::Syslog).is_ok()
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

fn open(protocol: Protocol) -> Result<Datagram, String> {
    let (default, variable) = match protocol {
        Protocol::Syslog => (SYSLOG_SOCKET, SYSLOG_SOCKET_ENV),
        Protocol::Journal => (JOURNAL_SOCKET, JOURNAL_SOCKET_ENV),
    };
    let path = std::env::var_os(variable)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    match std::fs::metadata(&path) {
        Ok(meta) if meta.file_type().is_socket() => {}
        Ok(_) => return Err(format!("{} is not a socket", path.display())),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    }
    // Created with SOCK_CLOEXEC by std; unbound and unconnected, so each
    // send looks the path up again and a restarted log daemon is found.
    let socket = UnixDatagram::unbound().map_err(|e| format!("socket: {e}"))?;
    let socket = out_of_the_way(socket).map_err(|e| format!("socket: {e}"))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| format!("socket: {e}"))?;
    Ok(Datagram {
        protocol,
        socket,
        path,
    })
}

/// Moves `socket` above the low descriptor slots (close-on-exec): the
/// server claims them for its children with dup3, which would silently
/// replace a log socket opened before it.
fn out_of_the_way(socket: UnixDatagram) -> std::io::Result<UnixDatagram> {
    crate::daemon::slots::above(socket.into()).map(UnixDatagram::from)
}

/// stderr's style: see the module documentation.
fn stderr_style() -> StderrStyle {
    let journal = std::env::var("JOURNAL_STREAM")
        .ok()
        .is_some_and(|value| stderr_is_journal_stream(&value));
    StderrStyle {
        timestamps: !journal,
        level_prefix: journal,
    }
}

/// `JOURNAL_STREAM` is `DEVICE:INODE` of the stream systemd connected; it
/// counts only while fd 2 is still that stream (not redirected since).
fn stderr_is_journal_stream(value: &str) -> bool {
    let Some((dev, ino)) = value.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // dev_t and ino_t are not u64 on every architecture.
    #[allow(clippy::unnecessary_cast)]
    match nix::sys::stat::fstat(std::io::stderr()) {
        Ok(stat) => stat.st_dev as u64 == dev && stat.st_ino as u64 == ino,
        Err(_) => false,
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
                    if datagram.send(Level::Warn, &notice, pid) {
                        self.dropped.fetch_sub(dropped, Ordering::Relaxed);
                    }
                }
                if !datagram.send(record.level(), &message, pid) {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    fn flush(&self) {
        flush();
    }
}

impl Datagram {
    /// One non-blocking send; false if the line was dropped.
    fn send(&self, level: Level, message: &str, pid: u32) -> bool {
        let packet = match self.protocol {
            Protocol::Syslog => syslog_packet(level, message, pid),
            Protocol::Journal => journal_packet(level, message, pid),
        };
        matches!(self.socket.send_to(&packet, &self.path), Ok(n) if n == packet.len())
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

#[cfg(test)]
fn stderr_line(style: StderrStyle, level: Level, message: &str) -> Vec<u8> {
    let mut line = Vec::with_capacity(message.len() + 40);
    let mut stamp = Stamp::new();
    let stamp = style.timestamps.then_some(&mut stamp);
    append_stderr_line(&mut line, style, stamp, level, format_args!("{message}"));
    line
}

/// Appends one formatted line to `out` (no intermediate allocation), time
/// stamped through `stamp` if given.
fn append_stderr_line(
    out: &mut Vec<u8>,
    style: StderrStyle,
    stamp: Option<&mut Stamp>,
    level: Level,
    message: std::fmt::Arguments,
) {
    if style.level_prefix {
        let _ = write!(out, "<{}>", severity(level));
    }
    if let Some(stamp) = stamp {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        out.extend_from_slice(stamp.at(now));
        out.push(b' ');
    }
    out.extend_from_slice(level_name(level).as_bytes());
    out.push(b' ');
    match message.as_str() {
        Some(text) => out.extend_from_slice(text.as_bytes()),
        None => {
            let _ = out.write_fmt(message);
        }
    }
    out.push(b'\n');
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
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

fn nonblocking_stderr() -> StderrOut {
    use nix::sys::stat::SFlag;
    let Ok(stat) = nix::sys::stat::fstat(std::io::stderr()) else {
        return StderrOut::Blocking;
    };
    match SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFSOCK => StderrOut::Socket,
        SFlag::S_IFIFO | SFlag::S_IFCHR => {
            use std::os::unix::fs::OpenOptionsExt;
            // A new open file description of the same pipe or terminal:
            // O_NONBLOCK on it does not change the one spawnd shares with
            // its parent (a shell would find its terminal non-blocking).
            let reopened = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
                .open("/proc/self/fd/2")
                .and_then(|file| {
                    let fd = crate::daemon::slots::above(std::os::fd::OwnedFd::from(file))?;
                    Ok(std::fs::File::from(fd))
                });
            match reopened {
                Ok(file) => StderrOut::Reopened(file),
                Err(_) => StderrOut::Blocking,
            }
        }
        // A regular file takes every write; so does /dev/null.
        _ => StderrOut::Blocking,
    }
}

/// Writes as much of `pending` as fits now. What does not: a line already
/// partly written stays, to be finished first next time; the lines after it
/// are dropped and counted in `dropped`.
fn write_pending(out: &mut StderrOut, pending: &mut Vec<u8>, dropped: &AtomicU64) {
    let written = match out {
        StderrOut::Blocking => {
            let _ = std::io::stderr().lock().write_all(pending);
            pending.len()
        }
        StderrOut::Socket => write_some_nonblocking(pending, |data| {
            nix::sys::socket::send(
                libc::STDERR_FILENO,
                data,
                nix::sys::socket::MsgFlags::MSG_DONTWAIT | nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
            )
            .map_err(std::io::Error::from)
        }),
        StderrOut::Reopened(file) => write_some_nonblocking(pending, |data| file.write(data)),
    };
    let lost = keep_unwritten(pending, written);
    if lost > 0 {
        dropped.fetch_add(lost, Ordering::Relaxed);
    }
}

/// Writes until done or the writer would block (or fails); returns how
/// many bytes went.
fn write_some_nonblocking(
    data: &[u8],
    mut write: impl FnMut(&[u8]) -> std::io::Result<usize>,
) -> usize {
    let mut written = 0;
    while written < data.len() {
        match write(&data[written..]) {
            Ok(0) => break,
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    written
}

/// After `written` bytes of `pending` went out: keeps the rest of a line
/// cut in the middle, drops the whole lines after it. Returns how many
/// lines were dropped.
fn keep_unwritten(pending: &mut Vec<u8>, written: usize) -> u64 {
    if written >= pending.len() {
        pending.clear();
        return 0;
    }
    let rest = &pending[written..];
    let cut_line = written > 0 && pending[written - 1] != b'\n';
    let keep = if cut_line {
        rest.iter()
            .position(|b| *b == b'\n')
            .map_or(rest.len(), |at| at + 1)
    } else {
        0
    };
    let lost = rest[keep..].iter().filter(|b| **b == b'\n').count() as u64;
    pending.drain(..written);
    pending.truncate(keep);
    lost
}

/// `<PRI>spawnd[PID]: message`, one line, at most `MAX_MESSAGE` bytes of text.
fn syslog_packet(level: Level, message: &str, pid: u32) -> Vec<u8> {
    let pri = FACILITY_DAEMON * 8 + severity(level);
    let text = truncate(message, MAX_MESSAGE);
    let mut packet = Vec::with_capacity(text.len() + 32);
    let _ = write!(packet, "<{pri}>{IDENTIFIER}[{pid}]: ");
    // One datagram is one message; keep it one line for the readers of
    // plain-text log files.
    packet.extend(
        text.bytes()
            .map(|b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
    );
    packet
}

/// The journal's native protocol: `KEY=value\n` fields; a value containing a
/// newline is sent as `KEY\n`, its length as 64-bit little endian, the value
/// and `\n`.
fn journal_packet(level: Level, message: &str, pid: u32) -> Vec<u8> {
    let text = truncate(message, MAX_MESSAGE);
    let mut packet = Vec::with_capacity(text.len() + 160);
    journal_field(&mut packet, "MESSAGE", text);
    journal_field(&mut packet, "PRIORITY", &severity(level).to_string());
    journal_field(&mut packet, "SYSLOG_IDENTIFIER", IDENTIFIER);
    journal_field(&mut packet, "SYSLOG_FACILITY", &FACILITY_DAEMON.to_string());
    journal_field(&mut packet, "SYSLOG_PID", &pid.to_string());
    if let Some(service) = field_value(text, "service") {
        journal_field(&mut packet, "SPAWND_SERVICE", service);
    }
    if let Some(event) = event_name(text) {
        journal_field(&mut packet, "SPAWND_EVENT", event);
    }
    packet
}

fn journal_field(packet: &mut Vec<u8>, key: &str, value: &str) {
    packet.extend_from_slice(key.as_bytes());
    if value.contains('\n') {
        packet.push(b'\n');
        packet.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        packet.push(b'=');
    }
    packet.extend_from_slice(value.as_bytes());
    packet.push(b'\n');
}

/// The value of `key=value` in a log line (a whole word; quotes stripped).
fn field_value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let mut rest = line;
    loop {
        let at = rest.find(key)?;
        let before_ok = at == 0 || rest.as_bytes()[at - 1] == b' ';
        let after = &rest[at + key.len()..];
        if before_ok {
            if let Some(value) = after.strip_prefix('=') {
                let value = match value.strip_prefix('"') {
                    Some(quoted) => quoted.split('"').next().unwrap_or(""),
                    None => value.split(char::is_whitespace).next().unwrap_or(""),
                };
                return (!value.is_empty()).then_some(value);
            }
        }
        rest = after;
    }
}

/// The event: the line's first word when it is a bare name (`accept`,
/// `exit`, `refuse`, ...).
fn event_name(line: &str) -> Option<&str> {
    let word = line.split(' ').next()?;
    let bare = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    bare.then_some(word)
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// RFC 3339 UTC time stamps with milliseconds, without pulling in a date
/// crate. The text of the current second is kept: a busy spawnd writes
/// thousands of lines a second, and each then only needs its milliseconds.
struct Stamp {
    second: u64,
    text: [u8; 24],
}

impl Stamp {
    const fn new() -> Stamp {
        Stamp {
            second: u64::MAX,
            text: *b"0000-00-00T00:00:00.000Z",
        }
    }

    /// The stamp of `since_epoch`.
    fn at(&mut self, since_epoch: Duration) -> &[u8; 24] {
        let secs = since_epoch.as_secs();
        if secs != self.second {
            self.second = secs;
            let (year, month, day) = civil_from_days((secs / 86_400) as i64);
            let rem = secs % 86_400;
            let text = &mut self.text;
            put_digits(&mut text[0..4], year.clamp(0, 9999) as u64);
            put_digits(&mut text[5..7], u64::from(month));
            put_digits(&mut text[8..10], u64::from(day));
            put_digits(&mut text[11..13], rem / 3600);
            put_digits(&mut text[14..16], rem / 60 % 60);
            put_digits(&mut text[17..19], rem % 60);
        }
        put_digits(
            &mut self.text[20..23],
            u64::from(since_epoch.subsec_millis()),
        );
        &self.text
    }
}

/// Fills `field` with the last `field.len()` decimal digits of `value`.
fn put_digits(field: &mut [u8], mut value: u64) {
    for digit in field.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn an_unwritten_tail_keeps_only_the_cut_line() {
        let mut pending = b"one\ntwo\nthree\n".to_vec();
        assert_eq!(keep_unwritten(&mut pending, 14), 0);
        assert!(pending.is_empty());
        let mut pending = b"one\ntwo\nthree\n".to_vec();
        // "one\ntw" went out: "o\n" finishes the line; "three" is lost.
        assert_eq!(keep_unwritten(&mut pending, 6), 1);
        assert_eq!(pending, b"o\n");
        let mut pending = b"one\ntwo\nthree\n".to_vec();
        // Nothing went out: every line is lost, none was cut.
        assert_eq!(keep_unwritten(&mut pending, 0), 3);
        assert!(pending.is_empty());
        let mut pending = b"one\ntwo\n".to_vec();
        assert_eq!(keep_unwritten(&mut pending, 4), 1);
        assert!(pending.is_empty());
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_781), (2026, 11, 24));
    }

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

    #[test]
    fn syslog_priorities_are_facility_daemon() {
        let line = "accept service=tftp peer=127.0.0.1:5000 pid=9";
        assert_eq!(
            syslog_packet(Level::Info, line, 42),
            b"<30>spawnd[42]: accept service=tftp peer=127.0.0.1:5000 pid=9".to_vec()
        );
        assert!(syslog_packet(Level::Error, "x", 1).starts_with(b"<27>spawnd[1]: "));
        assert!(syslog_packet(Level::Warn, "x", 1).starts_with(b"<28>"));
        assert!(syslog_packet(Level::Debug, "x", 1).starts_with(b"<31>"));
        assert!(syslog_packet(Level::Trace, "x", 1).starts_with(b"<31>"));
    }

    #[test]
    fn syslog_is_one_line_and_bounded() {
        assert_eq!(
            syslog_packet(Level::Info, "a\nb\r\nc", 7),
            b"<30>spawnd[7]: a b  c".to_vec()
        );
        let long = "é".repeat(MAX_MESSAGE); // two bytes each
        let packet = syslog_packet(Level::Info, &long, 7);
        let text = std::str::from_utf8(&packet[b"<30>spawnd[7]: ".len()..]).unwrap();
        assert_eq!(text.len(), MAX_MESSAGE);
        assert!(text.chars().all(|c| c == 'é'));
    }

    fn journal_fields(packet: &[u8]) -> Vec<(String, String)> {
        let mut fields = Vec::new();
        let mut rest = packet;
        while !rest.is_empty() {
            let nl = rest.iter().position(|&b| b == b'\n').unwrap();
            let line = &rest[..nl];
            if let Some(eq) = line.iter().position(|&b| b == b'=') {
                fields.push((
                    String::from_utf8(line[..eq].to_vec()).unwrap(),
                    String::from_utf8(line[eq + 1..].to_vec()).unwrap(),
                ));
                rest = &rest[nl + 1..];
            } else {
                let key = String::from_utf8(line.to_vec()).unwrap();
                let len = u64::from_le_bytes(rest[nl + 1..nl + 9].try_into().unwrap()) as usize;
                let value = &rest[nl + 9..nl + 9 + len];
                assert_eq!(rest[nl + 9 + len], b'\n');
                fields.push((key, String::from_utf8(value.to_vec()).unwrap()));
                rest = &rest[nl + 10 + len..];
            }
        }
        fields
    }

    #[test]
    fn journal_native_fields() {
        let packet = journal_packet(
            Level::Warn,
            "refuse service=ctf peer=10.0.0.1:4000 reason=per_source",
            99,
        );
        let fields = journal_fields(&packet);
        let get = |k: &str| {
            fields
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            get("MESSAGE"),
            Some("refuse service=ctf peer=10.0.0.1:4000 reason=per_source")
        );
        assert_eq!(get("PRIORITY"), Some("4"));
        assert_eq!(get("SYSLOG_IDENTIFIER"), Some("spawnd"));
        assert_eq!(get("SYSLOG_FACILITY"), Some("3"));
        assert_eq!(get("SYSLOG_PID"), Some("99"));
        assert_eq!(get("SPAWND_SERVICE"), Some("ctf"));
        assert_eq!(get("SPAWND_EVENT"), Some("refuse"));
    }

    #[test]
    fn journal_binary_field_for_newlines() {
        let packet = journal_packet(Level::Info, "two\nlines", 1);
        assert!(packet.starts_with(b"MESSAGE\n\x09\0\0\0\0\0\0\0two\nlines\n"));
        let fields = journal_fields(&packet);
        assert_eq!(fields[0], ("MESSAGE".into(), "two\nlines".into()));
        // No service: no SPAWND_SERVICE field.
        assert!(!fields.iter().any(|(k, _)| k == "SPAWND_SERVICE"));
    }

    #[test]
    fn service_field_extraction() {
        assert_eq!(
            field_value("accept service=tftp pid=1", "service"),
            Some("tftp")
        );
        assert_eq!(field_value("service=a.b-c_d", "service"), Some("a.b-c_d"));
        assert_eq!(
            field_value("x service=\"odd name\" y", "service"),
            Some("odd name")
        );
        assert_eq!(field_value("ready services=3 failed=0", "service"), None);
        assert_eq!(field_value("x myservice=a", "service"), None);
        assert_eq!(field_value("x service= y", "service"), None);
        assert_eq!(
            field_value("ready services=3 then service=z", "service"),
            Some("z")
        );
        assert_eq!(event_name("accept service=x"), Some("accept"));
        assert_eq!(
            event_name("config_error ./a.yaml:1:2: x"),
            Some("config_error")
        );
        assert_eq!(event_name("Bad Thing"), None);
        assert_eq!(event_name(""), None);
    }

    #[test]
    fn stderr_lines() {
        let plain = StderrStyle {
            timestamps: false,
            level_prefix: false,
        };
        assert_eq!(
            stderr_line(plain, Level::Info, "ready services=1"),
            b"info ready services=1\n"
        );
        let journal = StderrStyle {
            timestamps: false,
            level_prefix: true,
        };
        assert_eq!(
            stderr_line(journal, Level::Error, "start_failed"),
            b"<3>error start_failed\n"
        );
        let stamped = StderrStyle {
            timestamps: true,
            level_prefix: false,
        };
        let line = String::from_utf8(stderr_line(stamped, Level::Warn, "w")).unwrap();
        assert!(line.ends_with("Z warn w\n"), "{line}");
        assert_eq!(line.len(), "2026-11-24T20:46:46.040Z warn w\n".len());
        for (at, byte) in line.bytes().take(23).enumerate() {
            match at {
                4 | 7 => assert_eq!(byte, b'-', "{line}"),
                10 => assert_eq!(byte, b'T', "{line}"),
                13 | 16 => assert_eq!(byte, b':', "{line}"),
                19 => assert_eq!(byte, b'.', "{line}"),
                _ => assert!(byte.is_ascii_digit(), "{line}"),
            }
        }
    }

    #[test]
    fn stamps_follow_the_clock_across_seconds_and_days() {
        let mut stamp = Stamp::new();
        let at = |stamp: &mut Stamp, secs: u64, millis: u32| {
            String::from_utf8(stamp.at(Duration::new(secs, millis * 1_000_000)).to_vec()).unwrap()
        };
        // 2026-11-24T23:59:59 UTC
        let secs = 20_781 * 86_400 + 86_399;
        assert_eq!(at(&mut stamp, secs, 5), "2026-11-24T23:59:59.005Z");
        assert_eq!(at(&mut stamp, secs, 999), "2026-11-24T23:59:59.999Z");
        assert_eq!(at(&mut stamp, secs + 1, 0), "2026-11-25T00:00:00.000Z");
        assert_eq!(at(&mut stamp, 0, 42), "1970-01-01T00:00:00.042Z");
    }

    #[test]
    fn fixed_width_digits() {
        let mut field = [b'x'; 4];
        put_digits(&mut field, 7);
        assert_eq!(&field, b"0007");
        put_digits(&mut field, 2026);
        assert_eq!(&field, b"2026");
        put_digits(&mut field[..2], 123);
        assert_eq!(&field, b"2326");
    }

    #[test]
    fn journal_stream_must_match_fd_2() {
        assert!(!stderr_is_journal_stream("garbage"));
        assert!(!stderr_is_journal_stream("1:x"));
        let stat = nix::sys::stat::fstat(std::io::stderr()).unwrap();
        let mine = format!("{}:{}", stat.st_dev, stat.st_ino);
        assert!(stderr_is_journal_stream(&mine));
        let other = format!("{}:{}", stat.st_dev, stat.st_ino + 1);
        assert!(!stderr_is_journal_stream(&other));
    }

    fn test_socket(dir: &Path, protocol: Protocol) -> (UnixDatagram, Datagram) {
        let path = dir.join("log.sock");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let socket = UnixDatagram::unbound().unwrap();
        socket.set_nonblocking(true).unwrap();
        (
            receiver,
            Datagram {
                protocol,
                socket,
                path,
            },
        )
    }

    #[test]
    fn datagrams_arrive_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (receiver, datagram) = test_socket(dir.path(), Protocol::Syslog);
        assert!(datagram.send(Level::Info, "accept service=a", 5));
        let mut buf = [0u8; 256];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"<30>spawnd[5]: accept service=a");
    }

    #[test]
    fn a_full_socket_drops_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let (_receiver, datagram) = test_socket(dir.path(), Protocol::Journal);
        let started = std::time::Instant::now();
        let mut sent = 0;
        let mut dropped = 0;
        for i in 0..5000 {
            if datagram.send(Level::Info, &format!("flood service=x n={i}"), 1) {
                sent += 1;
            } else {
                dropped += 1;
            }
        }
        assert!(sent > 0, "nothing was sent");
        assert!(dropped > 0, "the receiver queue never filled ({sent} sent)");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn a_missing_socket_is_a_drop_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let (receiver, datagram) = test_socket(dir.path(), Protocol::Syslog);
        drop(receiver);
        std::fs::remove_file(dir.path().join("log.sock")).unwrap();
        assert!(!datagram.send(Level::Error, "gone", 1));
    }
}
