//! Children: the `Children` component owns the pid table, decides what a
//! timeout does to a child and reaps; `Server` (below) asks it on SIGCHLD,
//! on a timer and at stop, and updates services, logs and timers with what
//! it answers. Timeouts: SIGTERM to the process group, then SIGKILL.

use std::collections::HashMap;
use std::time::Instant;

use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::ids::{ServiceId, SourceId};
use super::{Server, TimerKey};
use crate::config::DEFAULT_KILL_AFTER;
use crate::daemon::childenv::Peer;
use crate::logging::line::PeerLabel;

/// Children by pid. Pids come from the kernel, not from clients, so a
/// multiplicative hash is enough and much cheaper than SipHash on the
/// per-connection path.
type ChildTable = HashMap<i32, Child, std::hash::BuildHasherDefault<PidHasher>>;

#[derive(Default)]
struct PidHasher(u64);

impl std::hash::Hasher for PidHasher {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_i32(&mut self, value: i32) {
        self.0 = u64::from(value as u32).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        // hashbrown takes its control bits from the top of the hash.
        self.0
    }
}

pub(super) struct Child {
    pub(super) service: ServiceId,
    pub(super) peer: Peer,
    pub(super) started: Instant,
    /// Wait mode: the listener to re-arm when this child is reaped.
    pub(super) handed_off: Option<SourceId>,
    /// A datagram service: the identity of the datagram the child was
    /// started for (`sys::HeadDatagram`).
    datagram: Option<(i64, i64, usize)>,
    /// The service's admission counts this child.
    pub(super) counted: bool,
    /// Timeout stage reached: 0 none, 1 SIGTERM sent, 2 SIGKILL sent.
    signalled: u8,
}

impl Child {
    pub(super) fn new(
        service: ServiceId,
        peer: Peer,
        started: Instant,
        handed_off: Option<SourceId>,
        counted: bool,
    ) -> Child {
        Child {
            service,
            peer,
            started,
            handed_off,
            datagram: None,
            counted,
            signalled: 0,
        }
    }

    /// The datagram a datagram service's child was started for.
    pub(super) fn started_for(&self) -> Option<(i64, i64, usize)> {
        self.datagram
    }
}

/// What a timeout does to a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TimeoutStep {
    /// `limits.timeout`: SIGTERM sent; SIGKILL follows after `kill_after`.
    Terminated,
    /// `kill_after` is over too: SIGKILL sent.
    Killed,
}

/// Every child spawnd started and has not reaped yet, by pid.
#[derive(Default)]
pub(super) struct Children {
    table: ChildTable,
}

impl Children {
    pub(super) fn record(&mut self, pid: i32, child: Child) {
        self.table.insert(pid, child);
    }

    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// A datagram service's child: the identity of the datagram it was
    /// started for (`sys::HeadDatagram`).
    pub(super) fn started_for(&mut self, pid: i32, datagram: (i64, i64, usize)) {
        if let Some(child) = self.table.get_mut(&pid) {
            child.datagram = Some(datagram);
        }
    }

    /// Whether a wait-mode child holds listener `source`.
    pub(super) fn holds(&self, source: SourceId) -> bool {
        self.table.values().any(|c| c.handed_off == Some(source))
    }

    /// Listener `source` is closed: no child gives it back.
    pub(super) fn forget_listener(&mut self, source: SourceId) {
        for child in self.table.values_mut() {
            if child.handed_off == Some(source) {
                child.handed_off = None;
            }
        }
    }

    /// Whether a child of `service` runs.
    pub(super) fn serve(&self, service: ServiceId) -> bool {
        self.table.values().any(|c| c.service == service)
    }

    /// Whether a timer for (`pid`, `started`) still concerns a running
    /// child (the pid may have been reaped, or reused by a newer one).
    pub(super) fn is_current(&self, pid: i32, started: Instant) -> bool {
        self.table.get(&pid).is_some_and(|c| c.started == started)
    }

