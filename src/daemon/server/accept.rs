//! The accept path: take a connection (or, in wait mode, hand the socket
//! over), decide admission before any fork, and start the program.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Instant;

use super::ids::{ServiceId, SourceId};
use super::{Server, Source, TimerKey, Work, ACCEPT_BATCH, FORK_FAILED_PAUSE};
use crate::config::SocketKind;
use crate::daemon::childenv::{Peer, Transport};
use crate::daemon::limits::{check_access, Decision, LogBudget, PauseStarted, Refusal, SourceKey};
use crate::daemon::spawn::SpawnError;
use crate::logging::line::{AcceptLine, PeerLabel, Quoted, Suppressed};

/// A child died before its exec: counted and logged, whether spawnd waited
/// for it or found out when it was reaped.
fn exec_failed(
    service: &mut super::ServiceRt,
    peer: &Peer,
    pid: i32,
    stage: &str,
    error: &std::io::Error,
    program: Option<&str>,
) {
    service.counters.spawn_failures += 1;
    let Some(left_out) = service.failure_line_allowed() else {
        return;
    };
    let program = program.map_or_else(|| service.program_label(), str::to_string);
    crate::event!(log::Level::Error, "exec_failed", service = service.name; "peer={} pid={pid} stage={stage} program={program} error={error}{}", PeerLabel(peer), Suppressed(left_out), program = Quoted(&program), error = Quoted(&error));
}

/// A spawn that created no process: counted, and logged within the
/// service's budget for failure lines.
fn spawn_failed(service: &mut super::ServiceRt, peer: &Peer, error: std::fmt::Arguments) {
    service.counters.spawn_failures += 1;
    if let Some(left_out) = service.failure_line_allowed() {
        crate::event!(log::Level::Error, "spawn_failed", service = service.name; "peer={} error={error}{}", PeerLabel(peer), Suppressed(left_out), error = Quoted(&error));
    }
}

/// What a child is started on.
enum Primary {
    /// An accepted connection, which the spawner closes in time.
    Connection(OwnedFd),
    /// A listening socket handed over in wait mode, which stays spawnd's.
    Socket(RawFd),
}

pub(super) fn peer_ip(peer: &Peer) -> Option<IpAddr> {
    match peer {
        Peer::Inet { remote, .. } => Some(remote.ip().to_canonical()),
        _ => None,
    }
}

/// The key per-source limits count by: the address, or a Unix peer's uid.
pub(super) fn peer_source(peer: &Peer) -> Option<SourceKey> {
    match peer {
        Peer::Inet { remote, .. } => Some(SourceKey::ip(remote.ip())),
        Peer::Unix { uid: Some(uid), .. } => Some(SourceKey::Uid(*uid)),
        _ => None,
    }
}

/// Sends `data` without blocking; what does not fit is dropped, since a
/// client that does not read must not stall the loop.
fn send_banner(fd: RawFd, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let _ = nix::sys::socket::send(
        fd,
        data,
        nix::sys::socket::MsgFlags::MSG_DONTWAIT | nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
    );
}

/// The listeners that gave a connection this turn (see `probe_listeners`),
/// and the poll() array that asks them, both kept for their capacity.
#[derive(Default)]
pub(super) struct Probe {
    listeners: Vec<SourceId>,
    fds: Vec<libc::pollfd>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drained {
    Yes,
    No,
}

enum Outcome {
    Started(i32),
    Refused,
    Failed,
}

impl Server {
    pub(super) fn on_listener(&mut self, source: SourceId) {
        let Some(Source::Listener(listener)) = self.sources.get(source) else {
            return;
        };
        let service = &self.services[listener.service];
        if service.wait {
            self.hand_off(source);
        } else if listener.kind == SocketKind::Stream {
            self.accept_first(source);
        } else {
            self.serve_datagrams(source);
        }
    }

    /// The spawnd-wide limit a new client of `service` would exceed:
    /// `max_children` for programs, `max_in_process` for connections served
    /// inside spawnd.
    fn global_full(&self, service: ServiceId) -> Option<Refusal> {
        let load = GlobalLoad {
            children: self.children.len(),
            max_children: self.global.max_children,
            in_process: self.in_proc.open,
            max_in_process: self.global.max_in_process,
        };
        load.full_for(matches!(self.services[service].work, Work::Exec(_)))
    }

