//! The core: one child per connection, wait-mode hand-off, datagrams,
//! Unix sockets, what a child receives, reaping, and failures that must
//! not take spawnd down.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use util::*;

#[test]
fn stream_nowait_over_ipv4_and_ipv6() {
    let config = Config::new();
    let port = free_port();
    config.service(
        "echo",
        &format!("listen: [127.0.0.1:{port}, \"[::1]:{port}\"]\nexec: [/bin/cat]\n"),
    );
    let spawnd = Spawnd::start(&config);
    let v4 = tcp_exchange(SocketAddr::from(([127, 0, 0, 1], port)), b"over v4\n").unwrap();
    assert_eq!(v4, b"over v4\n");
    let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    assert_eq!(tcp_exchange(v6, b"over v6\n").unwrap(), b"over v6\n");
    spawnd
        .log
        .expect(&["accept service=echo", "peer=127.0.0.1:"]);
    spawnd.log.expect(&["accept service=echo", "peer=[::1]:"]);
    spawnd.log.expect(&["exit service=echo", "status=0"]);
}

/// The harness holds the ports it hands out until spawnd binds them: a
/// program binding without SO_REUSEADDR cannot take one meanwhile, and
/// spawnd still binds it, on one address or on all.
#[test]
fn a_free_port_is_held_until_spawnd_binds_it() {
    use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrIn};
    let port = free_port();
    let intruder = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    let address = SockaddrIn::new(127, 0, 0, 1, port);
    assert_eq!(
        socket::bind(std::os::fd::AsRawFd::as_raw_fd(&intruder), &address),
        Err(nix::errno::Errno::EADDRINUSE)
    );
    let config = Config::new();
    let wildcard = free_port();
    config.service(
        "one",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/echo, one]\n"),
    );
    config.service(
        "all",
        &format!("listen: \"*:{wildcard}\"\nexec: [/bin/echo, all]\n"),
    );
    let _spawnd = Spawnd::start(&config);
    assert_eq!(tcp_read(port), "one\n");
    assert_eq!(tcp_read(wildcard), "all\n");
}

#[test]
fn wildcard_listens_on_both_families() {
    let config = Config::new();
    let port = free_port();
    config.service(
        "any",
        &format!("listen: \"*:{port}\"\nexec: [/bin/echo, both]\n"),
    );
    let _spawnd = Spawnd::start(&config);
    assert_eq!(tcp_read(port), "both\n");
    let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    assert_eq!(tcp_exchange(v6, b"").unwrap(), b"both\n");
}

#[test]
fn stream_wait_hands_the_listener_to_one_child() {
    let config = Config::new();
    let port = free_port();
    config.accept_two_service("waiter", port);
    let spawnd = Spawnd::start(&config);
    let first = tcp_read(port);
    let second = tcp_read(port);
    assert!(first.starts_with("pid "), "{first:?}");
    assert_eq!(first, second, "both clients must be served by one child");
    spawnd.log.expect(&["exit service=waiter", "status=0"]);
    // The listener is re-armed after the child exits: a new child serves.
    let third = tcp_read(port);
    assert!(
        third.starts_with("pid ") && third != first,
        "{third:?} vs {first:?}"
    );
    assert!(spawnd.log.wait_for_n(&["accept service=waiter"], 2));
    assert_eq!(spawnd.log.count("accept service=waiter"), 2);
}

#[test]
fn dgram_wait_with_a_script() {
    let config = Config::new();
    let port = free_port();
    config.service(
        "upper",
        &format!(
            "socket: dgram\nlisten: 127.0.0.1:{port}\nexec: [/usr/bin/perl, -e, 'my $p = recv(STDIN, my $d, 65535, 0); send(STDOUT, uc($d) . \" $ENV{{UDPREMOTEIP}}\", 0, $p);']\n"
        ),
    );
    let spawnd = Spawnd::start(&config);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    for word in ["one", "two", "three"] {
        let reply = udp_exchange(addr, word.as_bytes()).expect("a reply");
        assert_eq!(
            String::from_utf8_lossy(&reply),
            format!("{} 127.0.0.1", word.to_uppercase())
        );
    }
    spawnd
        .log
        .expect(&["accept service=upper", "peer=127.0.0.1:"]);
}

