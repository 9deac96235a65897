//! Regression tests for the holes a security audit found (issue 19), one
//! per hole, each named after what must never happen again. SECURITY.md
//! points at them.

mod util;

use std::net::SocketAddr;

use nix::sys::signal::Signal;
use util::*;

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The pid in the first log line that has every one of `needles`.
fn pid_in_log(log: &Log, needles: &[&str]) -> i32 {
    log.expect(needles);
    let text = log.text();
    let line = text
        .lines()
        .find(|l| needles.iter().all(|n| l.contains(n)))
        .unwrap_or_default();
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("pid="))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"))
}

/// Whether process `pid` still runs spawnd's own program (has not exec'd).
fn still_spawnd(pid: i32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|exe| exe == std::path::Path::new(BIN).canonicalize().unwrap_or_default())
        .unwrap_or(false)
}

/// A connection's child that has read its credentials but not yet exec'd
/// (held there by the test hook) must exec the program of the definition
/// it was started with, as that definition's user, whatever reloads
/// happen meanwhile: one that changes its program and user, one that
/// moves the service table (hundreds of services added), one that removes
/// the service, and a stop. Before the fix the child read a plan the
/// reload had replaced in place: the new program ran as the old user
/// (`NEW uid=0`), or the child execed freed memory.
#[test]
fn a_reload_never_changes_what_a_starting_child_runs_or_as_whom() {
    let config = Config::new();
    config.private_control_socket();
    let port = free_port();
    let as_root = is_root();
    config.service(
        "starting",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/sh, -c, 'echo OLD uid=$(id -u)']\n"),
    );
    let spawnd = Spawnd::start_with(&config, &[], |command| {
        command.env("SPAWND_TEST_EXEC_DELAY_MS", "2500");
    });
    let client = std::thread::spawn(move || tcp_exchange(local(port), b""));
    let pid = pid_in_log(&spawnd.log, &["accept service=starting"]);

    // 1. Another program, another user.
    let user = if as_root { "user: nobody\n" } else { "" };
    config.service(
        "starting",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/sh, -c, 'echo NEW uid=$(id -u)']\n{user}"),
    );
    spawnd.reload();
    // 2. Hundreds of services more, so the service table is reallocated,
    // and yet another program.
    for n in 0..300 {
        config.service(
            &format!("filler{n}"),
            &format!(
                "listen: \"@spawnd-security-{}-{n}\"\nexec: [/bin/true]\n",
                std::process::id()
            ),
        );
    }
    config.service(
        "starting",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/sh, -c, 'echo THIRD uid=$(id -u)']\n"),
    );
    spawnd.reload();
    // 3. The service is removed altogether.
    config.remove_service("starting");
    spawnd.reload();
    assert!(
        still_spawnd(pid),
        "the child exec'd before the reloads were done: this machine is too slow for the test's window"
    );
    // 4. And spawnd is stopped: it waits for the child (shutdown grace).
    spawnd.signal(Signal::SIGTERM);
    let reply = client.join().unwrap().expect("the client gets its reply");
    let expected = format!("OLD uid={}\n", nix::unistd::geteuid());
    assert_eq!(
        String::from_utf8_lossy(&reply),
        expected,
        "{}",
        spawnd.log.text()
    );
    assert_eq!(spawnd.log.count("exec_failed"), 0, "{}", spawnd.log.text());
}
