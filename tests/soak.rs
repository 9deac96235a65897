//! The soak: many connections (some reset by their client at once) while
//! spawnd is reloaded every 50–100 ms with a program and a user that
//! change each time, and its children are SIGKILLed at random. At the end
//! no program may have run as another definition's user, and spawnd must
//! have leaked no descriptor, no zombie and no memory (RSS within 1 MB of
//! where it was after warming up).
//!
//! `SPAWND_SOAK_CONNECTIONS` sets the count: 3,000 by default (CI), and
//! 100,000 for the full run by hand:
//!
//! ```sh
//! SPAWND_SOAK_CONNECTIONS=100000 cargo test --release --test soak -- --nocapture
//! ```
//!
//! It runs inside a network namespace with only loopback, as root (the
//! user changes need it).

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use util::*;

/// A small xorshift generator: the soak needs variety, not quality.
struct Random(u64);

impl Random {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below.max(1)
    }
}

/// Version `v` of the service: odd ones run as nobody, even ones as root;
/// each program prints its version and the uid it runs as.
fn version_text(port: u16, version: u64) -> String {
    let user = if version % 2 == 1 {
        "user: nobody\n"
    } else {
        ""
    };
    format!(
        "listen: 127.0.0.1:{port}\nbacklog: 1024\nnice: 19\n{user}exec: [/bin/sh, -c, 'echo V{version} $(id -u)']\n"
    )
}

/// Checks one reply: `V<version> <uid>` with the uid that version asks
/// for. An empty or cut reply (a killed child, a reset) is not a finding.
fn wrong_user(reply: &str) -> Option<String> {
    let line = reply.lines().next()?;
    let (version, uid) = line.strip_prefix('V')?.split_once(' ')?;
    let (version, uid): (u64, u32) = (version.parse().ok()?, uid.trim().parse().ok()?);
    let wanted = if version % 2 == 1 { 65534 } else { 0 };
    (uid != wanted).then(|| line.to_string())
}

#[test]
fn soak_reloads_kills_and_resets_leave_nothing_behind() {
    require!(
        is_root() && has_command("unshare") && has_command("ip"),
        "the soak runs as root in a loopback-only network namespace"
    );
    let total: usize = std::env::var("SPAWND_SOAK_CONNECTIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3_000);
    let config = Config::new();
    config.private_control_socket();
    let port = 9000;
    let file = config.service("soak", &version_text(port, 0));
    let spawnd = start_in_netns(&config).expect("spawnd in a namespace");
    let pid = spawnd.pid();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let exchange = move || -> std::io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&addr, WAIT)?;
        stream.set_read_timeout(Some(WAIT))?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply)?;
        Ok(reply)
    };
    // Warm up, then take the figures everything is compared with.
    let warm = in_netns(&spawnd, move || {
        (0..300).filter(|_| exchange().is_ok()).count()
    });
    assert!(warm > 290, "warm-up: {warm} of 300 served");
    assert!(wait_until(|| children_of(pid).is_empty()));
    let fds_before = spawnd.open_fds();
    let rss_before = rss_kib(pid);

    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let wrong = Arc::new(Mutex::new(Vec::new()));
    let answered = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|seed| {
            let (done, wrong, answered) = (done.clone(), wrong.clone(), answered.clone());
            let netns = std::fs::File::open(format!("/proc/{pid}/ns/net")).unwrap();
            std::thread::spawn(move || {
                nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                let mut random = Random(0x9E37_79B9_7F4A_7C15 ^ (seed + 1));
                while done.fetch_add(1, Ordering::Relaxed) < total {
                    if random.next(4) == 0 {
                        // A client that resets its connection at once.
                        if let Ok(stream) = TcpStream::connect_timeout(&addr, WAIT) {
                            let _ = nix::sys::socket::setsockopt(
                                &stream,
                                nix::sys::socket::sockopt::Linger,
                                &libc::linger {
                                    l_onoff: 1,
                                    l_linger: 0,
                                },
                            );
                            let _ = (&stream).write(b"x");
                        }
                        continue;
                    }
                    if let Ok(reply) = exchange() {
                        if !reply.is_empty() {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        if let Some(line) = wrong_user(&reply) {
                            wrong.lock().unwrap().push(line);
                        }
                    }
                }
            })
        })
        .collect();
    let reloader = {
        let (stop, log) = (stop.clone(), spawnd.log.clone());
        let file = file.clone();
        std::thread::spawn(move || {
            let mut random = Random(0x1234_5678);
            let mut version = 0;
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50 + random.next(51)));
                version += 1;
                std::fs::write(&file, version_text(port, version)).unwrap();
                let before = log.count("reload_done");
                let _ = kill(Pid::from_raw(pid), Signal::SIGHUP);
                while log.count("reload_done") <= before && started.elapsed() < WAIT * 30 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            version
        })
    };
    let killer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut random = Random(0xDEAD_BEEF);
            let mut killed = 0;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5 + random.next(20)));
                let children = children_of(pid);
                if !children.is_empty() {
                    let (child, _) = children[random.next(children.len() as u64) as usize];
                    if kill(Pid::from_raw(child), Signal::SIGKILL).is_ok() {
                        killed += 1;
                    }
                }
            }
            killed
        })
    };
    for client in clients {
        client.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let reloads = reloader.join().unwrap();
    let killed = killer.join().unwrap();

    // Everything settles: children reaped, connections closed.
    assert!(wait_until(|| children_of(pid).is_empty()), "children left");
    assert!(spawnd.no_zombies());
    let fds_after = spawnd.open_fds();
    let rss_after = rss_kib(pid);
    let wrong = wrong.lock().unwrap();
    let answered = answered.load(Ordering::Relaxed);
    eprintln!(
        "soak: {total} connections, {answered} answered, {reloads} reloads, {killed} children killed; \
         descriptors {fds_before} -> {fds_after}, RSS {rss_before} -> {rss_after} KiB"
    );
    assert!(
        wrong.is_empty(),
        "programs ran as another definition's user: {wrong:?}"
    );
    assert!(
        reloads > 0 && answered > total / 4,
        "the soak did too little"
    );
    assert_eq!(fds_after, fds_before, "descriptors leaked");
    assert!(
        rss_after <= rss_before + 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    assert_eq!(
        spawnd.log.count("exec_failed"),
        0,
        "a child failed before its exec"
    );
}