#[test]
fn unix_stream_socket_replaces_a_stale_file() {
    let config = Config::new();
    let path = config.path().join("s.sock");
    // A stale socket file left behind by an earlier process.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    config.service(
        "unix",
        &format!(
            "listen: {}\nexec: [/bin/sh, -c, 'echo $PROTO']\n",
            path.display()
        ),
    );
    let spawnd = Spawnd::start(&config);
    let mut stream = UnixStream::connect(&path).unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    assert_eq!(out, "UNIX\n");
    spawnd
        .log
        .expect(&["accept service=unix", "peer=unix:uid="]);
    drop(spawnd);
    assert!(!path.exists(), "spawnd removes the socket file it created");
}

#[test]
fn unix_path_owned_by_something_else_is_an_error() {
    let config = Config::new();
    let path = config.path().join("not-a-socket");
    std::fs::write(&path, "data").unwrap();
    let port = free_port();
    config.service(
        "unix",
        &format!("listen: {}\nexec: [/bin/true]\n", path.display()),
    );
    config.service(
        "other",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/echo, fine]\n"),
    );
    let spawnd = Spawnd::start(&config);
    spawnd
        .log
        .expect(&["service_error service=unix", "not a socket"]);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "data",
        "the file is left alone"
    );
    assert_eq!(tcp_read(port), "fine\n");
}

#[test]
fn abstract_unix_socket() {
    let config = Config::new();
    let name = format!("spawnd-test-{}", std::process::id());
    config.service(
        "abs",
        &format!("listen: \"@{name}\"\nexec: [/bin/echo, abstract]\n"),
    );
    let _spawnd = Spawnd::start(&config);
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let mut stream = UnixStream::connect_addr(&addr).unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    assert_eq!(out, "abstract\n");
}

#[test]
fn child_environment_and_descriptors() {
    let config = Config::new();
    let port = free_port();
    config.service(
        "env",
        &format!(
            "listen: 127.0.0.1:{port}\nenv: {{GREETING: hello}}\npass_env: [SPAWND_TEST_PASSED]\n\
             exec: [/bin/sh, -c, 'env | sort; grep -E \"^Sig(Blk|Ign)\" /proc/self/status; read -r a b c d e sid rest < /proc/$$/stat; echo pid=$$ pgrp=$e sid=$sid; echo FDS; exec ls -1 /proc/self/fd']\n"
        ),
    );
    let spawnd = Spawnd::start_with(&config, &[], |c| {
        c.env("SPAWND_TEST_PASSED", "passed")
            .env("SPAWND_TEST_SECRET", "leaked");
        without_terminal(c);
    });
    let out = tcp_read(port);
    let lines: Vec<&str> = out.lines().collect();
    let env: Vec<&str> = lines.iter().copied().filter(|l| l.contains('=')).collect();
    for expected in [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "GREETING=hello",
        "SPAWND_TEST_PASSED=passed",
        "SPAWND_SERVICE=env",
        "PROTO=TCP",
        "TCPREMOTEIP=127.0.0.1",
        "TCPLOCALIP=127.0.0.1",
        &format!("TCPLOCALPORT={port}"),
        "REMOTE_ADDR=127.0.0.1",
    ] {
        assert!(env.contains(&expected), "missing {expected:?} in {env:?}");
    }
    assert!(
        env.iter().any(|l| l.starts_with("TCPREMOTEPORT=")),
        "{env:?}"
    );
    assert!(
        !out.contains("SPAWND_TEST_SECRET"),
        "spawnd's own environment leaked: {out}"
    );
    assert!(
        !out.contains("RUST_LOG"),
        "spawnd's own environment leaked: {out}"
    );
    // The program's descriptors, listed by ls exec'd in its place: 0, 1, 2
    // and 3, the directory ls itself opened to list them.
    let fds: Vec<&str> = lines
        .iter()
        .skip_while(|l| **l != "FDS")
        .skip(1)
        .copied()
        .collect();
    assert_eq!(fds, ["0", "1", "2", "3"], "{out}");
    assert!(
        out.contains("SigBlk:\t0000000000000000"),
        "signal mask must be empty: {out}"
    );
    assert!(
        out.contains("SigIgn:\t0000000000000000"),
        "no ignored signals: {out}"
    );
    let (pid, pgrp, sid) = process_ids(&out);
    assert_eq!(pgrp, pid, "the child leads its own process group: {out}");
    assert_ne!(
        sid, pid,
        "without a terminal to cut it off from, no session of its own: {out}"
    );
    drop(spawnd);
}

