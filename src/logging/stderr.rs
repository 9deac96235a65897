//! The stderr sink: lines gathered per turn of the event loop and written
//! with one `write`, never blocking (a descriptor of spawnd's own, opened
//! non-blocking, or `MSG_DONTWAIT` on a socket); what does not fit is
//! dropped and counted, and a line already partly written is finished
//! first. RFC 3339 time stamps, or `<N>` priority prefixes when stderr is
//! the journal's stream.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::Level;

use super::severity;

/// How stderr is written.
#[derive(Debug)]
pub(super) enum StderrOut {
    /// As it is (command-line use, and before `never_block`).
    Blocking,
    /// fd 2 is a socket: `send` with `MSG_DONTWAIT`.
    Socket,
    /// fd 2 opened again, non-blocking, for spawnd alone.
    Reopened(std::fs::File),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StderrStyle {
    pub(super) timestamps: bool,
    /// `<N>` priority prefixes for the journal's stream reader.
    pub(super) level_prefix: bool,
}

/// stderr's style: see the module documentation.
pub(super) fn stderr_style() -> StderrStyle {
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
pub(super) fn stderr_is_journal_stream(value: &str) -> bool {
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

/// Whether a daemon may keep stderr for its log: a terminal, a file or a
/// socket (the journal's stream), not a pipe whose reader waits for its end.
pub fn stderr_can_be_kept() -> bool {
    use nix::sys::stat::SFlag;
    nix::sys::stat::fstat(std::io::stderr()).is_ok_and(|stat| {
        let kind = SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits());
        kind != SFlag::S_IFIFO
    })
}

#[cfg(test)]
pub(super) fn stderr_line(style: StderrStyle, level: Level, message: &str) -> Vec<u8> {
    let mut line = Vec::with_capacity(message.len() + 40);
    let mut stamp = Stamp::new();
    let stamp = style.timestamps.then_some(&mut stamp);
    append_stderr_line(&mut line, style, stamp, level, format_args!("{message}"));
    line
}

/// Appends one formatted line to `out` (no intermediate allocation), time
/// stamped through `stamp` if given.
pub(super) fn append_stderr_line(
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

pub(super) fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

pub(super) fn nonblocking_stderr() -> StderrOut {
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
pub(super) fn write_pending(out: &mut StderrOut, pending: &mut Vec<u8>, dropped: &AtomicU64) {
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
pub(super) fn write_some_nonblocking(
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
pub(super) fn keep_unwritten(pending: &mut Vec<u8>, written: usize) -> u64 {
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

/// RFC 3339 UTC time stamps with milliseconds, without pulling in a date
/// crate. The text of the current second is kept: a busy spawnd writes
/// thousands of lines a second, and each then only needs its milliseconds.
pub(super) struct Stamp {
    pub(super) second: u64,
    pub(super) text: [u8; 24],
}

impl Stamp {
    pub(super) const fn new() -> Stamp {
        Stamp {
            second: u64::MAX,
            text: *b"0000-00-00T00:00:00.000Z",
        }
    }

    /// The stamp of `since_epoch`.
    pub(super) fn at(&mut self, since_epoch: Duration) -> &[u8; 24] {
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
pub(super) fn put_digits(field: &mut [u8], mut value: u64) {
    for digit in field.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's algorithm).
pub(super) fn civil_from_days(days: i64) -> (i64, u32, u32) {
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
}
