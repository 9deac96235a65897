//! Access control, limits and process controls, with real clients on
//! loopback: 127.0.0.1 and 127.0.0.2 play two different clients.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use util::*;

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A program that records that it ran (a marker file), then prints `ran`.
fn marker_service(config: &Config, port: u16, extra: &str) -> std::path::PathBuf {
    let marker = config.path().join("ran");
    config.service(
        "guarded",
        &format!(
            "listen: [127.0.0.1:{port}, \"[::1]:{port}\"]\nexec: [/bin/sh, -c, 'echo $REMOTE_ADDR >> {}; echo ran']\n{extra}",
            marker.display()
        ),
    );
    marker
}

fn marker_lines(marker: &Path) -> Vec<String> {
    std::fs::read_to_string(marker)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn access_allow_and_deny_on_ipv4_and_ipv6() {
    let config = Config::new();
    let port = free_port();
    let marker = marker_service(
        &config,
        port,
        "access:\n  allow: [127.0.0.0/8]\n  deny: [127.0.0.2]\nbanner_fail: BANNER\n",
    );
    let banner = config.path().join("no.txt");
    std::fs::write(&banner, "go away\n").unwrap();
    let text = std::fs::read_to_string(config.path().join("services.d/guarded.yaml")).unwrap();
    std::fs::write(
        config.path().join("services.d/guarded.yaml"),
        text.replace("BANNER", &banner.display().to_string()),
    )
    .unwrap();
    let spawnd = Spawnd::start(&config);
    assert_eq!(read_from("127.0.0.1", port).unwrap(), "ran\n");
    assert_eq!(
        read_from("127.0.0.2", port).unwrap(),
        "go away\n",
        "deny wins over allow"
    );
    spawnd.log.expect(&[
        "refuse service=guarded",
        "peer=127.0.0.2:",
        "reason=access_deny",
    ]);
    // ::1 is not in the allow list.
    let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    assert_eq!(tcp_exchange(v6, b"").unwrap(), b"go away\n");
    spawnd.log.expect(&[
        "refuse service=guarded",
        "peer=[::1]:",
        "reason=access_allow",
    ]);
    assert_eq!(
        marker_lines(&marker),
        ["127.0.0.1"],
        "denied clients never start the program"
    );
}

#[test]
fn v4_mapped_clients_match_ipv4_rules() {
    let config = Config::new();
    let port = free_port();
    let marker = config.path().join("ran");
    config.service(
        "dual",
        &format!(
            "listen: \"*:{port}\"\nexec: [/bin/sh, -c, 'echo $REMOTE_ADDR >> {}; echo ran']\naccess: {{deny: [127.0.0.2]}}\n",
            marker.display()
        ),
    );
    let spawnd = Spawnd::start(&config);
    // On a dual-stack socket these arrive as ::ffff:127.0.0.x.
    assert_eq!(read_from("127.0.0.1", port).unwrap(), "ran\n");
    assert_eq!(read_from("127.0.0.2", port).unwrap(), "");
    spawnd.log.expect(&[
        "refuse service=dual",
        "peer=127.0.0.2:",
        "reason=access_deny",
    ]);
    assert_eq!(
        marker_lines(&marker),
        ["127.0.0.1"],
        "REMOTE_ADDR is the IPv4 form"
    );
}

#[test]
fn access_times_outside_the_window_refuse() {
    let config = Config::new();
    let port = free_port();
    // A one-minute window twelve hours from now can never be open now.
    let now = std::process::Command::new("date")
        .arg("+%H")
        .output()
        .unwrap();
    let hour: u32 = String::from_utf8_lossy(&now.stdout).trim().parse().unwrap();
    let closed = (hour + 12) % 24;
    let marker = marker_service(
        &config,
        port,
        &format!("access: {{times: [\"{closed:02}:00-{closed:02}:01\"]}}\n"),
    );
    let spawnd = Spawnd::start(&config);
    assert_eq!(read_from("127.0.0.1", port).unwrap(), "");
    spawnd
        .log
        .expect(&["refuse service=guarded", "reason=access_times"]);
    assert!(marker_lines(&marker).is_empty());
}

#[test]
fn datagram_access_rules_drop_refused_senders() {
    let config = Config::new();
    let port = free_port();
    config.service(
        "udp",
        &format!(
            "socket: dgram\nlisten: 127.0.0.1:{port}\naccess: {{deny: [127.0.0.2]}}\nexec: [/usr/bin/perl, -e, 'my $p = recv(STDIN, my $d, 100, 0); send(STDOUT, \"ok $d\", 0, $p);']\n"
        ),
    );
    let spawnd = Spawnd::start(&config);
    let denied = UdpSocket::bind("127.0.0.2:0").unwrap();
    denied.send_to(b"from-denied", local(port)).unwrap();
    spawnd.log.expect(&[
        "refuse service=udp",
        "peer=127.0.0.2:",
        "reason=access_deny",
    ]);
    let reply = udp_exchange(local(port), b"allowed").unwrap();
    assert_eq!(
        reply, b"ok allowed",
        "the denied datagram was dropped, not handed over"
    );
    // Datagrams are handled in order: once the allowed one's accept is
    // logged, a denied one started nothing if no other accept is there.
    spawnd
        .log
        .expect(&["accept service=udp", "peer=127.0.0.1:"]);
    assert_eq!(spawnd.log.count("accept service=udp"), 1);
}

/// A service whose children hold the connection until the client closes.
fn holding_service(config: &Config, port: u16, limits: &str) {
    config.service(
        "hold",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/sh, -c, 'echo hello; exec cat >/dev/null']\nlimits: {limits}\n"),
    );
}