/// Runs spawnd in a session of its own, so it has no controlling terminal
/// even when the tests are started from one.
fn without_terminal(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A program that prints `pid= pgrp= sid= tty=` from its own /proc stat.
const PRINT_IDS: &str =
    "[/bin/sh, -c, 'read -r a b c d e sid tty rest < /proc/$$/stat; echo pid=$$ pgrp=$e sid=$sid tty=$tty ppid=$d']";

fn id_field(out: &str, key: &str) -> i64 {
    out.split_whitespace()
        .find_map(|field| field.strip_prefix(key)?.strip_prefix('='))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {out:?}"))
}

fn process_ids(out: &str) -> (i64, i64, i64) {
    (
        id_field(out, "pid"),
        id_field(out, "pgrp"),
        id_field(out, "sid"),
    )
}

#[test]
fn new_session_gives_the_child_a_session_of_its_own() {
    let config = Config::new();
    let port = free_port();
    config.service(
        "ids",
        &format!("listen: 127.0.0.1:{port}\nnew_session: true\nexec: {PRINT_IDS}\n"),
    );
    let _spawnd = Spawnd::start_with(&config, &[], without_terminal);
    let out = tcp_read(port);
    let (pid, pgrp, sid) = process_ids(&out);
    assert_eq!((pgrp, sid), (pid, pid), "{out}");
}

/// Under a terminal (a pty from script(1)), children always get a session of
/// their own, so they have no controlling terminal and cannot reach it.
#[test]
fn children_of_a_spawnd_on_a_terminal_are_cut_off_from_it() {
    use std::io::BufRead;
    let config = Config::new();
    let port = free_port();
    config.service(
        "ids",
        &format!("listen: 127.0.0.1:{port}\nexec: {PRINT_IDS}\n"),
    );
    let pid_file = config.path().join("spawnd.pid");
    let inner = format!(
        "exec {BIN} run -c {} --pid-file {}",
        config.path().display(),
        pid_file.display()
    );
    let mut script = std::process::Command::new("script")
        .args(["-qfec", &inner, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("script(1) from bsdutils");
    let mut lines = std::io::BufReader::new(script.stdout.take().unwrap()).lines();
    let ready = lines.find(|line| line.as_ref().is_ok_and(|l| l.contains("ready services=")));
    assert!(ready.is_some(), "spawnd under script(1) never got ready");
    let spawnd_pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    /// Stops the spawnd under script(1) however the test ends.
    struct Stop(i32, std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            // SAFETY: plain kill(2) of the spawnd this test started.
            unsafe { libc::kill(self.0, libc::SIGTERM) };
            let _ = self.1.wait();
        }
    }
    let _stop = Stop(spawnd_pid, script);
    let out = tcp_read(port);
    let (pid, pgrp, sid) = process_ids(&out);
    assert_eq!(id_field(&out, "ppid"), i64::from(spawnd_pid), "{out}");
    assert_eq!((pgrp, sid), (pid, pid), "{out}");
    assert_eq!(id_field(&out, "tty"), 0, "the child has no terminal: {out}");
}

#[test]
fn no_descriptor_of_spawnd_leaks_into_children_with_many_listeners() {
    let config = Config::new();
    let mut ports = Vec::new();
    for index in 0..200 {
        let port = free_port();
        if ports.contains(&port) {
            continue;
        }
        ports.push(port);
        config.service(
            &format!("s{index}"),
            &format!("listen: 127.0.0.1:{port}\nexec: [/bin/ls, /proc/self/fd]\n"),
        );
    }
    let spawnd = Spawnd::start(&config);
    assert!(spawnd.open_fds() > 200);
    let listing = tcp_read(ports[150]);
    // ls itself opens /proc/self/fd (fd 3) to list it.
    assert_eq!(
        listing.split_whitespace().collect::<Vec<_>>(),
        ["0", "1", "2", "3"],
        "{listing}"
    );
}

#[test]
fn user_and_group_are_switched_when_root() {
    require!(is_root(), "needs root to switch users");
    let config = Config::new();
    let port = free_port();
    config.service(
        "nobody",
        &format!("listen: 127.0.0.1:{port}\nuser: nobody\nexec: [/bin/grep, -E, '^(Uid|Gid|Groups):', /proc/self/status]\n"),
    );
    let _spawnd = Spawnd::start(&config);
    let out = tcp_read(port);
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let (uid, gid) = (nobody.uid.as_raw(), nobody.gid.as_raw());
    assert!(
        out.contains(&format!("Uid:\t{uid}\t{uid}\t{uid}\t{uid}")),
        "{out}"
    );
    assert!(
        out.contains(&format!("Gid:\t{gid}\t{gid}\t{gid}\t{gid}")),
        "{out}"
    );
    let groups = out.lines().find(|l| l.starts_with("Groups:")).unwrap();
    assert!(
        !groups.split_whitespace().skip(1).any(|g| g == "0"),
        "root group kept: {groups}"
    );
}

#[test]
fn a_missing_program_does_not_take_spawnd_down() {
    let config = Config::new();
    let (gone_port, ok_port) = (free_port(), free_port());
    let program = config.script("vanishing", "#!/bin/sh\necho here\n");
    config.service(
        "gone",
        &format!(
            "listen: 127.0.0.1:{gone_port}\nexec: [{}, --flag]\n",
            program.display()
        ),
    );
    config.service(
        "ok",
        &format!("listen: 127.0.0.1:{ok_port}\nexec: [/bin/echo, ok]\n"),
    );
    let spawnd = Spawnd::start(&config);
    std::fs::remove_file(&program).unwrap();
    assert!(refused_at_once(gone_port), "the client is closed");
    spawnd.log.expect(&[
        "exec_failed service=gone",
        &format!("program=\"{} --flag\"", program.display()),
        "No such file or directory",
    ]);
    assert_eq!(tcp_read(ok_port), "ok\n");
    assert!(refused_at_once(gone_port));
    assert_eq!(tcp_read(ok_port), "ok\n");
    assert!(spawnd.no_zombies());
}

#[test]
fn a_missing_program_is_reported_by_check_and_left_out_by_run() {
    let config = Config::new();
    let ok_port = free_port();
    config.service(
        "gone",
        &format!(
            "listen: 127.0.0.1:{}\nexec: [/nonexistent/program]\n",
            free_port()
        ),
    );
    config.service(
        "ok",
        &format!("listen: 127.0.0.1:{ok_port}\nexec: [/bin/echo, ok]\n"),
    );
    let out = config.check();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("gone.yaml:2:1: exec: program /nonexistent/program"),
        "{stderr}"
    );
    let spawnd = Spawnd::start(&config);
    spawnd.log.expect(&["config_error", "gone.yaml"]);
    assert_eq!(tcp_read(ok_port), "ok\n");
}

#[test]
fn crashing_children_leave_no_zombie() {
    let config = Config::new();
    let port = free_port();
    config.service(
        "crash",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/sh, -c, 'kill -SEGV $$']\n"),
    );
    let spawnd = Spawnd::start(&config);
    let fds_before = spawnd.open_fds();
    let mut clients = Vec::new();
    for _ in 0..500 {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => clients.push(stream),
            Err(e) => panic!("connect failed: {e}"),
        }
        if clients.len() >= 50 {
            clients.clear();
        }
    }
    drop(clients);
    assert!(
        spawnd
            .log
            .wait_for_n(&["exit service=crash", "signal=SEGV"], 500),
        "{} crashes logged",
        spawnd.log.count("signal=SEGV")
    );
    assert!(spawnd.no_zombies());
    assert!(
        wait_until(|| spawnd.open_fds() == fds_before),
        "descriptors leaked"
    );
}

