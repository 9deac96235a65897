//! Services served inside the event loop, never forked: the internal
//! services (echo, discard, chargen, daytime, time) over TCP and UDP, and
//! `redirect`, which relays each TCP connection to another address. Every
//! buffer is bounded and every write waits for writability, so a client
//! that stops reading cannot grow spawnd's memory.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Instant;

use mio::Interest;
use nix::sys::socket::{self, MsgFlags, Shutdown, SockaddrStorage};

use super::accept::{peer_source, PeerLabel};
use super::children::exit_level;
use super::{Server, Source};
use crate::childenv::Peer;
use crate::config::InternalKind;
use crate::internal::{self, Chargen};
use crate::limits::{check_access, Decision};

/// `status=0`, or `error="..."`: formatted only if the exit line is logged
/// (clean exits are at debug level).
struct ExitHow<'a>(Option<&'a io::Error>);

impl std::fmt::Display for ExitHow<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self.0 {
            Some(e) => write!(f, "error=\"{e}\""),
            None => f.write_str("status=0"),
        }
    }
}

/// Per-direction buffer bound.
const BUFFER: usize = 64 * 1024;
/// Work per wake-up before other sources get a turn.
const ROUNDS: usize = 32;

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

fn read_some(fd: BorrowedFd<'_>, buf: &mut Vec<u8>, limit: usize) -> io::Result<usize> {
    let start = buf.len();
    let room = limit.saturating_sub(start);
    if room == 0 {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    buf.resize(start + room, 0);
    let result = nix::unistd::read(fd, &mut buf[start..]).map_err(io::Error::from);
    buf.truncate(start + *result.as_ref().unwrap_or(&0));
    result
}

fn write_some(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    socket::send(fd, data, MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT).map_err(io::Error::from)
}

/// Bytes waiting to be written, with what is already sent at the front.
#[derive(Default)]
struct Outbox {
    data: Vec<u8>,
    sent: usize,
}

impl Outbox {
    fn pending(&self) -> usize {
        self.data.len() - self.sent
    }

    /// Writes what it can; `Ok(true)` when something was written.
    fn flush(&mut self, fd: RawFd) -> io::Result<bool> {
        let mut progress = false;
        while self.pending() > 0 {
            match write_some(fd, &self.data[self.sent..]) {
                Ok(n) => {
                    self.sent += n;
                    progress = true;
                }
                Err(e) if would_block(&e) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if self.pending() == 0 {
            self.data.clear();
            self.sent = 0;
        } else if self.sent > BUFFER / 2 {
            self.data.drain(..self.sent);
            self.sent = 0;
        }
        Ok(progress)
    }
}

/// One TCP connection to an internal service.
pub(super) struct InternalConn {
    fd: OwnedFd,
    kind: InternalKind,
    service: usize,
    peer: Peer,
    started: Instant,
    out: Outbox,
    read_closed: bool,
    chargen: Chargen,
}

/// One redirected connection: client <-> upstream.
pub(super) struct Relay {
    client: OwnedFd,
    upstream: OwnedFd,
    connected: bool,
    to_upstream: Outbox,
    to_client: Outbox,
    client_eof: bool,
    upstream_eof: bool,
    /// Write side shut down: [upstream, client].
    shut: [bool; 2],
    service: usize,
    peer: Peer,
    started: Instant,
    target: SocketAddr,
    tokens: [usize; 2],
    bytes: [u64; 2],
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

impl InternalConn {
    pub(super) fn service_id(&self) -> usize {
        self.service
    }

    fn new(fd: OwnedFd, kind: InternalKind, service: usize, peer: Peer) -> Self {
        let mut out = Outbox::default();
        match kind {
            InternalKind::Daytime => out.data.extend_from_slice(daytime_now().as_bytes()),
            InternalKind::Time => out
                .data
                .extend_from_slice(&internal::time_bytes(unix_now())),
            _ => {}
        }
        InternalConn {
            fd,
            kind,
            service,
            peer,
            started: Instant::now(),
            out,
            read_closed: false,
            chargen: Chargen::default(),
        }
    }

    fn step(&mut self) -> Step {
        let fd = self.fd.as_raw_fd();
        let mut progress = match self.out.flush(fd) {
            Ok(p) => p,
            Err(e) => return Step::Failed(e),
        };
        match self.kind {
            InternalKind::Daytime | InternalKind::Time => {
                if self.out.pending() == 0 {
                    return Step::Done;
                }
            }
            InternalKind::Echo => {
                if !self.read_closed && self.out.data.len() < BUFFER {
                    match read_some(self.fd.as_fd(), &mut self.out.data, BUFFER) {
                        Ok(0) => self.read_closed = true,
                        Ok(_) => progress = true,
                        Err(e) if would_block(&e) => {}
                        Err(e) => return Step::Failed(e),
                    }
                }
                if self.read_closed && self.out.pending() == 0 {
                    return Step::Done;
                }
            }
            InternalKind::Discard | InternalKind::Chargen => {
                let mut sink = Vec::with_capacity(0);
                loop {
                    sink.clear();
                    match read_some(self.fd.as_fd(), &mut sink, 16 * 1024) {
                        Ok(0) => return Step::Done,
                        Ok(_) => progress = true,
                        Err(e) if would_block(&e) => break,
                        Err(e) => return Step::Failed(e),
                    }
                }
                if self.kind == InternalKind::Chargen && self.out.pending() == 0 {
                    self.chargen.fill(&mut self.out.data, 16 * 1024);
                    progress = true;
                }
            }
        }
        if progress {
            Step::Continue
        } else {
            Step::Idle
        }
    }
}

impl Relay {
    pub(super) fn service_id(&self) -> usize {
        self.service
    }

    /// Moves bytes one way; returns whether anything moved.
    fn transfer(
        from: BorrowedFd<'_>,
        to: RawFd,
        out: &mut Outbox,
        eof: &mut bool,
        count: &mut u64,
    ) -> io::Result<bool> {
        let mut progress = out.flush(to)?;
        if !*eof && out.data.len() < BUFFER {
            match read_some(from, &mut out.data, BUFFER) {
                Ok(0) => {
                    *eof = true;
                    progress = true;
                }
                Ok(n) => {
                    *count += n as u64;
                    progress = true;
                    progress |= out.flush(to)?;
                }
                Err(e) if would_block(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(progress)
    }

    fn step(&mut self) -> Step {
        if !self.connected {
            match socket::getsockopt(&self.upstream, socket::sockopt::SocketError) {
                Ok(0) => {}
                Ok(errno) => return Step::Failed(io::Error::from_raw_os_error(errno)),
                Err(e) => return Step::Failed(e.into()),
            }
            if socket::getpeername::<SockaddrStorage>(self.upstream.as_raw_fd()).is_err() {
                return Step::Idle; // still connecting
            }
            self.connected = true;
        }
        let (client, upstream) = (self.client.as_raw_fd(), self.upstream.as_raw_fd());
        let up = Self::transfer(
            self.client.as_fd(),
            upstream,
            &mut self.to_upstream,
            &mut self.client_eof,
            &mut self.bytes[0],
        );
        let down = Self::transfer(
            self.upstream.as_fd(),
            client,
            &mut self.to_client,
            &mut self.upstream_eof,
            &mut self.bytes[1],
        );
        let progress = match (up, down) {
            (Ok(a), Ok(b)) => a || b,
            (Err(e), _) | (_, Err(e)) => return Step::Failed(e),
        };
        // Half-close: pass an EOF on once everything before it is written.
        if self.client_eof && self.to_upstream.pending() == 0 && !self.shut[0] {
            self.shut[0] = true;
            let _ = socket::shutdown(upstream, Shutdown::Write);
        }
        if self.upstream_eof && self.to_client.pending() == 0 && !self.shut[1] {
            self.shut[1] = true;
            let _ = socket::shutdown(client, Shutdown::Write);
        }
        let finished = self.client_eof
            && self.upstream_eof
            && self.to_upstream.pending() == 0
            && self.to_client.pending() == 0;
        if finished {
            Step::Done
        } else if progress {
            Step::Continue
        } else {
            Step::Idle
        }
    }
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
    /// Serves an admitted TCP client of an internal service in-process.
    pub(super) fn start_internal(
        &mut self,
        service: usize,
        kind: InternalKind,
        conn: OwnedFd,
        peer: Peer,
    ) {
        if let Err(e) = crate::sys::set_nonblocking(conn.as_raw_fd(), true) {
            log::warn!(
                "internal_error service={} error=\"{e}\"",
                self.services[service].name
            );
            return;
        }
        let fd = conn.as_raw_fd();
        let rt = &mut self.services[service];
        rt.counters.accepted += 1;
        rt.admission.started(peer_source(&peer));
        log::info!(
            "accept service={} peer={} internal={}",
            rt.name,
            PeerLabel(&peer),
            kind.name()
        );
        let source = self
            .sources
            .insert(Source::Internal(Box::new(InternalConn::new(
                conn, kind, service, peer,
            ))));
        if let Err(e) = self.register(fd, source, Interest::READABLE | Interest::WRITABLE) {
            log::warn!("internal_error error=\"{e}\"");
            self.finish_internal(source, None);
            return;
        }
        self.on_internal(source);
    }

    pub(super) fn on_internal(&mut self, source: usize) {
        for _ in 0..ROUNDS {
            let Some(Source::Internal(conn)) = self.sources.get_mut(source) else {
                return;
            };
            match conn.step() {
                Step::Continue => continue,
                Step::Idle => return,
                Step::Done => return self.finish_internal(source, None),
                Step::Failed(e) => return self.finish_internal(source, Some(e)),
            }
        }
        self.turns.again(source);
    }

    fn finish_internal(&mut self, source: usize, error: Option<io::Error>) {
        let Some(Source::Internal(conn)) = self.sources.try_remove(source) else {
            return;
        };
        self.deregister(conn.fd.as_raw_fd());
        if let Some(rt) = self.services.get_mut(conn.service) {
            rt.admission.finished(peer_source(&conn.peer));
            let how = ExitHow(error.as_ref());
            log::log!(
                exit_level(error.is_some()),
                "exit service={} peer={} internal={} {how} duration={:.3}s",
                rt.name,
                PeerLabel(&conn.peer),
                conn.kind.name(),
                conn.started.elapsed().as_secs_f64()
            );
        }
        self.drop_retired(conn.service);
        self.release_queued();
    }

    /// Answers the waiting datagrams of an internal UDP service.
    pub(super) fn serve_datagrams(&mut self, source: usize) {
        let Some(Source::Listener(listener)) = self.sources.get(source) else {
            return;
        };
        let fd = listener.bound.fd.as_raw_fd();
        let service = listener.service;
        let super::Work::Internal(kind) = self.services[service].work else {
            return;
        };
        let mut buf = vec![0u8; 64 * 1024];
        let mut reply = Vec::new();
        for _ in 0..64 {
            let (n, from) = match socket::recvfrom::<SockaddrStorage>(fd, &mut buf) {
                Ok((n, Some(from))) => (n, from),
                Ok((_, None)) => continue,
                Err(nix::errno::Errno::EAGAIN) => return,
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
            if kind != InternalKind::Discard && !internal::udp_reply_allowed(addr.port()) {
                log::debug!(
                    "udp_refuse service={} peer={addr} reason=source_port",
                    self.services[service].name
                );
                self.services[service].counters.refused_access += 1;
                continue;
            }
            let peer = Peer::Inet {
                local: None,
                remote: addr,
            };
            let rt = &mut self.services[service];
            if check_access(&rt.access, Some(addr.ip()), None).is_err() {
                rt.counters.refused_access += 1;
                continue;
            }
            if rt.admission.decide(
                peer_source(&peer),
                Instant::now(),
                false,
                crate::sys::load_average,
            ) != Decision::Admit
            {
                rt.counters.refused_limits += 1;
                continue;
            }
            rt.counters.accepted += 1;
            reply.clear();
            match kind {
                InternalKind::Echo => reply.extend_from_slice(&buf[..n]),
                InternalKind::Discard => continue,
                InternalKind::Chargen => Chargen::default().datagram(&mut reply),
                InternalKind::Daytime => reply.extend_from_slice(daytime_now().as_bytes()),
                InternalKind::Time => reply.extend_from_slice(&internal::time_bytes(unix_now())),
            }
            let _ = socket::sendto(fd, &reply, &from, MsgFlags::MSG_DONTWAIT);
        }
        self.turns.again(source);
    }

    /// Relays an admitted client to the service's redirect target.
    pub(super) fn start_redirect(
        &mut self,
        service: usize,
        target: SocketAddr,
        client: OwnedFd,
        peer: Peer,
    ) {
        let name = self.services[service].name.clone();
        let upstream = match crate::sys::set_nonblocking(client.as_raw_fd(), true)
            .and_then(|_| connect_upstream(target))
        {
            Ok(fd) => fd,
            Err(e) => {
                self.services[service].counters.spawn_failures += 1;
                log::warn!(
                    "redirect_failed service={name} peer={} target={target} error=\"{e}\"",
                    PeerLabel(&peer)
                );
                return;
            }
        };
        let rt = &mut self.services[service];
        rt.counters.accepted += 1;
        rt.admission.started(peer_source(&peer));
        log::info!(
            "accept service={name} peer={} redirect={target}",
            PeerLabel(&peer)
        );
        let relay_id = self.relays.insert(Relay {
            client,
            upstream,
            connected: false,
            to_upstream: Outbox::default(),
            to_client: Outbox::default(),
            client_eof: false,
            upstream_eof: false,
            shut: [false; 2],
            service,
            peer,
            started: Instant::now(),
            target,
            tokens: [usize::MAX; 2],
            bytes: [0; 2],
        });
        let fds = [
            self.relays[relay_id].client.as_raw_fd(),
            self.relays[relay_id].upstream.as_raw_fd(),
        ];
        for (side, fd) in fds.into_iter().enumerate() {
            let token = self.sources.insert(Source::Relay(relay_id));
            self.relays[relay_id].tokens[side] = token;
            if let Err(e) = self.register(fd, token, Interest::READABLE | Interest::WRITABLE) {
                return self.finish_relay(relay_id, Some(e));
            }
        }
    }

    pub(super) fn on_relay(&mut self, source: usize) {
        let Some(Source::Relay(relay_id)) = self.sources.get(source) else {
            return;
        };
        let relay_id = *relay_id;
        for _ in 0..ROUNDS {
            let Some(relay) = self.relays.get_mut(relay_id) else {
                return;
            };
            match relay.step() {
                Step::Continue => continue,
                Step::Idle => return,
                Step::Done => return self.finish_relay(relay_id, None),
                Step::Failed(e) => return self.finish_relay(relay_id, Some(e)),
            }
        }
        self.turns.again(source);
    }

    fn finish_relay(&mut self, relay_id: usize, error: Option<io::Error>) {
        let Some(relay) = self.relays.try_remove(relay_id) else {
            return;
        };
        for (token, fd) in relay
            .tokens
            .iter()
            .zip([relay.client.as_raw_fd(), relay.upstream.as_raw_fd()])
        {
            if self.sources.try_remove(*token).is_some() {
                self.deregister(fd);
            }
        }
        if let Some(rt) = self.services.get_mut(relay.service) {
            rt.admission.finished(peer_source(&relay.peer));
            let how = ExitHow(error.as_ref());
            if error.is_some() && !relay.connected {
                rt.counters.spawn_failures += 1;
            }
            log::log!(
                exit_level(error.is_some()),
                "exit service={} peer={} redirect={} {how} bytes_in={} bytes_out={} duration={:.3}s",
                rt.name,
                PeerLabel(&relay.peer),
                relay.target,
                relay.bytes[0],
                relay.bytes[1],
                relay.started.elapsed().as_secs_f64()
            );
        }
        self.drop_retired(relay.service);
        self.release_queued();
    }
}