fn hello(stream: &mut TcpStream) -> String {
    let mut line = [0u8; 6];
    stream
        .read_exact(&mut line)
        .expect("hello from the program");
    String::from_utf8_lossy(&line).into_owned()
}

#[test]
fn instances_refuse_over_the_limit() {
    let config = Config::new();
    let port = free_port();
    holding_service(&config, port, "{instances: 2}");
    let spawnd = Spawnd::start(&config);
    let mut first = connect_from("127.0.0.1", local(port)).unwrap();
    let mut second = connect_from("127.0.0.1", local(port)).unwrap();
    assert_eq!(hello(&mut first), "hello\n");
    assert_eq!(hello(&mut second), "hello\n");
    let third = connect_from("127.0.0.1", local(port)).unwrap();
    assert_eq!(read_all(third), "", "the third client is closed at once");
    spawnd
        .log
        .expect(&["refuse service=hold", "reason=instances"]);
    drop(first);
    spawnd.log.expect(&["exit service=hold"]);
    let mut fourth = connect_from("127.0.0.1", local(port)).unwrap();
    assert_eq!(
        hello(&mut fourth),
        "hello\n",
        "a slot is free again once a child is reaped"
    );
}

#[test]
fn instances_queue_until_a_child_exits() {
    let config = Config::new();
    let port = free_port();
    holding_service(&config, port, "{instances: 1, on_limit: queue}");
    let spawnd = Spawnd::start(&config);
    let mut first = connect_from("127.0.0.1", local(port)).unwrap();
    assert_eq!(hello(&mut first), "hello\n");
    let mut waiting = connect_from("127.0.0.1", local(port)).unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = waiting.read(&mut byte);
    assert!(
        matches!(&early, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut),
        "the second client waits in the backlog, got {early:?}"
    );
    drop(first);
    waiting.set_read_timeout(Some(WAIT)).unwrap();
    assert_eq!(
        hello(&mut waiting),
        "hello\n",
        "served once the first child exits"
    );
    assert_eq!(spawnd.log.count("reason=instances"), 0);
}

#[test]
fn per_source_limits_each_client_address() {
    let config = Config::new();
    let port = free_port();
    holding_service(&config, port, "{per_source: 1}");
    let spawnd = Spawnd::start(&config);
    let mut one = connect_from("127.0.0.1", local(port)).unwrap();
    assert_eq!(hello(&mut one), "hello\n");
    let again = connect_from("127.0.0.1", local(port)).unwrap();
    assert_eq!(read_all(again), "");
    spawnd.log.expect(&[
        "refuse service=hold",
        "peer=127.0.0.1:",
        "reason=per_source",
    ]);
    let mut other = connect_from("127.0.0.2", local(port)).unwrap();
    assert_eq!(
        hello(&mut other),
        "hello\n",
        "another address is not affected"
    );
}