#[test]
fn sigterm_stops_listening_and_exits_zero() {
    let config = Config::new();
    let port = free_port();
    config.service(
        "x",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/echo, x]\n"),
    );
    let mut spawnd = Spawnd::start(&config);
    assert_eq!(tcp_read(port), "x\n");
    spawnd.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(spawnd.wait_exit(), Some(0));
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the port is closed"
    );
}

#[test]
fn bind_failure_leaves_that_service_out() {
    let config = Config::new();
    // The kernel picks the port the holder keeps busy.
    let holder = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let (taken, ok) = (holder.local_addr().unwrap().port(), free_port());
    config.service(
        "taken",
        &format!("listen: 127.0.0.1:{taken}\nexec: [/bin/true]\n"),
    );
    config.service(
        "ok",
        &format!("listen: 127.0.0.1:{ok}\nexec: [/bin/echo, ok]\n"),
    );
    let spawnd = Spawnd::start(&config);
    spawnd.log.expect(&[
        "service_error service=taken",
        &format!("127.0.0.1:{taken}"),
        "Address already in use",
    ]);
    assert_eq!(tcp_read(ok), "ok\n");
}

#[test]
fn nothing_bindable_is_a_runtime_failure() {
    let config = Config::new();
    let holder = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let taken = holder.local_addr().unwrap().port();
    config.service(
        "taken",
        &format!("listen: 127.0.0.1:{taken}\nexec: [/bin/true]\n"),
    );
    let mut spawnd = Spawnd::spawn(
        {
            let mut c = std::process::Command::new(BIN);
            c.arg("run").arg("-c").arg(config.path());
            c
        },
        |_| {},
    );
    assert_eq!(spawnd.wait_exit(), Some(3));
    spawnd.log.expect(&["Address already in use"]);
}

