//! A small `log` backend: one event per line, `key=value` fields, to stderr.
//!
//! Messages are written with a single `write` so lines from spawnd never
//! interleave mid-line with lines from children sharing the same stderr.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use log::{LevelFilter, Log, Metadata, Record};

struct StderrLogger {
    timestamps: AtomicBool,
}

static LOGGER: StderrLogger = StderrLogger {
    timestamps: AtomicBool::new(true),
};

/// Installs the logger. `explicit` wins over `RUST_LOG`; `-v`/`-q` shift the
/// default level of `info`.
pub fn init(explicit: Option<LevelFilter>, verbose: u8, quiet: u8) {
    let level = explicit
        .or_else(|| std::env::var("RUST_LOG").ok().and_then(|v| parse_level(&v)))
        .unwrap_or_else(|| shift_level(LevelFilter::Info, verbose, quiet));
    // Under systemd the journal stamps every line itself.
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    LOGGER.timestamps.store(!under_journal, Ordering::Relaxed);
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
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

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut line = Vec::with_capacity(160);
        if self.timestamps.load(Ordering::Relaxed) {
            write_utc_timestamp(&mut line);
            line.push(b' ');
        }
        let _ = writeln!(
            line,
            "{} {}",
            record.level().as_str().to_ascii_lowercase(),
            record.args()
        );
        let _ = std::io::stderr().lock().write_all(&line);
    }

    fn flush(&self) {}
}

/// RFC 3339 UTC with milliseconds, without pulling in a date crate.
fn write_utc_timestamp(out: &mut Vec<u8>) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        now.subsec_millis()
    );
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
}
