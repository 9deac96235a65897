//! Thin, safe wrappers over system calls (and, in `fsafe`, every file
//! spawnd opens as root; in `decimal`, digits without allocation), on nix where nix has the call in
//! the shape needed. Raw libc remains only where it does not:
//! - accept4 and getsockname with the peer address in one call, poll over
//!   a reused `pollfd` array, sendmsg of one descriptor: the accept path,
//!   where nix would allocate or need a second call;
//! - dup3 onto, fcntl on and close of the reserved descriptor slots and
//!   inherited descriptors, which are numbers no `OwnedFd` owns;
//! - rt_sigaction to query a disposition without changing it;
//! - localtime_r and malloc_trim, which nix does not wrap.

pub mod decimal;
pub mod fsafe;

use std::io;
use std::mem::{size_of, size_of_val, MaybeUninit};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// `dup3(from, to, O_CLOEXEC)`: replaces whatever `to` held.
pub fn dup_onto(from: RawFd, to: RawFd) -> io::Result<()> {
    // SAFETY: dup3 takes plain integers; on success `to` is a descriptor we
    // deliberately keep open (a reserved slot), so no OwnedFd is made.
    check(unsafe { libc::dup3(from, to, libc::O_CLOEXEC) }).map(drop)
}

/// A connected pair of Unix datagram sockets (close-on-exec), for handing
/// descriptors to a child.
pub fn datagram_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::Datagram,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )?)
}