    /// Takes one connection: whether the listener holds more is asked at
    /// the end of the turn, for every listener at once (`probe_listeners`).
    fn accept_first(&mut self, source: SourceId) {
        if self.accept_some(source, 1) == Drained::No {
            self.probe.listeners.push(source);
        }
    }

    /// After a turn: the listeners that gave a connection may hold more,
    /// which an edge-triggered poller will not report again. With one
    /// such listener, accepting again asks (the usual case with a single
    /// busy service); with several, which are configured services taking
    /// a spread load, one poll() asks them all, instead of one accept
    /// each that would mostly find nothing.
    pub(super) fn probe_listeners(&mut self) {
        let mut probe = std::mem::take(&mut self.probe.listeners);
        if probe.len() > 1 {
            let mut fds = std::mem::take(&mut self.probe.fds);
            fds.clear();
            fds.extend(probe.iter().map(|source| libc::pollfd {
                fd: match self.sources.get(*source) {
                    Some(Source::Listener(l)) => l.fd(),
                    _ => -1, // poll() skips it
                },
                events: libc::POLLIN,
                revents: 0,
            }));
            if crate::sys::poll_now(&mut fds).is_ok() {
                let mut ready = fds.iter().map(|fd| fd.revents != 0);
                probe.retain(|_| ready.next().unwrap_or(true));
            }
            self.probe.fds = fds;
        }
        for source in probe.drain(..) {
            if self.accept_some(source, ACCEPT_BATCH - 1) == Drained::No {
                // More may be waiting: continue after other sources had their turn.
                self.turns.again(source);
            }
        }
        self.probe.listeners = probe;
    }

    /// Accepts up to `limit` connections; `Drained::No` when each one
    /// came (so more may be waiting).
    fn accept_some(&mut self, source: SourceId, limit: usize) -> Drained {
        for _ in 0..limit {
            let Some(Source::Listener(listener)) = self.sources.get(source) else {
                return Drained::Yes;
            };
            if !listener.is_armed() {
                return Drained::Yes;
            }
            let fd = listener.fd();
            let service_id = listener.service;
            let service = &self.services[service_id];
            if holds_back(&service.admission, || self.global_full(service_id)) {
                // Leave clients in the kernel backlog until a child exits.
                self.queue_listener(source);
                return Drained::Yes;
            }
            let in_process = !matches!(service.work, Work::Exec(_));
            match crate::sys::accept(fd, in_process) {
                Ok((conn, remote)) => {
                    self.accepted_from(source);
                    self.serve_connection(source, service_id, conn, remote);
                }
                Err(e) => {
                    match e.raw_os_error().unwrap_or(0) {
                        libc::EAGAIN => {}
                        libc::EINTR | libc::ECONNABORTED | libc::EPROTO | libc::EPERM => continue,
                        libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => {
                            self.pause_exhausted(source, &e);
                        }
                        _ => {
                            crate::event!(log::Level::Error, "accept_error", service = self.services[service_id].name; "error={e}", e = Quoted(&e));
                            self.pause_listener(source, FORK_FAILED_PAUSE);
                        }
                    }
                    return Drained::Yes;
                }
            }
        }
        Drained::No
    }

    fn connection_peer(
        &self,
        source: SourceId,
        conn: &OwnedFd,
        remote: Option<SocketAddr>,
    ) -> Peer {
        let Some(Source::Listener(listener)) = self.sources.get(source) else {
            return Peer::Unknown;
        };
        match remote {
            Some(remote) => Peer::Inet {
                local: listener
                    .fixed_local()
                    .or_else(|| crate::sys::local_addr(conn.as_raw_fd())),
                remote,
            },
            None => {
                match nix::sys::socket::getsockopt(conn, nix::sys::socket::sockopt::PeerCredentials)
                {
                    Ok(cred) => Peer::Unix {
                        pid: Some(cred.pid()),
                        uid: Some(cred.uid()),
                        gid: Some(cred.gid()),
                    },
                    Err(_) => Peer::Unknown,
                }
            }
        }
    }

