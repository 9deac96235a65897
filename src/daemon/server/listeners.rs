//! Listening sockets at run time. A listener's state (armed in the
//! poller, resting, handed to a wait-mode child) is private to this file:
//! every change of it is made here, as are the list of listeners held back
//! by `on_limit: queue` and the pauses that end on a timer. The rest of the
//! server asks (`is_armed`, `listener_states`) and calls the transitions
//! below.
//!
//! Listeners live in the server's source slab, whose key is their poll
//! token: a separate table would cost a second entry per listener (a
//! service's memory is a benchmark target) and a second lookup per event.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use mio::Interest;

use super::ids::{ServiceId, SourceId};
use super::{Server, Source, TimerKey, FD_EXHAUSTED_PAUSE};
use crate::config::units::ListenAddr;
use crate::config::SocketKind;
use crate::daemon::listener::Bound;
use crate::logging::line::Quoted;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ListenerState {
    /// Registered with the poller.
    Armed,
    /// Wait mode: the socket belongs to child `pid` until it is reaped.
    HandedOff(i32),
    /// Resting (fd exhaustion, failed fork, rate pause, queue); a timer or
    /// a reaped child re-arms it.
    Paused,
}

pub(super) struct Listener {
    pub(super) bound: Bound,
    pub(super) addr: ListenAddr,
    pub(super) kind: SocketKind,
    pub(super) service: ServiceId,
    state: ListenerState,
    /// An fd-exhaustion episode has been logged.
    exhaustion_logged: bool,
}

impl Listener {
    pub(super) fn fixed_local(&self) -> Option<SocketAddr> {
        fixed_local(&self.addr)
    }

    pub(super) fn is_armed(&self) -> bool {
        self.state == ListenerState::Armed
    }

    pub(super) fn fd(&self) -> RawFd {
        self.bound.fd.as_raw_fd()
    }
}

/// The local address of every connection, when the socket is bound to one
/// address, so accept needs no getsockname. A wildcard (`0.0.0.0`, `[::]`)
/// has none: each connection's own address is looked up.
pub(super) fn fixed_local(addr: &ListenAddr) -> Option<SocketAddr> {
    match addr {
        ListenAddr::Inet(addr) if !addr.ip().is_unspecified() => Some(*addr),
        _ => None,
    }
}

/// What the listeners share: those held back by `on_limit: queue`, until
/// a child exits.
#[derive(Default)]
pub(super) struct Listeners {
    queued: Vec<SourceId>,
}

impl Server {
    /// Adds a bound socket to `service` and arms it.
    pub(super) fn attach_listener(
        &mut self,
        service: ServiceId,
        addr: ListenAddr,
        kind: SocketKind,
        bound: Bound,
    ) {
        if kind == SocketKind::Dgram {
            self.in_proc.own_datagram.add(&addr);
        }
        let socket = match kind {
            SocketKind::Stream => "stream",
            SocketKind::Dgram => "dgram",
        };
        crate::event!(log::Level::Info, "listening", service = self.services[service].name; "addr={addr} socket={socket}");
        crate::daemon::slots::check(std::iter::once(bound.fd.as_raw_fd()));
        let source = self.sources.insert(Source::Listener(Listener {
            bound,
            addr,
            kind,
            service,
            state: ListenerState::Paused,
            exhaustion_logged: false,
        }));
        self.services[service].listeners.push(source);
        self.arm(source);
    }

    /// Registers a listener that is paused; logs if that fails.
    pub(super) fn arm(&mut self, source: SourceId) {
        let Some(Source::Listener(listener)) = self.sources.get(source) else {
            return;
        };
        if listener.state == ListenerState::Armed {
            return;
        }
        let fd = listener.bound.fd.as_raw_fd();
        match self.register(fd, source, Interest::READABLE) {
            Ok(()) => {
                if let Some(Source::Listener(listener)) = self.sources.get_mut(source) {
                    listener.state = ListenerState::Armed;
                }
            }
            Err(e) => {
                crate::event!(log::Level::Error, "listen_error"; "source={source} error={e}", e = Quoted(&e))
            }
        }
    }

    /// Takes a listener out of the poller.
    fn disarm(&mut self, source: SourceId, state: ListenerState) {
        let Some(Source::Listener(listener)) = self.sources.get_mut(source) else {
            return;
        };
        if listener.state == ListenerState::Armed {
            let fd = listener.bound.fd.as_raw_fd();
            listener.state = state;
            self.deregister(fd);
        } else {
            listener.state = state;
        }
    }

    /// Closes one listener (and removes a Unix socket file spawnd made).
    pub(super) fn close_listener(&mut self, source: SourceId) {
        let Some(Source::Listener(listener)) = self.sources.get(source) else {
            return;
        };
        let fd = listener.bound.fd.as_raw_fd();
        let service = listener.service;
        if listener.is_armed() {
            self.deregister(fd);
        }
        if listener.kind == SocketKind::Dgram {
            self.in_proc.own_datagram.remove(&listener.addr);
        }
        if let Some(rt) = self.services.get_mut(service) {
            rt.listeners.remove(source);
        }
        self.children.forget_listener(source);
        self.listeners.queued.retain(|s| *s != source);
        self.sources.remove(source);
    }

