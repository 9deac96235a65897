//! Faults, floods and hostile input: spawnd keeps serving, does not spin,
//! and leaks nothing.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use util::*;

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// User plus system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Ticks of CPU spawnd uses over `window` while nothing should happen: a
/// measurement window, not a synchronisation.
fn cpu_over(pid: i32, window: Duration) -> u64 {
    let before = cpu_ticks(pid);
    std::thread::sleep(window);
    cpu_ticks(pid) - before
}

#[test]
fn fd_exhaustion_pauses_the_listener_without_spinning() {
    let config = Config::new();
    let port = free_port();
    config.private_control_socket();
    config.service(
        "echo",
        &format!("listen: 127.0.0.1:{port}\ninternal: echo\nbacklog: 256\n"),
    );
    let spawnd = Spawnd::start_with(&config, &[], |command| limit_files(command, 40));
    // Every echo connection holds a descriptor in spawnd.
    let mut clients: Vec<TcpStream> = (0..60)
        .map(|_| TcpStream::connect(local(port)).unwrap())
        .collect();
    spawnd
        .log
        .expect(&["accept_paused service=echo", "Too many open files"]);
    let ticks = cpu_over(spawnd.pid(), Duration::from_secs(2));
    assert!(
        ticks <= 20,
        "spawnd used {ticks} ticks of CPU while out of descriptors"
    );
    assert_eq!(
        spawnd.log.count("accept_paused"),
        1,
        "logged once per episode"
    );
    // Free descriptors: the waiting clients are served.
    let last = clients.pop().unwrap();
    clients.truncate(10);
    let mut last = last;
    last.set_read_timeout(Some(WAIT)).unwrap();
    last.write_all(b"late\n").unwrap();
    let mut echoed = [0u8; 5];
    last.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"late\n");
}

#[test]
fn process_exhaustion_closes_the_client_and_recovers() {
    process_exhaustion(0, 65534);
}

/// With many descriptors open a connection is sent to its child before
/// the clone: when the clone fails, that copy must be closed too, and must
/// not go to the next child.
#[test]
fn process_exhaustion_closes_the_client_and_recovers_with_many_services() {
    process_exhaustion(80, 65533);
}

/// Runs spawnd as `uid` (its process limit counts every process of the
/// user, so tests running at once need users of their own).
fn process_exhaustion(extra: usize, uid: u32) {
    require!(
        is_root() && has_command("setpriv"),
        "needs root and setpriv"
    );
    let config = Config::new();
    let port = free_port();
    for index in 0..extra {
        config.service(
            &format!("idle{index}"),
            &format!("listen: 127.0.0.1:{}\nexec: [/bin/true]\n", free_port()),
        );
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(config.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    config.global(&format!(
        "control_socket: /tmp/spawnd-faults-{}-{uid}/c.sock\n",
        std::process::id()
    ));
    config.service(
        "hold",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/sh, -c, 'echo hi; exec cat >/dev/null']\n"),
    );
    let mut command = std::process::Command::new("setpriv");
    command
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
            BIN,
            "run",
            "-c",
        ])
        .arg(config.path());
    // SAFETY: setrlimit is async-signal-safe. spawnd itself is the one
    // process of `uid` allowed besides one child.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 2,
                rlim_max: 2,
            };
            if libc::setrlimit(libc::RLIMIT_NPROC, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let spawnd = Spawnd::spawn(command, |_| {});
    spawnd
        .log
        .expect(&[&format!("ready services={}", extra + 1)]);
    let mut first = TcpStream::connect(local(port)).unwrap();
    let mut hi = [0u8; 3];
    first.read_exact(&mut hi).unwrap();
    // The second child cannot be created: the client is closed.
    assert!(refused_at_once(port));
    spawnd.log.expect(&[
        "spawn_failed service=hold",
        "Resource temporarily unavailable",
    ]);
    let ticks = cpu_over(spawnd.pid(), Duration::from_secs(1));
    assert!(ticks <= 10, "spawnd used {ticks} ticks after a failed fork");
    // A process slot frees up when the first child exits.
    drop(first);
    spawnd.log.expect(&["exit service=hold"]);
    let mut second = TcpStream::connect(local(port)).unwrap();
    second.set_read_timeout(Some(WAIT)).unwrap();
    second.read_exact(&mut hi).unwrap();
    assert_eq!(&hi, b"hi\n", "service resumes");
}