    /// Access rules and limits; logs and counts a refusal.
    fn admit(&mut self, service_id: ServiceId, peer: &Peer) -> Result<(), Refusal> {
        let now = Instant::now();
        let global_full = self.global_full(service_id);
        let service = &mut self.services[service_id];
        let decision = decide(
            &service.access,
            &mut service.admission,
            peer,
            now,
            global_full,
            crate::sys::load_average,
        );
        let refusal = match decision {
            Decision::Admit => return Ok(()),
            Decision::Refuse(refusal, pause) => {
                if let Some(pause) = pause {
                    self.log_pause(service_id, pause, now);
                }
                refusal
            }
            Decision::Queue => Refusal::Instances,
        };
        let service = &mut self.services[service_id];
        if refusal.is_access() {
            service.counters.refused_access += 1;
        } else {
            service.counters.refused_limits += 1;
        }
        let budget = service
            .refusal_log
            .get_or_insert_with(|| Box::new(LogBudget::new(now)));
        match budget.allow(now) {
            Some(0) => {
                crate::event!(log::Level::Info, "refuse", service = service.name; "peer={} reason={}", PeerLabel(peer), refusal.as_str())
            }
            Some(left_out) => {
                crate::event!(log::Level::Info, "refuse", service = service.name; "peer={} reason={} suppressed={left_out}", PeerLabel(peer), refusal.as_str())
            }
            None => {}
        }
        Err(refusal)
    }

    fn log_pause(&mut self, service_id: ServiceId, pause: PauseStarted, now: Instant) {
        let name = &self.services[service_id].name;
        match pause {
            PauseStarted::Service { until } => {
                crate::event!(log::Level::Warn, "rate_pause", service = name; "seconds={:.1}", until.saturating_duration_since(now).as_secs_f64());
                self.timers.schedule(
                    until,
                    TimerKey::ResumeService {
                        service: service_id,
                    },
                );
            }
            PauseStarted::Source { ip, until } => {
                crate::event!(log::Level::Warn, "source_pause", service = name; "source={ip} seconds={:.1}", until.saturating_duration_since(now).as_secs_f64());
            }
        }
    }

    pub(super) fn resume_service(&mut self, service_id: ServiceId, now: Instant) {
        if let Some(service) = self.services.get_mut(service_id) {
            if service.admission.resume_if_due(now) {
                crate::event!(log::Level::Info, "rate_resume", service = service.name);
            }
        }
    }

    fn serve_connection(
        &mut self,
        source: SourceId,
        service_id: ServiceId,
        conn: OwnedFd,
        remote: Option<SocketAddr>,
    ) {
        let peer = self.connection_peer(source, &conn, remote);
        let fd = conn.as_raw_fd();
        send_banner(fd, &self.services[service_id].banners.banner);
        if self.admit(service_id, &peer).is_err() {
            send_banner(fd, &self.services[service_id].banners.fail);
            return;
        }
        send_banner(fd, &self.services[service_id].banners.success);
        match self.services[service_id].work {
            Work::Exec(_) => {
                // The spawner closes `conn` once the child has its own copy.
                let _ = self.start_child(
                    service_id,
                    Primary::Connection(conn),
                    &peer,
                    Transport::Tcp,
                    None,
                );
            }
            Work::Internal(kind) => self.start_internal(service_id, kind, conn, peer),
            Work::Redirect(target) => self.start_redirect(service_id, target, conn, peer),
        }
    }

    /// Starts the service's program on `primary`; records and logs the child.
    fn start_child(
        &mut self,
        service_id: ServiceId,
        primary: Primary,
        peer: &Peer,
        transport: Transport,
        handed_off: Option<SourceId>,
    ) -> Outcome {
        let now = Instant::now();
        let wants_pipe = match &self.services[service_id].work {
            Work::Exec(plan) => plan.wants_stderr_pipe(),
            _ => return Outcome::Refused,
        };
        let pipe = if wants_pipe {
            match super::stderr_log::pipe() {
                Ok(pipe) => Some(pipe),
                Err(e) => {
                    let service = &mut self.services[service_id];
                    spawn_failed(service, peer, format_args!("stderr pipe: {e}"));
                    return Outcome::Failed;
                }
            }
        } else {
            None
        };
        let client = crate::daemon::spawn::Client { transport, peer };
        let service = &mut self.services[service_id];
        let Work::Exec(plan) = &service.work else {
            return Outcome::Refused;
        };
        let pipe_end = pipe.as_ref().map(|(_, w)| w.as_raw_fd());
        let result = match primary {
            Primary::Connection(conn) => {
                self.spawner.spawn_connection(plan, conn, pipe_end, client)
            }
            Primary::Socket(fd) => self.spawner.spawn(plan, fd, pipe_end, client),
        };
        match result {
            Ok(pid) => {
                service.counters.accepted += 1;
                service.admission.started(peer_source(peer));
                // Rendered by hand (the one line per connection); its
                // fields travel as `crate::event!` would send them.
                let name: &str = &service.name;
                log::info!(
                    event = "accept", service = name;
                    "{}",
                    AcceptLine {
                        service: name,
                        peer,
                        pid
                    }
                );
                if let Some(timeout) = service.limits().timeout {
                    self.timers
                        .schedule(now + timeout, TimerKey::ChildTimeout { pid, started: now });
                }
                // Only `stderr: log` needs the name, so clone it only then.
                let stderr = pipe.map(|(read, _write)| (read, service.name.clone()));
                self.record_child(pid, service_id, peer, now, handed_off, true);
                if let Some((read, name)) = stderr {
                    self.watch_stderr(read, name, pid);
                }
                Outcome::Started(pid)
            }
            Err(SpawnError::Fork(e)) => {
                spawn_failed(service, peer, format_args!("{e}"));
                Outcome::Failed
            }
            Err(SpawnError::Exec { pid, stage, error }) => {
                exec_failed(service, peer, pid, stage, &error, None);
                // Reaped quietly; the slot it would have taken is not counted.
                self.record_child(pid, service_id, peer, now, handed_off, false);
                Outcome::Failed
            }
        }
    }

