//! What an administrator meets on a first day (issue 21): instances and
//! status, running in the background, configuration errors and `check`,
//! what the log says. Each test is named after what must hold.

mod util;

use std::net::{SocketAddr, TcpStream};
use std::process::Command;

use nix::sys::signal::Signal;
use util::*;

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn status(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    Command::new(BIN)
        .arg("status")
        .args(args)
        .arg("-c")
        .arg(dir)
        .output()
        .expect("run spawnd status")
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("status output {out:?}: {e}"))
}

/// Kills a daemon (not this process's child) when the test ends.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0), Signal::SIGKILL);
    }
}

/// Two spawnds shared the one default control socket: the second ran
/// without one, and `status -c` for it printed the first one's services.
/// Each configuration directory has its own now, status says which
/// directory and pid answered, and never reports another directory's.
#[test]
fn each_instance_answers_status_for_its_own_directory() {
    let (first, second) = (Config::new(), Config::new());
    first.service("one", "listen: \"@spawnd-ops-one\"\nexec: [/bin/true]\n");
    second.service("two", "listen: \"@spawnd-ops-two\"\nexec: [/bin/true]\n");
    let a = Spawnd::start(&first);
    let b = Spawnd::start(&second);
    assert_eq!(b.log.count("control_busy"), 0, "{}", b.log.text());
    let dir = |config: &Config| std::fs::canonicalize(config.path()).unwrap();
    for (config, spawnd, name) in [(&first, &a, "one"), (&second, &b, "two")] {
        let report = json(&status(&["--json"], config.path()));
        assert_eq!(report["pid"], spawnd.pid());
        assert_eq!(report["config_dir"], dir(config).display().to_string());
        assert_eq!(report["services"][0]["name"], name);
        let text = String::from_utf8_lossy(&status(&[], config.path()).stdout).into_owned();
        let header = format!("pid {}, config {}", spawnd.pid(), dir(config).display());
        assert!(
            text.lines().next().unwrap_or_default().contains(&header),
            "{text}"
        );
    }
    // A directory whose spawnd.yaml names another instance's socket: refused.
    let third = Config::new();
    let socket = json(&status(&["--json"], first.path()));
    assert_eq!(socket["pid"], a.pid());
    let a_socket = std::fs::read_dir(if is_root() {
        std::path::PathBuf::from("/run/spawnd")
    } else {
        std::env::var_os("XDG_RUNTIME_DIR")
            .map(|d| std::path::PathBuf::from(d).join("spawnd"))
            .unwrap_or_else(|| format!("/tmp/spawnd-{}", nix::unistd::geteuid()).into())
    })
    .unwrap()
    .filter_map(|e| e.ok().map(|e| e.path()))
    .find(|path| {
        Command::new(BIN)
            .args(["status", "--json", "--socket"])
            .arg(path)
            .output()
            // Other sockets there may be stale (a spawnd killed by another
            // test or run): they answer nothing.
            .is_ok_and(|out| out.status.success() && json(&out)["pid"] == a.pid())
    })
    .expect("the first instance's socket");
    third.global(&format!("control_socket: {}\n", a_socket.display()));
    let out = status(&[], third.path());
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("serves {}", dir(&first).display())),
        "{out:?}"
    );
}

/// `status` showed only services that run: one that could not bind, a
/// file that does not check, a service kept on its old definition after a
/// reload looked healthy or were missing. They show now, with the reason.
#[test]
fn status_shows_failed_and_kept_services_with_the_reason() {
    let config = Config::new();
    let control = config.private_control_socket();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let port = free_port();
    config.service(
        "taken",
        &format!("listen: 127.0.0.1:{taken_port}\nexec: [/bin/true]\n"),
    );
    config.service("broken", "listen: [\nexec: /bin/true\n");
    config.service(
        "fine",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/echo, fine]\n"),
    );
    let spawnd = Spawnd::start(&config);
    let service = |report: &serde_json::Value, name: &str| {
        report["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {report}"))
    };
    let report = status_json(&control);
    assert_eq!(service(&report, "taken")["state"], "failed");
    assert!(service(&report, "taken")["reason"]
        .as_str()
        .unwrap()
        .contains("cannot listen on stream"));
    assert_eq!(service(&report, "broken")["state"], "failed");
    assert!(service(&report, "broken")["reason"]
        .as_str()
        .unwrap()
        .contains("broken.yaml:"));
    assert_eq!(service(&report, "fine")["state"], "listening");
    // Its file broken, a running service keeps its definition: "kept".
    config.service(
        "fine",
        "listen: 127.0.0.1:1\nexec: [/bin/echo, fine]\nwait: maybe\n",
    );
    spawnd.reload();
    let report = status_json(&control);
    assert_eq!(service(&report, "fine")["state"], "kept");
    assert!(service(&report, "fine")["reason"]
        .as_str()
        .unwrap()
        .contains("wait: invalid type"));
    assert_eq!(tcp_read(port), "fine\n");
    let text = Command::new(BIN)
        .args(["status", "--socket"])
        .arg(&control)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("fine kept: "), "{text}");
    assert!(text.contains("taken failed: cannot listen"), "{text}");
    // Mended, it is healthy again.
    config.service(
        "fine",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/echo, fine]\n"),
    );
    spawnd.reload();
    let report = status_json(&control);
    assert_eq!(service(&report, "fine")["state"], "listening");
    assert!(service(&report, "fine").get("reason").is_none());
}