/// Sends `fd` on `socket` (one byte of data and SCM_RIGHTS), without
/// blocking and without allocating.
pub fn send_fd(socket: RawFd, fd: RawFd) -> io::Result<()> {
    let byte = 0u8;
    let mut data = libc::iovec {
        iov_base: std::ptr::addr_of!(byte).cast_mut().cast(),
        iov_len: 1,
    };
    // Room for one descriptor's control message, aligned for cmsghdr.
    let mut control = [0u64; 4];
    // SAFETY: CMSG_SPACE is arithmetic on a constant.
    let space = unsafe { libc::CMSG_SPACE(size_of::<RawFd>() as u32) } as usize;
    // SAFETY: an all-zero msghdr is a valid empty message.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = &mut data;
    message.msg_iovlen = 1;
    message.msg_control = control.as_mut_ptr().cast();
    message.msg_controllen = space.min(size_of_val(&control)) as _;
    // SAFETY: reads msg_control and msg_controllen of `message` only.
    let header = unsafe { libc::CMSG_FIRSTHDR(&message) };
    if header.is_null() {
        return Err(io::Error::from_raw_os_error(libc::ENOBUFS));
    }
    // SAFETY: CMSG_FIRSTHDR found room in `control` for the header, and
    // `space` (at most the buffer) has room for the descriptor after it.
    unsafe {
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(header).cast::<RawFd>(), fd);
    }
    // SAFETY: every pointer in `message` refers to locals that outlive the
    // call.
    let sent = unsafe { libc::sendmsg(socket, &message, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Receives and closes every descriptor waiting on `socket`.
pub fn discard_received_fds(socket: RawFd) {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    loop {
        let mut byte = [0u8; 1];
        let mut data = [io::IoSliceMut::new(&mut byte)];
        let mut space = nix::cmsg_space!(RawFd);
        let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC;
        let Ok(message) = recvmsg::<()>(socket, &mut data, Some(&mut space), flags) else {
            return;
        };
        let Ok(control) = message.cmsgs() else { return };
        for item in control {
            if let ControlMessageOwned::ScmRights(fds) = item {
                for fd in fds {
                    // SAFETY: a descriptor just received is ours alone.
                    drop(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
    }
}

/// Closes a reserved descriptor slot (one no `OwnedFd` owns).
pub fn close_slot(slot: RawFd) {
    // SAFETY: the slot holds spawnd's own /dev/null copy, which nothing
    // else refers to by number.
    unsafe { libc::close(slot) };
}

/// Reads an IPv4 or IPv6 address out of a `sockaddr_storage`.
fn socket_addr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says this storage holds a sockaddr_in, and
            // sockaddr_storage is large and aligned enough for it.
            let sin = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Accepts one connection (close-on-exec; non-blocking if asked, for a
/// connection spawnd serves itself) and returns it with the peer's address
/// when it is an IP peer.
pub fn accept(listener: RawFd, nonblocking: bool) -> io::Result<(OwnedFd, Option<SocketAddr>)> {
    let mut storage = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: storage and len describe a writable buffer of the right size.
    let fd = check(unsafe {
        libc::accept4(
            listener,
            storage.as_mut_ptr().cast(),
            &mut len,
            if nonblocking {
                libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK
            } else {
                libc::SOCK_CLOEXEC
            },
        )
    })?;
    // SAFETY: accept4 returned a new descriptor that nothing else owns; the
    // storage was zeroed, so reading it is defined even if not filled.
    let (fd, storage) = unsafe { (OwnedFd::from_raw_fd(fd), storage.assume_init()) };
    Ok((fd, socket_addr(&storage, len)))
}

/// Marks which of `fds` are ready (in `revents`), without waiting.
pub fn poll_now(fds: &mut [libc::pollfd]) -> io::Result<()> {
    // SAFETY: `fds` is an exclusively borrowed array of `fds.len()` pollfds.
    check(unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) }).map(drop)
}

/// The local address of a socket, when it is an IP socket.
pub fn local_addr(fd: RawFd) -> Option<SocketAddr> {
    let mut storage = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: as in `accept`.
    check(unsafe { libc::getsockname(fd, storage.as_mut_ptr().cast(), &mut len) }).ok()?;
    // SAFETY: zeroed, then possibly filled by the kernel.
    socket_addr(&unsafe { storage.assume_init() }, len)
}

/// The next waiting datagram, seen without consuming it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadDatagram {
    /// `None`: its sender is not an IP address.
    pub sender: Option<SocketAddr>,
    /// What tells this datagram from any other, even one with the same
    /// sender and bytes: the kernel's receive time stamp (seconds,
    /// nanoseconds; zero if none came) and the length.
    pub identity: (i64, i64, usize),
}

/// Peeks at the next waiting datagram. `SO_TIMESTAMPNS` is on only for
/// this call: the kernel stamps a datagram when it first reports its time
/// (or when it arrives, while any socket asks for stamps) and keeps the
/// stamp with it, so two peeks at one datagram give the same identity. It
/// is off again before the socket is handed to a program, which would
/// otherwise get time stamps it did not ask for.
pub fn peek_head(fd: RawFd) -> io::Result<HeadDatagram> {
    use nix::sys::socket::{
        recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage,
    };
    // SAFETY: `fd` is a socket spawnd owns, open for this call's length.
    let socket = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let _ = setsockopt(&socket, sockopt::ReceiveTimestampns, &true);
    let mut byte = [0u8; 1];
    let mut data = [io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC;
    let received = recvmsg::<SockaddrStorage>(fd, &mut data, Some(&mut space), flags)
        .map_err(io::Error::from)
        .map(|message| {
            let mut stamp = (0, 0);
            for item in message.cmsgs().into_iter().flatten() {
                if let ControlMessageOwned::ScmTimestampns(time) = item {
                    stamp = (time.tv_sec(), time.tv_nsec());
                }
            }
            let sender = message.address.and_then(|address| {
                address
                    .as_sockaddr_in()
                    .map(|a| SocketAddr::from(SocketAddrV4::from(*a)))
                    .or_else(|| {
                        address
                            .as_sockaddr_in6()
                            .map(|a| SocketAddr::from(SocketAddrV6::from(*a)))
                    })
            });
            HeadDatagram {
                sender,
                identity: (stamp.0, stamp.1, message.bytes),
            }
        });
    let _ = setsockopt(&socket, sockopt::ReceiveTimestampns, &false);
    received
}

/// Reads and drops one datagram (so a refused or failed one is not seen again).
pub fn discard_datagram(fd: RawFd) -> io::Result<()> {
    use nix::sys::socket::MsgFlags;
    // One byte is read; MSG_TRUNC drops the rest of the datagram.
    nix::sys::socket::recv(fd, &mut [0u8], MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC)?;
    Ok(())
}

/// Sets or clears O_NONBLOCK on the open file description behind `fd`.
pub fn set_nonblocking(fd: RawFd, nonblocking: bool) -> io::Result<()> {
    // SAFETY: fcntl on an integer descriptor; errors are checked.
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    let wanted = if nonblocking {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    if wanted != flags {
        // SAFETY: as above.
        check(unsafe { libc::fcntl(fd, libc::F_SETFL, wanted) })?;
    }
    Ok(())
}

/// Marks every descriptor from `first` up close-on-exec, so nothing spawnd
/// inherited can leak into a child even where close_range is unavailable.
pub fn cloexec_from(first: RawFd) {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd >= first)
        .collect();
    for fd in fds {
        // SAFETY: setting FD_CLOEXEC on a descriptor number is harmless even
        // if it was the directory stream's own (already closed) descriptor.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

/// Opens /dev/null on any of fds 0–2 that is closed, so no socket spawnd
/// opens can land there and be mistaken for stdio.
pub fn ensure_stdio_open() {
    use nix::fcntl::{fcntl, FcntlArg};
    let closed = [
        fcntl(io::stdin(), FcntlArg::F_GETFD).is_err(),
        fcntl(io::stdout(), FcntlArg::F_GETFD).is_err(),
        fcntl(io::stderr(), FcntlArg::F_GETFD).is_err(),
    ];
    for (fd, _) in closed.iter().enumerate().filter(|(_, closed)| **closed) {
        // Opened while a lower one may still be closed: it can land on a
        // stdio number itself, which dup_stdio leaves as it is.
        if let Ok(null) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
        {
            let fd = fd as RawFd;
            if null.as_raw_fd() == fd {
                std::mem::forget(null);
            } else {
                let _ = dup_stdio(&null, fd);
            }
        }
    }
}

/// Whether spawnd has any ambient capability (`CapAmb` in its status).
pub fn has_ambient_capabilities() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("CapAmb:"))?;
            u64::from_str_radix(line["CapAmb:".len()..].trim(), 16).ok()
        })
        .is_some_and(|set| set != 0)
}

/// Whether spawnd has a controlling terminal: `/dev/tty` opens only then.
pub fn has_controlling_terminal() -> bool {
    std::fs::File::open("/dev/tty").is_ok()
}

/// The 1-minute load average.
pub fn load_average() -> Option<f64> {
    nix::sys::sysinfo::sysinfo()
        .ok()
        .map(|info| info.load_average().0)
}

/// Minutes since local midnight (for `access.times`); UTC's when the
/// local time cannot be had.
pub fn local_minute_of_day() -> u16 {
    match local_tm() {
        Ok(tm) => (tm.tm_hour * 60 + tm.tm_min) as u16,
        Err(now) => crate::daemon::limits::minute_of_day(now, 0),
    }
}

/// The broken-down local time now (the one home of `localtime_r`), or
/// the seconds since the epoch when it cannot be had.
fn local_tm() -> Result<libc::tm, libc::time_t> {
    // SAFETY: time(NULL) only returns the time.
    let now = unsafe { libc::time(std::ptr::null_mut()) };
    let mut tm = MaybeUninit::<libc::tm>::zeroed();
    // SAFETY: localtime_r writes into our struct; the result is checked.
    if unsafe { libc::localtime_r(&now, tm.as_mut_ptr()) }.is_null() {
        return Err(now);
    }
    // SAFETY: filled by localtime_r.
    Ok(unsafe { tm.assume_init() })
}

/// The kernel's `struct sigaction` (x86_64 and aarch64 both have a
/// restorer field), used directly because glibc refuses signals 32 and 33.
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

/// Resets every signal spawnd inherited as ignored to its default action
/// (SIGPIPE aside: the server resets and blocks it itself), so children
/// start with default dispositions, as ignored ones survive exec.
pub fn reset_ignored_signals() {
    for signal in 1..=64 {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP || signal == libc::SIGPIPE {
            continue;
        }
        let mut old = KernelSigaction {
            handler: 0,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        // SAFETY: querying the action into a struct of the kernel's layout.
        let queried = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                std::ptr::null::<KernelSigaction>(),
                &mut old,
                8usize,
            )
        };
        if queried == 0 && old.handler == libc::SIG_IGN {
            let default = KernelSigaction {
                handler: libc::SIG_DFL,
                flags: 0,
                restorer: 0,
                mask: 0,
            };
            // SAFETY: installing the default action, which needs no restorer.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    signal,
                    &default,
                    std::ptr::null_mut::<KernelSigaction>(),
                    8usize,
                )
            };
        }
    }
}

