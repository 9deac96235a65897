//! Starting a service's program: the one place with `clone(2)`.
//!
//! The child is started vfork-style (`CLONE_VM`), so no page tables are
//! copied. With `CLONE_FILES` the descriptor table is not copied either: the
//! child's first act is `close_range(first_free(), ~0, CLOSE_RANGE_UNSHARE)`,
//! which gives it a private table holding only the descriptor slots below
//! `first_free()`, so the cost of a spawn does not grow with the number of
//! listening sockets. What the child needs must be in a slot when clone
//! runs: the launch slots (3, and 7 up to 37 as the descriptor limit allows)
//! are left free while spawnd serves, so `accept4` (which takes the lowest
//! free number) puts a connection in one of them and the child can use it
//! as it is; anything else (a
//! connection that came while every launch slot was taken, a wait-mode
//! socket) is put into the reserved slot 6 first. Slots 4 and 5 hold a
//! stderr pipe and /dev/null.
//!
//! A connection's child is normally not waited for (see `launch`): spawnd
//! goes on serving while the child execs, which is most of what a spawn
//! costs, with up to one such child per CPU. With few descriptors open the
//! child gets a copy of spawnd's table from clone instead of sharing it;
//! with many, spawnd sends it the connection over a socket pair whose
//! child's end lives in a launch slot. Either way spawnd closes its own
//! copy at once. Every other start (a wait-mode socket, a `stderr: log`
//! pipe, `LISTEN_FDS`, no free launch entry) waits as vfork does
//! (`CLONE_VFORK`): the parent resumes only once the child has exec'd or
//! died.
//!
//! Everything the child touches is prepared before the clone (argv, envp,
//! credentials, limits); between clone and exec it makes raw system calls
//! only (`crate::daemon::raw_syscall`: no libc, so not even `errno` is written) and
//! reports a failure through memory it shares with the parent.
//!
//! The child leads a process group of its own, so a timeout can signal
//! everything it started. It gets a session of its own (`setsid`) only where
//! that changes something: when spawnd has a controlling terminal the child
//! must lose it, and a service may ask for one (`new_session: true`).
//! Otherwise a new session would only cost: with the scheduler's autogroups
//! (`CONFIG_SCHED_AUTOGROUP`, on in Debian's kernels) every `setsid` creates
//! and later destroys a task group, which measured 8–10% of the throughput
//! of a tiny service.

mod launch;

use std::ffi::{c_char, c_int, c_long, c_uint, c_void, CString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::ptr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::daemon::childenv::{write_connection_env, Peer, Transport};
use crate::daemon::raw_syscall;

use crate::config::{Service, StderrMode};

use crate::daemon::slots::{first_free, in_launch_slot, SLOT_NULL, SLOT_PRIMARY, SLOT_STDERR};

/// Descriptors spawnd has open besides its event sources: stdio, the
/// reserved slots, the poller, the signalfd, log sockets.
const ALWAYS_OPEN: usize = 16;

/// Who a child is started for: its connection's part of the environment
/// (`crate::daemon::childenv`) is rendered from this.
#[derive(Clone, Copy)]
pub struct Client<'a> {
    pub transport: Transport,
    pub peer: &'a Peer,
}

const CHILD_STACK_SIZE: usize = 256 * 1024;

const DEFAULT_PATH_ENTRY: &std::ffi::CStr =
    c"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where the child's fd 2 comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StderrTarget {
    Primary,
    Null,
    Pipe,
}

/// Work the child does between clone and exec, all prepared at load time.
#[derive(Debug, Default)]
struct ChildSetup {
    rlimits: Vec<(c_int, u64)>,
    nice: Option<c_int>,
    umask: Option<libc::mode_t>,
    chroot: Option<CString>,
    workdir: Option<CString>,
    /// (uid, gid, supplementary groups)
    credentials: Option<(libc::uid_t, libc::gid_t, Vec<libc::gid_t>)>,
}

impl ChildSetup {
    fn is_empty(&self) -> bool {
        self.rlimits.is_empty()
            && self.nice.is_none()
            && self.umask.is_none()
            && self.chroot.is_none()
            && self.workdir.is_none()
            && self.credentials.is_none()
    }
}

/// Everything constant about starting one service's program.
///
/// Kept in two allocations, since there is one plan per configured service:
/// every string (program, argv, environment) NUL-terminated in `strings`, and
/// the argv and environment pointer arrays, each ending in NULL, in
/// `pointers`. The pointers point into `strings`, whose heap block never
/// moves (or at the static default PATH).
#[derive(Debug)]
pub struct ExecPlan {
    strings: Box<[u8]>,
    pointers: Box<[*const c_char]>,
    /// Where the environment starts in `pointers`.
    env_at: usize,
    stderr: StderrTarget,
    listen_fds: bool,
    new_session: bool,
    /// None when the service sets no process control at all.
    setup: Option<Box<ChildSetup>>,
}

/// Strings gathered for one plan, NUL-terminated, before they are frozen.
#[derive(Default)]
struct StringBlock {
    bytes: Vec<u8>,
    /// Offsets of the argv strings, then of the environment strings.
    argv: Vec<usize>,
    env: Vec<usize>,
}

