//! Children spawnd does not wait for: a connection's program is started
//! with `CLONE_VM` but without `CLONE_VFORK`, so spawnd goes back to its
//! event loop while the child execs, instead of sleeping until the exec is
//! done and being woken for it. Measured with the bare loop of `bench/`
//! on 2 cores, that is 1.3 times the connections per second of the vfork
//! loop with a two-syscall service.
//!
//! The child then runs beside spawnd in the same memory, so each launch
//! has an entry of its own: its stack, the clone arguments, the
//! environment pointers and the connection's environment strings. The
//! entry is reused only after the kernel has cleared its `tid` word, which
//! it does when the child execs or exits (`CLONE_CHILD_CLEARTID`, as for a
//! thread's join): from then on the child no longer reads spawnd's memory.
//!
//! What the child reads between clone and exec is owned by its entry
//! until then, whatever spawnd does meanwhile: the clone arguments and the
//! environment are the entry's own, and the entry holds a reference to the
//! service's `ExecPlan` (an `Rc`, immutable once built). A reload that
//! changes or removes the service, or moves the service table, only drops
//! its own reference: the plan the child reads (program, argv, credentials,
//! limits) stays where it is, unchanged, until the entry is released, which
//! happens only once the kernel has cleared `tid` (exec or exit). Stopping
//! spawnd waits for busy entries (`Drop`), and leaks them, plan included,
//! rather than free memory a stopped child could still read.
//!
//! A client that reads to the end of the reply waits until spawnd has
//! closed its copy of the connection too, so spawnd closes it as soon as
//! clone returns. With few descriptors open, clone copies spawnd's table
//! for the child (without `CLONE_FILES`), as fork does. With many
//! (thousands of listeners), copying would make every spawn cost more per
//! configured service, so the child shares spawnd's table until its
//! `close_range(..., CLOSE_RANGE_UNSHARE)`, which keeps only the slots. A
//! slot spawnd closes meanwhile would be closed for the child too, so the
//! connection goes to the child another way: spawnd sends it (SCM_RIGHTS)
//! on the entry's own socket pair before the clone, and the child receives
//! it once its table is its own. In A/B rounds at c=8 with the load spread
//! over every port, 3,000 and 10,000 services did 0.95–1.02 and 0.955–0.99
//! × the connections per second of one; keeping the connection open in
//! spawnd until the child said it had unshared (and having it wake spawnd
//! for that) had given 0.89 and 0.96 × in the harness. With a small table
//! the copy is still the cheaper of the two: the handoff forced on one
//! service did 0.94–0.98 × in A/B rounds.
//!
//! Everything here is bookkeeping on memory the kernel and the children
//! also write: only through atomics, or after the `tid` word says the
//! child is done with it.

use std::cell::UnsafeCell;
use std::ffi::c_char;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::ptr;
use std::rc::Rc;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::{build_envp, child_main, ChildArgs, ChildStack, ExecPlan, LaunchFailure, Stage};

/// At most one child between clone and exec per CPU spawnd may use, and
/// never more than this; further spawns wait for their child's exec as
/// vfork does. More would only queue for a CPU: measured on 2 cores (A/B
/// rounds against the bare vfork loop, c=8), 2 entries gave 1.18 × its
/// connections per second at 1.02 × its p99 latency with the libc-free
/// service, and 1.03 × at 0.94 × with the libc one; 48 entries gave 1.27 ×
/// but 1.24 × and 1.34 × the p99, as the extra children share the CPUs
/// and each takes longer.
const MOST_ENTRIES: usize = 16;

/// The child only makes system calls: a few pages are touched at most.
const STACK_SIZE: usize = 64 * 1024;

/// Up to this many open descriptors, a launched child gets a copy of
/// spawnd's table from clone: each costs a reference taken at clone and
/// dropped at exec (close-on-exec), a few nanoseconds, where a handoff
/// costs two system calls.
pub(super) const COPIED_TABLE_MOST: usize = 64;

/// How long dropping the pool waits for children still before their exec
/// (only a stopped one would take longer).
const DROP_WAIT: Duration = Duration::from_secs(2);

/// The part of an entry that the kernel and the child write while it is
/// busy. Boxed, so its address stays put.
#[repr(C)]
struct Shared {
    /// The child's pid while it may still read the entry: written by the
    /// kernel at clone (`CLONE_PARENT_SETTID`), zeroed by the kernel when
    /// the child execs or exits (`CLONE_CHILD_CLEARTID`).
    tid: AtomicI32,
    /// Set by the child once it has taken the connection off `handoff`.
    received: AtomicU32,
    /// Read by the child; its `stage` and `errno` written by it on failure.
    args: UnsafeCell<ChildArgs>,
}

