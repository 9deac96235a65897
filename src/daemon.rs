//! `--daemon` and `--pid-file`. spawnd detaches only after every listener
//! is bound, so the command that started it returns once it is ready.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use nix::unistd::{fork, setsid, ForkResult, Pid};

/// Detaches: fork, setsid, fork again (so the daemon can never reacquire a
/// terminal), chdir to /, stdio on /dev/null. The parents exit 0 without
/// running destructors, which would remove the sockets the daemon keeps.
pub fn detach() -> io::Result<()> {
    // SAFETY: spawnd is single-threaded, so the child may keep running Rust
    // code after fork.
    if let ForkResult::Parent { .. } = unsafe { fork() }? {
        std::process::exit(0);
    }
    setsid()?;
    // SAFETY: as above.
    if let ForkResult::Parent { .. } = unsafe { fork() }? {
        std::process::exit(0);
    }
    std::env::set_current_dir("/")?;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for fd in 0..3 {
        crate::sys::dup_plain(std::os::fd::AsRawFd::as_raw_fd(&null), fd)?;
    }
    Ok(())
}

/// The pid in `path`, if it names a running spawnd.
fn running_spawnd(path: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
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

/// A pid file written atomically (temporary file, then rename) and removed
/// when dropped, if it still names this process.
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    pub fn write(path: &Path) -> io::Result<PidFile> {
        let pid = std::process::id();
        let tmp = path.with_extension(format!("tmp.{pid}"));
        let result = std::fs::File::create(&tmp)
            .and_then(|mut f| writeln!(f, "{pid}").and_then(|_| f.sync_all()))
            .and_then(|_| std::fs::rename(&tmp, path));
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map(|_| PidFile {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
            == Some(std::process::id());
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
