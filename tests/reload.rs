//! SIGHUP reloads without dropping a connection, graceful stop, and the
//! systemd protocols (readiness notification, `pass: listen_fds`).

mod util;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use util::*;

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn continuous_clients_see_no_failure_across_twenty_reloads() {
    let config = Config::new();
    let port = free_port();
    let other = free_port();
    config.service(
        "steady",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/echo, steady]\nbacklog: 1024\n"),
    );
    let spawnd = Spawnd::start(&config);
    let clients = ClientLoop::start(4, port, b"steady\n");
    for round in 0..20 {
        // Alternate between touching this service, adding one and removing it.
        if round % 2 == 0 {
            config.service(
                "other",
                &format!("listen: 127.0.0.1:{other}\nexec: [/bin/echo, other]\n"),
            );
        } else {
            config.remove_service("other");
        }
        config.service(
            "steady",
            &format!("listen: 127.0.0.1:{port}\nexec: [/bin/echo, steady]\nbacklog: 1024\nenv: {{ROUND: '{round}'}}\n"),
        );
        spawnd.reload();
    }
    let (ok, failed) = clients.stop();
    assert_eq!(failed, 0, "{ok} ok");
    assert!(ok > 20);
    assert_eq!(spawnd.log.count("reload_done"), 20);
    assert!(spawnd.no_zombies());
}

#[test]
fn add_remove_change_program_address_and_limits() {
    let config = Config::new();
    let (a, b, c) = (free_port(), free_port(), free_port());
    config.service(
        "first",
        &format!("listen: 127.0.0.1:{a}\nexec: [/bin/echo, one]\n"),
    );
    let spawnd = Spawnd::start(&config);
    assert_eq!(tcp_read(a), "one\n");

    // Change the program: same socket, new behaviour.
    config.service(
        "first",
        &format!("listen: 127.0.0.1:{a}\nexec: [/bin/echo, two]\n"),
    );
    config.service(
        "added",
        &format!("listen: 127.0.0.1:{b}\nexec: [/bin/echo, added]\n"),
    );
    spawnd.reload();
    assert_eq!(tcp_read(a), "two\n");
    assert_eq!(tcp_read(b), "added\n");
    spawnd
        .log
        .expect(&["reload_done services=2 added=1 updated=1 removed=0 failed=0"]);

    // Nothing changed: nothing counts as updated.
    spawnd.reload();
    spawnd
        .log
        .expect(&["reload_done services=2 added=0 updated=0 removed=0 failed=0"]);

    // Change the address; limit the other one.
    config.service(
        "first",
        &format!("listen: 127.0.0.1:{c}\nexec: [/bin/echo, moved]\n"),
    );
    config.service(
        "added",
        &format!(
            "listen: 127.0.0.1:{b}\nexec: [/bin/echo, added]\naccess: {{deny: [127.0.0.1]}}\n"
        ),
    );
    spawnd.reload();
    assert!(
        TcpStream::connect(local(a)).is_err(),
        "the old address is closed"
    );
    assert_eq!(tcp_read(c), "moved\n");
    assert!(refused_at_once(b), "the new access rule applies");
    spawnd
        .log
        .expect(&["reload_done services=2 added=0 updated=2 removed=0 failed=0"]);

    // Remove a service.
    config.remove_service("added");
    spawnd.reload();
    assert!(TcpStream::connect(local(b)).is_err());
    spawnd.log.expect(&["service_removed service=added"]);
    spawnd
        .log
        .expect(&["reload_done services=1 added=0 updated=0 removed=1 failed=0"]);
    assert_eq!(tcp_read(c), "moved\n");
}

#[test]
fn a_broken_file_keeps_the_previous_definition_while_others_change() {
    let config = Config::new();
    let (a, b) = (free_port(), free_port());
    config.service(
        "kept",
        &format!("listen: 127.0.0.1:{a}\nexec: [/bin/echo, old]\n"),
    );
    config.service(
        "changed",
        &format!("listen: 127.0.0.1:{b}\nexec: [/bin/echo, before]\n"),
    );
    let spawnd = Spawnd::start(&config);
    config.service(
        "kept",
        &format!("listen: 127.0.0.1:{a}\nexec: [/bin/echo, new]\nlimits: {{timeout: forever}}\n"),
    );
    config.service(
        "changed",
        &format!("listen: 127.0.0.1:{b}\nexec: [/bin/echo, after]\n"),
    );
    spawnd.reload();
    spawnd
        .log
        .expect(&["config_error", "kept.yaml:3:", "limits.timeout"]);
    spawnd.log.expect(&["reload_kept service=kept"]);
    assert_eq!(tcp_read(a), "old\n", "the previous definition answers");
    assert_eq!(tcp_read(b), "after\n", "the valid change applied");
}

