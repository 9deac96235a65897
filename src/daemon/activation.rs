//! Socket activation of spawnd itself: sockets passed by systemd (or any
//! launcher speaking its protocol) as `LISTEN_FDS`/`LISTEN_PID` are adopted
//! by the service whose address and type they match, instead of binding.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::sys::socket::{getsockname, getsockopt, sockopt, SockType, SockaddrStorage};

use crate::config::units::ListenAddr;
use crate::config::SocketKind;

const SD_LISTEN_FDS_START: RawFd = 3;

#[derive(Default)]
pub struct Inherited {
    sockets: Vec<OwnedFd>,
}

/// Takes the passed sockets out of descriptors 3.. (which spawnd reserves
/// for its own use) to descriptors above them, close-on-exec. Call before
/// anything else opens a descriptor.
pub fn take() -> Inherited {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_some_and(|pid| pid == std::process::id());
    let count = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<RawFd>().ok())
        .unwrap_or(0);
    let mut inherited = Inherited::default();
    if !for_us || count <= 0 {
        return inherited;
    }
    for fd in SD_LISTEN_FDS_START..SD_LISTEN_FDS_START + count.min(4096) {
        match crate::daemon::slots::adopt(fd) {
            Ok(socket) => inherited.sockets.push(socket),
            Err(e) => {
                crate::event!(log::Level::Warn, "activation_error"; "fd={fd} error={}", crate::logging::line::Quoted(e))
            }
        }
    }
    crate::event!(log::Level::Info, "activation"; "sockets={}", inherited.sockets.len());
    inherited
}

fn matches(fd: &OwnedFd, addr: &ListenAddr, kind: SocketKind) -> bool {
    let wanted_type = match kind {
        SocketKind::Stream => SockType::Stream,
        SocketKind::Dgram => SockType::Datagram,
    };
    if getsockopt(&fd.as_fd(), sockopt::SockType).ok() != Some(wanted_type) {
        return false;
    }
    let Ok(local) = getsockname::<SockaddrStorage>(fd.as_raw_fd()) else {
        return false;
    };
    match addr {
        ListenAddr::Inet(wanted) => {
            let actual = local
                .as_sockaddr_in()
                .map(|a| std::net::SocketAddr::from(std::net::SocketAddrV4::from(*a)))
                .or_else(|| {
                    local
                        .as_sockaddr_in6()
                        .map(|a| std::net::SocketAddr::from(std::net::SocketAddrV6::from(*a)))
                });
            actual.is_some_and(|a| a.ip() == wanted.ip() && a.port() == wanted.port())
        }
        ListenAddr::AnyInet(port) => {
            let v4 = local
                .as_sockaddr_in()
                .is_some_and(|a| a.ip().is_unspecified() && a.port() == *port);
            let v6 = local
                .as_sockaddr_in6()
                .is_some_and(|a| a.ip().is_unspecified() && a.port() == *port);
            v4 || v6
        }
        ListenAddr::Unix(path) => local
            .as_unix_addr()
            .and_then(|u| u.path())
            .is_some_and(|p| p == path),
        ListenAddr::Abstract(name) => local
            .as_unix_addr()
            .and_then(|u| u.as_abstract())
            .is_some_and(|a| a == name.as_bytes()),
    }
}

impl Inherited {
    /// The passed socket for `addr`, made non-blocking, if there is one.
    pub fn claim(&mut self, addr: &ListenAddr, kind: SocketKind) -> Option<OwnedFd> {
        let index = self.sockets.iter().position(|fd| matches(fd, addr, kind))?;
        let fd = self.sockets.swap_remove(index);
        if let Err(e) = crate::sys::set_nonblocking(fd.as_raw_fd(), true) {
            crate::event!(log::Level::Warn, "activation_error"; "listen={addr} error={e}", e = crate::logging::line::Quoted(&e));
        }
        crate::event!(log::Level::Info, "adopted"; "listen={addr}");
        Some(fd)
    }

    /// Closes every passed socket no service wanted.
    pub fn close_rest(&mut self) {
        for fd in self.sockets.drain(..) {
            let name = getsockname::<SockaddrStorage>(fd.as_raw_fd())
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "?".into());
            crate::event!(log::Level::Warn, "activation_unused"; "socket={name} detail=\"no service listens there; closed\"");
        }
    }
}