/// Start-up logged one `ready services=N` line; each socket now gets a
/// `listening` line, as xinetd logs each service it starts.
#[test]
fn every_socket_is_logged_when_it_starts_listening() {
    let config = Config::new();
    config.private_control_socket();
    let port = free_port();
    config.service(
        "both",
        &format!("listen: [127.0.0.1:{port}, \"[::1]:{port}\"]\nexec: [/bin/true]\n"),
    );
    let spawnd = Spawnd::start(&config);
    spawnd
        .log
        .expect(&["listening service=both", &format!("addr=127.0.0.1:{port}")]);
    spawnd
        .log
        .expect(&["listening service=both", &format!("addr=[::1]:{port}")]);
}

/// `run --daemon --pid-file F` returned before F existed, so
/// `... && kill -HUP $(cat F)` failed; an unwritable pid file returned 0;
/// a relative one was written to /. Now the command returns once F is
/// written, with 3 and the reason when it cannot be.
#[test]
fn a_daemon_returns_once_its_pid_file_is_written() {
    let config = Config::new();
    config.private_control_socket();
    let port = free_port();
    config.service(
        "d",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/echo, daemon]\n"),
    );
    for round in 0..4 {
        let name = format!("spawnd-{round}.pid");
        let started = Command::new(BIN)
            .args(["run", "--daemon", "--pid-file", &name, "-c", "."])
            .current_dir(config.path())
            .output()
            .unwrap();
        assert!(started.status.success(), "{started:?}");
        // Relative to where it started, and there when the command returned.
        let pid: i32 = std::fs::read_to_string(config.path().join(&name))
            .expect("the pid file exists when the command returns")
            .trim()
            .parse()
            .unwrap();
        let _daemon = KillOnDrop(pid);
        assert_eq!(tcp_read(port), "daemon\n");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM).unwrap();
        assert!(wait_until(|| std::fs::metadata(format!("/proc/{pid}"))
            .is_err()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z"))));
    }
    let failed = Command::new(BIN)
        .args([
            "run",
            "--daemon",
            "--pid-file",
            "/nonexistent/dir/spawnd.pid",
            "-c",
        ])
        .arg(config.path())
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(3), "{failed:?}");
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("cannot write pid file"),
        "{failed:?}"
    );
    assert!(refused_or_closed(port), "the failed daemon does not stay");
}

fn refused_or_closed(port: u16) -> bool {
    wait_until(|| TcpStream::connect(local(port)).is_err())
}

/// Under `--daemon` without /dev/log every line was lost without a word.
/// spawnd warns on stderr before detaching and keeps logging to a stderr
/// that is seen (a file, here).
#[test]
fn a_daemon_without_syslog_warns_and_logs_where_it_is_seen() {
    let config = Config::new();
    config.private_control_socket();
    let port = free_port();
    config.service(
        "d",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/echo, seen]\n"),
    );
    let log = config.path().join("daemon.log");
    let pid_file = config.path().join("d.pid");
    let started = Command::new(BIN)
        .args(["run", "--daemon", "--pid-file"])
        .arg(&pid_file)
        .arg("-c")
        .arg(config.path())
        .env("SPAWND_SYSLOG_SOCKET", config.path().join("no-such-socket"))
        .stderr(std::fs::File::create(&log).unwrap())
        .status()
        .unwrap();
    assert!(started.success());
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _daemon = KillOnDrop(pid);
    assert_eq!(tcp_read(port), "seen\n");
    assert!(wait_until(
        || std::fs::read_to_string(&log).is_ok_and(|text| text.contains("accept service=d"))
    ));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("no syslog socket"), "{text}");
}