#[test]
fn a_kept_service_keeps_its_socket_from_a_newcomer_on_the_same_address() {
    let config = Config::new();
    let a = free_port();
    config.service(
        "kept",
        &format!("listen: 127.0.0.1:{a}\nexec: [/bin/echo, old]\n"),
    );
    let spawnd = Spawnd::start(&config);
    config.service("kept", "listen: [not, an, address]\n");
    config.service(
        "newcomer",
        &format!("listen: 127.0.0.1:{a}\nexec: [/bin/echo, newcomer]\n"),
    );
    spawnd.reload();
    spawnd.log.expect(&["reload_kept service=kept"]);
    spawnd
        .log
        .expect(&["service_error service=newcomer", "cannot listen on stream"]);
    assert_eq!(tcp_read(a), "old\n", "the kept service still answers");
}

/// Descriptor 3 is where connections land (the child keeps it as it is);
/// a socket a reload binds must not take it.
#[test]
fn sockets_bound_by_a_reload_leave_descriptor_3_free() {
    let config = Config::new();
    let (a, b) = (free_port(), free_port());
    config.service(
        "first",
        &format!("listen: 127.0.0.1:{a}\nexec: [/bin/echo, first]\n"),
    );
    let spawnd = Spawnd::start(&config);
    assert_eq!(tcp_read(a), "first\n");
    let slot = format!("/proc/{}/fd/3", spawnd.pid());
    assert!(std::fs::read_link(&slot).is_err(), "descriptor 3 is free");
    config.service(
        "added",
        &format!("listen: 127.0.0.1:{b}\nexec: [/bin/echo, added]\n"),
    );
    spawnd.reload();
    assert_eq!(tcp_read(b), "added\n");
    assert!(
        std::fs::read_link(&slot).is_err(),
        "descriptor 3 is still free: {:?}",
        std::fs::read_link(&slot)
    );
}

#[test]
fn a_broken_spawnd_yaml_rejects_the_whole_reload() {
    let config = Config::new();
    let port = free_port();
    config.service(
        "svc",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/echo, before]\n"),
    );
    let spawnd = Spawnd::start(&config);
    config.global("max_children: -1\n");
    config.service(
        "svc",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/echo, after]\n"),
    );
    spawnd.reload();
    spawnd.log.expect(&["reload_rejected"]);
    assert_eq!(tcp_read(port), "before\n");
}

#[test]
fn children_started_before_a_reload_are_reaped_after_it() {
    let config = Config::new();
    let (port, other) = (free_port(), free_port());
    config.service("slow", &format!("listen: 127.0.0.1:{port}\nexec: [/bin/sh, -c, 'echo hi; exec cat >/dev/null']\nlimits: {{instances: 1}}\n"));
    let spawnd = Spawnd::start(&config);
    let mut held = TcpStream::connect(local(port)).unwrap();
    let mut hi = [0u8; 3];
    held.read_exact(&mut hi).unwrap();
    // Remove it and add another; the running child is left alone.
    config.remove_service("slow");
    config.service(
        "other",
        &format!("listen: 127.0.0.1:{other}\nexec: [/bin/echo, other]\n"),
    );
    spawnd.reload();
    assert_eq!(tcp_read(other), "other\n");
    drop(held);
    spawnd.log.expect(&["exit service=slow", "status=0"]);
    assert!(spawnd.no_zombies());
}

#[test]
fn a_kept_service_keeps_counting_its_running_children() {
    let config = Config::new();
    let port = free_port();
    let yaml = format!("listen: 127.0.0.1:{port}\nexec: [/bin/sh, -c, 'echo hi; exec cat >/dev/null']\nlimits: {{instances: 1}}\n");
    config.service("one", &yaml);
    let spawnd = Spawnd::start(&config);
    let mut held = TcpStream::connect(local(port)).unwrap();
    let mut hi = [0u8; 3];
    held.read_exact(&mut hi).unwrap();
    config.service("one", &(yaml + "env: {CHANGED: '1'}\n"));
    spawnd.reload();
    assert!(
        refused_at_once(port),
        "the child from before the reload still counts"
    );
    drop(held);
}