impl StringBlock {
    fn push(&mut self, text: &[u8]) -> io::Result<usize> {
        if text.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "NUL byte in string",
            ));
        }
        let at = self.bytes.len();
        self.bytes.extend_from_slice(text);
        self.bytes.push(0);
        Ok(at)
    }
}

fn cstring(text: &str) -> io::Result<CString> {
    CString::new(text)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in string"))
}

impl ExecPlan {
    /// Builds the plan for an `exec` service that runs `program` with
    /// `argv`. `pass_env` values are read from spawnd's environment now, once.
    pub fn for_service(
        service: &Service,
        program: &std::path::Path,
        argv: &[String],
    ) -> io::Result<ExecPlan> {
        let mut block = StringBlock::default();
        // The program comes first: `strings` starts with it. An argv[0]
        // that repeats it (the usual case) points at that same string.
        let program = program.to_string_lossy();
        block.push(program.as_bytes())?;
        for (index, arg) in argv.iter().enumerate() {
            let at = if index == 0 && *arg == program {
                0
            } else {
                block.push(arg.as_bytes())?
            };
            block.argv.push(at);
        }

        let mut env = Vec::new();
        for name in &service.pass_env {
            if let Some(value) = std::env::var_os(name) {
                let value = value.to_string_lossy();
                env.push(cstring(&format!("{name}={value}"))?);
            }
        }
        for (name, value) in &service.env {
            env.push(cstring(&format!("{name}={value}"))?);
        }
        env.push(cstring(&format!("SPAWND_SERVICE={}", service.name))?);
        let listen_fds = service.pass == crate::config::PassMode::ListenFds;
        if listen_fds {
            // LISTEN_PID is only known in the child, which writes it itself.
            env.push(cstring("LISTEN_FDS=1")?);
            env.push(cstring(&format!("LISTEN_FDNAMES={}", service.name))?);
        }
        // Later entries win in most programs' getenv; keep only the last.
        let mut seen = std::collections::HashSet::new();
        let mut deduped: Vec<CString> = Vec::with_capacity(env.len());
        for entry in env.into_iter().rev() {
            let name = entry
                .as_bytes()
                .split(|b| *b == b'=')
                .next()
                .unwrap_or_default()
                .to_vec();
            if seen.insert(name) {
                deduped.push(entry);
            }
        }
        deduped.reverse();
        // The default PATH is one static string shared by every service.
        let sets_path = deduped.iter().any(|e| e.as_bytes().starts_with(b"PATH="));
        for entry in &deduped {
            let at = block.push(entry.as_bytes())?;
            block.env.push(at);
        }
        let strings = block.bytes.into_boxed_slice();
        let base = strings.as_ptr();
        // Every offset came from `push` into these bytes: inside `strings`.
        let at = |offset: usize| base.wrapping_add(offset).cast::<c_char>();
        let mut pointers: Vec<*const c_char> = block.argv.iter().map(|o| at(*o)).collect();
        pointers.push(ptr::null());
        let env_at = pointers.len();
        if !sets_path {
            pointers.push(DEFAULT_PATH_ENTRY.as_ptr());
        }
        pointers.extend(block.env.iter().map(|o| at(*o)));
        pointers.push(ptr::null());

        let rl = &service.limits.rlimits;
        let rlimits = [
            (libc::RLIMIT_CPU, rl.cpu),
            (libc::RLIMIT_AS, rl.memory),
            (libc::RLIMIT_NOFILE, rl.files),
            (libc::RLIMIT_NPROC, rl.processes),
            (libc::RLIMIT_CORE, rl.core),
        ]
        .into_iter()
        .filter_map(|(resource, value)| value.map(|v| (resource as c_int, v)));
        let path_cstring = |p: &Option<std::path::PathBuf>| -> io::Result<Option<CString>> {
            p.as_ref()
                .map(|p| cstring(&p.to_string_lossy()))
                .transpose()
        };
        let setup = ChildSetup {
            rlimits: Vec::from_iter(rlimits),
            nice: service.nice,
            umask: service.umask.map(|m| m as libc::mode_t),
            chroot: path_cstring(&service.chroot)?,
            workdir: path_cstring(&service.workdir)?,
            credentials: service
                .credentials
                .as_ref()
                .map(|c| (c.uid, c.gid, c.groups.clone())),
        };
        Ok(ExecPlan {
            strings,
            pointers: pointers.into_boxed_slice(),
            env_at,
            stderr: match service.stderr {
                StderrMode::Socket => StderrTarget::Primary,
                StderrMode::Null => StderrTarget::Null,
                StderrMode::Log => StderrTarget::Pipe,
            },
            listen_fds,
            new_session: service.new_session,
            setup: (!setup.is_empty()).then(|| Box::new(setup)),
        })
    }