    /// A launched child failed before its exec (found when it was reaped):
    /// logged and counted as `start_child` does for a waited-for one. Its
    /// instance was counted at launch, so it is given back here.
    pub(super) fn launch_failed(
        &mut self,
        pid: i32,
        child: &super::children::Child,
        failure: crate::daemon::spawn::LaunchFailure,
    ) {
        let Some(service) = self.services.get_mut(child.service) else {
            return;
        };
        service.counters.accepted = service.counters.accepted.saturating_sub(1);
        if child.counted {
            service.admission.finished(peer_source(&child.peer));
        }
        exec_failed(
            service,
            &child.peer,
            pid,
            failure.stage,
            &failure.error,
            Some(&failure.program),
        );
    }

    fn record_child(
        &mut self,
        pid: i32,
        service: ServiceId,
        peer: &Peer,
        started: Instant,
        handed_off: Option<SourceId>,
        counted: bool,
    ) {
        let child = super::children::Child::new(service, *peer, started, handed_off, counted);
        self.children.record(pid, child);
    }

    /// Wait mode: give the socket itself to one child.
    fn hand_off(&mut self, source: SourceId) {
        let Some(Source::Listener(listener)) = self.sources.get(source) else {
            return;
        };
        let fd = listener.bound.fd.as_raw_fd();
        let kind = listener.kind;
        let fixed_local = listener.fixed_local();
        let service_id = listener.service;
        let mut head = None;
        let (peer, transport) = if kind == SocketKind::Dgram {
            // Refused datagrams are read and dropped; continue with the
            // next, a batch at a time so a flood cannot hold the loop.
            let mut refused = 0;
            loop {
                if refused == ACCEPT_BATCH {
                    self.turns.again(source);
                    return;
                }
                let found = match crate::sys::peek_head(fd) {
                    Ok(found) => found,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        // e.g. an ICMP error queued on the socket: reading it clears it.
                        crate::event!(log::Level::Debug, "datagram_error", service = self.services[service_id].name; "error={e}", e = Quoted(&e));
                        let _ = crate::sys::discard_datagram(fd);
                        refused += 1;
                        continue;
                    }
                };
                let peer = match found.sender {
                    Some(remote) => Peer::Inet {
                        local: fixed_local,
                        remote,
                    },
                    None => Peer::Unknown,
                };
                if self.admit(service_id, &peer).is_ok() {
                    head = Some(found.identity);
                    break (peer, Transport::Udp);
                }
                let _ = crate::sys::discard_datagram(fd);
                refused += 1;
            }
        } else {
            (Peer::Unknown, Transport::Tcp)
        };
        self.hold_for_handoff(source);
        if let Err(e) = crate::sys::set_nonblocking(fd, false) {
            crate::event!(log::Level::Error, "handoff_error", service = self.services[service_id].name; "error={e}", e = Quoted(&e));
            self.pause_listener(source, FORK_FAILED_PAUSE);
            return;
        }
        match self.start_child(
            service_id,
            Primary::Socket(fd),
            &peer,
            transport,
            Some(source),
        ) {
            Outcome::Started(pid) => {
                self.handed_off(source, pid);
                if let Some(head) = head {
                    self.children.started_for(pid, head);
                }
            }
            Outcome::Failed | Outcome::Refused => {
                let _ = crate::sys::set_nonblocking(fd, true);
                // Consume what triggered the attempt, or the loop would retry
                // it at once, forever.
                if kind == SocketKind::Dgram {
                    let _ = crate::sys::discard_datagram(fd);
                } else if let Ok((conn, _)) = crate::sys::accept(fd, false) {
                    drop(conn);
                }
                // A failed exec re-arms when its child is reaped; a failed
                // fork (no child) rests first.
                if !self.children.holds(source) {
                    self.pause_listener(source, FORK_FAILED_PAUSE);
                }
            }
        }
    }