#[test]
fn wait_service_keeps_its_socket_handed_off_across_a_reload() {
    let config = Config::new();
    let port = free_port();
    config.accept_two_service("w", port);
    let spawnd = Spawnd::start(&config);
    let first = tcp_read(port);
    spawnd.reload();
    let second = tcp_read(port);
    assert_eq!(
        first, second,
        "the same child still owns the socket after the reload"
    );
    spawnd.log.expect(&["exit service=w"]);
    let third = tcp_read(port);
    assert_ne!(third, first);
}

#[test]
fn sigterm_waits_for_children_then_escalates() {
    let config = Config::new();
    let port = free_port();
    config.global("shutdown_grace: 300ms\n");
    config.service(
        "stubborn",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/sh, -c, 'trap \"\" TERM; echo hi; sleep 60']\nlimits: {{kill_after: 300ms}}\n"),
    );
    let mut spawnd = Spawnd::start(&config);
    let mut held = TcpStream::connect(local(port)).unwrap();
    let mut hi = [0u8; 3];
    held.read_exact(&mut hi).unwrap();
    let started = Instant::now();
    spawnd.signal(Signal::SIGTERM);
    spawnd.log.expect(&["stopping children=1"]);
    assert!(
        TcpStream::connect(local(port)).is_err(),
        "listeners close at once"
    );
    spawnd.log.expect(&["grace_over children=1"]);
    spawnd.log.expect(&["exit service=stubborn", "signal=KILL"]);
    assert_eq!(spawnd.wait_exit(), Some(0));
    assert!(
        started.elapsed() >= Duration::from_millis(550),
        "grace and kill_after were honoured"
    );
}

#[test]
fn a_second_sigterm_skips_the_grace_period() {
    let config = Config::new();
    let port = free_port();
    config.global("shutdown_grace: 1h\n");
    config.service(
        "polite",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/sh, -c, 'echo hi; exec sleep 60']\n"),
    );
    let mut spawnd = Spawnd::start(&config);
    let mut held = TcpStream::connect(local(port)).unwrap();
    let mut hi = [0u8; 3];
    held.read_exact(&mut hi).unwrap();
    spawnd.signal(Signal::SIGTERM);
    spawnd.log.expect(&["stopping children=1"]);
    spawnd.signal(Signal::SIGTERM);
    spawnd.log.expect(&["stop_now children=1"]);
    spawnd.log.expect(&["exit service=polite", "signal=TERM"]);
    assert_eq!(spawnd.wait_exit(), Some(0));
}