    /// The argument vector, read back from what the child gets.
    pub fn argv(&self) -> impl Iterator<Item = std::borrow::Cow<'_, str>> + Clone {
        let base = self.strings.as_ptr() as usize;
        let argc = self.env_at.saturating_sub(1);
        self.pointers[..argc].iter().map(move |pointer| {
            // Every argv pointer points into `strings` (see `for_service`).
            let at = (*pointer as usize)
                .wrapping_sub(base)
                .min(self.strings.len());
            let text = self.strings[at..].split(|byte| *byte == 0).next();
            String::from_utf8_lossy(text.unwrap_or_default())
        })
    }

    /// The command line, for the log (`config::ProgramLabel`).
    pub fn argv_label(&self) -> String {
        crate::config::ProgramLabel::Argv(self.argv()).to_string()
    }

    pub fn wants_stderr_pipe(&self) -> bool {
        self.stderr == StderrTarget::Pipe
    }
}

/// Shared between parent and child: the child writes `stage`/`errno` when a
/// step fails, the parent reads them once the child has exec'd or died.
#[repr(C)]
#[derive(Clone, Copy)]
struct ChildArgs {
    plan: *const ExecPlan,
    /// Where the connection (or wait-mode socket) is: below `first_free()`.
    primary: RawFd,
    /// spawnd's own soft RLIMIT_NOFILE before it raised it, restored in
    /// children whose service sets no `files` limit.
    restore_nofile: Option<libc::rlimit>,
    envp: *const *const c_char,
    /// `LISTEN_PID=<pid>\0`, completed by the child (envp points here).
    listen_pid: [u8; 32],
    use_close_range: bool,
    /// `first_free()`: where the child's descriptor table stops.
    first_uncopied: c_uint,
    new_session: bool,
    /// For a launched child that shares spawnd's table (see `launch`): the
    /// socket, below `first_free()`, on which spawnd sent the connection
    /// (which then replaces `primary`), and the flag the child sets once it
    /// has taken it. -1 and null otherwise.
    handoff: RawFd,
    received: *const AtomicU32,
    /// Test hook (`SPAWND_TEST_EXEC_DELAY_MS`): how long the child sleeps
    /// between its setup and its exec; zero otherwise.
    exec_delay: libc::timespec,
    /// spawnd has ambient capabilities, which the child must not inherit.
    clear_ambient: bool,
    stage: c_int,
    errno: c_int,
}

impl ChildArgs {
    /// Nothing to start yet (a launch entry before its first use).
    fn blank() -> ChildArgs {
        ChildArgs {
            plan: ptr::null(),
            primary: -1,
            restore_nofile: None,
            envp: ptr::null(),
            listen_pid: [0; 32],
            use_close_range: false,
            first_uncopied: 0,
            new_session: false,
            handoff: -1,
            received: ptr::null(),
            exec_delay: NO_DELAY,
            clear_ambient: false,
            stage: 0,
            errno: 0,
        }
    }

    fn new(plan: &ExecPlan, primary: RawFd, spawner: &Spawner) -> ChildArgs {
        let sets_files = plan.setup.as_ref().is_some_and(|setup| {
            setup
                .rlimits
                .iter()
                .any(|(r, _)| *r == libc::RLIMIT_NOFILE as c_int)
        });
        ChildArgs {
            plan,
            primary,
            restore_nofile: if sets_files {
                None
            } else {
                spawner.original_nofile
            },
            envp: ptr::null(),
            listen_pid: [0; 32],
            use_close_range: spawner.use_close_range,
            first_uncopied: first_free() as c_uint,
            new_session: plan.new_session || spawner.terminal,
            handoff: -1,
            received: ptr::null(),
            exec_delay: spawner.exec_delay,
            clear_ambient: spawner.ambient_capabilities,
            stage: 0,
            errno: 0,
        }
    }
}

/// The step of the child's setup that failed: written by the child as its
/// number, read back by the parent (`from_code`) for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Stage {
    /// Not a failure: a step whose result is not checked (`umask`).
    None = 0,
    FdTable = 1,
    Dup = 2,
    Session = 3,
    Rlimit = 5,
    Nice = 6,
    Chroot = 7,
    Chdir = 8,
    Setgroups = 9,
    Setgid = 10,
    Setuid = 11,
    Sigprocmask = 12,
    Getpid = 13,
    Handoff = 14,
    Capabilities = 15,
    Exec = 16,
}

impl Stage {
    const ALL: [Stage; 16] = [
        Stage::None,
        Stage::FdTable,
        Stage::Dup,
        Stage::Session,
        Stage::Rlimit,
        Stage::Nice,
        Stage::Chroot,
        Stage::Chdir,
        Stage::Setgroups,
        Stage::Setgid,
        Stage::Setuid,
        Stage::Sigprocmask,
        Stage::Getpid,
        Stage::Handoff,
        Stage::Capabilities,
        Stage::Exec,
    ];

    /// The stage a child wrote (0: none failed).
    pub fn from_code(code: i32) -> Stage {
        Stage::ALL
            .into_iter()
            .find(|stage| *stage as i32 == code)
            .unwrap_or(Stage::Exec)
    }