    /// A wait-mode child was reaped: take the socket back. A datagram
    /// service's child that left the very datagram it was started for
    /// unread would only be started for it again, at once and forever (a
    /// program that fails before reading): that datagram is dropped,
    /// logged and counted. One that arrived since starts a new child.
    pub(super) fn take_back(&mut self, source: SourceId, child: &super::children::Child, pid: i32) {
        let Some((fd, service_id)) = self.taken_back(source) else {
            return;
        };
        if let Err(e) = crate::sys::set_nonblocking(fd, true) {
            crate::event!(log::Level::Error, "takeback_error"; "error={e}", e = Quoted(&e));
        }
        if let Some(started_for) = child.started_for() {
            let unread = crate::sys::peek_head(fd).is_ok_and(|head| head.identity == started_for);
            if unread && crate::sys::discard_datagram(fd).is_ok() {
                self.datagram_unread(service_id, &child.peer, pid);
            }
        }
        if self.stopping.is_none() {
            self.arm(source);
        }
    }

    fn datagram_unread(&mut self, service_id: ServiceId, peer: &Peer, pid: i32) {
        let Some(service) = self.services.get_mut(service_id) else {
            return;
        };
        service.counters.unread_datagrams += 1;
        let now = Instant::now();
        let budget = service
            .refusal_log
            .get_or_insert_with(|| Box::new(LogBudget::new(now)));
        if let Some(left_out) = budget.allow(now) {
            crate::event!(log::Level::Warn, "datagram_unread", service = service.name; "peer={} pid={pid} detail=\"the program exited without reading the datagram it was started for; dropped\"{}", PeerLabel(peer), Suppressed(left_out));
        }
    }
}

/// The spawnd-wide limits as they stand: the accept decision's inputs
/// from beyond the service.
struct GlobalLoad {
    children: usize,
    max_children: Option<u32>,
    in_process: usize,
    max_in_process: u32,
}

impl GlobalLoad {
    /// The spawnd-wide limit one more client would exceed: `max_children`
    /// for a service that runs a program, `max_in_process` for one served
    /// inside spawnd.
    fn full_for(&self, runs_program: bool) -> Option<Refusal> {
        if runs_program {
            self.max_children
                .is_some_and(|max| self.children >= max as usize)
                .then_some(Refusal::MaxChildren)
        } else {
            (self.in_process >= self.max_in_process as usize).then_some(Refusal::MaxInProcess)
        }
    }
}

/// Whether a listener leaves its clients in the kernel's backlog instead of
/// accepting them: `on_limit: queue` with every instance, or spawnd-wide
/// room, taken.
/// `global` is asked only for a queueing service (the accept path).
fn holds_back(
    admission: &crate::daemon::limits::Admission,
    global: impl FnOnce() -> Option<Refusal>,
) -> bool {
    admission.queues() && (admission.at_instance_limit() || global().is_some())
}

