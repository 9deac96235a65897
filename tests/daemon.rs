//! `run --daemon` with a pid file.

mod util;

use nix::sys::signal::Signal;
use util::*;

#[test]
fn daemon_mode_with_a_pid_file() {
    let config = Config::new();
    let port = free_port();
    let pid_file = config.path().join("spawnd.pid");
    config.global(&format!(
        "control_socket: {}\n",
        config.path().join("c.sock").display()
    ));
    config.service(
        "d",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/echo, daemon]\n"),
    );
    let started = std::process::Command::new(BIN)
        .args(["run", "--daemon", "--pid-file"])
        .arg(&pid_file)
        .arg("-c")
        .arg(config.path())
        .output()
        .unwrap();
    assert!(started.status.success(), "{started:?}");
    // The launching command returns once the daemon listens.
    assert_eq!(tcp_read(port), "daemon\n");
    assert!(wait_until(|| pid_file.exists()));
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The daemon is not the test's child: kill it even if an assertion fails.
    struct KillOnDrop(i32);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0), Signal::SIGKILL);
        }
    }
    let _daemon = KillOnDrop(pid);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let session: i32 = fields[3].parse().unwrap();
    assert_ne!(
        session, pid,
        "after the second fork the daemon is not a session leader"
    );
    // A second spawnd on the same pid file refuses to start.
    let second = std::process::Command::new(BIN)
        .args(["run", "--pid-file"])
        .arg(&pid_file)
        .arg("-c")
        .arg(config.path())
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&format!("spawnd is already running with pid {pid}")),
        "{stderr}"
    );
    // Reload works from / (the config directory was made absolute).
    config.service(
        "d",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/echo, reloaded]\n"),
    );
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGHUP).unwrap();
    assert!(wait_until(|| tcp_read(port) == "reloaded\n"));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    assert!(
        wait_until(|| !pid_file.exists()),
        "the pid file is removed at exit"
    );
}