    /// The name in `exec_failed ... stage=NAME`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::None => "none",
            Stage::FdTable => "fd table",
            Stage::Dup => "dup2",
            Stage::Session => "setsid/setpgid",
            Stage::Rlimit => "rlimit",
            Stage::Nice => "nice",
            Stage::Chroot => "chroot",
            Stage::Chdir => "chdir",
            Stage::Setgroups => "setgroups",
            Stage::Setgid => "setgid",
            Stage::Setuid => "setuid",
            Stage::Sigprocmask => "sigprocmask",
            Stage::Getpid => "getpid",
            Stage::Handoff => "handoff",
            Stage::Capabilities => "capabilities",
            Stage::Exec => "exec",
        }
    }
}

#[derive(Debug)]
pub enum SpawnError {
    /// No process was created (EAGAIN, ENOMEM...).
    Fork(io::Error),
    /// The child was created but died before exec; it still has to be reaped.
    Exec {
        pid: i32,
        stage: &'static str,
        error: io::Error,
    },
}

/// A failed step in the child: (stage, errno).
type Failure = (c_int, c_int);

/// One system call in the child, `stage` naming it if it fails.
///
/// # Safety
/// As for `raw_syscall::call`.
#[inline(always)]
unsafe fn step(stage: Stage, number: c_long, args: [usize; 6]) -> Result<c_long, Failure> {
    // SAFETY: the caller vouches for the arguments.
    let result = unsafe { raw_syscall::call(number, args) };
    if result < 0 {
        Err((stage as c_int, (-result) as c_int))
    } else {
        Ok(result)
    }
}

/// Arguments for `step`, padded to six.
#[inline(always)]
fn a<const N: usize>(given: [usize; N]) -> [usize; 6] {
    let mut all = [0; 6];
    all[..N].copy_from_slice(&given);
    all
}

/// Runs in the child, on its own stack, sharing memory with the parent:
/// raw system calls only, no allocation, no locks, no panics, no `errno`.
///
/// # Safety
/// `args` must point to a live `ChildArgs` whose pointers are valid until
/// the child has exec'd or exited.
unsafe fn child_steps(args: *mut ChildArgs) -> Result<(), Failure> {
    // SAFETY: every call below is a raw system call whose pointer
    // arguments point into `*args`, its plan and this stack frame, all
    // alive until exec or exit (the caller's contract); nothing allocates,
    // locks or touches errno.
    unsafe {
        let plan = &*(*args).plan;
        if plan.listen_fds {
            let pid = step(Stage::Getpid, libc::SYS_getpid, a([]))?;
            write_listen_pid(&mut (*args).listen_pid, pid as u32);
        }
        let args = &*args;
        if args.use_close_range {
            step(
                Stage::FdTable,
                libc::SYS_close_range,
                a([
                    args.first_uncopied as usize,
                    c_uint::MAX as usize,
                    libc::CLOSE_RANGE_UNSHARE as usize,
                ]),
            )?;
        }
        let mut primary = args.primary;
        if args.handoff >= 0 {
            // spawnd has closed its copy of the connection already, and may
            // have put another one in `primary`'s slot since: this child's
            // connection is the one waiting on its socket.
            primary = receive_connection(args.handoff)?;
            (*args.received).store(1, Ordering::Release);
        }
        let dup = |from: RawFd, to: RawFd| {
            step(
                Stage::Dup,
                libc::SYS_dup3,
                a([from as usize, to as usize, 0]),
            )
        };
        let stderr_from = match plan.stderr {
            StderrTarget::Primary => primary,
            StderrTarget::Null => SLOT_NULL,
            StderrTarget::Pipe => SLOT_STDERR,
        };
        if plan.listen_fds {
            dup(SLOT_NULL, 0)?;
            dup(SLOT_NULL, 1)?;
            dup(stderr_from, 2)?;
            if primary == 3 {
                // fd 3 already is the socket; it only has to survive exec.
                step(
                    Stage::Dup,
                    libc::SYS_fcntl,
                    a([3, libc::F_SETFD as usize, 0]),
                )?;
            } else {
                // The table is this child's own now; dup3 clears close-on-exec.
                dup(primary, 3)?;
            }
        } else {
            dup(primary, 0)?;
            dup(primary, 1)?;
            dup(stderr_from, 2)?;
        }
        if args.new_session {
            step(Stage::Session, libc::SYS_setsid, a([]))?;
        } else {
            step(Stage::Session, libc::SYS_setpgid, a([0, 0]))?;
        }
        // No disposition to reset: spawnd keeps SIGPIPE at its default action
        // and blocked (see `server::blocked_signals`), so emptying the mask
        // below restores it, and pending signals are not inherited.
        if let Some(limit) = &args.restore_nofile {
            step(
                Stage::Rlimit,
                libc::SYS_prlimit64,
                a([
                    0,
                    libc::RLIMIT_NOFILE as usize,
                    limit as *const libc::rlimit as usize,
                    0,
                ]),
            )?;
        }
        if let Some(setup) = &plan.setup {
            apply_setup(setup)?;
        }
        if args.clear_ambient {
            // Ambient capabilities survive exec into a program that is not
            // privileged itself: a child gets none it was not given.
            step(
                Stage::Capabilities,
                libc::SYS_prctl,
                a([
                    libc::PR_CAP_AMBIENT as usize,
                    libc::PR_CAP_AMBIENT_CLEAR_ALL as usize,
                    0,
                    0,
                    0,
                ]),
            )?;
        }
        if args.exec_delay.tv_sec != 0 || args.exec_delay.tv_nsec != 0 {
            // Test hook: widens the window in which a reload could change what
            // this child is about to exec (tests/reload.rs).
            let _ = step(
                Stage::None,
                libc::SYS_nanosleep,
                a([ptr::addr_of!(args.exec_delay) as usize, 0]),
            );
        }
        let empty: libc::sigset_t = std::mem::zeroed();
        step(
            Stage::Sigprocmask,
            libc::SYS_rt_sigprocmask,
            a([
                libc::SIG_SETMASK as usize,
                ptr::addr_of!(empty) as usize,
                0,
                8,
            ]),
        )?;
        step(
            Stage::Exec,
            libc::SYS_execve,
            a([
                plan.strings.as_ptr() as usize,
                plan.pointers.as_ptr() as usize,
                args.envp as usize,
            ]),
        )?;
        Ok(())
    }
}