/// `exec:` on lines 2 and 4 gave `dupkey.yaml:1:1: listen: duplicate
/// field 'exec'`; only the first type error of a file was reported; a
/// missing key had no position.
#[test]
fn configuration_errors_name_the_right_place_and_all_of_them() {
    let config = Config::new();
    config.service(
        "dupkey",
        "listen: 127.0.0.1:9\nexec: [/bin/true]\nwait: true\nexec: [/bin/false]\n",
    );
    config.service(
        "twice",
        "listen: 127.0.0.1:10\nexec: [/bin/true]\nwait: maybe\nbacklog: lots\n",
    );
    config.service("nolisten", "# no listen\nexec: [/bin/true]\n");
    config.service(
        "quoted",
        "listen: 127.0.0.1:11\nexec: /bin/sh -c 'echo hi there'\n",
    );
    let out = config.check();
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "dupkey.yaml:4:1: exec: duplicate field `exec`",
        "twice.yaml:3:7: wait: invalid type",
        "twice.yaml:4:10: backlog: invalid type",
        "nolisten.yaml:2:1: listen: a service needs at least one listen address",
        "quoted.yaml:2:7: exec: a string is split on white space only",
        "write a list, e.g. [/bin/sh, -c, 'echo hi there']",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}

/// `check -q` printed every `ok` line; quiet means errors only.
#[test]
fn check_quiet_prints_errors_only() {
    let config = Config::new();
    config.service("good", "listen: 127.0.0.1:1\nexec: [/bin/true]\n");
    let quiet = |config: &Config| {
        Command::new(BIN)
            .args(["check", "-q", "-c"])
            .arg(config.path())
            .output()
            .unwrap()
    };
    let out = quiet(&config);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    config.service("bad", "listen: 127.0.0.1:2\n");
    let out = quiet(&config);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad.yaml"),
        "{out:?}"
    );
}

/// `check -c /etc/spawnd/services.d` said `0 services, 0 errors`.
#[test]
fn checking_services_d_itself_says_what_was_meant() {
    let config = Config::new();
    config.service("good", "listen: 127.0.0.1:1\nexec: [/bin/true]\n");
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(config.path().join("services.d"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no services.d/ here, but service files (good.yaml); did you mean -c"),
        "{stderr}"
    );
}

/// A command line with a newline broke the `check` and `list` tables.
#[test]
fn tables_stay_one_row_per_service() {
    let config = Config::new();
    config.service(
        "multi",
        "listen: 127.0.0.1:1\nexec: [/bin/sh, -c, \"echo one\\necho two\"]\n",
    );
    for command in ["check", "list"] {
        let out = Command::new(BIN)
            .args([command, "-c"])
            .arg(config.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let row = stdout
            .lines()
            .find(|l| l.contains("multi"))
            .unwrap_or_default();
        assert!(row.contains("echo one\\necho two"), "{command}: {stdout}");
        assert!(
            !stdout.lines().any(|l| l.trim() == "echo two"),
            "{command}: {stdout}"
        );
    }
}

/// There was no way to lift a limit that spawnd.yaml's defaults set.
#[test]
fn unlimited_lifts_a_default_limit() {
    let config = Config::new();
    let control = config.path().join("c.sock");
    config.global(&format!(
        "control_socket: {}\ndefaults:\n  limits: {{instances: 1}}\n",
        control.display()
    ));
    let (limited, lifted) = (free_port(), free_port());
    let holding = "exec: [/bin/sh, -c, 'echo hi; exec cat >/dev/null']\n";
    config.service(
        "limited",
        &format!("listen: 127.0.0.1:{limited}\n{holding}"),
    );
    config.service(
        "lifted",
        &format!("listen: 127.0.0.1:{lifted}\nlimits: {{instances: unlimited}}\n{holding}"),
    );
    let spawnd = Spawnd::start(&config);
    let hold = |port: u16| {
        let stream = TcpStream::connect(local(port)).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut byte = [0u8; 3];
        let got = std::io::Read::read(&mut &stream, &mut byte).unwrap_or(0);
        (stream, got)
    };
    let held: Vec<_> = (0..3).map(|_| hold(lifted)).collect();
    assert!(held.iter().all(|(_, got)| *got > 0), "all three served");
    let _first = hold(limited);
    assert!(refused_at_once(limited));
    spawnd
        .log
        .expect(&["refuse service=limited", "reason=instances"]);
}

/// spawnd did not create a Unix socket's directory: under /run it makes
/// it now, and elsewhere the error says what to do.
#[test]
fn a_missing_socket_directory_is_made_under_run_or_explained() {
    let config = Config::new();
    config.private_control_socket();
    let elsewhere = config.path().join("missing/dir/s.sock");
    config.service(
        "elsewhere",
        &format!("listen: {}\nexec: [/bin/true]\n", elsewhere.display()),
    );
    let under_run =
        std::path::PathBuf::from(format!("/run/spawnd-ops-{}/s.sock", std::process::id()));
    let root = is_root() && std::path::Path::new("/run").is_dir();
    if root {
        config.service(
            "run",
            &format!("listen: {}\nexec: [/bin/echo, run]\n", under_run.display()),
        );
    }
    let spawnd = Spawnd::start(&config);
    spawnd.log.expect(&[
        "service_error service=elsewhere",
        "does not exist: create it (install -d -m 0755",
    ]);
    if root {
        spawnd.log.expect(&["listening service=run"]);
        let dir = under_run.parent().unwrap().to_path_buf();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&dir).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o755);
        drop(spawnd);
        let _ = std::fs::remove_dir_all(dir);
    } else {
        skip("creating a directory under /run needs root (the rest ran)");
    }
}

