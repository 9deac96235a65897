//! Opening listening sockets: TCP/UDP over IPv4 and IPv6, dual-stack `*`,
//! Unix paths (replacing only a stale socket file) and abstract names.
//! Every descriptor is close-on-exec and non-blocking in spawnd.

use std::io;
use std::net::{Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use nix::sys::socket::{
    self, setsockopt, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, UnixAddr,
};

use crate::config::units::ListenAddr;
use crate::config::{Principal, SocketKind, UnixSocketPerms};

/// A bound (and, for streams, listening) socket.
#[derive(Debug)]
pub struct Bound {
    pub fd: OwnedFd,
    /// The socket file spawnd created, removed when the socket is closed.
    pub created_path: Option<Box<Path>>,
}

impl Drop for Bound {
    fn drop(&mut self) {
        if let Some(path) = &self.created_path {
            let _ = std::fs::remove_file(path);
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
    crate::sys::above_slots(fd)
}

fn listen(fd: &OwnedFd, kind: SocketKind, backlog: u32) -> io::Result<()> {
    if kind == SocketKind::Stream {
        let backlog = socket::Backlog::new(backlog.min(i32::MAX as u32) as i32)?;
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

/// Removes `path` if it is a socket nobody answers on; refuses anything else.
fn clear_stale_socket(path: &Path, kind: SocketKind) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the path exists and is not a socket; not replaced",
        ));
    }
    let probe = socket::socket(
        AddressFamily::Unix,
        sock_type(kind),
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    match socket::connect(probe.as_raw_fd(), &UnixAddr::new(path)?) {
        Ok(()) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another process is listening on this socket",
        )),
        Err(nix::errno::Errno::ECONNREFUSED) | Err(nix::errno::Errno::EPROTOTYPE) => {
            std::fs::remove_file(path)
        }
        Err(e) => Err(e.into()),
    }
}

fn lookup_uid(who: &Principal) -> io::Result<u32> {
    match who {
        Principal::Id(id) => Ok(*id),
        Principal::Name(name) => nix::unistd::User::from_name(name)?
            .map(|u| u.uid.as_raw())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("no such user {name:?}"))
            }),
    }
}

fn lookup_gid(who: &Principal) -> io::Result<u32> {
    match who {
        Principal::Id(id) => Ok(*id),
        Principal::Name(name) => nix::unistd::Group::from_name(name)?
            .map(|g| g.gid.as_raw())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("no such group {name:?}"))
            }),
    }
}

/// The mode a socket file gets when `unix_mode` is not set: stream sockets
/// root creates under /run are 0660 (root:root), so a system service's
/// socket is not open to every local user by accident.
pub fn default_unix_mode(path: &Path, kind: SocketKind, root: bool) -> Option<u32> {
    (root && kind == SocketKind::Stream && path.starts_with("/run")).then_some(0o660)
}

fn apply_perms(path: &Path, perms: &UnixSocketPerms) -> io::Result<()> {
    if perms.owner.is_some() || perms.group.is_some() {
        let uid = perms.owner.as_ref().map(lookup_uid).transpose()?;
        let gid = perms.group.as_ref().map(lookup_gid).transpose()?;
        std::os::unix::fs::chown(path, uid, gid)?;
    }
    if let Some(mode) = perms.mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Opens the socket for one listen address.
pub fn bind(
    addr: &ListenAddr,
    kind: SocketKind,
    backlog: u32,
    perms: &UnixSocketPerms,
) -> io::Result<Bound> {
    let (fd, created_path) = match addr {
        ListenAddr::Inet(addr) => (bind_inet(*addr, kind, true)?, None),
        ListenAddr::AnyInet(port) => {
            let any6 = SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), *port);
            match bind_inet(any6, kind, false) {
                Ok(fd) => (fd, None),
                // No IPv6 on this host: every address is every IPv4 address.
                Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => (
                    bind_inet(SocketAddr::from(([0, 0, 0, 0], *port)), kind, false)?,
                    None,
                ),
                Err(e) => return Err(e),
            }
        }
        ListenAddr::Unix(path) => {
            clear_stale_socket(path, kind)?;
            let fd = new_socket(AddressFamily::Unix, kind)?;
            socket::bind(fd.as_raw_fd(), &UnixAddr::new(path.as_path())?)?;
            let bound = Bound {
                fd,
                created_path: Some(path.clone().into_boxed_path()),
            };
            let mut perms = perms.clone();
            if perms.mode.is_none() {
                perms.mode = default_unix_mode(path, kind, nix::unistd::geteuid().is_root());
            }
            apply_perms(path, &perms)?;
            listen(&bound.fd, kind, backlog)?;
            return Ok(bound);
        }
        ListenAddr::Abstract(name) => {
            let fd = new_socket(AddressFamily::Unix, kind)?;
            socket::bind(fd.as_raw_fd(), &UnixAddr::new_abstract(name.as_bytes())?)?;
            (fd, None)
        }
    };
    listen(&fd, kind, backlog)?;
    Ok(Bound { fd, created_path })
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