/// Takes the connection spawnd sent on `socket` (see `launch`); it lands
/// close-on-exec in the child's own table.
///
/// # Safety
/// Called only from `child_steps`, between clone and exec, after the
/// child's table is its own.
#[inline(always)]
unsafe fn receive_connection(socket: RawFd) -> Result<RawFd, Failure> {
    // SAFETY: `message` points at `data` and `control` on this frame, which
    // outlive the recvmsg; the control header is read only after the
    // kernel reported a length that holds one descriptor.
    unsafe {
        let mut byte = 0u8;
        let mut data = libc::iovec {
            iov_base: ptr::addr_of_mut!(byte).cast(),
            iov_len: 1,
        };
        // Room for one descriptor's control message, aligned for cmsghdr.
        let mut control = [0u64; 4];
        let mut message: libc::msghdr = std::mem::zeroed();
        message.msg_iov = &mut data;
        message.msg_iovlen = 1;
        message.msg_control = control.as_mut_ptr().cast();
        message.msg_controllen = std::mem::size_of_val(&control) as _;
        step(
            Stage::Handoff,
            libc::SYS_recvmsg,
            a([
                socket as usize,
                ptr::addr_of_mut!(message) as usize,
                libc::MSG_CMSG_CLOEXEC as usize,
            ]),
        )?;
        let header = control.as_ptr().cast::<libc::cmsghdr>();
        if (message.msg_controllen as usize) < libc::CMSG_LEN(4) as usize
            || (*header).cmsg_level != libc::SOL_SOCKET
            || (*header).cmsg_type != libc::SCM_RIGHTS
        {
            return Err((Stage::Handoff as c_int, libc::EBADMSG));
        }
        Ok(ptr::read_unaligned(libc::CMSG_DATA(header).cast::<c_int>()))
    }
}

/// The service's process controls, in the child (raw system calls only).
///
/// # Safety
/// Called only from `child_steps`, between clone and exec.
#[inline(always)]
unsafe fn apply_setup(setup: &ChildSetup) -> Result<(), Failure> {
    // SAFETY: raw system calls whose pointer arguments point into `setup`
    // (alive until exec, the caller's contract) or this frame.
    unsafe {
        for (resource, value) in &setup.rlimits {
            let limit = libc::rlimit {
                rlim_cur: *value,
                rlim_max: *value,
            };
            step(
                Stage::Rlimit,
                libc::SYS_prlimit64,
                a([0, *resource as usize, ptr::addr_of!(limit) as usize, 0]),
            )?;
        }
        if let Some(nice) = setup.nice {
            step(
                Stage::Nice,
                libc::SYS_setpriority,
                a([libc::PRIO_PROCESS as usize, 0, nice as usize]),
            )?;
        }
        if let Some(mask) = setup.umask {
            // umask cannot fail: it returns the previous mask.
            let _ = step(Stage::None, libc::SYS_umask, a([mask as usize]));
        }
        if let Some(root) = &setup.chroot {
            step(Stage::Chroot, libc::SYS_chroot, a([root.as_ptr() as usize]))?;
            step(Stage::Chdir, libc::SYS_chdir, a([c"/".as_ptr() as usize]))?;
        }
        if let Some(dir) = &setup.workdir {
            step(Stage::Chdir, libc::SYS_chdir, a([dir.as_ptr() as usize]))?;
        }
        if let Some((uid, gid, groups)) = &setup.credentials {
            // Groups first, then gid, then uid: after setuid the others are no
            // longer permitted. Raw calls change only this task, as wanted.
            step(
                Stage::Setgroups,
                libc::SYS_setgroups,
                a([groups.len(), groups.as_ptr() as usize]),
            )?;
            step(
                Stage::Setgid,
                libc::SYS_setresgid,
                a([*gid as usize, *gid as usize, *gid as usize]),
            )?;
            step(
                Stage::Setuid,
                libc::SYS_setresuid,
                a([*uid as usize, *uid as usize, *uid as usize]),
            )?;
        }
        Ok(())
    }
}