struct Entry {
    shared: Box<Shared>,
    /// The plan the child reads, held until the entry is released.
    plan: Option<Rc<ExecPlan>>,
    /// The child reads these two through raw pointers: they are changed
    /// only while the entry is free, so their heap blocks stay put.
    envp: Vec<*const c_char>,
    conn_env: Vec<u8>,
    stack: ChildStack,
    /// spawnd's end (above the slots) and the child's end (in a launch
    /// slot, so that the child keeps it) of the socket pair connections
    /// are sent on, made on first use.
    handoff: Option<(OwnedFd, OwnedFd)>,
    /// A connection was sent on `handoff` that the child may not have taken.
    sent: bool,
    pid: i32,
    busy: bool,
}

impl Entry {
    fn new() -> io::Result<Entry> {
        Ok(Entry {
            shared: Box::new(Shared {
                tid: AtomicI32::new(0),
                received: AtomicU32::new(0),
                args: UnsafeCell::new(ChildArgs::blank()),
            }),
            plan: None,
            envp: Vec::with_capacity(64),
            conn_env: Vec::with_capacity(512),
            stack: ChildStack::new(STACK_SIZE)?,
            handoff: None,
            sent: false,
            pid: 0,
            busy: false,
        })
    }

    /// Whether the child has exec'd or exited: it no longer reads the entry.
    fn child_done(&self) -> bool {
        self.shared.tid.load(Ordering::Acquire) == 0
    }

    /// The two ends of the handoff pair, (spawnd's, the child's).
    fn handoff_pair(&mut self) -> io::Result<(RawFd, RawFd)> {
        if let Some((ours, theirs)) = &self.handoff {
            return Ok((ours.as_raw_fd(), theirs.as_raw_fd()));
        }
        let (ours, theirs) = crate::sys::datagram_pair()?;
        // The pair took the lowest free numbers: move spawnd's end out of
        // the slots; the child's must stay in one.
        let ours = crate::daemon::slots::above(ours)?;
        if theirs.as_raw_fd() >= crate::daemon::slots::first_free() {
            return Err(io::Error::other("no launch slot free for a handoff socket"));
        }
        let fds = (ours.as_raw_fd(), theirs.as_raw_fd());
        self.handoff = Some((ours, theirs));
        Ok(fds)
    }

    /// The entry's child is gone or has exec'd: the entry may be reused.
    /// A connection it never took would otherwise stay open, and go to the
    /// entry's next child.
    fn release(&mut self) {
        self.busy = false;
        self.plan = None;
        self.discard_unreceived();
    }

    fn discard_unreceived(&mut self) {
        if !self.sent {
            return;
        }
        self.sent = false;
        if self.shared.received.load(Ordering::Acquire) == 0 {
            if let Some((_, theirs)) = &self.handoff {
                crate::sys::discard_received_fds(theirs.as_raw_fd());
            }
        }
    }

    /// The failed step and errno the child left, (0, 0) if none.
    ///
    /// Call only once `child_done` (or the child was reaped).
    fn failure(&self) -> (i32, i32) {
        let args = self.shared.args.get();
        // SAFETY: the child is done: nobody else writes these now, and the
        // Acquire load of `tid` ordered its writes before this read.
        unsafe {
            (
                ptr::read_volatile(ptr::addr_of!((*args).stage)),
                ptr::read_volatile(ptr::addr_of!((*args).errno)),
            )
        }
    }
}

pub(super) struct Launches {
    /// Off where a child could not run beside spawnd (see `Spawner::new`).
    usable: bool,
    /// How many entries there may be.
    most: usize,
    entries: Vec<Entry>,
    busy: usize,
}

impl Launches {
    pub(super) fn new(usable: bool) -> Launches {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Launches {
            usable,
            most: cpus.clamp(1, MOST_ENTRIES),
            entries: Vec::new(),
            busy: 0,
        }
    }

    /// A free entry's index: an existing one, after collecting, or a new
    /// one while there are fewer than `most`.
    pub(super) fn free_entry(&mut self) -> Option<usize> {
        if !self.usable {
            return None;
        }
        self.collect();
        if let Some(index) = self.entries.iter().position(|e| !e.busy) {
            return Some(index);
        }
        if self.entries.len() < self.most {
            match Entry::new() {
                Ok(entry) => {
                    self.entries.push(entry);
                    return Some(self.entries.len() - 1);
                }
                Err(e) => {
                    crate::event!(log::Level::Debug, "launch_entry_failed"; "error={e}", e = crate::logging::line::Quoted(&e))
                }
            }
        }
        None
    }

    /// Sends `conn` on the handoff pair of entry `index` (free, from
    /// `free_entry`), for a child that will share spawnd's table. False if
    /// it could not be sent.
    pub(super) fn hand_over(&mut self, index: usize, conn: &OwnedFd) -> bool {
        let entry = &mut self.entries[index];
        let sent = entry
            .handoff_pair()
            .and_then(|(ours, _)| crate::sys::send_fd(ours, conn.as_raw_fd()));
        match sent {
            Ok(()) => {
                entry.shared.received.store(0, Ordering::Relaxed);
                entry.sent = true;
                true
            }
            Err(e) => {
                crate::event!(log::Level::Debug, "handoff_failed"; "error={e}", e = crate::logging::line::Quoted(&e));
                false
            }
        }
    }