    /// Rests a listener for `pause` (a failed fork or accept).
    pub(super) fn pause_listener(&mut self, source: SourceId, pause: Duration) {
        self.disarm(source, ListenerState::Paused);
        self.timers
            .schedule(Instant::now() + pause, TimerKey::ResumeListener { source });
    }

    /// The descriptor table is full: rest, logging once per episode.
    pub(super) fn pause_exhausted(&mut self, source: SourceId, error: &std::io::Error) {
        let Some(Source::Listener(listener)) = self.sources.get_mut(source) else {
            return;
        };
        if !listener.exhaustion_logged {
            listener.exhaustion_logged = true;
            let name = &self.services[listener.service].name;
            crate::event!(log::Level::Warn, "accept_paused", service = name; "listen={} error={error} pause={}ms", listener.addr, FD_EXHAUSTED_PAUSE.as_millis(), error = Quoted(&error));
        }
        self.pause_listener(source, FD_EXHAUSTED_PAUSE);
    }

    /// Listeners held back by `on_limit: queue` get another look.
    pub(super) fn release_queued(&mut self) {
        if self.listeners.queued.is_empty() || self.stopping.is_some() {
            return;
        }
        for source in std::mem::take(&mut self.listeners.queued) {
            if let Some(Source::Listener(listener)) = self.sources.get(source) {
                if listener.state == ListenerState::Paused {
                    self.arm(source);
                    self.turns.again(source);
                }
            }
        }
    }

    /// `on_limit: queue` with every instance taken: leave clients in the
    /// kernel's backlog until a child exits (`release_queued`).
    pub(super) fn queue_listener(&mut self, source: SourceId) {
        self.disarm(source, ListenerState::Paused);
        self.listeners.queued.push(source);
    }

    /// A pause is over (`TimerKey::ResumeListener`).
    pub(super) fn resume_listener(&mut self, source: SourceId) {
        if self.stopping.is_some() {
            return;
        }
        if let Some(Source::Listener(listener)) = self.sources.get(source) {
            if listener.state == ListenerState::Paused {
                self.arm(source);
            }
        }
    }

    /// A connection came: a later exhaustion is a new episode.
    pub(super) fn accepted_from(&mut self, source: SourceId) {
        if let Some(Source::Listener(listener)) = self.sources.get_mut(source) {
            listener.exhaustion_logged = false;
        }
    }

    /// Wait mode: the socket is out of the poller, about to be handed over.
    pub(super) fn hold_for_handoff(&mut self, source: SourceId) {
        self.disarm(source, ListenerState::Paused);
    }

    /// Wait mode: child `pid` has the socket until it is reaped.
    pub(super) fn handed_off(&mut self, source: SourceId, pid: i32) {
        if let Some(Source::Listener(listener)) = self.sources.get_mut(source) {
            listener.state = ListenerState::HandedOff(pid);
        }
    }

    /// Wait mode: the child holding the socket was reaped. Returns the
    /// socket and its service; `arm` it once it is ready again.
    pub(super) fn taken_back(&mut self, source: SourceId) -> Option<(RawFd, ServiceId)> {
        let Some(Source::Listener(listener)) = self.sources.get_mut(source) else {
            return None;
        };
        listener.state = ListenerState::Paused;
        Some((listener.fd(), listener.service))
    }

    /// A reload gave the socket to `service`: returns the one it leaves.
    pub(super) fn move_listener(
        &mut self,
        source: SourceId,
        service: ServiceId,
    ) -> Option<ServiceId> {
        match self.sources.get_mut(source) {
            Some(Source::Listener(listener)) => {
                Some(std::mem::replace(&mut listener.service, service))
            }
            _ => None,
        }
    }

    /// Stop: every listener is closed at once.
    pub(super) fn close_all_listeners(&mut self) {
        let listeners: Vec<SourceId> = self
            .sources
            .iter()
            .filter(|(_, s)| matches!(s, Source::Listener(_)))
            .map(|(key, _)| key)
            .collect();
        for source in listeners {
            self.close_listener(source);
        }
    }

    /// The states of `service`'s listeners.
    pub(super) fn listener_states(&self, service: &super::ServiceRt) -> Vec<ListenerState> {
        service
            .listeners
            .iter()
            .filter_map(|source| match self.sources.get(*source) {
                Some(Source::Listener(l)) => Some(l.state),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::units::ListenAddr;

    #[test]
    fn only_a_specific_address_is_every_connections_local_address() {
        let fixed = |text: &str| super::fixed_local(&text.parse::<ListenAddr>().unwrap());
        assert_eq!(fixed("127.0.0.1:9"), Some("127.0.0.1:9".parse().unwrap()));
        assert_eq!(fixed("[::1]:9"), Some("[::1]:9".parse().unwrap()));
        assert_eq!(fixed("0.0.0.0:9"), None);
        assert_eq!(fixed("[::]:9"), None);
        assert_eq!(fixed("*:9"), None);
        assert_eq!(fixed("/run/x.sock"), None);
    }
}