#[test]
fn readiness_reload_and_stop_notifications() {
    let config = Config::new();
    let port = free_port();
    config.service(
        "svc",
        &format!(
            "listen: 127.0.0.1:{port}\nexec: [/bin/sh, -c, 'echo ${{NOTIFY_SOCKET:-unset}}']\n"
        ),
    );
    let socket_path = config.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let mut spawnd = Spawnd::start_with(&config, &[], |c| {
        c.env("NOTIFY_SOCKET", &socket_path);
    });
    let next = || {
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let ready = next();
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(ready.lines().any(|l| l.starts_with("STATUS=")), "{ready:?}");
    assert_eq!(
        tcp_read(port),
        "unset\n",
        "NOTIFY_SOCKET is never passed on"
    );
    spawnd.signal(Signal::SIGHUP);
    let reloading = next();
    let lines: Vec<&str> = reloading.lines().collect();
    assert_eq!(lines[0], "RELOADING=1", "{reloading:?}");
    let usec: u64 = lines[1]
        .strip_prefix("MONOTONIC_USEC=")
        .unwrap()
        .parse()
        .unwrap();
    assert!(usec > 0);
    assert!(next().lines().any(|l| l == "READY=1"));
    spawnd.signal(Signal::SIGTERM);
    assert!(next().lines().any(|l| l == "STOPPING=1"));
    assert_eq!(spawnd.wait_exit(), Some(0));
}

#[test]
fn pass_listen_fds_starts_a_socket_activated_daemon_lazily() {
    let config = Config::new();
    let port = free_port();
    // A daemon written for systemd's Accept=no: it checks LISTEN_PID and
    // LISTEN_FDS, then serves two connections on fd 3.
    let program = config.script(
        "activated",
        "#!/usr/bin/perl\n\
         die \"LISTEN_PID $ENV{LISTEN_PID} != $$\" unless $ENV{LISTEN_PID} == $$;\n\
         die 'LISTEN_FDS' unless $ENV{LISTEN_FDS} eq '1';\n\
         open(my $l, '+<&=', 3) or die \"fd 3: $!\";\n\
         my $in = -c STDIN ? 'null' : 'other';\n\
         for (1..2) { accept(my $c, $l) or die; print $c \"$ENV{LISTEN_FDNAMES} stdin=$in pid=$$\\n\"; close $c; }\n",
    );
    config.service(
        "lazy",
        &format!(
            "listen: 127.0.0.1:{port}\nwait: true\npass: listen_fds\nstderr: log\nexec: [{}]\n",
            program.display()
        ),
    );
    let spawnd = Spawnd::start(&config);
    assert_eq!(
        spawnd.log.count("accept service=lazy"),
        0,
        "nothing runs before the first client"
    );
    let first = tcp_read(port);
    assert!(
        first.starts_with("lazy stdin=null pid="),
        "{first:?}; log:\n{}",
        spawnd.log.text()
    );
    assert_eq!(tcp_read(port), first);
}

#[test]
fn adopts_sockets_passed_by_socket_activation() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let config = Config::new();
    let (port, unused_port) = (free_port(), free_port());
    config.service(
        "adopted",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/echo, adopted]\n"),
    );
    // Bound and listening before spawnd starts: spawnd could not bind them.
    let passed = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let unused = std::net::TcpListener::bind(("127.0.0.1", unused_port)).unwrap();
    let (a, b) = (passed.as_raw_fd(), unused.as_raw_fd());
    let mut command = std::process::Command::new("sh");
    command
        .args([
            "-c",
            "LISTEN_PID=$$ LISTEN_FDS=2 LISTEN_FDNAMES=a:b exec \"$@\"",
            "sh",
            BIN,
            "run",
            "-c",
        ])
        .arg(config.path());
    // SAFETY: only fcntl and dup2, which are async-signal-safe, between
    // fork and exec. Moving through high numbers first keeps a listener that
    // already sits at 3 or 4 from being overwritten, and F_SETFD clears the
    // close-on-exec flag that dup2 onto the same number would keep.
    unsafe {
        command.pre_exec(move || {
            let high_a = libc::fcntl(a, libc::F_DUPFD, 100);
            let high_b = libc::fcntl(b, libc::F_DUPFD, 100);
            if high_a < 0 || high_b < 0 || libc::dup2(high_a, 3) < 0 || libc::dup2(high_b, 4) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::fcntl(3, libc::F_SETFD, 0);
            libc::fcntl(4, libc::F_SETFD, 0);
            libc::close(high_a);
            libc::close(high_b);
            Ok(())
        });
    }
    let spawnd = Spawnd::spawn(command, |_| {});
    spawnd.log.expect(&["ready services=1"]);
    spawnd.log.expect(&["adopted listen=127.0.0.1:"]);
    spawnd
        .log
        .expect(&["activation_unused", &format!("127.0.0.1:{unused_port}")]);
    drop(passed);
    assert_eq!(tcp_read(port), "adopted\n");
    // The passed variables do not reach children.
    assert_eq!(spawnd.log.count("service_error"), 0);
}

#[test]
fn status_over_the_control_socket_and_sigusr1() {
    let config = Config::new();
    let (port, other) = (free_port(), free_port());
    let socket = config.path().join("control.sock");
    config.global(&format!("control_socket: {}\n", socket.display()));
    config.service(
        "served",
        &format!(
            "listen: 127.0.0.1:{port}\nexec: [/bin/echo, hi]\naccess: {{deny: [127.0.0.2]}}\n"
        ),
    );
    config.service(
        "idle",
        &format!("listen: 127.0.0.1:{other}\nexec: [/bin/echo, hi]\n"),
    );
    let spawnd = Spawnd::start(&config);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(tcp_read(port), "hi\n");
    assert_eq!(read_from("127.0.0.2", port).unwrap(), "");
    spawnd.log.expect(&["exit service=served"]);
    let json = std::process::Command::new(BIN)
        .args(["status", "--json", "-c"])
        .arg(config.path())
        .output()
        .unwrap();
    assert!(json.status.success(), "{json:?}");
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["pid"], spawnd.pid());
    let services = report["services"].as_array().unwrap();
    let served = services.iter().find(|s| s["name"] == "served").unwrap();
    assert_eq!(served["state"], "listening");
    assert_eq!(served["accepted"], 1);
    assert_eq!(served["refused_access"], 1);
    assert_eq!(served["children"], 0);
    assert!(services
        .iter()
        .any(|s| s["name"] == "idle" && s["accepted"] == 0));
    let table = std::process::Command::new(BIN)
        .arg("status")
        .arg("--socket")
        .arg(&socket)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()[..5]
                == ["served", "listening", "0", "1", "1"]),
        "{text}"
    );
    spawnd.signal(Signal::SIGUSR1);
    spawnd
        .log
        .expect(&["status service=served", "accepted=1", "refused_access=1"]);
}

