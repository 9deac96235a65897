//! `stderr: log`: each child's stderr is a pipe read by the event loop; each
//! line becomes a log line tagged with service and pid. Lines are capped in
//! length and a flood is rate-limited and counted, so a child cannot grow
//! spawnd's memory or drown its log.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::Interest;

use super::ids::SourceId;
use super::{Server, Source, StderrPipe};

/// Longer lines are split.
const MAX_LINE: usize = 2048;
/// Lines per second relayed per child before lines are dropped (and counted).
const LINES_PER_SECOND: u32 = 100;

/// Counts lines per one-second window.
pub(super) struct Relay {
    window_start: Instant,
    in_window: u32,
    dropped: u64,
}

impl Relay {
    fn new() -> Self {
        Relay {
            window_start: Instant::now(),
            in_window: 0,
            dropped: 0,
        }
    }

    /// Whether one more line may be logged now.
    fn allow(&mut self, now: Instant) -> bool {
        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.in_window = 0;
        }
        self.in_window += 1;
        if self.in_window > LINES_PER_SECOND {
            self.dropped += 1;
            false
        } else {
            true
        }
    }
}

/// A pipe whose read end is non-blocking (spawnd's) and whose write end is
/// blocking (the child's stderr). Both close-on-exec.
pub(super) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    crate::sys::set_nonblocking(read.as_raw_fd(), true)?;
    Ok((read, write))
}

fn emit(pipe: &mut StderrPipe, line: &[u8]) {
    let now = Instant::now();
    if !pipe.relay.allow(now) {
        return;
    }
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches(['\r', '\n']);
    crate::event!(log::Level::Info, "stderr", service = pipe.service; "pid={} line={}", pipe.pid, crate::logging::line::Quoted(text));
}

impl Server {
    pub(super) fn watch_stderr(&mut self, read: OwnedFd, service: Box<str>, pid: i32) {
        let fd = read.as_raw_fd();
        let source = self.sources.insert(Source::Stderr(StderrPipe {
            fd: read,
            service,
            pid,
            buffer: Vec::new(),
            relay: Relay::new(),
        }));
        if let Err(e) = self.register(fd, source, Interest::READABLE) {
            crate::event!(log::Level::Error, "stderr_error"; "pid={pid} error={e}", e = crate::logging::line::Quoted(&e));
            self.sources.remove(source);
        }
    }

    pub(super) fn on_stderr(&mut self, source: SourceId) {
        let Some(Source::Stderr(pipe)) = self.sources.get_mut(source) else {
            return;
        };
        let mut chunk = [0u8; 4096];
        let mut closed = false;
        // Bounded per turn so one chatty child cannot starve the loop.
        for _ in 0..16 {
            match nix::unistd::read(&pipe.fd, &mut chunk).map_err(io::Error::from) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => {
                    pipe.buffer.extend_from_slice(&chunk[..n]);
                    while let Some(end) = pipe.buffer.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = pipe.buffer.drain(..=end).collect();
                        emit(pipe, &line);
                    }
                    while pipe.buffer.len() >= MAX_LINE {
                        let line: Vec<u8> = pipe.buffer.drain(..MAX_LINE).collect();
                        emit(pipe, &line);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        if !closed {
            self.turns.again(source);
            return;
        }
        if !pipe.buffer.is_empty() {
            let rest = std::mem::take(&mut pipe.buffer);
            emit(pipe, &rest);
        }
        if pipe.relay.dropped > 0 {
            crate::event!(log::Level::Warn, "stderr_dropped", service = pipe.service; "pid={} lines={}", pipe.pid, pipe.relay.dropped);
        }
        let fd = pipe.fd.as_raw_fd();
        self.deregister(fd);
        self.sources.remove(source);
    }
}