/// Puts a copy of `from` on stdio descriptor `to` (0–2), without
/// close-on-exec.
pub fn dup_stdio(from: impl std::os::fd::AsFd, to: RawFd) -> io::Result<()> {
    if from.as_fd().as_raw_fd() == to {
        return Ok(());
    }
    match to {
        0 => nix::unistd::dup2_stdin(from)?,
        1 => nix::unistd::dup2_stdout(from)?,
        2 => nix::unistd::dup2_stderr(from)?,
        _ => return Err(io::Error::from_raw_os_error(libc::EBADF)),
    }
    Ok(())
}

/// Local time now: (year, month 1–12, day, weekday 0=Sunday, hour, minute, second).
pub fn local_time() -> (i64, u32, u32, u32, u32, u32, u32) {
    // SAFETY: an all-zero `tm` is a valid value (the epoch's fields).
    let tm =
        local_tm().unwrap_or_else(|_| unsafe { MaybeUninit::<libc::tm>::zeroed().assume_init() });
    (
        i64::from(tm.tm_year) + 1900,
        (tm.tm_mon + 1) as u32,
        tm.tm_mday as u32,
        tm.tm_wday as u32,
        tm.tm_hour as u32,
        tm.tm_min as u32,
        tm.tm_sec as u32,
    )
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (a server holds many
/// sockets); returns the original limits when they changed, so children
/// get them back (programs using select() expect 1024).
pub fn raise_nofile() -> Option<libc::rlimit> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft >= hard {
        return None;
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).ok()?;
    Some(libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    })
}