    /// The next exited child, reaped: no zombie is ever left. `None` when
    /// none is left to reap now.
    pub(super) fn reap_next(&mut self) -> Option<(i32, Child, WaitStatus)> {
        // Every child spawnd started is in the table (spawnd has no other
        // children): with none left, waitpid could only say ECHILD.
        while !self.table.is_empty() {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => return None,
                Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                    let Some(pid) = status.pid().map(Pid::as_raw) else {
                        continue;
                    };
                    if let Some(child) = self.table.remove(&pid) {
                        return Some((pid, child, status));
                    }
                }
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return None, // ECHILD: nothing left
            }
        }
        None
    }

    /// A timeout of (`pid`, `started`) is due: `kill` false for
    /// `limits.timeout`, true for `kill_after`. Signals the child's group
    /// and says what was done, with the child's service; `None` if nothing
    /// was (the child is gone, or was signalled so already).
    pub(super) fn timeout(
        &mut self,
        pid: i32,
        started: Instant,
        kill: bool,
    ) -> Option<(ServiceId, TimeoutStep)> {
        let child = self.table.get_mut(&pid).filter(|c| c.started == started)?;
        if kill {
            if child.signalled >= 2 {
                return None;
            }
            child.signalled = 2;
            signal_group(pid, Signal::SIGKILL);
            Some((child.service, TimeoutStep::Killed))
        } else {
            if child.signalled != 0 {
                return None;
            }
            child.signalled = 1;
            signal_group(pid, Signal::SIGTERM);
            Some((child.service, TimeoutStep::Terminated))
        }
    }

    /// The stop's grace is over: SIGTERM to every child not signalled yet.
    /// Returns each child (pid, start, service), for its SIGKILL timer.
    pub(super) fn terminate_all(&mut self) -> Vec<(i32, Instant, ServiceId)> {
        self.table
            .iter_mut()
            .map(|(pid, child)| {
                if child.signalled == 0 {
                    child.signalled = 1;
                    signal_group(*pid, Signal::SIGTERM);
                }
                (*pid, child.started, child.service)
            })
            .collect()
    }
}

/// The `accept` line is the one line per connection at the default level;
/// its `exit` line joins it there only when something went wrong.
pub(super) fn exit_level(abnormal: bool) -> log::Level {
    if abnormal {
        log::Level::Info
    } else {
        log::Level::Debug
    }
}

/// A stop in progress: `terminating` once children have been sent SIGTERM.
pub(super) struct Stopping {
    terminating: bool,
}

/// Signals the process group a child leads. A launched child makes itself
/// its group's leader a moment after spawnd has gone on (see
/// `crate::daemon::spawn::launch`): until then, the child alone gets the signal (it
/// blocks signals until just before its exec, so it dies then).
fn signal_group(pid: i32, signal: Signal) {
    let pid = Pid::from_raw(pid);
    if killpg(pid, signal) == Err(nix::errno::Errno::ESRCH) {
        let _ = nix::sys::signal::kill(pid, signal);
    }
}

fn describe(status: &WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("status={code}"),
        WaitStatus::Signaled(_, signal, core) => {
            format!(
                "signal={}{}",
                signal.as_str().trim_start_matches("SIG"),
                if *core { " core=yes" } else { "" }
            )
        }
        other => format!("state=\"{other:?}\""),
    }
}

impl Server {
    /// Timeouts of reaped children stay in the heap until they would fire;
    /// when they outnumber the live entries, drop them, so memory follows
    /// the number of running children, not the connection rate.
    pub(super) fn compact_timers(&mut self) {
        if self.timers.len() < 1024
            || self.timers.len() < 4 * (self.children.len() + self.sources.len())
        {
            return;
        }
        let mut timers = std::mem::take(&mut self.timers);
        timers.retain(|key| !self.timer_is_stale(key));
        self.timers = timers;
    }

    /// A timer whose child has been reaped (or whose pid was reused), or
    /// whose in-process connection has ended.
    fn timer_is_stale(&self, key: &TimerKey) -> bool {
        match key {
            TimerKey::ChildTimeout { pid, started } | TimerKey::ChildKill { pid, started } => {
                !self.children.is_current(*pid, *started)
            }
            _ => self.in_process_timer_is_stale(key),
        }
    }

