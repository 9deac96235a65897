//! The descriptor slots: the low descriptor numbers a child's table is
//! made of (see `crate::daemon::spawn`), and the one rule that keeps them usable:
//! every descriptor spawnd keeps (listeners, the control socket, log
//! sockets, pipes to itself, whatever it inherited) lives at or above
//! `first_free()`, moved there by `above` or `adopt` the moment it is
//! opened. Below it are stdio (0–2), the reserved slots 4–6 (on /dev/null
//! until a spawn fills them) and the launch slots (3, and 7 up), left free
//! while spawnd serves so that `accept4`, which takes the lowest free
//! number, puts a connection where a child can use it as it is.
//!
//! `prepare` runs first thing in `run`, `reserve` when the spawner is
//! made (the launch slots are held until `open_launch_slots`, so start-up
//! cannot take them), and `check` after every turn of the event loop in
//! debug builds.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

/// Left free while spawnd serves, so a new connection lands there.
pub const SLOT_ACCEPT: RawFd = 3;
/// Descriptor slots kept open (on /dev/null) for the whole life of spawnd.
pub const SLOT_STDERR: RawFd = 4;
pub const SLOT_NULL: RawFd = 5;
pub const SLOT_PRIMARY: RawFd = 6;
/// More slots left free for connections, as 3 is, from here up to
/// `first_free()`.
const FIRST_EXTRA_LAUNCH_SLOT: RawFd = 7;
/// At most this many of them: room for the children's ends of the launch
/// entries' socket pairs (16 at most), for the connections being started,
/// and for other descriptors that take a free slot meanwhile (an
/// in-process connection, a pipe). A table of up to 64 descriptors is
/// copied at one cost.
const MOST_EXTRA_LAUNCH_SLOTS: u64 = 31;

/// The first descriptor number that is not a slot; the child's table stops
/// below it. Set once by `prepare`.
static FIRST_FREE: AtomicI32 = AtomicI32::new(FIRST_EXTRA_LAUNCH_SLOT);
/// spawnd's soft RLIMIT_NOFILE before `prepare` raised it.
static ORIGINAL_NOFILE: OnceLock<Option<libc::rlimit>> = OnceLock::new();

/// The first descriptor number above the slots.
pub fn first_free() -> RawFd {
    FIRST_FREE.load(Ordering::Relaxed)
}

/// Raises spawnd's soft descriptor limit to the hard one (children get the
/// original back) and decides how many launch slots there are: up to 32,
/// but no more than a quarter of the limit leaves for them, so that a tight
/// limit still has room for listeners and connections. Call first thing,
/// before any descriptor is opened or moved above the slots.
pub fn prepare() {
    ORIGINAL_NOFILE.get_or_init(|| {
        let original = crate::sys::raise_nofile();
        let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_or(1024, |(soft, _)| soft);
        FIRST_FREE.store(first_free_for(limit), Ordering::Relaxed);
        original
    });
}

/// `first_free()` under a soft descriptor limit of `limit`.
fn first_free_for(limit: u64) -> RawFd {
    let extra = (limit / 4)
        .saturating_sub(FIRST_EXTRA_LAUNCH_SLOT as u64)
        .min(MOST_EXTRA_LAUNCH_SLOTS);
    FIRST_EXTRA_LAUNCH_SLOT + extra as RawFd
}

/// The slots left free for connections: accept4 fills them lowest first.
pub fn launch_slots() -> impl Iterator<Item = RawFd> {
    std::iter::once(SLOT_ACCEPT).chain(FIRST_EXTRA_LAUNCH_SLOT..first_free())
}

/// A connection a child can use where it is, without a move to slot 6.
pub fn in_launch_slot(fd: RawFd) -> bool {
    fd == SLOT_ACCEPT || (FIRST_EXTRA_LAUNCH_SLOT..first_free()).contains(&fd)
}

/// spawnd's soft descriptor limit before `prepare` raised it (children get
/// it back).
pub fn original_nofile() -> Option<libc::rlimit> {
    ORIGINAL_NOFILE.get().copied().flatten()
}