/// The decision on one client, for every kind of service (accepted
/// connections here, datagrams answered inside spawnd in `inproc`): access
/// rules first (a client they refuse takes nothing from the limits: no rate
/// token, no instance), then the service's limits and spawnd's. The local
/// time is read only for a service with `access.times`.
pub(super) fn decide(
    access: &crate::config::Access,
    admission: &mut crate::daemon::limits::Admission,
    peer: &Peer,
    now: Instant,
    global: Option<Refusal>,
    load: impl FnOnce() -> Option<f64>,
) -> Decision {
    let minute = (!access.times.is_empty()).then(crate::sys::local_minute_of_day);
    match check_access(access, peer_ip(peer), minute) {
        Err(refusal) => Decision::Refuse(refusal, None),
        Ok(()) => admission.decide(peer_source(peer), now, global, load),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Access, Limits, OnLimit};
    use crate::daemon::limits::Admission;

    fn peer(ip: &str) -> Peer {
        Peer::Inet {
            local: None,
            remote: SocketAddr::new(ip.parse().unwrap(), 4000),
        }
    }

    /// A service's limits as the defaults make them.
    fn limits() -> Limits {
        Limits::clone(
            &crate::config::validate::service(
                std::path::Path::new("s.yaml"),
                "",
                "s",
                serde_yaml::from_str("listen: 127.0.0.1:1\nexec: [/bin/true]").unwrap(),
                &Default::default(),
            )
            .unwrap()
            .limits,
        )
    }

    #[test]
    fn access_rules_come_first_and_take_nothing_from_the_limits() {
        let now = Instant::now();
        let access = Access {
            deny: vec!["192.0.2.0/24".parse().unwrap()],
            ..Access::default()
        };
        let mut admission = Admission::new(
            &Limits {
                rate: Some("1/s".parse().unwrap()),
                instances: Some(1),
                ..limits()
            },
            now,
        );
        let no_load = || None;
        for _ in 0..5 {
            assert_eq!(
                decide(
                    &access,
                    &mut admission,
                    &peer("192.0.2.9"),
                    now,
                    None,
                    no_load
                ),
                Decision::Refuse(Refusal::Denied, None)
            );
        }
        // The refused clients used no rate token: this one gets the only one.
        assert_eq!(
            decide(
                &access,
                &mut admission,
                &peer("198.51.100.1"),
                now,
                None,
                no_load
            ),
            Decision::Admit
        );
    }

    #[test]
    fn a_client_without_an_address_is_not_held_to_address_rules() {
        let now = Instant::now();
        let access = Access {
            allow: vec!["10.0.0.0/8".parse().unwrap()],
            ..Access::default()
        };
        let mut admission = Admission::new(&limits(), now);
        let unix = Peer::Unix {
            pid: Some(1),
            uid: Some(0),
            gid: Some(0),
        };
        assert_eq!(
            decide(&access, &mut admission, &unix, now, None, || None),
            Decision::Admit
        );
        assert_eq!(
            decide(
                &access,
                &mut admission,
                &peer("192.0.2.1"),
                now,
                None,
                || None
            ),
            Decision::Refuse(Refusal::NotAllowed, None)
        );
    }

    #[test]
    fn spawnd_wide_limits_count_what_the_service_uses() {
        let load = GlobalLoad {
            children: 10,
            max_children: Some(10),
            in_process: 3,
            max_in_process: 4,
        };
        assert_eq!(load.full_for(true), Some(Refusal::MaxChildren));
        assert_eq!(load.full_for(false), None);
        let load = GlobalLoad {
            children: 0,
            max_children: None,
            in_process: 4,
            max_in_process: 4,
        };
        assert_eq!(load.full_for(true), None, "no max_children: no limit");
        assert_eq!(load.full_for(false), Some(Refusal::MaxInProcess));
        // A global refusal reaches the client through the decision.
        let now = Instant::now();
        let mut admission = Admission::new(&limits(), now);
        assert_eq!(
            decide(
                &Access::default(),
                &mut admission,
                &peer("192.0.2.1"),
                now,
                Some(Refusal::MaxChildren),
                || None
            ),
            Decision::Refuse(Refusal::MaxChildren, None)
        );
    }

    #[test]
    fn only_a_queueing_service_holds_clients_back_and_only_when_full() {
        let now = Instant::now();
        let queue = Limits {
            instances: Some(1),
            on_limit: OnLimit::Queue,
            ..limits()
        };
        let mut admission = Admission::new(&queue, now);
        assert!(!holds_back(&admission, || None));
        assert!(holds_back(&admission, || Some(Refusal::MaxChildren)));
        admission.started(None);
        assert!(holds_back(&admission, || None), "every instance taken");
        admission.finished(None);
        assert!(!holds_back(&admission, || None));
        let refuse = Limits {
            instances: Some(1),
            ..limits()
        };
        let mut admission = Admission::new(&refuse, now);
        admission.started(None);
        assert!(
            !holds_back(&admission, || Some(Refusal::MaxChildren)),
            "on_limit: refuse accepts and refuses"
        );
    }
}