#[test]
fn idle_spawnd_does_not_wake_up() {
    let config = Config::new();
    let port = free_port();
    config.service(
        "x",
        &format!(
            "listen: 127.0.0.1:{port}\nexec: [/bin/echo, x]\nlimits: {{timeout: 1s, rate: 10/s}}\n"
        ),
    );
    let spawnd = Spawnd::start(&config);
    assert_eq!(tcp_read(port), "x\n");
    spawnd.log.expect(&["exit service=x"]);
    let switches = || -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", spawnd.pid())).unwrap();
        status
            .lines()
            .filter(|l| l.contains("ctxt_switches"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum()
    };
    // Once spawnd sleeps in epoll_wait again, nothing may wake it.
    let wchan = format!("/proc/{}/wchan", spawnd.pid());
    assert!(wait_until(
        || std::fs::read_to_string(&wchan).is_ok_and(|w| w == "do_epoll_wait")
    ));
    let before = switches();
    std::thread::sleep(Duration::from_millis(1500));
    // The finished child's timeout is not waited for either.
    assert_eq!(switches() - before, 0, "spawnd woke up while idle");
}

#[test]
fn many_connections_at_once_are_all_served() {
    let config = Config::new();
    let port = free_port();
    config.service(
        "echo",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/cat]\nbacklog: 1024\n"),
    );
    let spawnd = Spawnd::start(&config);
    let mut streams: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    for (index, stream) in streams.iter_mut().enumerate() {
        stream.write_all(format!("{index}\n").as_bytes()).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
    }
    for (index, stream) in streams.iter_mut().enumerate() {
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        assert_eq!(out, format!("{index}\n"));
    }
    assert!(spawnd.log.wait_for_n(&["exit service=echo"], 200));
    assert!(spawnd.no_zombies());
}

/// At the default level a connection is one `accept` line; its `exit` line
/// joins it only when the program failed.
#[test]
fn clean_exits_are_logged_only_at_debug_level() {
    let config = Config::new();
    let (ok, fail) = (free_port(), free_port());
    config.service(
        "ok",
        &format!("listen: 127.0.0.1:{ok}\nexec: [/bin/true]\n"),
    );
    config.service(
        "fail",
        &format!("listen: 127.0.0.1:{fail}\nexec: [/bin/false]\n"),
    );
    let mut spawnd = Spawnd::start_with(&config, &[], |c| {
        c.env("RUST_LOG", "info");
    });
    assert_eq!(tcp_read(ok), "");
    assert_eq!(tcp_read(fail), "");
    spawnd
        .log
        .expect(&["info exit service=fail", "status=1", "duration="]);
    // A graceful stop reaps (and would log) every child before spawnd exits.
    spawnd.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(spawnd.wait_exit(), Some(0));
    assert!(spawnd.log.wait_for(&["info stopped"]));
    let log = spawnd.log.text();
    assert_eq!(spawnd.log.count("accept service=ok"), 1, "{log}");
    assert_eq!(spawnd.log.count("accept service=fail"), 1, "{log}");
    assert_eq!(spawnd.log.count("exit service=ok"), 0, "{log}");
}

