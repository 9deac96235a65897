//! SIGTERM and SIGINT: a graceful stop that waits for children, then
//! escalates; a second signal skips the grace period.

mod util;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use util::*;

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
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
