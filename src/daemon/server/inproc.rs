//! Services served inside the event loop, never forked: the internal
//! services (echo, discard, chargen, daytime, time) over TCP and UDP, and
//! `redirect`, which relays each TCP connection to another address.
//!
//! Every such connection is bounded in memory and in time:
//!
//! - **Memory.** Bytes move through `flow`: spliced through a pipe from
//!   the loop's pool while a direction moves bulk, otherwise read into one
//!   scratch buffer the loop shares and written on at once. Only what the
//!   receiver would not take is held, in the pipe or in a buffer of the
//!   connection's own (at most one read's worth, since nothing more is
//!   read from that side until it is written). An idle connection holds
//!   neither: its state is a few hundred bytes. chargen writes from one
//!   shared, static cycle of its lines, keeping only a position; discard
//!   has TCP drop the bytes (`MSG_TRUNC`) without copying them.
//! - **Time.** `limits.timeout` ends a connection that lasts too long,
//!   `limits.idle_timeout` one that moved no byte for too long, and
//!   `limits.connect_timeout` a redirect whose target does not answer.
//!   Each connection has at most one timer in the heap at a time: the
//!   earliest of its deadlines, checked when it fires and moved on if the
//!   connection was active meanwhile.
//! - **Number.** `max_in_process` (spawnd.yaml) caps how many there are at
//!   once; `instances` and `per_source` count them per service.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use mio::Interest;
use nix::sys::socket::{self, MsgFlags, Shutdown, SockaddrStorage};

use super::flow::{write_now, Ends, Flow, Movers, Outbox, Ready};

use super::accept::peer_source;
use super::children::exit_level;
use super::ids::{RelayId, ServiceId, SourceId};
use super::{Server, Source, TimerKey};
use crate::config::{InternalKind, Limits};
use crate::daemon::childenv::Peer;
use crate::daemon::internal::{self, Chargen};
use crate::daemon::limits::Decision;
use crate::logging::line::PeerLabel;

/// How a connection served in-process ended: `status=0`, `error="..."` or
/// `timeout=...`. Formatted only if the exit line is logged (clean ends are
/// at debug level).
enum End {
    Done,
    /// A peer reset the connection or went away mid-write: how a client
    /// ends chargen, or a relayed session, normally.
    Closed,
    Failed(io::Error),
    TimedOut(Deadline),
}

impl End {
    /// An error, unless it is a peer closing (`Closed`).
    fn of(error: io::Error) -> End {
        match error.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => End::Closed,
            _ => End::Failed(error),
        }
    }

    fn abnormal(&self) -> bool {
        matches!(self, End::Failed(_) | End::TimedOut(_))
    }
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            End::Done => f.write_str("status=0"),
            End::Closed => f.write_str("status=0 closed=peer"),
            End::Failed(e) => write!(f, "error={e}", e = crate::logging::line::Quoted(&e)),
            End::TimedOut(which) => write!(f, "timeout={}", which.as_str()),
        }
    }
}

/// Which of a connection's deadlines passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Deadline {
    /// `limits.timeout`: the connection's whole life.
    Life,
    /// `limits.idle_timeout`: no byte moved.
    Idle,
    /// `limits.connect_timeout`: the redirect target did not accept.
    Connect,
}

impl Deadline {
    fn as_str(self) -> &'static str {
        match self {
            Deadline::Life => "limit",
            Deadline::Idle => "idle",
            Deadline::Connect => "connect",
        }
    }
}

/// A connection's deadlines, from its service's limits.
#[derive(Debug, Clone, Copy)]
struct Clock {
    started: Instant,
    last_active: Instant,
    life: Option<Duration>,
    idle: Option<Duration>,
    /// Only while a redirect is connecting.
    connect: Option<Duration>,
}

impl Clock {
    fn new(limits: &Limits, now: Instant, connecting: bool) -> Clock {
        Clock {
            started: now,
            last_active: now,
            life: limits.timeout,
            idle: limits.idle_timeout,
            connect: connecting.then_some(limits.connect_timeout),
        }
    }

