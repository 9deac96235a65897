//! Children: reaping on SIGCHLD, timeouts (SIGTERM to the process group,
//! then SIGKILL), and the graceful stop.

use std::time::Instant;

use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{ListenerState, Server, Source, TimerKey};
use crate::config::DEFAULT_KILL_AFTER;
use crate::logline::PeerLabel;

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
/// `crate::spawn::launch`): until then, the child alone gets the signal (it
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
                self.children.get(pid).is_none_or(|c| c.started != *started)
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

    /// Reaps every exited child: no zombie is ever left.
    pub(super) fn reap(&mut self) {
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => break,
                Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                    if let Some(pid) = status.pid() {
                        self.child_exited(pid.as_raw(), &status);
                    }
                }
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break, // ECHILD: nothing left
            }
            // Every child spawnd started is reaped: another waitpid could
            // only say ECHILD. (spawnd has no other children.)
            if self.children.is_empty() {
                break;
            }
        }
        self.compact_timers();
    }

    fn child_exited(&mut self, pid: i32, status: &WaitStatus) {
        let Some(child) = self.children.remove(&pid) else {
            return;
        };
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
                log::log!(
                    exit_level(abnormal),
                    "exit service={} pid={pid} peer={} {} duration={:.3}s",
                    service.name,
                    PeerLabel(&child.peer),
                    describe(status),
                    child.started.elapsed().as_secs_f64()
                );
            }
        }
        if let Some(source) = child.handed_off {
            self.take_back(source, &child, pid);
        }
        self.release_queued();
        self.drop_retired(child.service);
    }

    /// Listeners held back by `on_limit: queue` get another look.
    pub(super) fn release_queued(&mut self) {
        if self.queued.is_empty() || self.stopping.is_some() {
            return;
        }
        for source in std::mem::take(&mut self.queued) {
            if let Some(Source::Listener(listener)) = self.sources.get(source) {
                if listener.state == ListenerState::Paused {
                    self.arm(source);
                    self.turns.again(source);
                }
            }
        }
    }

    /// `limits.timeout` expired (`kill` false) or `kill_after` did too.
    pub(super) fn child_timeout(&mut self, pid: i32, started: Instant, kill: bool) {
        let Some(child) = self.children.get_mut(&pid) else {
            return;
        };
        if child.started != started {
            return; // the pid was reused by a newer child
        }
        let name = self.services.get(child.service).map_or("-", |s| &*s.name);
        let kill_after = self
            .services
            .get(child.service)
            .map_or(DEFAULT_KILL_AFTER, |s| s.limits().kill_after);
        if kill {
            if child.signalled < 2 {
                child.signalled = 2;
                log::warn!("timeout_kill service={name} pid={pid}");
                signal_group(pid, Signal::SIGKILL);
            }
        } else if child.signalled == 0 {
            child.signalled = 1;
            log::warn!(
                "timeout service={name} pid={pid} action=SIGTERM kill_after={:.1}s",
                kill_after.as_secs_f64()
            );
            signal_group(pid, Signal::SIGTERM);
            self.timers.schedule(
                Instant::now() + kill_after,
                TimerKey::ChildKill { pid, started },
            );
        }
    }

    /// SIGTERM/SIGINT: stop listening at once; a second one skips the grace.
    pub(super) fn begin_stop(&mut self) {
        if let Some(stopping) = &self.stopping {
            if !stopping.terminating {
                log::info!("stop_now children={}", self.children.len());
                self.terminate_children();
            }
            return;
        }
        let listeners: Vec<usize> = self
            .sources
            .iter()
            .filter(|(_, s)| matches!(s, Source::Listener(_)))
            .map(|(key, _)| key)
            .collect();
        for source in listeners {
            self.close_listener(source);
        }
        let grace = self.global.shutdown_grace;
        log::info!(
            "stopping children={} grace={:.1}s",
            self.children.len(),
            grace.as_secs_f64()
        );
        crate::notify::send("STOPPING=1");
        self.stopping = Some(Stopping { terminating: false });
        if !self.children.is_empty() {
            self.timers
                .schedule(Instant::now() + grace, TimerKey::ShutdownDeadline);
        }
    }

    pub(super) fn shutdown_deadline(&mut self) {
        if self.stopping.as_ref().is_some_and(|s| !s.terminating) {
            log::info!("grace_over children={}", self.children.len());
            self.terminate_children();
        }
    }

    fn terminate_children(&mut self) {
        if let Some(stopping) = &mut self.stopping {
            stopping.terminating = true;
        }
        let now = Instant::now();
        for (pid, child) in self.children.iter_mut() {
            if child.signalled == 0 {
                child.signalled = 1;
                signal_group(*pid, Signal::SIGTERM);
            }
            let kill_after = self
                .services
                .get(child.service)
                .map_or(DEFAULT_KILL_AFTER, |s| s.limits().kill_after);
            self.timers.schedule(
                now + kill_after,
                TimerKey::ChildKill {
                    pid: *pid,
                    started: child.started,
                },
            );
        }
    }
}
