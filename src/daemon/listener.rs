//! Opening listening sockets: TCP/UDP over IPv4 and IPv6, dual-stack `*`,
//! Unix paths and abstract names. Every descriptor is close-on-exec and
//! non-blocking in spawnd.
//!
//! A Unix socket file goes through `crate::sys::fsafe`: as root its directory
//! must be one no other user can swap things in (sticky ones such as /tmp
//! included: there nobody else can remove or rename the file root
//! creates), an existing file is replaced only if it is a socket nobody
//! answers on, the mode is set by the umask at `bind` (never widened after),
//! and the owner is changed without following a link, on the very socket
//! spawnd bound.

use std::io;
use std::net::{Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::sys::socket::{
    self, setsockopt, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, UnixAddr,
};

use crate::config::units::ListenAddr;
use crate::config::{SocketKind, UnixSocketPerms};
use crate::sys::fsafe;

/// A bound (and, for streams, listening) socket.
#[derive(Debug)]
pub struct Bound {
    pub fd: OwnedFd,
    /// The socket file spawnd created, removed when the socket is closed
    /// if the path still is that socket.
    pub created: Option<Box<(std::path::PathBuf, fsafe::SocketId)>>,
}

impl Bound {
    /// A socket spawnd did not create a file for (inherited, abstract, IP).
    pub fn plain(fd: OwnedFd) -> Bound {
        Bound { fd, created: None }
    }
}

impl Drop for Bound {
    fn drop(&mut self) {
        if let Some(created) = &self.created {
            fsafe::remove_socket(&created.0, created.1);
        }
    }
}

fn sock_type(kind: SocketKind) -> SockType {
    match kind {
        SocketKind::Stream => SockType::Stream,
        SocketKind::Dgram => SockType::Datagram,
    }
}

/// A new socket, above the descriptor slots: one bound by a reload, while
/// slot 3 is free, would otherwise keep it from connections for good.
fn new_socket(family: AddressFamily, kind: SocketKind) -> io::Result<OwnedFd> {
    let fd = socket::socket(
        family,
        sock_type(kind),
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    crate::daemon::slots::above(fd)
}

/// `backlog` `None` asks for the kernel's most (it caps any larger value at
/// `net.core.somaxconn`).
fn listen(fd: &OwnedFd, kind: SocketKind, backlog: Option<u32>) -> io::Result<()> {
    if kind == SocketKind::Stream {
        let backlog = match backlog {
            Some(backlog) => socket::Backlog::new(backlog.min(i32::MAX as u32) as i32)?,
            None => socket::Backlog::MAXALLOWABLE,
        };
        socket::listen(fd, backlog)?;
    }
    Ok(())
}

fn bind_inet(addr: SocketAddr, kind: SocketKind, v6only: bool) -> io::Result<OwnedFd> {
    let fd = match addr {
        SocketAddr::V4(v4) => {
            let fd = new_socket(AddressFamily::Inet, kind)?;
            setsockopt(&fd, sockopt::ReuseAddr, &true)?;
            socket::bind(fd.as_raw_fd(), &SockaddrIn::from(v4))?;
            fd
        }
        SocketAddr::V6(v6) => {
            let fd = new_socket(AddressFamily::Inet6, kind)?;
            setsockopt(&fd, sockopt::ReuseAddr, &true)?;
            setsockopt(&fd, sockopt::Ipv6V6Only, &v6only)?;
            socket::bind(fd.as_raw_fd(), &SockaddrIn6::from(v6))?;
            fd
        }
    };
    Ok(fd)
}

/// The mode a socket file gets when `unix_mode` is not set: stream sockets
/// root creates under /run are 0660 (root:root), so a system service's
/// socket is not open to every local user by accident.
pub fn default_unix_mode(path: &Path, kind: SocketKind, root: bool) -> Option<u32> {
    (root && kind == SocketKind::Stream && path.starts_with("/run")).then_some(0o660)
}

/// Binds a Unix socket at `path` (see the module comment).
fn bind_unix(
    path: &Path,
    kind: SocketKind,
    backlog: Option<u32>,
    perms: &UnixSocketPerms,
) -> io::Result<Bound> {
    let place = match fsafe::SocketPlace::open(path) {
        Err(fsafe::Error::Io(e)) if e.kind() == io::ErrorKind::NotFound => {
            make_socket_dir(path)?;
            fsafe::SocketPlace::open(path)?
        }
        other => other?,
    };
    place.clear_stale()?;
    let fd = new_socket(AddressFamily::Unix, kind)?;
    let mode = perms
        .mode
        .or_else(|| default_unix_mode(path, kind, fsafe::is_root()));
    let id = place.bind(&fd, mode)?;
    let bound = Bound {
        fd,
        created: Some(Box::new((path.to_path_buf(), id))),
    };
    place.chown(id, perms.owner_id, perms.group_id)?;
    listen(&bound.fd, kind, backlog)?;
    Ok(bound)
}

/// A socket's missing directory: made (mode 0755, as root, so clients can
/// reach the socket) when it is right under /run, where runtime
/// directories belong and are lost at each boot; anywhere else the error
/// says what to do.
fn make_socket_dir(path: &Path) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    if fsafe::is_root() && dir.parent() == Some(Path::new("/run")) {
        fsafe::make_dir(dir, 0o755)?;
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "the directory {0} does not exist: create it (install -d -m 0755 {0}), or put the socket in /run/NAME/, which spawnd creates",
            dir.display()
        ),
    ))
}

/// Opens the socket for one listen address.
pub fn bind(
    addr: &ListenAddr,
    kind: SocketKind,
    backlog: Option<u32>,
    perms: &UnixSocketPerms,
) -> io::Result<Bound> {
    let fd = match addr {
        ListenAddr::Inet(addr) => bind_inet(*addr, kind, true)?,
        ListenAddr::AnyInet(port) => {
            let any6 = SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), *port);
            match bind_inet(any6, kind, false) {
                Ok(fd) => fd,
                // No IPv6 on this host: every address is every IPv4 address.
                Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
                    bind_inet(SocketAddr::from(([0, 0, 0, 0], *port)), kind, false)?
                }
                Err(e) => return Err(e),
            }
        }
        ListenAddr::Unix(path) => return bind_unix(path, kind, backlog, perms),
        ListenAddr::Abstract(name) => {
            let fd = new_socket(AddressFamily::Unix, kind)?;
            socket::bind(fd.as_raw_fd(), &UnixAddr::new_abstract(name.as_bytes())?)?;
            fd
        }
    };
    listen(&fd, kind, backlog)?;
    Ok(Bound { fd, created: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_modes() {
        let run = Path::new("/run/x/s.sock");
        assert_eq!(
            default_unix_mode(run, SocketKind::Stream, true),
            Some(0o660)
        );
        assert_eq!(default_unix_mode(run, SocketKind::Stream, false), None);
        assert_eq!(default_unix_mode(run, SocketKind::Dgram, true), None);
        assert_eq!(
            default_unix_mode(Path::new("/tmp/s.sock"), SocketKind::Stream, true),
            None
        );
    }
}