    /// Drops stale entries from the front of the heap, so an idle spawnd
    /// does not wake up for the timeout of a child long gone.
    pub(super) fn skip_stale_timers(&mut self) {
        while self
            .timers
            .peek()
            .is_some_and(|key| self.timer_is_stale(key))
        {
            self.timers.pop();
        }
    }

    /// Reaps every exited child.
    pub(super) fn reap(&mut self) {
        while let Some((pid, child, status)) = self.children.reap_next() {
            self.child_exited(pid, child, &status);
        }
        self.compact_timers();
    }

    fn child_exited(&mut self, pid: i32, child: Child, status: &WaitStatus) {
        if let Some(failure) = self.spawner.reaped(pid) {
            self.launch_failed(pid, &child, failure);
            if let Some(source) = child.handed_off {
                self.take_back(source, &child, pid);
            }
            self.release_queued();
            self.drop_retired(child.service);
            return;
        }
        let abnormal = !matches!(status, WaitStatus::Exited(_, 0));
        if let Some(service) = self.services.get_mut(child.service) {
            if child.counted {
                service
                    .admission
                    .finished(super::accept::peer_source(&child.peer));
                if abnormal {
                    service.counters.abnormal_exits += 1;
                }
                crate::event!(exit_level(abnormal), "exit", service = service.name; "pid={pid} peer={} {} duration={:.3}s", PeerLabel(&child.peer), describe(status), child.started.elapsed().as_secs_f64());
            }
        }
        if let Some(source) = child.handed_off {
            self.take_back(source, &child, pid);
        }
        self.release_queued();
        self.drop_retired(child.service);
    }

    /// `limits.timeout` expired (`kill` false) or `kill_after` did too.
    pub(super) fn child_timeout(&mut self, pid: i32, started: Instant, kill: bool) {
        let Some((service, step)) = self.children.timeout(pid, started, kill) else {
            return;
        };
        let name = self.services.get(service).map_or("-", |s| &*s.name);
        match step {
            TimeoutStep::Killed => {
                crate::event!(log::Level::Warn, "timeout_kill", service = name; "pid={pid}")
            }
            TimeoutStep::Terminated => {
                let kill_after = self.kill_after(service);
                crate::event!(log::Level::Warn, "timeout", service = name; "pid={pid} action=SIGTERM kill_after={:.1}s", kill_after.as_secs_f64());
                self.timers.schedule(
                    Instant::now() + kill_after,
                    TimerKey::ChildKill { pid, started },
                );
            }
        }
    }

    fn kill_after(&self, service: ServiceId) -> std::time::Duration {
        self.services
            .get(service)
            .map_or(DEFAULT_KILL_AFTER, |s| s.limits().kill_after)
    }

    /// SIGTERM/SIGINT: stop listening at once; a second one skips the grace.
    pub(super) fn begin_stop(&mut self) {
        if let Some(stopping) = &self.stopping {
            if !stopping.terminating {
                crate::event!(log::Level::Info, "stop_now"; "children={}", self.children.len());
                self.terminate_children();
            }
            return;
        }
        self.close_all_listeners();
        let grace = self.global.shutdown_grace;
        crate::event!(log::Level::Info, "stopping"; "children={} grace={:.1}s", self.children.len(), grace.as_secs_f64());
        crate::daemon::notify::send("STOPPING=1");
        self.stopping = Some(Stopping { terminating: false });
        if !self.children.is_empty() {
            self.timers
                .schedule(Instant::now() + grace, TimerKey::ShutdownDeadline);
        }
    }

    pub(super) fn shutdown_deadline(&mut self) {
        if self.stopping.as_ref().is_some_and(|s| !s.terminating) {
            crate::event!(log::Level::Info, "grace_over"; "children={}", self.children.len());
            self.terminate_children();
        }
    }

    fn terminate_children(&mut self) {
        if let Some(stopping) = &mut self.stopping {
            stopping.terminating = true;
        }
        let now = Instant::now();
        for (pid, started, service) in self.children.terminate_all() {
            let at = now + self.kill_after(service);
            self.timers
                .schedule(at, TimerKey::ChildKill { pid, started });
        }
    }
}