    /// The deadline that has passed at `now`, if one has.
    fn passed(&self, now: Instant) -> Option<Deadline> {
        let over = |since: Instant, limit: Option<Duration>| {
            limit.is_some_and(|limit| now.saturating_duration_since(since) >= limit)
        };
        if over(self.started, self.life) {
            Some(Deadline::Life)
        } else if over(self.started, self.connect) {
            Some(Deadline::Connect)
        } else if over(self.last_active, self.idle) {
            Some(Deadline::Idle)
        } else {
            None
        }
    }

    /// When the next deadline falls, if there is one.
    fn next(&self) -> Option<Instant> {
        [
            self.life.map(|d| self.started + d),
            self.connect.map(|d| self.started + d),
            self.idle.map(|d| self.last_active + d),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// What the connections served inside spawnd share: the relays, how many
/// such connections are open (`max_in_process`), the means of moving bytes
/// (pipe pool, scratch buffer), and the UDP internal services' reflection
/// guards (where spawnd's own datagram sockets are, how many replies each
/// source may still get).
#[derive(Default)]
pub(super) struct InProcess {
    pub(super) relays: super::ids::Table<RelayId, Relay>,
    pub(super) open: usize,
    pub(super) movers: Movers,
    pub(super) own_datagram: crate::daemon::internal::OwnAddresses,
    pub(super) reply_budget: crate::daemon::internal::ReplyBudget,
}

/// Work per wake-up before other sources get a turn.
const ROUNDS: usize = 32;

/// One TCP connection to an internal service.
pub(super) struct InternalConn {
    fd: OwnedFd,
    kind: InternalKind,
    service: ServiceId,
    peer: Peer,
    clock: Clock,
    ready: Ready,
    /// echo: the client's bytes back to it.
    echo: Flow,
    /// daytime's or time's answer.
    out: Outbox,
    /// Where chargen is in its cycle.
    chargen_at: usize,
    /// discard and chargen: bytes read.
    bytes: u64,
}

/// One redirected connection: client <-> upstream.
pub(super) struct Relay {
    client: OwnedFd,
    upstream: OwnedFd,
    /// [client, upstream].
    ready: [Ready; 2],
    connected: bool,
    /// [client to upstream, upstream to client].
    flows: [Flow; 2],
    /// Write side shut down: [upstream, client].
    shut: [bool; 2],
    service: ServiceId,
    peer: Peer,
    clock: Clock,
    target: SocketAddr,
    tokens: [SourceId; 2],
}

enum Step {
    Continue,
    Idle,
    Done,
    Failed(io::Error),
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn daytime_now() -> String {
    let (year, month, day, weekday, h, m, s) = crate::sys::local_time();
    internal::daytime_text(year, month, day, weekday, h, m, s)
}

/// Reads and drops what a discard or chargen client sent; `Ok(true)` at its
/// end. `MSG_TRUNC` makes TCP drop the bytes without copying them out.
fn swallow(
    fd: BorrowedFd<'_>,
    ready: &mut Ready,
    scratch: &mut [u8],
    bytes: &mut u64,
) -> io::Result<bool> {
    let readable = &mut ready.readable;
    while *readable {
        match socket::recv(
            fd.as_raw_fd(),
            scratch,
            MsgFlags::MSG_TRUNC | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(0) => return Ok(true),
            Ok(n) => {
                *bytes += n as u64;
                // Short: the queue is empty (but for the end, if one
                // was reported: read on for it).
                *readable = n >= scratch.len() || ready.read_closed;
            }
            Err(nix::errno::Errno::EAGAIN) => *readable = false,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(false)
}

impl InternalConn {
    pub(super) fn service_id(&self) -> ServiceId {
        self.service
    }

    fn new(fd: OwnedFd, kind: InternalKind, service: ServiceId, peer: Peer, clock: Clock) -> Self {
        let mut out = Outbox::default();
        match kind {
            InternalKind::Daytime => out.keep(daytime_now().as_bytes()),
            InternalKind::Time => out.keep(&internal::time_bytes(unix_now())),
            _ => {}
        }
        InternalConn {
            fd,
            kind,
            service,
            peer,
            clock,
            // A new connection has room to write: the services that speak
            // first do so at once; echo reads at once too.
            ready: if kind == InternalKind::Echo {
                Ready::hopeful()
            } else {
                Ready::can_write()
            },
            echo: Flow::default(),
            out,
            chargen_at: 0,
            bytes: 0,
        }
    }

    fn bytes_in(&self) -> u64 {
        self.bytes + self.echo.bytes
    }

    fn step(&mut self, movers: &mut Movers) -> Step {
        let result = match self.kind {
            InternalKind::Daytime | InternalKind::Time => {
                if !self.ready.writable {
                    return Step::Idle;
                }
                match self.out.flush(self.fd.as_fd()) {
                    Ok((_, true)) => return Step::Done,
                    Ok((written, false)) => {
                        self.ready.writable = false;
                        Ok(written > 0)
                    }
                    Err(e) => Err(e),
                }
            }
            InternalKind::Echo => {
                let mut ends = Ends {
                    from: self.fd.as_fd(),
                    readable: &mut self.ready.readable,
                    read_closed: self.ready.read_closed,
                    to: self.fd.as_fd(),
                    writable: &mut self.ready.writable,
                };
                let moved = self.echo.step(&mut ends, movers);
                if self.echo.eof && self.echo.pending() == 0 {
                    return Step::Done;
                }
                moved
            }
            InternalKind::Discard | InternalKind::Chargen => {
                let before = self.bytes;
                match swallow(
                    self.fd.as_fd(),
                    &mut self.ready,
                    movers.scratch(),
                    &mut self.bytes,
                ) {
                    Ok(true) => return Step::Done,
                    Ok(false) => {}
                    Err(e) => return Step::Failed(e),
                }
                let mut progress = self.bytes != before;
                if self.kind == InternalKind::Chargen && self.ready.writable {
                    let cycle = internal::chargen_cycle();
                    let period = internal::CHARGEN_PERIOD;
                    let line = &cycle[self.chargen_at..self.chargen_at + period];
                    match write_now(self.fd.as_fd(), line) {
                        Ok(n) => {
                            progress |= n > 0;
                            self.ready.writable = n == line.len();
                            self.chargen_at = (self.chargen_at + n) % period;
                        }
                        Err(e) => return Step::Failed(e),
                    }
                }
                Ok(progress)
            }
        };
        match result {
            Ok(true) => Step::Continue,
            Ok(false) => Step::Idle,
            Err(e) => Step::Failed(e),
        }
    }
}

impl Relay {
    pub(super) fn service_id(&self) -> ServiceId {
        self.service
    }

    fn bytes(&self) -> [u64; 2] {
        [self.flows[0].bytes, self.flows[1].bytes]
    }

    fn connect_done(&mut self) {
        self.connected = true;
        self.clock.connect = None;
    }

    fn step(&mut self, movers: &mut Movers) -> Step {
        if !self.connected {
            // The connect has finished once epoll says the socket is
            // writable (an error or hang-up reported with it says how), or
            // once the upstream took bytes: the client's first bytes are
            // sent at once, which on loopback often finds the connect done.
            let upstream = &self.ready[1];
            if upstream.trouble {
                match socket::getsockopt(&self.upstream, socket::sockopt::SocketError) {
                    Ok(0) => {}
                    Ok(errno) => return Step::Failed(io::Error::from_raw_os_error(errno)),
                    Err(e) => return Step::Failed(e.into()),
                }
            }
            if upstream.reported_writable {
                self.connect_done();
            }
        }
        let [client, upstream] = &mut self.ready;
        let up = self.flows[0].step(
            &mut Ends {
                from: self.client.as_fd(),
                readable: &mut client.readable,
                read_closed: client.read_closed,
                to: self.upstream.as_fd(),
                writable: &mut upstream.writable,
            },
            movers,
        );
        if !self.connected {
            return match up {
                Ok(_) if self.flows[0].delivered > 0 => {
                    self.connect_done();
                    Step::Continue
                }
                // Bytes read from the client wait for the connect.
                Ok(true) => Step::Continue,
                Ok(false) => Step::Idle,
                Err(e) => Step::Failed(e),
            };
        }
        let down = self.flows[1].step(
            &mut Ends {
                from: self.upstream.as_fd(),
                readable: &mut upstream.readable,
                read_closed: upstream.read_closed,
                to: self.client.as_fd(),
                writable: &mut client.writable,
            },
            movers,
        );
        let progress = match (up, down) {
            (Ok(a), Ok(b)) => a || b,
            (Err(e), _) | (_, Err(e)) => return Step::Failed(e),
        };
        // Half-close: pass an EOF on once everything before it is written.
        let fds = [self.upstream.as_raw_fd(), self.client.as_raw_fd()];
        for (direction, fd) in fds.into_iter().enumerate() {
            let flow = &self.flows[direction];
            if flow.eof && flow.pending() == 0 && !self.shut[direction] {
                self.shut[direction] = true;
                let _ = socket::shutdown(fd, Shutdown::Write);
            }
        }
        let finished = self.flows.iter().all(|f| f.eof && f.pending() == 0);
        if finished {
            Step::Done
        } else if progress {
            Step::Continue
        } else {
            Step::Idle
        }
    }
}

/// Whether a relay got as far as a connection to its target (a failure
/// before that is a failed redirect, never a peer closing).
fn relay_connected(relays: &super::ids::Table<RelayId, Relay>, id: RelayId) -> bool {
    relays.get(id).is_some_and(|relay| relay.connected)
}

/// A non-blocking connect to `target`.
fn connect_upstream(target: SocketAddr) -> io::Result<OwnedFd> {
    let family = if target.is_ipv4() {
        socket::AddressFamily::Inet
    } else {
        socket::AddressFamily::Inet6
    };
    let fd = socket::socket(
        family,
        socket::SockType::Stream,
        socket::SockFlag::SOCK_CLOEXEC | socket::SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    match socket::connect(fd.as_raw_fd(), &SockaddrStorage::from(target)) {
        Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => Ok(fd),
        Err(e) => Err(e.into()),
    }
}

impl Server {
    /// Counts a new in-process connection of `service` and logs it.
    fn in_process_started(&mut self, service: ServiceId, peer: &Peer, what: std::fmt::Arguments) {
        self.in_proc.open += 1;
        let rt = &mut self.services[service];
        rt.counters.accepted += 1;
        rt.admission.started(peer_source(peer));
        crate::event!(log::Level::Info, "accept", service = rt.name; "peer={} {what}", PeerLabel(peer));
    }

    /// The bookkeeping and the exit line of an in-process connection that
    /// ended `how`.
    fn in_process_ended(
        &mut self,
        service: ServiceId,
        peer: &Peer,
        what: std::fmt::Arguments,
        how: &End,
        started: Instant,
    ) {
        debug_assert!(self.in_proc.open > 0);
        self.in_proc.open = self.in_proc.open.saturating_sub(1);
        if let Some(rt) = self.services.get_mut(service) {
            rt.admission.finished(peer_source(peer));
            if matches!(how, End::TimedOut(_)) {
                rt.counters.timeouts += 1;
            }
            crate::event!(exit_level(how.abnormal()), "exit", service = rt.name; "peer={} {what} {how} duration={:.3}s", PeerLabel(peer), started.elapsed().as_secs_f64());
        }
        self.drop_retired(service);
        self.release_queued();
        self.compact_timers();
    }

    /// Serves an admitted TCP client of an internal service in-process
    /// (`conn` was accepted non-blocking).
    pub(super) fn start_internal(
        &mut self,
        service: ServiceId,
        kind: InternalKind,
        conn: OwnedFd,
        peer: Peer,
    ) {
        let fd = conn.as_raw_fd();
        let now = Instant::now();
        let clock = Clock::new(self.services[service].limits(), now, false);
        self.in_process_started(service, &peer, format_args!("internal={}", kind.name()));
        let source = self
            .sources
            .insert(Source::Internal(Box::new(InternalConn::new(
                conn, kind, service, peer, clock,
            ))));
        if let Some(at) = clock.next() {
            self.timers.schedule(
                at,
                TimerKey::Internal {
                    source,
                    started: now,
                },
            );
        }
        if let Err(e) = self.register(fd, source, Interest::READABLE | Interest::WRITABLE) {
            crate::event!(log::Level::Warn, "internal_error"; "error={e}", e = crate::logging::line::Quoted(&e));
            self.finish_internal(source, End::Failed(e));
            return;
        }
        self.on_internal(source);
    }

    pub(super) fn on_internal(&mut self, source: SourceId) {
        let mut ended = None;
        let mut moved = false;
        let mut again = true;
        for _ in 0..ROUNDS {
            let Some(Source::Internal(conn)) = self.sources.get_mut(source) else {
                again = false;
                break;
            };
            match conn.step(&mut self.in_proc.movers) {
                Step::Continue => moved = true,
                Step::Idle => {
                    again = false;
                    break;
                }
                Step::Done => ended = Some(End::Done),
                Step::Failed(e) => ended = Some(End::of(e)),
            }
            if ended.is_some() {
                break;
            }
        }
        if let Some(end) = ended {
            return self.finish_internal(source, end);
        }
        if moved {
            if let Some(Source::Internal(conn)) = self.sources.get_mut(source) {
                conn.clock.last_active = Instant::now();
            }
        }
        if again {
            self.turns.again(source);
        }
    }

    /// A deadline timer of an internal connection fired.
    pub(super) fn internal_deadline(&mut self, source: SourceId, started: Instant) {
        let now = Instant::now();
        let Some(Source::Internal(conn)) = self.sources.get(source) else {
            return;
        };
        if conn.clock.started != started {
            return; // the source was reused
        }
        match conn.clock.passed(now) {
            Some(deadline) => self.finish_internal(source, End::TimedOut(deadline)),
            None => {
                if let Some(at) = conn.clock.next() {
                    self.timers
                        .schedule(at, TimerKey::Internal { source, started });
                }
            }
        }
    }

    /// Before an in-process connection's socket is closed. Closing the
    /// last reference to a socket takes it out of epoll by itself, which
    /// saves a system call per socket; but a child between its clone and
    /// its exec holds a copy of spawnd's descriptors, which keeps the
    /// registration alive, and its events would then reach whatever source
    /// gets the token next. So it is taken out first while one may.
    fn unwatch_before_close(&self, fd: RawFd) {
        if self.spawner.children_starting() {
            self.deregister(fd);
        }
    }

    /// Notes what epoll said about a socket of an in-process connection.
    pub(super) fn note_ready(&mut self, source: SourceId, event: &mio::event::Event) {
        match self.sources.get_mut(source) {
            Some(Source::Internal(conn)) => conn.ready.note(event),
            Some(Source::Relay(relay_id)) => {
                if let Some(relay) = self.in_proc.relays.get_mut(*relay_id) {
                    let side = usize::from(relay.tokens[1] == source);
                    relay.ready[side].note(event);
                }
            }
            _ => {}
        }
    }

    fn finish_internal(&mut self, source: SourceId, end: End) {
        let Some(Source::Internal(conn)) = self.sources.try_remove(source) else {
            return;
        };
        self.unwatch_before_close(conn.fd.as_raw_fd());
        let what = format_args!("internal={} bytes_in={}", conn.kind.name(), conn.bytes_in());
        self.in_process_ended(conn.service, &conn.peer, what, &end, conn.clock.started);
    }

    /// Answers the waiting datagrams of an internal UDP service.
    pub(super) fn serve_datagrams(&mut self, source: SourceId) {
        let Some(Source::Listener(listener)) = self.sources.get(source) else {
            return;
        };
        let fd = listener.bound.fd.as_raw_fd();
        let service = listener.service;
        let super::Work::Internal(kind) = self.services[service].work else {
            return;
        };
        let mut buf = self.in_proc.movers.take_scratch();
        let mut reply = Vec::new();
        let mut drained = false;
        for _ in 0..64 {
            let (n, from) = match socket::recvfrom::<SockaddrStorage>(fd, &mut buf) {
                Ok((n, Some(from))) => (n, from),
                Ok((_, None)) => continue,
                Err(nix::errno::Errno::EAGAIN) => {
                    drained = true;
                    break;
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => continue, // e.g. a queued ICMP error; reading cleared it
            };
            let Some(addr) = from
                .as_sockaddr_in()
                .map(|a| SocketAddr::from(std::net::SocketAddrV4::from(*a)))
                .or_else(|| {
                    from.as_sockaddr_in6()
                        .map(|a| SocketAddr::from(std::net::SocketAddrV6::from(*a)))
                })
            else {
                continue;
            };
            if kind != InternalKind::Discard {
                let reason = if !internal::udp_reply_allowed(addr.port()) {
                    Some("source_port")
                } else if self.in_proc.own_datagram.contains(addr) {
                    Some("own_address")
                } else if !self.in_proc.reply_budget.allow(addr.ip(), Instant::now()) {
                    Some("reply_budget")
                } else {
                    None
                };
                if let Some(reason) = reason {
                    let rt = &mut self.services[service];
                    crate::event!(log::Level::Debug, "udp_refuse", service = rt.name; "peer={addr} reason={reason}");
                    if reason == "reply_budget" {
                        rt.counters.refused_limits += 1;
                    } else {
                        rt.counters.refused_access += 1;
                    }
                    continue;
                }
            }
            let peer = Peer::Inet {
                local: None,
                remote: addr,
            };
            let rt = &mut self.services[service];
            // The same decision as for a connection; a datagram holds
            // nothing afterwards, so no spawnd-wide limit applies.
            match super::accept::decide(
                &rt.access,
                &mut rt.admission,
                &peer,
                Instant::now(),
                None,
                crate::sys::load_average,
            ) {
                Decision::Admit => {}
                Decision::Refuse(refusal, _) if refusal.is_access() => {
                    rt.counters.refused_access += 1;
                    continue;
                }
                Decision::Refuse(..) | Decision::Queue => {
                    rt.counters.refused_limits += 1;
                    continue;
                }
            }
            rt.counters.accepted += 1;
            reply.clear();
            match kind {
                InternalKind::Echo => reply.extend_from_slice(&buf[..n]),
                InternalKind::Discard => {}
                InternalKind::Chargen => Chargen::default().datagram(&mut reply),
                InternalKind::Daytime => reply.extend_from_slice(daytime_now().as_bytes()),
                InternalKind::Time => reply.extend_from_slice(&internal::time_bytes(unix_now())),
            }
            if !reply.is_empty() {
                let _ = socket::sendto(fd, &reply, &from, MsgFlags::MSG_DONTWAIT);
            }
            crate::event!(log::Level::Debug, "datagram", service = self.services[service].name; "peer={addr} internal={} bytes_in={n} bytes_out={}", kind.name(), reply.len());
        }
        self.in_proc.movers.put_scratch(buf);
        if !drained {
            self.turns.again(source);
        }
    }

    /// Relays an admitted client to the service's redirect target
    /// (`client` was accepted non-blocking).
    pub(super) fn start_redirect(
        &mut self,
        service: ServiceId,
        target: SocketAddr,
        client: OwnedFd,
        peer: Peer,
    ) {
        let upstream = match connect_upstream(target) {
            Ok(fd) => fd,
            Err(e) => {
                let rt = &mut self.services[service];
                rt.counters.spawn_failures += 1;
                crate::event!(log::Level::Warn, "redirect_failed", service = rt.name; "peer={} target={target} error={e}", PeerLabel(&peer), e = crate::logging::line::Quoted(&e));
                return;
            }
        };
        let now = Instant::now();
        let clock = Clock::new(self.services[service].limits(), now, true);
        self.in_process_started(service, &peer, format_args!("redirect={target}"));
        // Both sides' sources exist before the relay, so a relay always
        // knows its two tokens.
        let relay_id = self.in_proc.relays.vacant_key();
        let tokens = [
            self.sources.insert(Source::Relay(relay_id)),
            self.sources.insert(Source::Relay(relay_id)),
        ];
        self.in_proc.relays.insert(Relay {
            client,
            upstream,
            // Tried at once: the client's first bytes, and a send to the
            // upstream (to a socket still connecting it says EAGAIN).
            ready: [Ready::hopeful(), Ready::can_write()],
            connected: false,
            flows: Default::default(),
            shut: [false; 2],
            service,
            peer,
            clock,
            target,
            tokens,
        });
        if let Some(at) = clock.next() {
            self.timers.schedule(
                at,
                TimerKey::Relay {
                    relay: relay_id,
                    started: now,
                },
            );
        }
        let fds = [
            self.in_proc.relays[relay_id].client.as_raw_fd(),
            self.in_proc.relays[relay_id].upstream.as_raw_fd(),
        ];
        for (token, fd) in tokens.into_iter().zip(fds) {
            if let Err(e) = self.register(fd, token, Interest::READABLE | Interest::WRITABLE) {
                return self.finish_relay(relay_id, End::Failed(e));
            }
        }
        self.on_relay(tokens[0]);
    }

    pub(super) fn on_relay(&mut self, source: SourceId) {
        let Some(Source::Relay(relay_id)) = self.sources.get(source) else {
            return;
        };
        let relay_id = *relay_id;
        let mut ended = None;
        let mut moved = false;
        let mut again = true;
        for _ in 0..ROUNDS {
            let Some(relay) = self.in_proc.relays.get_mut(relay_id) else {
                again = false;
                break;
            };
            match relay.step(&mut self.in_proc.movers) {
                Step::Continue => moved = true,
                Step::Idle => {
                    again = false;
                    break;
                }
                Step::Done => ended = Some(End::Done),
                Step::Failed(e) if !relay_connected(&self.in_proc.relays, relay_id) => {
                    ended = Some(End::Failed(e))
                }
                Step::Failed(e) => ended = Some(End::of(e)),
            }
            if ended.is_some() {
                break;
            }
        }
        if let Some(end) = ended {
            return self.finish_relay(relay_id, end);
        }
        if moved {
            if let Some(relay) = self.in_proc.relays.get_mut(relay_id) {
                relay.clock.last_active = Instant::now();
            }
        }
        if again {
            self.turns.again(source);
        }
    }

    /// A deadline timer of a relay fired.
    pub(super) fn relay_deadline(&mut self, relay_id: RelayId, started: Instant) {
        let now = Instant::now();
        let Some(relay) = self.in_proc.relays.get(relay_id) else {
            return;
        };
        if relay.clock.started != started {
            return; // the entry was reused
        }
        match relay.clock.passed(now) {
            Some(deadline) => self.finish_relay(relay_id, End::TimedOut(deadline)),
            None => {
                if let Some(at) = relay.clock.next() {
                    self.timers.schedule(
                        at,
                        TimerKey::Relay {
                            relay: relay_id,
                            started,
                        },
                    );
                }
            }
        }
    }

    fn finish_relay(&mut self, relay_id: RelayId, end: End) {
        let Some(relay) = self.in_proc.relays.try_remove(relay_id) else {
            return;
        };
        for (token, fd) in relay
            .tokens
            .iter()
            .zip([relay.client.as_raw_fd(), relay.upstream.as_raw_fd()])
        {
            if self.sources.try_remove(*token).is_some() {
                self.unwatch_before_close(fd);
            }
        }
        if end.abnormal() && !relay.connected {
            if let Some(rt) = self.services.get_mut(relay.service) {
                rt.counters.spawn_failures += 1;
            }
        }
        let [bytes_in, bytes_out] = relay.bytes();
        let what = format_args!(
            "redirect={} bytes_in={bytes_in} bytes_out={bytes_out}",
            relay.target
        );
        self.in_process_ended(relay.service, &relay.peer, what, &end, relay.clock.started);
    }

    /// Whether a timer of an in-process connection no longer has one.
    pub(super) fn in_process_timer_is_stale(&self, key: &TimerKey) -> bool {
        match *key {
            TimerKey::Internal { source, started } => !matches!(
                self.sources.get(source),
                Some(Source::Internal(conn)) if conn.clock.started == started
            ),
            TimerKey::Relay { relay, started } => self
                .in_proc
                .relays
                .get(relay)
                .is_none_or(|r| r.clock.started != started),
            _ => false,
        }
    }
}