    /// Starts the child of `args` from entry `index` (free, from
    /// `free_entry`) on `conn`, which must be in a launch slot, and closes
    /// `conn`. The entry keeps `plan` until the child has exec'd or died. Takes the connection's environment from `conn_env`
    /// (swapping buffers). If `hand_over` sent `conn` on the entry's pair,
    /// the child shares spawnd's descriptor table until it unshares it,
    /// and takes the connection from there; otherwise clone copies the
    /// table.
    pub(super) fn launch(
        &mut self,
        index: usize,
        args: &mut ChildArgs,
        plan: &Rc<ExecPlan>,
        conn_env: &mut Vec<u8>,
        conn: OwnedFd,
    ) -> io::Result<i32> {
        let entry = &mut self.entries[index];
        std::mem::swap(&mut entry.conn_env, conn_env);
        build_envp(&mut entry.envp, plan, &entry.conn_env, None);
        args.envp = entry.envp.as_ptr();
        // The child reads the plan through this reference's allocation,
        // which the entry keeps alive (see the module comment).
        args.plan = Rc::as_ptr(plan);
        entry.plan = Some(Rc::clone(plan));
        // A free entry has `sent` set only by the `hand_over` just before.
        let share_table = match (&entry.handoff, entry.sent) {
            (Some((_, theirs)), true) => {
                args.handoff = theirs.as_raw_fd();
                args.received = &entry.shared.received;
                true
            }
            _ => false,
        };
        let shared_args = entry.shared.args.get();
        // SAFETY: the entry is free: no child and no kernel write uses it.
        unsafe { shared_args.write(*args) };
        let tid = entry.shared.tid.as_ptr();
        let mut flags =
            libc::CLONE_VM | libc::CLONE_PARENT_SETTID | libc::CLONE_CHILD_CLEARTID | libc::SIGCHLD;
        if share_table {
            flags |= libc::CLONE_FILES;
        }
        // SAFETY: the child runs `child_main` on the entry's own stack and
        // reads only the entry and the plan the entry holds. The entry is
        // not reused before the kernel has zeroed `tid` (the child's exec or
        // exit), and lives as long as the pool, which waits for busy entries
        // when dropped. The child makes raw system calls only
        // (`child_steps`).
        let pid = unsafe {
            libc::clone(
                child_main,
                entry.stack.top(),
                flags,
                shared_args.cast(),
                tid,
                ptr::null_mut::<libc::c_void>(),
                tid,
            )
        };
        if pid < 0 {
            let error = io::Error::last_os_error();
            entry.plan = None;
            entry.discard_unreceived();
            return Err(error);
        }
        entry.pid = pid;
        entry.busy = true;
        self.busy += 1;
        // The child has a copy of its own, or one waiting for it.
        drop(conn);
        Ok(pid)
    }

    /// Frees the entries of children that have exec'd. An entry whose
    /// child failed waits for `reaped`, which reports the failure.
    fn collect(&mut self) {
        if self.busy == 0 {
            return;
        }
        for entry in self.entries.iter_mut().filter(|e| e.busy) {
            if entry.child_done() && entry.failure().0 == 0 {
                entry.release();
                self.busy -= 1;
            }
        }
    }

    /// Whether a launched child has not exec'd (or died) yet.
    pub(super) fn starting(&self) -> bool {
        self.busy > 0 && self.entries.iter().any(|e| e.busy && !e.child_done())
    }

    /// A child was reaped: frees its entry, if it still had one, and says
    /// how its launch failed, if it did.
    pub(super) fn reaped(&mut self, pid: i32) -> Option<LaunchFailure> {
        if self.busy == 0 {
            return None;
        }
        let entry = self.entries.iter_mut().find(|e| e.busy && e.pid == pid)?;
        let (stage, errno) = entry.failure();
        // The program the child tried, not the one its service has now.
        let program = match (&entry.plan, stage) {
            (Some(plan), 1..) => plan.argv_label(),
            _ => String::new(),
        };
        entry.release();
        self.busy -= 1;
        (stage != 0).then(|| LaunchFailure {
            stage: Stage::from_code(stage).as_str(),
            error: io::Error::from_raw_os_error(errno),
            program,
        })
    }
}

impl Drop for Launches {
    /// Children before their exec still read their entries and plans: wait
    /// for them, briefly.
    fn drop(&mut self) {
        let deadline = Instant::now() + DROP_WAIT;
        while self.entries.iter().any(|e| e.busy && !e.child_done()) {
            if Instant::now() > deadline {
                // A child stopped before its exec: leave it the memory.
                std::mem::forget(std::mem::take(&mut self.entries));
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