/// Returns memory freed after loading the configuration (YAML parse trees,
/// file texts) to the system, so idle memory is what spawnd keeps.
///
/// spawnd used to drop its own program text's page-table entries here
/// too (`MADV_DONTNEED` on clean file mappings): RSS fell from 3.7 to
/// 1.7 MB, but the pages stayed in the page cache, charged to the same
/// memory cgroup (measured: 2.9 MB charged either way), so no workload got
/// memory back. Only the figure changed; it is gone (docs/benchmark/
/// issue20-before-after.md reports PSS and USS beside RSS).
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only inspects and trims glibc's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_descriptor_in_flight_is_closed_when_discarded() {
        use std::io::Write;
        let (ours, theirs) = datagram_pair().unwrap();
        let (reader, writer) = nix::unistd::pipe().unwrap();
        let mut writer = std::fs::File::from(writer);
        send_fd(ours.as_raw_fd(), reader.as_raw_fd()).unwrap();
        drop(reader);
        // The copy in flight keeps the pipe open for reading...
        writer.write_all(b"x").unwrap();
        discard_received_fds(theirs.as_raw_fd());
        // ...until it is discarded: the pipe has no reader left.
        let error = writer.write_all(b"x").unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EPIPE));
        // Nothing else waits: discarding again returns at once.
        discard_received_fds(theirs.as_raw_fd());
    }
}