/// A program that closes its connection and goes on running must end the
/// client's reply there, not when it exits. spawnd, which starts a
/// connection's program without waiting for its exec, must close its own
/// copy of the connection, whether clone copied its descriptor table for
/// the child or, with many descriptors open (`extra` idle services), the
/// child shares it and is sent the connection.
fn a_connection_ends_when_the_program_closes_it(extra: usize) {
    let config = Config::new();
    let port = free_port();
    config.service(
        "lingers",
        &format!(
            "listen: 127.0.0.1:{port}\nexec: [/bin/sh, -c, 'echo done; exec 0<&- 1>&- 2>&-; exec sleep 600']\n"
        ),
    );
    for index in 0..extra {
        config.service(
            &format!("idle{index}"),
            &format!("listen: 127.0.0.1:{}\nexec: [/bin/true]\n", free_port()),
        );
    }
    let spawnd = Spawnd::start(&config);
    // TCP sockets only: spawnd makes Unix socket pairs to hand connections
    // over on as it needs them.
    let sockets = || {
        let unix = std::fs::read_to_string("/proc/net/unix").unwrap();
        let unix_inodes: std::collections::HashSet<&str> = unix
            .lines()
            .skip(1)
            .filter_map(|line| line.split_whitespace().nth(6))
            .collect();
        std::fs::read_dir(format!("/proc/{}/fd", spawnd.pid()))
            .unwrap()
            .flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .filter(|target| {
                let target = target.to_string_lossy();
                target
                    .strip_prefix("socket:[")
                    .is_some_and(|inode| !unix_inodes.contains(inode.trim_end_matches(']')))
            })
            .count()
    };
    let sockets_at_start = sockets();
    for _ in 0..20 {
        // Reads to EOF: only returns once every copy of the connection is closed.
        assert_eq!(tcp_read(port), "done\n");
    }
    let lingering = children_of(spawnd.pid())
        .iter()
        .filter(|(_, state)| *state != 'Z')
        .count();
    assert_eq!(
        lingering, 20,
        "every program still runs after its client saw EOF"
    );
    // No connection is left open in spawnd either.
    assert_eq!(sockets(), sockets_at_start);
}

#[test]
fn a_connection_ends_when_the_program_closes_it_not_when_it_exits() {
    a_connection_ends_when_the_program_closes_it(0);
}

#[test]
fn a_connection_ends_when_the_program_closes_it_with_many_services() {
    a_connection_ends_when_the_program_closes_it(80);
}

/// With many descriptors open each connection is sent to its child over
/// the launch entry's own socket pair: clients of many services at once
/// must each get their own service's reply, every time.
#[test]
fn clients_of_many_services_at_once_each_reach_their_own() {
    const SERVICES: usize = 80;
    let config = Config::new();
    let ports: Vec<u16> = (0..SERVICES).map(|_| free_port()).collect();
    for (index, port) in ports.iter().enumerate() {
        config.service(
            &format!("s{index}"),
            &format!("listen: 127.0.0.1:{port}\nexec: [/bin/echo, s{index}]\nbacklog: 256\n"),
        );
    }
    let spawnd = Spawnd::start(&config);
    let clients: Vec<_> = (0..8)
        .map(|thread| {
            let ports = ports.clone();
            std::thread::spawn(move || {
                for round in 0..40 {
                    let index = (thread * 37 + round * 11) % SERVICES;
                    assert_eq!(tcp_read(ports[index]), format!("s{index}\n"));
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    // A reply can reach the client before the harness has read spawnd's
    // line for it: wait for the lines, then count them exactly.
    assert!(spawnd.log.wait_for_n(&["accept service="], 320));
    assert_eq!(spawnd.log.count("accept service="), 320);
    assert!(spawnd.no_zombies());
}

/// Many clients at once: more children between clone and exec than spawnd
/// has launch entries for, so some wait as vfork does; every one is served.
#[test]
fn a_burst_beyond_the_launch_entries_is_served_in_full() {
    let config = Config::new();
    let port = free_port();
    config.service(
        "burst",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/echo, burst]\nbacklog: 1024\n"),
    );
    let spawnd = Spawnd::start(&config);
    let clients: Vec<_> = (0..96)
        .map(|_| std::thread::spawn(move || tcp_read(port)))
        .collect();
    for client in clients {
        assert_eq!(client.join().unwrap(), "burst\n");
    }
    // A reply can reach the client before the harness has read spawnd's
    // line for it: wait for the lines, then count them exactly.
    assert!(spawnd.log.wait_for_n(&["accept service=burst"], 96));
    assert_eq!(spawnd.log.count("accept service=burst"), 96);
    assert!(spawnd.no_zombies());
}
