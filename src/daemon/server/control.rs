//! The control socket: each client gets the status report as one JSON
//! document, written without blocking the loop, then the connection closes.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use mio::Interest;
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType};

use super::ids::SourceId;
use super::{Server, Source, TimerKey};
use crate::control::{Report, ServiceReport};
use crate::daemon::listener::Bound;
use crate::sys::fsafe;

/// A status answer still being written.
pub(super) struct ControlConn {
    fd: OwnedFd,
    data: Vec<u8>,
    written: usize,
    started: Instant,
}

/// Most status clients served at once; more are closed at once.
const MOST_CLIENTS: usize = 16;
/// How long a status client has to read its answer.
const CLIENT_DEADLINE: Duration = Duration::from_secs(10);

/// Binds the control socket (mode 0600), replacing a stale one. `Ok(None)`
/// when another live spawnd holds it: this one runs without. Its directory
/// is made (0700) if missing; an existing one must be spawnd's or root's
/// and closed to others (`fsafe::owned_dir`), or another user could swap
/// the socket and answer `spawnd status` in spawnd's place.
/// `shared`: the directory is the default one that every spawnd of this
/// user puts its socket in; whichever leaves it empty removes it.
pub(super) fn bind(
    path: &Path,
    shared: bool,
    made: &mut Option<fsafe::EmptyDir>,
) -> io::Result<Option<Bound>> {
    if let Some(parent) = path.parent() {
        if fsafe::owned_dir(parent)? || shared {
            *made = Some(fsafe::EmptyDir(parent.to_path_buf()));
        }
    }
    let place = fsafe::SocketPlace::open(path)?;
    match place.occupant()? {
        fsafe::Occupant::Nothing => {}
        fsafe::Occupant::StaleSocket => place.clear_stale()?,
        fsafe::Occupant::LiveSocket => return Ok(None),
        fsafe::Occupant::Other(what) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("the path is {what}, not a socket; not replaced"),
            ))
        }
    }
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    let fd = crate::daemon::slots::above(fd)?;
    // Created 0600 from the start, not chmod'ed after a window.
    let id = place.bind(&fd, Some(0o600))?;
    let bound = Bound {
        fd,
        created: Some(Box::new((path.to_path_buf(), id))),
    };
    socket::listen(&bound.fd, socket::Backlog::new(16)?)?;
    Ok(Some(bound))
}

impl Server {
    /// Opens the control socket configured (or the default one).
    pub fn open_control(&mut self) {
        let shared = self.global.control_socket.is_none();
        let path = self
            .global
            .control_socket
            .clone()
            .unwrap_or_else(|| crate::control::default_socket(&self.config.dir));
        match bind(&path, shared, &mut self.made_dir) {
            Ok(Some(bound)) => {
                let fd = bound.fd.as_raw_fd();
                crate::daemon::slots::check(std::iter::once(bound.fd.as_raw_fd()));
                let source = self.sources.insert(Source::Control(bound));
                if let Err(e) = self.register(fd, source, Interest::READABLE) {
                    crate::event!(log::Level::Warn, "control_error"; "path={} error={e}", path.display(), e = crate::logging::line::Quoted(&e));
                    self.sources.remove(source);
                } else {
                    crate::event!(log::Level::Debug, "control"; "path={}", path.display());
                }
            }
            Ok(None) => {
                crate::event!(log::Level::Warn, "control_busy"; "path={} detail=\"another spawnd is running there; no status socket for this one\"", path.display())
            }
            Err(e) => {
                crate::event!(log::Level::Warn, "control_error"; "path={} error={e}", path.display(), e = crate::logging::line::Quoted(&e))
            }
        }
    }