/// Puts /dev/null in every slot: the reserved ones for good, the launch
/// slots until `open_launch_slots`. Call once, early, before any other
/// descriptor is opened.
pub fn reserve() -> io::Result<()> {
    prepare();
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    let reserved = [SLOT_NULL, SLOT_STDERR, SLOT_PRIMARY]
        .into_iter()
        .chain(launch_slots());
    for slot in reserved {
        if null.as_raw_fd() != slot {
            fill(null.as_raw_fd(), slot)?;
        }
    }
    if null.as_raw_fd() < first_free() {
        // The file landed in a slot itself: keep it open, it is /dev/null.
        std::mem::forget(null);
    }
    Ok(())
}

/// Frees the launch slots once every long-lived descriptor of start-up
/// exists, so that connections land there. Whatever else takes one later
/// (an in-process connection, a launch entry's socket) only leaves one
/// fewer.
pub fn open_launch_slots() {
    for slot in launch_slots() {
        crate::sys::close_slot(slot);
    }
}

/// Puts a copy of `fd` in `slot` (close-on-exec), replacing what was there.
pub fn fill(fd: RawFd, slot: RawFd) -> io::Result<()> {
    crate::sys::dup_onto(fd, slot)
}

/// `fd`, moved at or above `first_free()` if it landed below: the one way
/// a descriptor spawnd keeps is put out of the slots' way.
pub fn above(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() >= first_free() {
        return Ok(fd);
    }
    let moved = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(first_free()))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else
    // owns; `fd` is closed when it goes out of scope here.
    Ok(unsafe { OwnedFd::from_raw_fd(moved) })
}

/// Takes a descriptor spawnd was handed by number (socket activation) and
/// moves it above the slots; the number is closed. Fails if it is not open.
pub fn adopt(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor number the launcher promised
    // us; a failure (not open) is checked.
    let moved = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, first_free()) };
    if moved < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `moved` is a new descriptor we own; the original number is
    // ours to close since the launcher handed it over.
    unsafe {
        libc::close(fd);
        Ok(OwnedFd::from_raw_fd(moved))
    }
}

/// How many descriptors the event loop holds, counted where they are kept
/// (`server::ids::Table::counted`) and read by the spawner, which decides
/// from it whether a child copies spawnd's table or shares it.
#[derive(Debug, Clone, Default)]
pub struct Gauge(std::rc::Rc<std::cell::Cell<usize>>);

impl Gauge {
    pub fn add(&self) {
        self.0.set(self.0.get() + 1);
    }

    pub fn sub(&self) {
        self.0.set(self.0.get().saturating_sub(1));
    }

    pub fn get(&self) -> usize {
        self.0.get()
    }
}

/// The rule, checked (debug builds, after every turn of the event loop):
/// the reserved slots are open, and each of `kept` (the descriptors the
/// loop holds for good) is above the slots.
pub fn check(kept: impl Iterator<Item = RawFd>) {
    if !cfg!(debug_assertions) {
        return;
    }
    for slot in [SLOT_STDERR, SLOT_NULL, SLOT_PRIMARY] {
        // SAFETY: F_GETFD only asks whether the number is open.
        let open = unsafe { libc::fcntl(slot, libc::F_GETFD) } >= 0;
        assert!(open, "descriptor slot {slot} was closed");
    }
    for fd in kept {
        assert!(
            fd >= first_free(),
            "descriptor {fd} is kept in a slot (below {})",
            first_free()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_slots_shrink_with_a_tight_descriptor_limit() {
        assert_eq!(first_free_for(1_048_576), 38, "32 launch slots at most");
        assert_eq!(first_free_for(1024), 38);
        assert_eq!(first_free_for(120), 30, "a quarter of the limit");
        assert_eq!(first_free_for(40), 10);
        assert_eq!(first_free_for(16), 7, "only slot 3");
        assert_eq!(first_free_for(0), 7);
    }
}