#[test]
fn per_source_on_unix_sockets_counts_by_uid() {
    let config = Config::new();
    let path = config.path().join("u.sock");
    config.service(
        "unix",
        &format!("listen: {}\nexec: [/bin/sh, -c, 'echo hello; exec cat >/dev/null']\nlimits: {{per_source: 1}}\n", path.display()),
    );
    let spawnd = Spawnd::start(&config);
    let mut first = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let mut line = [0u8; 6];
    first.read_exact(&mut line).unwrap();
    let mut second = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let mut out = Vec::new();
    second.set_read_timeout(Some(WAIT)).unwrap();
    let _ = second.read_to_end(&mut out);
    assert!(out.is_empty());
    spawnd
        .log
        .expect(&["refuse service=unix", "peer=unix:uid=", "reason=per_source"]);
}

#[test]
fn rate_trips_a_pause_then_resumes() {
    let config = Config::new();
    let port = free_port();
    config.service(
        "rated",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/echo, ok]\nlimits: {{rate: 3/m, rate_pause: 1s}}\n"),
    );
    let spawnd = Spawnd::start(&config);
    for _ in 0..3 {
        assert_eq!(read_from("127.0.0.1", port).unwrap(), "ok\n");
    }
    let tripped = Instant::now();
    assert_eq!(
        read_from("127.0.0.1", port).unwrap(),
        "",
        "the bucket is empty"
    );
    assert_eq!(
        read_from("127.0.0.2", port).unwrap(),
        "",
        "the pause applies to everyone"
    );
    spawnd.log.expect(&["rate_pause service=rated"]);
    assert_eq!(
        spawnd.log.count("rate_pause service=rated"),
        1,
        "logged once per pause"
    );
    spawnd.log.expect(&["rate_resume service=rated"]);
    assert!(tripped.elapsed() >= Duration::from_millis(900));
    assert_eq!(
        read_from("127.0.0.1", port).unwrap(),
        "ok\n",
        "served again after the pause"
    );
    // The listener was never closed: connections during the pause were accepted and closed.
    assert_eq!(spawnd.log.count("reason=rate"), 2);
}

#[test]
fn per_source_rate_blocks_one_client_only() {
    let config = Config::new();
    let port = free_port();
    config.service(
        "rated",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/echo, ok]\nlimits: {{per_source_rate: 2/m, per_source_pause: 1m}}\n"),
    );
    let spawnd = Spawnd::start(&config);
    assert_eq!(read_from("127.0.0.1", port).unwrap(), "ok\n");
    assert_eq!(read_from("127.0.0.1", port).unwrap(), "ok\n");
    assert_eq!(read_from("127.0.0.1", port).unwrap(), "");
    spawnd
        .log
        .expect(&["source_pause service=rated", "source=127.0.0.1"]);
    assert_eq!(read_from("127.0.0.1", port).unwrap(), "", "still blocked");
    assert_eq!(
        read_from("127.0.0.2", port).unwrap(),
        "ok\n",
        "others are served"
    );
    assert_eq!(read_from("127.0.0.2", port).unwrap(), "ok\n");
}

#[test]
fn max_children_caps_all_services() {
    let config = Config::new();
    let (a, b) = (free_port(), free_port());
    config.global("max_children: 1\n");
    holding_service(&config, a, "{}");
    config.service(
        "other",
        &format!("listen: 127.0.0.1:{b}\nexec: [/bin/echo, ok]\n"),
    );
    let spawnd = Spawnd::start(&config);
    let mut held = connect_from("127.0.0.1", local(a)).unwrap();
    assert_eq!(hello(&mut held), "hello\n");
    assert_eq!(read_from("127.0.0.1", b).unwrap(), "");
    spawnd
        .log
        .expect(&["refuse service=other", "reason=max_children"]);
    drop(held);
    spawnd.log.expect(&["exit service=hold"]);
    assert_eq!(read_from("127.0.0.1", b).unwrap(), "ok\n");
}