const LISTEN_PID_PREFIX: &[u8] = b"LISTEN_PID=";

/// Writes `LISTEN_PID=<pid>\0` without allocating (async-signal-safe).
fn write_listen_pid(buffer: &mut [u8; 32], pid: u32) {
    let mut scratch = itoa::Buffer::new();
    let digits = crate::sys::decimal::digits(pid, &mut scratch);
    let end = LISTEN_PID_PREFIX.len() + digits.len();
    buffer[..LISTEN_PID_PREFIX.len()].copy_from_slice(LISTEN_PID_PREFIX);
    buffer[LISTEN_PID_PREFIX.len()..end].copy_from_slice(digits);
    buffer[end] = 0;
}

extern "C" fn child_main(arg: *mut c_void) -> c_int {
    let args = arg.cast::<ChildArgs>();
    // SAFETY: `arg` is the `ChildArgs` the parent passed to clone, valid
    // until this child execs or exits: a waited-for child's parent is
    // suspended meanwhile (CLONE_VFORK), and a launch entry is reused only
    // after the kernel has cleared its tid word, at exec or exit.
    unsafe {
        if let Err((stage, errno)) = child_steps(args) {
            ptr::write_volatile(ptr::addr_of_mut!((*args).errno), errno);
            ptr::write_volatile(ptr::addr_of_mut!((*args).stage), stage);
        }
        raw_syscall::call(libc::SYS_exit_group, a([127]));
    }
    127
}

/// A stack for the child, with a guard page, mapped once.
struct ChildStack {
    base: *mut c_void,
    size: usize,
}

impl ChildStack {
    fn new(size: usize) -> io::Result<ChildStack> {
        // SAFETY: an anonymous private mapping; the result is checked.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the first page of the mapping we own becomes a guard page.
        unsafe { libc::mprotect(base, 4096, libc::PROT_NONE) };
        Ok(ChildStack { base, size })
    }

    fn top(&self) -> *mut c_void {
        // The stack grows down; keep 16-byte alignment.
        ((self.base as usize + self.size) & !15) as *mut c_void
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: unmapping the region mapped in `new`.
        unsafe { libc::munmap(self.base, self.size) };
    }
}

/// Puts `fd` into a reserved slot (closing what the slot held).
fn fill_slot(fd: RawFd, slot: RawFd) -> io::Result<()> {
    crate::daemon::slots::fill(fd, slot)
}

/// The plan's environment followed by the connection's entries (each
/// NUL-terminated in `conn_env`), the listen_pid entry if given, and NULL.
fn build_envp(
    envp: &mut Vec<*const c_char>,
    plan: &ExecPlan,
    conn_env: &[u8],
    listen_pid: Option<*const c_char>,
) {
    envp.clear();
    // The plan's environment without its closing NULL.
    envp.extend_from_slice(&plan.pointers[plan.env_at..plan.pointers.len() - 1]);
    let mut start = 0;
    for (index, byte) in conn_env.iter().enumerate() {
        if *byte == 0 {
            envp.push(conn_env[start..].as_ptr().cast());
            start = index + 1;
        }
    }
    envp.extend(listen_pid);
    envp.push(ptr::null());
}

const NO_DELAY: libc::timespec = libc::timespec {
    tv_sec: 0,
    tv_nsec: 0,
};