    pub(super) fn report(&self) -> Report {
        let trouble = |name: &str| self.troubles.get(name);
        let mut services: Vec<ServiceReport> = self
            .services
            .iter()
            .map(|(_, s)| ServiceReport {
                name: s.name.to_string(),
                state: match trouble(&s.name) {
                    Some(t) if t.kept && !s.retired => "kept".to_string(),
                    _ => self.service_state(s).to_string(),
                },
                reason: trouble(&s.name)
                    .filter(|t| t.kept && !s.retired)
                    .map(|t| t.reason.clone()),
                source: self.includes.source_of(&s.name),
                listen: self.listen_labels(s),
                children: s.admission.active(),
                accepted: s.counters.accepted,
                refused_access: s.counters.refused_access,
                refused_limits: s.counters.refused_limits,
                spawn_failures: s.counters.spawn_failures,
                abnormal_exits: s.counters.abnormal_exits,
                timeouts: s.counters.timeouts,
                unread_datagrams: s.counters.unread_datagrams,
            })
            .collect();
        for (name, trouble) in &self.troubles {
            if !trouble.kept {
                services.push(ServiceReport {
                    name: name.to_string(),
                    state: "failed".to_string(),
                    reason: Some(trouble.reason.clone()),
                    source: None,
                    listen: Vec::new(),
                    children: 0,
                    accepted: 0,
                    refused_access: 0,
                    refused_limits: 0,
                    spawn_failures: 0,
                    abnormal_exits: 0,
                    timeouts: 0,
                    unread_datagrams: 0,
                });
            }
        }
        services.sort_by(|a, b| a.name.cmp(&b.name));
        Report {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            config_dir: self.config.dir.display().to_string(),
            children: self.children.len(),
            services,
        }
    }

    /// Where a service listens now (a retired one no longer does).
    fn listen_labels(&self, service: &super::ServiceRt) -> Vec<String> {
        service
            .listeners
            .iter()
            .filter_map(|source| match self.sources.get(*source) {
                Some(Source::Listener(listener)) => Some(listener.addr.to_string()),
                _ => None,
            })
            .collect()
    }

    pub(super) fn on_control(&mut self, source: SourceId) {
        let Some(Source::Control(bound)) = self.sources.get(source) else {
            return;
        };
        let listener = bound.fd.as_raw_fd();
        for _ in 0..16 {
            let conn = match crate::sys::accept(listener, true) {
                Ok((conn, _)) => conn,
                Err(_) => return,
            };
            let clients = self
                .sources
                .iter()
                .filter(|(_, s)| matches!(s, Source::ControlConn(_)))
                .count();
            if clients >= MOST_CLIENTS {
                continue;
            }
            let data = serde_json::to_vec(&self.report()).unwrap_or_default();
            let fd = conn.as_raw_fd();
            let started = Instant::now();
            let key = self.sources.insert(Source::ControlConn(ControlConn {
                fd: conn,
                data,
                written: 0,
                started,
            }));
            if self.register(fd, key, Interest::WRITABLE).is_err() {
                self.sources.remove(key);
                continue;
            }
            self.timers.schedule(
                started + CLIENT_DEADLINE,
                TimerKey::Control {
                    source: key,
                    started,
                },
            );
        }
        self.turns.again(source);
    }

    pub(super) fn on_control_conn(&mut self, source: SourceId) {
        let Some(Source::ControlConn(conn)) = self.sources.get_mut(source) else {
            return;
        };
        let done = loop {
            if conn.written >= conn.data.len() {
                break true;
            }
            match nix::unistd::write(&conn.fd, &conn.data[conn.written..]) {
                Ok(n) => conn.written += n,
                Err(nix::errno::Errno::EAGAIN) => break false,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break true,
            }
        };
        if done {
            let fd = conn.fd.as_raw_fd();
            self.deregister(fd);
            self.sources.remove(source);
        }
    }

    /// A status client did not read its answer in time: closed.
    pub(super) fn control_deadline(&mut self, source: SourceId, started: Instant) {
        if let Some(Source::ControlConn(conn)) = self.sources.get(source) {
            if conn.started == started {
                let fd = conn.fd.as_raw_fd();
                self.deregister(fd);
                self.sources.remove(source);
            }
        }
    }
}