#[test]
fn max_load_refuses_when_the_load_is_high() {
    let config = Config::new();
    let port = free_port();
    // No machine has a load average below zero... but max_load must be
    // positive, so use the smallest value: any load above it refuses.
    let load: f64 = std::fs::read_to_string("/proc/loadavg")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let high_enough = load > 0.02;
    require!(
        high_enough,
        "the load average is too low to exceed any max_load"
    );
    config.service(
        "loaded",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/echo, ok]\nlimits: {{max_load: 0.01}}\n"),
    );
    let spawnd = Spawnd::start(&config);
    assert_eq!(read_from("127.0.0.1", port).unwrap(), "");
    spawnd
        .log
        .expect(&["refuse service=loaded", "reason=max_load"]);
}

#[test]
fn timeout_kills_a_program_that_ignores_sigterm() {
    let config = Config::new();
    let port = free_port();
    config.service(
        "stubborn",
        &format!(
            "listen: 127.0.0.1:{port}\nexec: [/bin/sh, -c, 'trap \"\" TERM; echo started; sleep 30; echo survived']\nlimits: {{timeout: 300ms, kill_after: 300ms}}\n"
        ),
    );
    let spawnd = Spawnd::start(&config);
    let started = Instant::now();
    let out = read_from("127.0.0.1", port).unwrap();
    assert_eq!(out, "started\n", "the whole process group was killed");
    assert!(started.elapsed() < Duration::from_secs(20));
    spawnd
        .log
        .expect(&["timeout service=stubborn", "action=SIGTERM"]);
    spawnd.log.expect(&["timeout_kill service=stubborn"]);
    spawnd.log.expect(&["exit service=stubborn", "signal=KILL"]);
}