#[test]
fn a_live_control_socket_is_not_stolen_and_a_stale_one_is_replaced() {
    let config = Config::new();
    let socket = config.path().join("control.sock");
    // Stale: a socket file nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    config.global(&format!("control_socket: {}\n", socket.display()));
    config.service(
        "a",
        &format!("listen: 127.0.0.1:{}\nexec: [/bin/true]\n", free_port()),
    );
    let first = Spawnd::start(&config);
    let second_config = Config::new();
    second_config.global(&format!("control_socket: {}\n", socket.display()));
    second_config.service(
        "b",
        &format!("listen: 127.0.0.1:{}\nexec: [/bin/true]\n", free_port()),
    );
    let second = Spawnd::start(&second_config);
    second.log.expect(&["control_busy"]);
    let report = status_json(&socket);
    assert_eq!(report["pid"], first.pid(), "the first spawnd still answers");
}

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

#[test]
fn a_bind_failure_on_reload_fails_only_that_service() {
    let config = Config::new();
    let (a, c) = (free_port(), free_port());
    config.service(
        "stays",
        &format!("listen: 127.0.0.1:{a}\nexec: [/bin/echo, old]\n"),
    );
    let spawnd = Spawnd::start(&config);
    let holder = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let taken = holder.local_addr().unwrap().port();
    config.service(
        "stays",
        &format!("listen: 127.0.0.1:{taken}\nexec: [/bin/echo, moved]\n"),
    );
    config.service(
        "fresh",
        &format!("listen: 127.0.0.1:{c}\nexec: [/bin/echo, fresh]\n"),
    );
    spawnd.reload();
    spawnd
        .log
        .expect(&["service_error service=stays", "Address already in use"]);
    assert_eq!(tcp_read(c), "fresh\n", "the other change applied");
    spawnd.log.expect(&["reload_done", "failed=1"]);
}

/// A reload replaces a service's command line while its children are being
/// started: a child that has not exec'd yet still reads the old one, which
/// must stay intact until it has. Every reply names one of the rounds.
#[test]
fn a_changed_command_line_under_load_starts_only_whole_programs() {
    use std::sync::atomic::{AtomicBool, Ordering};
    const ROUNDS: usize = 150;
    use std::sync::{Arc, Mutex};
    let config = Config::new();
    let port = free_port();
    let write = |round: usize| {
        config.service(
            "changing",
            &format!(
                "listen: 127.0.0.1:{port}\nexec: [/bin/echo, round-{round}, {}]\nbacklog: 1024\n",
                "x".repeat(round * 7 + 1)
            ),
        );
    };
    write(0);
    let spawnd = Spawnd::start(&config);
    let stop = Arc::new(AtomicBool::new(false));
    let replies = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let (stop, replies) = (stop.clone(), replies.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let reply = tcp_exchange(local(port), b"").unwrap_or_default();
                    replies.lock().unwrap().push(reply);
                }
            })
        })
        .collect();
    for round in 1..=ROUNDS {
        write(round);
        spawnd.reload();
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let replies = replies.lock().unwrap();
    assert!(replies.len() > ROUNDS, "{} replies", replies.len());
    for reply in replies.iter() {
        let text = String::from_utf8_lossy(reply);
        let whole = (0..=ROUNDS)
            .any(|round| text == format!("round-{round} {}\n", "x".repeat(round * 7 + 1)));
        assert!(whole, "reply {text:?}");
    }
    assert_eq!(spawnd.log.count("exec_failed"), 0, "{}", spawnd.log.text());
    assert!(spawnd.no_zombies());
}
