//! sd_notify without libsystemd: datagrams to `$NOTIFY_SOCKET`. The
//! variable is taken out of the environment at start-up, so no child ever
//! sees it.

use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;

static SOCKET: OnceLock<Option<String>> = OnceLock::new();

/// Reads and removes `NOTIFY_SOCKET` (and the socket-activation variables).
/// Call once at start-up, before anything else reads the environment.
pub fn init() {
    let path = std::env::var("NOTIFY_SOCKET")
        .ok()
        .filter(|p| !p.is_empty());
    for name in [
        "NOTIFY_SOCKET",
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
    ] {
        // SAFETY: spawnd has no other threads; nothing reads the
        // environment concurrently.
        unsafe { std::env::remove_var(name) };
    }
    let _ = SOCKET.set(path);
}

/// Sends one notification; failures are logged at debug level only, as
/// systemd may simply not be listening.
pub fn send(message: &str) {
    let Some(Some(path)) = SOCKET.get() else {
        return;
    };
    let result = UnixDatagram::unbound().and_then(|socket| {
        if let Some(name) = path.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            socket.send_to_addr(message.as_bytes(), &addr)
        } else {
            socket.send_to(message.as_bytes(), path)
        }
    });
    if let Err(e) = result {
        crate::event!(log::Level::Debug, "notify_error"; "socket={path} error={e}", e = crate::logging::line::Quoted(&e));
    }
}

/// CLOCK_MONOTONIC in microseconds, as `MONOTONIC_USEC=` wants.
pub fn monotonic_usec() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => ts.tv_sec() as u64 * 1_000_000 + ts.tv_nsec() as u64 / 1_000,
        Err(_) => 0,
    }
}