/// `SPAWND_TEST_EXEC_DELAY_MS`, a test hook: each child sleeps this long
/// right before its exec, after reading its credentials and limits, so a
/// test can change the configuration under a child that is starting.
fn test_exec_delay() -> libc::timespec {
    let millis: u64 = std::env::var("SPAWND_TEST_EXEC_DELAY_MS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(0)
        .min(60_000);
    libc::timespec {
        tv_sec: (millis / 1000) as libc::time_t,
        tv_nsec: ((millis % 1000) * 1_000_000) as libc::c_long,
    }
}

/// Starts children. Owns the child stack and scratch space for envp, so a
/// spawn allocates nothing once warm.
pub struct Spawner {
    stack: ChildStack,
    original_nofile: Option<libc::rlimit>,
    use_close_range: bool,
    /// spawnd has a controlling terminal, which children must not inherit.
    terminal: bool,
    envp: Vec<*const c_char>,
    /// Per-connection environment entries, each NUL-terminated.
    /// The connection's part of the environment, rendered for each spawn.
    conn_env: Vec<u8>,
    /// How many descriptors the event loop holds (see `spawn_connection`).
    descriptors: crate::daemon::slots::Gauge,
    /// Children spawnd does not wait for, until they have exec'd.
    launches: launch::Launches,
    exec_delay: libc::timespec,
    /// spawnd was started with ambient capabilities (children clear them).
    ambient_capabilities: bool,
}

/// The launch of a child spawnd did not wait for failed: `stage` names the
/// step, as for `SpawnError::Exec`.
pub struct LaunchFailure {
    pub stage: &'static str,
    pub error: io::Error,
    /// The command line the child was started with.
    pub program: String,
}

impl Spawner {
    /// Reserves the descriptor slots below `first_free()` (on /dev/null)
    /// and maps the child stack. Call once,
    /// early, before any other descriptor is opened. The launch slots are
    /// held only until `open_accept_slot`.
    pub fn new(descriptors: crate::daemon::slots::Gauge) -> io::Result<Spawner> {
        crate::daemon::slots::reserve()?;
        // SAFETY: an empty range with UNSHARE only unshares our own table,
        // which is not shared; this just asks whether the kernel knows it.
        let use_close_range = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                c_uint::MAX,
                c_uint::MAX,
                libc::CLOSE_RANGE_UNSHARE,
            ) == 0
        };
        if !use_close_range {
            crate::event!(log::Level::Debug, "spawn_mode"; "detail=\"close_range unavailable; children copy the descriptor table\"");
        }
        Ok(Spawner {
            stack: ChildStack::new(CHILD_STACK_SIZE)?,
            original_nofile: crate::daemon::slots::original_nofile(),
            use_close_range,
            terminal: crate::sys::has_controlling_terminal(),
            envp: Vec::with_capacity(64),
            conn_env: Vec::with_capacity(512),
            descriptors,
            // Without close_range a child's table is a copy made by clone,
            // which the parent would have to wait for; without raw system
            // calls a child could not leave spawnd's errno alone.
            launches: launch::Launches::new(use_close_range && raw_syscall::AVAILABLE),
            exec_delay: test_exec_delay(),
            ambient_capabilities: crate::sys::has_ambient_capabilities(),
        })
    }

    /// After `--daemon` has detached: no terminal to keep children from.
    pub fn detached(&mut self) {
        self.terminal = false;
    }

    /// Starts `plan` on a connection. Normally spawnd does not wait for the
    /// child (see `launch`); otherwise it spawns as `spawn` does. Either way
    /// `conn` is closed in spawnd when this returns.
    /// With up to `launch::COPIED_TABLE_MOST` descriptors open, clone copies
    /// the table; past that the child shares it and is sent the connection
    /// (see `launch`). The count is the event loop's sources (each holds a
    /// descriptor) and the few spawnd always has (stdio, slots, poller,
    /// signals, log).
    pub fn spawn_connection(
        &mut self,
        plan: &Rc<ExecPlan>,
        conn: OwnedFd,
        stderr_pipe: Option<RawFd>,
        client: Client,
    ) -> Result<i32, SpawnError> {
        write_connection_env(&mut self.conn_env, client.transport, client.peer);
        if stderr_pipe.is_none() && !plan.listen_fds && in_launch_slot(conn.as_raw_fd()) {
            if let Some(entry) = self.launches.free_entry() {
                let open = ALWAYS_OPEN + self.descriptors.get();
                let share_table = open > launch::COPIED_TABLE_MOST;
                // A connection that cannot be sent is started the waited-for way.
                if !share_table || self.launches.hand_over(entry, &conn) {
                    let mut args = ChildArgs::new(plan, conn.as_raw_fd(), self);
                    return self
                        .launches
                        .launch(entry, &mut args, plan, &mut self.conn_env, conn)
                        .map_err(SpawnError::Fork);
                }
            }
        }
        self.start_waited(plan, conn.as_raw_fd(), stderr_pipe)
    }

    /// Starts `plan` with `primary` (a connection, or a socket handed over in
    /// wait mode) and the write end of a stderr pipe if the plan wants one,
    /// and waits until the child has exec'd or died.
    pub fn spawn(
        &mut self,
        plan: &ExecPlan,
        primary: RawFd,
        stderr_pipe: Option<RawFd>,
        client: Client,
    ) -> Result<i32, SpawnError> {
        write_connection_env(&mut self.conn_env, client.transport, client.peer);
        self.start_waited(plan, primary, stderr_pipe)
    }

    /// `spawn`, with the connection's environment already in `conn_env`.
    fn start_waited(
        &mut self,
        plan: &ExecPlan,
        primary: RawFd,
        stderr_pipe: Option<RawFd>,
    ) -> Result<i32, SpawnError> {
        // A descriptor in a launch slot is used where it is (no other number
        // below first_free() can be one: 0–2 are stdio, 4–7 reserved); anything
        // else is put into slot 6.
        let moved = !in_launch_slot(primary);
        if moved {
            fill_slot(primary, SLOT_PRIMARY).map_err(SpawnError::Fork)?;
        }
        let primary = if moved { SLOT_PRIMARY } else { primary };
        if let Some(pipe) = stderr_pipe {
            if let Err(e) = fill_slot(pipe, SLOT_STDERR) {
                if moved {
                    let _ = fill_slot(SLOT_NULL, SLOT_PRIMARY);
                }
                return Err(SpawnError::Fork(e));
            }
        }
        let mut args = ChildArgs::new(plan, primary, self);
        let listen_pid = plan.listen_fds.then(|| args.listen_pid.as_ptr().cast());
        build_envp(&mut self.envp, plan, &self.conn_env, listen_pid);
        args.envp = self.envp.as_ptr();
        let mut flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
        if self.use_close_range {
            flags |= libc::CLONE_FILES;
        }
        // SAFETY: the child runs `child_main` on its own stack and only reads
        // `args`, `plan` and `envp`, which outlive the call: with CLONE_VFORK
        // clone returns only after the child has exec'd or exited.
        let pid = unsafe {
            libc::clone(
                child_main,
                self.stack.top(),
                flags,
                ptr::addr_of_mut!(args).cast(),
            )
        };
        let clone_error = io::Error::last_os_error();
        // Drop our references so the connection closes when the child is
        // done (the caller closes the one in slot 3 or wherever it was).
        if moved {
            let _ = fill_slot(SLOT_NULL, SLOT_PRIMARY);
        }
        if stderr_pipe.is_some() {
            let _ = fill_slot(SLOT_NULL, SLOT_STDERR);
        }
        if pid < 0 {
            return Err(SpawnError::Fork(clone_error));
        }
        // SAFETY: the child is gone or has exec'd; nobody writes `args` now.
        let (stage, errno) = unsafe {
            (
                ptr::read_volatile(ptr::addr_of!(args.stage)),
                ptr::read_volatile(ptr::addr_of!(args.errno)),
            )
        };
        if stage != 0 {
            return Err(SpawnError::Exec {
                pid,
                stage: Stage::from_code(stage).as_str(),
                error: io::Error::from_raw_os_error(errno),
            });
        }
        Ok(pid)
    }

    /// Whether a child may be between its clone and its exec, holding
    /// copies of spawnd's descriptors.
    pub fn children_starting(&self) -> bool {
        self.launches.starting()
    }

    /// A child was reaped: how its launch failed, if it was one that did.
    pub fn reaped(&mut self, pid: i32) -> Option<LaunchFailure> {
        self.launches.reaped(pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Action;
    use std::ffi::CStr;

    fn plan(yaml: &str) -> ExecPlan {
        let service = crate::config::load::parse_service(
            std::path::Path::new("/etc/spawnd/services.d/svc.yaml"),
            yaml,
            &Default::default(),
        )
        .unwrap();
        let Action::Exec { program, argv } = &service.action else {
            panic!("not an exec service: {yaml}");
        };
        ExecPlan::for_service(&service, program, argv).unwrap()
    }

    /// The strings a NULL-terminated pointer array points at.
    fn strings(pointers: &[*const c_char]) -> Vec<String> {
        pointers
            .iter()
            .take_while(|p| !p.is_null())
            // SAFETY: the plan's pointers are NUL-terminated strings it owns.
            .map(|p| unsafe { CStr::from_ptr(*p) }.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn a_plan_holds_argv_and_environment_in_one_block() {
        let plan = plan("listen: 127.0.0.1:9\nexec: [/bin/echo, one, two]\nenv: {A: x, B: y}\n");
        // SAFETY: `strings` starts with the NUL-terminated program path.
        let program = unsafe { CStr::from_ptr(plan.strings.as_ptr().cast()) };
        assert_eq!(program.to_str().unwrap(), "/bin/echo");
        assert_eq!(strings(&plan.pointers), ["/bin/echo", "one", "two"]);
        assert_eq!(
            strings(&plan.pointers[plan.env_at..]),
            [
                DEFAULT_PATH_ENTRY.to_str().unwrap(),
                "A=x",
                "B=y",
                "SPAWND_SERVICE=svc"
            ]
        );
        assert_eq!(plan.pointers.last(), Some(&ptr::null()));
        assert!(plan.setup.is_none(), "no process control was asked for");
        assert_eq!(plan.argv_label(), "/bin/echo one two");
        // argv[0] repeats the program: one copy, two pointers to it.
        assert_eq!(plan.pointers[0], plan.strings.as_ptr().cast());
        // A program other than argv[0] (as inetd's server path may be).
        let service = crate::config::load::parse_service(
            std::path::Path::new("/etc/spawnd/services.d/svc.yaml"),
            "listen: 127.0.0.1:9\nexec: [/bin/echo, one]\n",
            &Default::default(),
        )
        .unwrap();
        let argv = ["echo".to_string(), "one".to_string()];
        let another = ExecPlan::for_service(&service, "/bin/echo".as_ref(), &argv).unwrap();
        assert_eq!(another.argv_label(), "echo one");
        assert_eq!(strings(&another.pointers), ["echo", "one"]);
    }

    #[test]
    fn a_service_path_replaces_the_default_and_controls_get_a_setup() {
        let plan =
            plan("listen: 127.0.0.1:9\nexec: [/bin/true]\nenv: {PATH: /opt/bin}\numask: \"027\"\n");
        assert_eq!(
            strings(&plan.pointers[plan.env_at..]),
            ["PATH=/opt/bin", "SPAWND_SERVICE=svc"]
        );
        assert_eq!(plan.setup.as_ref().and_then(|s| s.umask), Some(0o27));
    }

    #[test]
    fn listen_pid_is_formatted_without_allocation() {
        let mut buffer = [0xffu8; 32];
        write_listen_pid(&mut buffer, 4_194_304);
        assert_eq!(&buffer[..19], b"LISTEN_PID=4194304\0");
        write_listen_pid(&mut buffer, 7);
        assert_eq!(&buffer[..13], b"LISTEN_PID=7\0");
    }
}