/// Internal UDP services logged nothing per datagram, even with -v; a
/// client ending a chargen session logged `error="Connection reset by
/// peer"` at info.
#[test]
fn the_log_tells_normal_ends_and_datagrams_as_they_are() {
    let config = Config::new();
    config.private_control_socket();
    let (udp, chargen) = (free_port(), free_port());
    config.service(
        "udp-echo",
        &format!("socket: dgram\nlisten: 127.0.0.1:{udp}\ninternal: echo\n"),
    );
    config.service(
        "chargen",
        &format!("listen: 127.0.0.1:{chargen}\ninternal: chargen\n"),
    );
    let spawnd = Spawnd::start(&config);
    assert_eq!(udp_exchange(local(udp), b"hi").unwrap(), b"hi");
    spawnd
        .log
        .expect(&["debug datagram service=udp-echo", "bytes_in=2"]);
    {
        let mut stream = TcpStream::connect(local(chargen)).unwrap();
        let mut some = [0u8; 1000];
        std::io::Read::read_exact(&mut stream, &mut some).unwrap();
    }
    spawnd.log.expect(&["exit service=chargen", "closed=peer"]);
    assert_eq!(
        spawnd.log.count("Connection reset by peer"),
        0,
        "{}",
        spawnd.log.text()
    );
    let line = spawnd
        .log
        .text()
        .lines()
        .find(|l| l.contains("exit service=chargen"))
        .unwrap_or_default()
        .to_string();
    assert!(
        line.contains(" debug "),
        "a normal end at debug level: {line}"
    );
}

/// Each root `cargo test` left /tmp/spawnd-faults-* behind, and an empty
/// /run/spawnd/ stayed after spawnd exited: a control socket directory
/// spawnd made is removed when it exits and leaves it empty.
#[test]
fn the_control_socket_directory_spawnd_made_goes_when_it_exits() {
    let config = Config::new();
    let dir = config.path().join("made-by-spawnd");
    config.global(&format!("control_socket: {}/c.sock\n", dir.display()));
    config.service("x", "listen: \"@spawnd-ops-x\"\nexec: [/bin/true]\n");
    let mut spawnd = Spawnd::start(&config);
    assert!(dir.join("c.sock").exists());
    spawnd.signal(Signal::SIGTERM);
    assert_eq!(spawnd.wait_exit(), Some(0));
    assert!(!dir.exists(), "the directory spawnd made is gone");
}

/// The quick start's example services must not collide with an installed
/// spawnd or another user's quick start: its Unix socket is in the
/// configuration directory (`./whoami.sock`), its control socket is the
/// directory's own.
#[test]
fn the_quick_start_keeps_to_its_own_directory() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(BIN)
        .args(["list", "-c"])
        .arg(repo)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains(&format!("{}/whoami.sock", repo.display())),
        "{stdout}"
    );
    assert!(!stdout.contains("/tmp/spawnd-whoami.sock"), "{stdout}");
}