#[test]
fn resource_limits_are_visible_in_the_child() {
    let config = Config::new();
    let port = free_port();
    config.service(
        "limited",
        &format!(
            "listen: 127.0.0.1:{port}\nexec: [/bin/cat, /proc/self/limits]\nlimits: {{cpu: 7s, memory: 512M, files: 100, processes: 50, core: 0}}\n"
        ),
    );
    let _spawnd = Spawnd::start(&config);
    let out = read_from("127.0.0.1", port).unwrap();
    let row = |name: &str| -> Vec<String> {
        let line = out
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {out}"));
        line[name.len()..]
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(row("Max cpu time")[..2], ["7", "7"]);
    assert_eq!(row("Max address space")[..2], ["536870912", "536870912"]);
    assert_eq!(row("Max open files")[..2], ["100", "100"]);
    assert_eq!(row("Max processes")[..2], ["50", "50"]);
    assert_eq!(row("Max core file size")[..2], ["0", "0"]);
}

#[test]
fn nice_umask_and_workdir() {
    let config = Config::new();
    let port = free_port();
    let work = config.path().join("work");
    std::fs::create_dir(&work).unwrap();
    config.service(
        "controls",
        &format!(
            "listen: 127.0.0.1:{port}\nnice: 7\numask: \"027\"\nworkdir: {}\nexec: [/bin/sh, -c, 'umask; pwd; cut -d\" \" -f19 /proc/$$/stat']\n",
            work.display()
        ),
    );
    let _spawnd = Spawnd::start(&config);
    let out = read_from("127.0.0.1", port).unwrap();
    assert_eq!(out, format!("0027\n{}\n7\n", work.display()));
}

#[test]
fn stderr_lines_go_to_the_log() {
    let config = Config::new();
    let port = free_port();
    config.service(
        "noisy",
        &format!(
            "listen: 127.0.0.1:{port}\nstderr: log\nexec: [/bin/sh, -c, 'echo to-stdout; echo first line >&2; printf \"no newline\" >&2']\n"
        ),
    );
    let spawnd = Spawnd::start(&config);
    assert_eq!(
        read_from("127.0.0.1", port).unwrap(),
        "to-stdout\n",
        "stderr is not the socket"
    );
    spawnd
        .log
        .expect(&["stderr service=noisy", "pid=", "line=\"first line\""]);
    spawnd
        .log
        .expect(&["stderr service=noisy", "line=\"no newline\""]);
}

#[test]
fn stderr_floods_are_rate_limited_and_counted() {
    let config = Config::new();
    let port = free_port();
    config.service(
        "flood",
        &format!("listen: 127.0.0.1:{port}\nstderr: log\nexec: [/bin/sh, -c, 'i=0; while [ $i -lt 2000 ]; do echo line $i >&2; i=$((i+1)); done']\n"),
    );
    let spawnd = Spawnd::start(&config);
    let _ = read_from("127.0.0.1", port);
    spawnd.log.expect(&["stderr_dropped service=flood"]);
    let relayed = spawnd.log.count("stderr service=flood");
    assert!(relayed <= 200, "{relayed} lines relayed");
}

#[test]
fn banners_before_and_after_admission() {
    let config = Config::new();
    let port = free_port();
    for (name, text) in [
        ("b", "welcome\n"),
        ("ok", "admitted\n"),
        ("no", "refused\n"),
    ] {
        std::fs::write(config.path().join(name), text).unwrap();
    }
    let dir = config.path().display().to_string();
    config.service(
        "bannered",
        &format!(
            "listen: 127.0.0.1:{port}\nexec: [/bin/echo, program]\nbanner: {dir}/b\nbanner_success: {dir}/ok\nbanner_fail: {dir}/no\naccess: {{deny: [127.0.0.2]}}\n"
        ),
    );
    let _spawnd = Spawnd::start(&config);
    assert_eq!(
        read_from("127.0.0.1", port).unwrap(),
        "welcome\nadmitted\nprogram\n"
    );
    assert_eq!(read_from("127.0.0.2", port).unwrap(), "welcome\nrefused\n");
}

#[test]
fn limits_never_close_the_listening_socket() {
    let config = Config::new();
    let port = free_port();
    config.service("busy", &format!("listen: 127.0.0.1:{port}\nexec: [/bin/echo, ok]\nlimits: {{rate: 5/s, rate_pause: 200ms}}\n"));
    let spawnd = Spawnd::start(&config);
    let mut refused = 0;
    for _ in 0..50 {
        let mut stream =
            TcpStream::connect(local(port)).expect("the listener stays open during a pause");
        let _ = stream.write_all(b"x");
        if read_all(stream).is_empty() {
            refused += 1;
        }
    }
    assert!(refused > 0);
    spawnd.log.expect(&["rate_pause service=busy"]);
}

#[test]
fn changing_user_without_root_is_a_check_error() {
    require!(
        is_root() && has_command("setpriv"),
        "needs root and setpriv to run check as another user"
    );
    let config = Config::new();
    config.service(
        "as-root",
        "listen: 127.0.0.1:1\nuser: root\nexec: [/bin/true]\n",
    );
    let out = config.check_as_nobody();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "as-root.yaml:2:1: user: changing user or groups needs spawnd to run as root"
        ),
        "{stderr}"
    );
}

#[test]
fn chroot_confines_the_program() {
    require!(is_root(), "chroot needs root");
    let config = Config::new();
    let root = config.path().join("jail");
    // A minimal root: /bin/sh (dash) and the libraries it links against.
    let sh = std::fs::canonicalize("/bin/sh").unwrap();
    let ldd = std::process::Command::new("ldd").arg(&sh).output().unwrap();
    let mut files = vec![sh.clone()];
    for word in String::from_utf8_lossy(&ldd.stdout).split_whitespace() {
        if word.starts_with('/') {
            files.push(word.into());
        }
    }
    for file in &files {
        let target = root.join(file.strip_prefix("/").unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(file, &target).unwrap();
    }
    std::fs::create_dir_all(root.join("bin")).unwrap();
    if !root.join("bin/sh").exists() {
        std::fs::copy(&sh, root.join("bin/sh")).unwrap();
    }
    std::fs::write(root.join("inside.txt"), "").unwrap();
    let port = free_port();
    config.service(
        "jailed",
        &format!(
            "listen: 127.0.0.1:{port}\nchroot: {}\nexec: [/bin/sh, -c, 'echo $(pwd) /*']\n",
            root.display()
        ),
    );
    let _spawnd = Spawnd::start(&config);
    let out = read_from("127.0.0.1", port).unwrap();
    assert!(out.starts_with("/ "), "{out}");
    assert!(
        out.contains("/inside.txt"),
        "the program sees the jail as /: {out}"
    );
    assert!(!out.contains("/proc"), "{out}");
}