/// With many descriptors open a connection is sent to its child on the
/// launch entry's socket pair. When it cannot be (here spawnd's end of the
/// pair finds no descriptor number left), the child is started the
/// waited-for way and gets the connection all the same.
#[test]
fn a_connection_that_cannot_be_sent_is_served_by_a_waited_spawn() {
    let config = Config::new();
    config.private_control_socket();
    for index in 0..80 {
        config.service(
            &format!("idle{index}"),
            &format!("listen: 127.0.0.1:{}\nexec: [/bin/true]\n", free_port()),
        );
    }
    let port = free_port();
    config.service(
        "hello",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/echo, hi]\n"),
    );
    // A soft limit equal to the hard one: spawnd leaves it as it is, and
    // has none to give back to its children.
    let spawnd = Spawnd::start_with(&config, &[], |command| limit_files(command, 4096));
    spawnd.log.expect(&["ready services=81 failed=0"]);
    // spawnd's own descriptors start with its signalfd, above the launch
    // slots; the first number free after it is where spawnd's end of a
    // socket pair would go. Allow no number from there on.
    let open = open_fd_numbers(spawnd.pid());
    let signals = open
        .iter()
        .copied()
        .find(|fd| {
            std::fs::read_link(format!("/proc/{}/fd/{fd}", spawnd.pid()))
                .is_ok_and(|target| target.to_string_lossy().contains("signalfd"))
        })
        .expect("spawnd's signalfd");
    let limit = (signals..).find(|fd| !open.contains(fd)).unwrap();
    let rlimit = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: prlimit only reads the struct; the result is checked.
    let lowered = unsafe {
        libc::prlimit(
            spawnd.pid(),
            libc::RLIMIT_NOFILE,
            &rlimit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(lowered, 0, "prlimit: {}", std::io::Error::last_os_error());

    assert_eq!(tcp_read(port), "hi\n");
    spawnd
        .log
        .expect(&["handoff_failed", "Too many open files"]);
    assert_eq!(tcp_read(port), "hi\n", "and the next client too");
    assert!(spawnd.log.wait_for_n(&["exit service=hello"], 2));
    assert_eq!(open_fd_numbers(spawnd.pid()), open, "nothing left open");
}

/// Runs the command with soft and hard RLIMIT_NOFILE at `limit`.
fn open_fd_numbers(pid: i32) -> std::collections::BTreeSet<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

#[test]
fn twenty_thousand_connections_leak_nothing() {
    let config = Config::new();
    let port = free_port();
    config.private_control_socket();
    config.service(
        "quick",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/true]\nbacklog: 1024\n"),
    );
    // Warnings only: 40,000 log lines would measure the test's log reader.
    let mut command = std::process::Command::new(BIN);
    command
        .args(["--log-level", "warn", "run", "-c"])
        .arg(config.path());
    let spawnd = Spawnd::spawn(command, |_| {});
    assert!(
        wait_until(|| tcp_exchange(local(port), b"").is_ok()),
        "spawnd is listening"
    );
    // Warm up so the slab and tables reach their working size.
    for _ in 0..200 {
        let _ = tcp_exchange(local(port), b"");
    }
    assert!(wait_until(|| children_of(spawnd.pid()).is_empty()));
    let (fds, rss) = (spawnd.open_fds(), rss_kib(spawnd.pid()));
    let done = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let done = done.clone();
            std::thread::spawn(move || {
                for _ in 0..2_500 {
                    if tcp_exchange(local(port), b"").is_ok() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    assert_eq!(done.load(Ordering::Relaxed), 20_000);
    assert!(
        wait_until(|| children_of(spawnd.pid()).is_empty()),
        "children left: {:?}",
        children_of(spawnd.pid())
    );
    assert!(
        wait_until(|| spawnd.open_fds() == fds),
        "{} descriptors, {fds} before",
        spawnd.open_fds()
    );
    let grown = rss_kib(spawnd.pid()).saturating_sub(rss);
    assert!(grown < 1024, "RSS grew by {grown} KiB");
}

#[test]
fn a_child_that_closes_its_output_but_keeps_running() {
    let config = Config::new();
    let port = free_port();
    config.service(
        "quiet",
        &format!(
            "listen: 127.0.0.1:{port}\nstderr: \"null\"\nexec: [/bin/sh, -c, 'echo bye; exec >&- <&-; sleep 30']\nlimits: {{instances: 1, timeout: 2s, kill_after: 100ms}}\n"
        ),
    );
    let spawnd = Spawnd::start(&config);
    assert_eq!(
        tcp_read(port),
        "bye\n",
        "the client sees EOF while the child runs"
    );
    assert!(refused_at_once(port), "the running child still counts");
    spawnd.log.expect(&["exit service=quiet", "signal=TERM"]);
    assert_eq!(tcp_read(port), "bye\n");
}

#[test]
fn grandchildren_are_not_spawnds_and_do_not_hold_the_listener() {
    let config = Config::new();
    let port = free_port();
    let pid_file = config.path().join("grandchild.pid");
    config.service(
        "forker",
        &format!(
            "listen: 127.0.0.1:{port}\nexec: [/bin/sh, -c, '(sleep 30 </dev/null >/dev/null 2>&1 & echo $! > {}); echo done']\n",
            pid_file.display()
        ),
    );
    let mut spawnd = Spawnd::start(&config);
    assert_eq!(tcp_read(port), "done\n");
    spawnd.log.expect(&["exit service=forker", "status=0"]);
    let grandchild: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!children_of(spawnd.pid())
        .iter()
        .any(|(pid, _)| *pid == grandchild));
    assert!(spawnd.no_zombies());
    let sockets = std::fs::read_dir(format!("/proc/{grandchild}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count();
    assert_eq!(sockets, 0, "the grandchild holds no socket of spawnd's");
    spawnd.signal(Signal::SIGTERM);
    assert_eq!(spawnd.wait_exit(), Some(0));
    // The port can be bound again at once: nobody else holds the listener.
    assert!(std::net::TcpListener::bind(local(port)).is_ok());
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(grandchild), Signal::SIGKILL);
}

#[test]
fn a_burst_of_signals_under_load() {
    let config = Config::new();
    let port = free_port();
    config.private_control_socket();
    config.service(
        "steady",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/echo, ok]\nbacklog: 1024\n"),
    );
    let spawnd = Spawnd::start(&config);
    let clients = ClientLoop::start(4, port, b"ok\n");
    assert!(wait_until(|| clients.served() >= 50), "load is running");
    let pid = nix::unistd::Pid::from_raw(spawnd.pid());
    for round in 0..1_000 {
        let signal = if round % 2 == 0 {
            Signal::SIGHUP
        } else {
            Signal::SIGCHLD
        };
        nix::sys::signal::kill(pid, signal).unwrap();
    }
    // Keep the load on while the coalesced reloads run, then stop.
    let after_burst = clients.served();
    assert!(wait_until(|| clients.served() >= after_burst + 200));
    let (served, failures) = clients.stop();
    assert!(spawnd.log.count("reload_done") >= 1);
    assert_eq!(failures, 0, "{served} served");
    assert!(served > 0);
    assert_eq!(tcp_read(port), "ok\n");
    assert!(spawnd.no_zombies());
}

#[test]
fn udp_floods_keep_memory_flat() {
    let config = Config::new();
    let (waiting, echo) = (free_port(), free_port());
    config.private_control_socket();
    config.service(
        "wait-udp",
        &format!("socket: dgram\nlisten: 127.0.0.1:{waiting}\nexec: [/usr/bin/perl, -e, 'recv(STDIN, my $d, 65535, 0);']\n"),
    );
    config.service(
        "echo-udp",
        &format!("socket: dgram\nlisten: 127.0.0.1:{echo}\ninternal: echo\n"),
    );
    let spawnd = Spawnd::start(&config);
    let before = rss_kib(spawnd.pid());
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let payload = [b'x'; 1200];
    for _ in 0..30_000 {
        let _ = sender.send_to(&payload, local(waiting));
        let _ = sender.send_to(&payload, local(echo));
    }
    // Both services still answer afterwards.
    assert!(wait_until(
        || udp_exchange(local(echo), b"still here").is_ok_and(|r| r == b"still here")
    ));
    let grown = rss_kib(spawnd.pid()).saturating_sub(before);
    assert!(grown < 2048, "RSS grew by {grown} KiB under a UDP flood");
    assert!(spawnd.log.count("spawn_failed") == 0);
}

#[test]
fn strict_configuration_refuses_files_others_can_write() {
    require!(
        is_root(),
        "strict configuration applies when spawnd runs as root"
    );
    use std::os::unix::fs::PermissionsExt;
    let config = Config::new();
    let writable = config.service("writable", "listen: 127.0.0.1:1\nexec: [/bin/true]\n");
    std::fs::set_permissions(&writable, std::fs::Permissions::from_mode(0o666)).unwrap();
    let foreign = config.service("foreign", "listen: 127.0.0.1:2\nexec: [/bin/true]\n");
    std::os::unix::fs::chown(&foreign, Some(65534), None).unwrap();
    config.service("fine", "listen: 127.0.0.1:3\nexec: [/bin/true]\n");
    let out = config.check();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("writable.yaml: refused: mode 0666 lets others write it"),
        "{stderr}"
    );
    assert!(
        stderr.contains("foreign.yaml: refused: owned by uid 65534"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok fine"));
    let insecure = std::process::Command::new(BIN)
        .args(["check", "--insecure-config", "-c"])
        .arg(config.path())
        .output()
        .unwrap();
    assert_eq!(insecure.status.code(), Some(0), "{insecure:?}");
    // A world-writable services.d refuses every file in it.
    std::fs::set_permissions(
        config.path().join("services.d"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    let out = config.check();
    assert!(String::from_utf8_lossy(&out.stderr).contains("services.d: refused: mode 0777"));
}

#[test]
fn thousands_of_service_files_check_in_bounded_time() {
    let config = Config::new();
    for index in 0..3_000 {
        config.service(
            &format!("s{index:04}"),
            &format!("listen: 127.0.0.1:{}\nexec: [/bin/true]\n", 20_000 + index),
        );
    }
    let started = std::time::Instant::now();
    let out = config.check();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("3000 services, 0 errors"));
    // Not a speed assertion: a guard against a quadratic blow-up going unnoticed.
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn an_unreadable_file_is_an_error_for_that_file() {
    require!(
        is_root() && has_command("setpriv"),
        "needs root and setpriv to check as another user"
    );
    use std::os::unix::fs::PermissionsExt;
    let config = Config::new();
    let secret = config.service("secret", "listen: 127.0.0.1:1\nexec: [/bin/true]\n");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    config.service("open", "listen: 127.0.0.1:2\nexec: [/bin/true]\n");
    let out = config.check_as_nobody();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("secret.yaml: cannot read: Permission denied"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok open"));
}

#[test]
fn unix_sockets_under_run_default_to_0660_and_honour_unix_mode() {
    require!(
        is_root() && std::path::Path::new("/run").is_dir(),
        "needs root and /run"
    );
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let config = Config::new();
    let dir = std::path::PathBuf::from(format!("/run/spawnd-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (default, custom) = (dir.join("default.sock"), dir.join("custom.sock"));
    config.service(
        "default",
        &format!("listen: {}\nexec: [/bin/true]\n", default.display()),
    );
    config.service(
        "custom",
        &format!(
            "listen: {}\nunix_mode: \"0640\"\nunix_group: 65534\nexec: [/bin/true]\n",
            custom.display()
        ),
    );
    let spawnd = Spawnd::start(&config);
    let meta = std::fs::metadata(&default).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
    let meta = std::fs::metadata(&custom).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    assert_eq!(meta.gid(), 65534);
    drop(spawnd);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_flood_of_refused_clients_does_not_flood_the_log() {
    let config = Config::new();
    let port = free_port();
    let socket = config.path().join("c.sock");
    config.global(&format!("control_socket: {}\n", socket.display()));
    config.service(
        "guarded",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/true]\naccess: {{deny: [127.0.0.2]}}\n"),
    );
    let spawnd = Spawnd::start(&config);
    for _ in 0..300 {
        assert_eq!(read_from("127.0.0.2", port).unwrap(), "");
    }
    // Every refusal is counted, but only a budget of them is logged...
    let report = status_json(&socket);
    assert_eq!(report["services"][0]["refused_access"], 300);
    let logged = spawnd.log.count("refuse service=guarded");
    assert!(logged < 300, "{logged} refusals logged");
    // ... and the next logged one says how many were left out.
    assert!(wait_until(|| {
        let _ = read_from("127.0.0.2", port);
        spawnd.log.count("suppressed=") > 0
    }));
}
