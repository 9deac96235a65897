//! The systemd protocols: readiness notification (`READY=1`, `RELOADING=1`,
//! `STOPPING=1`), socket activation of spawnd itself, and `pass: listen_fds`
//! for the programs it starts.

mod util;

use std::os::unix::net::UnixDatagram;

use nix::sys::signal::Signal;
use util::*;

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
