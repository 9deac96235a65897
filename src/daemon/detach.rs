//! `--daemon` and `--pid-file`. spawnd detaches only after every listener
//! is bound, and the command that started it returns only once the daemon
//! says it is ready (pid file written) over a pipe: with status 0 then, or
//! with 3 and the daemon's message on stderr if it failed before, so
//! `spawnd run --daemon --pid-file F && kill -HUP $(cat F)` works.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::unistd::{fork, setsid, ForkResult, Pid};

use crate::exit::Exit;

/// The daemon's end of the pipe the starting command waits on.
pub struct Readiness {
    pipe: OwnedFd,
}

impl Readiness {
    /// Everything is in place: the starting command exits 0.
    pub fn ready(self) {
        let _ = nix::unistd::write(&self.pipe, b"ready\n");
    }

    /// Start-up failed: the starting command prints `message` and exits 3.
    pub fn failed(self, message: &str) {
        let _ = nix::unistd::write(&self.pipe, message.as_bytes());
    }
}

/// Detaches: fork, setsid, fork again (so the daemon can never reacquire a
/// terminal), chdir to /, stdin and stdout (and stderr, unless `keep_stderr`)
/// on /dev/null. Returns in the daemon only: the starting process waits for
/// its word (`Readiness`) and exits with it, the middle one exits at once;
/// neither runs destructors, which would remove the sockets the daemon
/// keeps.
pub fn detach(keep_stderr: bool) -> io::Result<Readiness> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let write = crate::daemon::slots::above(write)?;
    // SAFETY: spawnd is single-threaded, so the child may keep running Rust
    // code after fork.
    if let ForkResult::Parent { .. } = unsafe { fork() }? {
        drop(write);
        std::process::exit(wait_for_daemon(read).code().into());
    }
    drop(read);
    setsid()?;
    // SAFETY: as above.
    if let ForkResult::Parent { .. } = unsafe { fork() }? {
        std::process::exit(Exit::Success.code().into());
    }
    std::env::set_current_dir("/")?;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    let last = if keep_stderr { 2 } else { 3 };
    for fd in 0..last {
        crate::sys::dup_stdio(&null, fd)?;
    }
    Ok(Readiness { pipe: write })
}

/// In the starting process: the exit status, once the daemon has said
/// it is ready (0) or has failed or died first (3, with a message).
fn wait_for_daemon(read: OwnedFd) -> Exit {
    use std::io::Read;
    let mut said = Vec::new();
    let _ = std::fs::File::from(read)
        .take(64 * 1024)
        .read_to_end(&mut said);
    if said == b"ready\n" {
        return Exit::Success;
    }
    let said = String::from_utf8_lossy(&said);
    if said.is_empty() {
        eprintln!("spawnd: the daemon exited before it was ready (see its log)");
    } else {
        eprintln!("spawnd: {said}");
    }
    Exit::Runtime
}

/// A pid file holds a pid and a newline: anything longer is not one.
const PID_FILE_MAX: u64 = 64;

/// The pid a pid file names (`None` if it does not hold one).
fn pid_in(data: &[u8]) -> Option<i32> {
    std::str::from_utf8(data).ok()?.trim().parse().ok()
}

/// The pid in `path`, if it names a running spawnd. The file is read as a
/// regular file only, without following a link (`fsafe`).
fn running_spawnd(path: &Path) -> Option<i32> {
    let rules = crate::sys::fsafe::ReadRules {
        strict: false,
        follow: false,
        max: PID_FILE_MAX,
    };
    let pid = pid_in(&crate::sys::fsafe::read(path, rules).ok()?)?;
    if pid <= 0 || pid == std::process::id() as i32 {
        return None;
    }
    let alive = match nix::sys::signal::kill(Pid::from_raw(pid), None) {
        Ok(()) | Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    };
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    (alive && comm.trim() == "spawnd").then_some(pid)
}

/// Refuses to go on when another spawnd owns the pid file.
pub fn check_pid_file(path: &Path) -> Result<(), String> {
    match running_spawnd(path) {
        Some(pid) => Err(format!(
            "spawnd is already running with pid {pid} (pid file {}); stop it first or use another --pid-file",
            path.display()
        )),
        None => Ok(()),
    }
}

/// A pid file written atomically through `fsafe` (a new file with an
/// unpredictable name, never following a link, then renamed into place)
/// and removed when dropped, if it still names this process.
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    pub fn write(path: &Path) -> io::Result<PidFile> {
        let text = format!("{}\n", std::process::id());
        crate::sys::fsafe::write_atomic(path, text.as_bytes(), 0o644)?;
        Ok(PidFile {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let me = std::process::id() as i32;
        crate::sys::fsafe::remove_file_if(&self.path, PID_FILE_MAX, |data| {
            pid_in(data) == Some(me)
        });
    }
}
