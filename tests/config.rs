//! `spawnd check` and `spawnd list`: every error names file, line, column
//! and key; hostile files are refused without blocking.

mod util;

use util::*;

fn check_errors(config: &Config) -> (i32, String, String) {
    let out = config.check();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn valid_configuration_checks() {
    let config = Config::new();
    config.service("daytime", "listen: 127.0.0.1:8013\nexec: [/bin/date, -u]\n");
    config.service(
        "echo",
        "socket: stream\nlisten: ['[::1]:8007', 127.0.0.1:8007]\nexec: /bin/cat\n",
    );
    let (code, stdout, stderr) = check_errors(&config);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("ok daytime: stream 127.0.0.1:8013 nowait /bin/date -u"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok echo: stream [::1]:8007,127.0.0.1:8007 nowait /bin/cat"),
        "{stdout}"
    );
}

#[test]
fn malformed_yaml_names_file_line_and_column() {
    let config = Config::new();
    config.service("broken", "listen: 127.0.0.1:1\nexec: [/bin/true\n");
    let (code, _, stderr) = check_errors(&config);
    assert_eq!(code, 1);
    assert!(
        // The key the parser was reading when the syntax broke is named.
        stderr.contains("broken.yaml:3:1: exec: did not find expected ',' or ']'"),
        "{stderr}"
    );
}

#[test]
fn unknown_key_is_an_error_with_its_location() {
    let config = Config::new();
    config.service(
        "typo",
        "listen: 127.0.0.1:1\nexec: [/bin/true]\nlimits:\n  instances: 3\n  instnaces: 4\n",
    );
    let (code, _, stderr) = check_errors(&config);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("typo.yaml:5:3: limits.instnaces: unknown field `instnaces`"),
        "{stderr}"
    );
}

#[test]
fn flow_style_values_are_placed_at_their_key() {
    let config = Config::new();
    config.service(
        "flow",
        "listen: 127.0.0.1:1\nexec: [/bin/true]\nlimits: {per_source: 2, instances: 0}\n",
    );
    config.service(
        "flowtypo",
        "listen: 127.0.0.1:2\nexec: [/bin/true]\nlimits: {instances: 3, instnaces: 4}\n",
    );
    let (code, _, stderr) = check_errors(&config);
    assert_eq!(code, 1);
    // Not at `limits` (3:1): at the very key inside the flow mapping.
    assert!(
        stderr.contains("flow.yaml:3:25: limits.instances: must be at least 1"),
        "{stderr}"
    );
    assert!(
        stderr.contains("flowtypo.yaml:3:24: limits.instnaces: unknown field `instnaces`"),
        "{stderr}"
    );
}

#[test]
fn bad_duration_names_the_key() {
    let config = Config::new();
    config.service(
        "slow",
        "listen: 127.0.0.1:1\nexec: [/bin/true]\nlimits:\n  timeout: 5 minutes\n",
    );
    let (code, _, stderr) = check_errors(&config);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("slow.yaml:4:12: limits.timeout: invalid duration \"5 minutes\""),
        "{stderr}"
    );
}

#[test]
fn bad_size_rate_and_address() {
    let config = Config::new();
    config.service(
        "a",
        "listen: 127.0.0.1:1\nexec: [/bin/true]\nlimits: {memory: 12Q}\n",
    );
    config.service(
        "b",
        "listen: 127.0.0.1:2\nexec: [/bin/true]\nlimits:\n  rate: fast\n",
    );
    config.service("c", "listen: localhost:3\nexec: [/bin/true]\n");
    let (code, _, stderr) = check_errors(&config);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("a.yaml:3:18: limits.memory: invalid size \"12Q\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("b.yaml:4:9: limits.rate: invalid rate \"fast\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("c.yaml:1:9: listen: invalid listen address \"localhost:3\""),
        "{stderr}"
    );
}

#[test]
fn duplicate_address_across_files() {
    let config = Config::new();
    config.service("first", "listen: 127.0.0.1:9\nexec: [/bin/true]\n");
    config.service("second", "exec: [/bin/true]\nlisten: '*:9'\n");
    let (code, stdout, stderr) = check_errors(&config);
    assert_eq!(code, 1);
    assert!(stdout.contains("ok first"), "{stdout}");
    assert!(
        stderr.contains("second.yaml:2:1: listen: stream *:9 is already used by service \"first\""),
        "{stderr}"
    );
}

#[test]
fn same_port_on_stream_and_dgram_is_fine() {
    let config = Config::new();
    config.service("t", "listen: 127.0.0.1:9\nexec: [/bin/true]\n");
    config.service(
        "u",
        "socket: dgram\nlisten: 127.0.0.1:9\nexec: [/bin/true]\n",
    );
    assert_eq!(check_errors(&config).0, 0);
}

#[test]
fn semantic_errors_are_all_reported() {
    let config = Config::new();
    config.service(
        "dgram",
        "socket: dgram\nwait: false\nlisten: 127.0.0.1:9\nexec: [/bin/true]\n",
    );
    config.service("relative", "listen: 127.0.0.1:10\nexec: [bin/true]\n");
    config.service(
        "both",
        "listen: 127.0.0.1:11\nexec: [/bin/true]\ninternal: echo\n",
    );
    config.service("neither", "listen: 127.0.0.1:12\n");
    config.service("nolisten", "exec: [/bin/true]\n");
    config.service(
        "dup-name",
        "name: relative\nlisten: 127.0.0.1:13\nexec: [/bin/true]\n",
    );
    let (code, _, stderr) = check_errors(&config);
    assert_eq!(code, 1);
    for expected in [
        "dgram.yaml:2:1: wait: a datagram service with a program needs wait: true",
        "relative.yaml:2:1: exec: the program \"bin/true\" must be an absolute path",
        "both.yaml:2:1: exec: exec, internal and redirect exclude each other",
        // A missing key is placed at the mapping it belongs in.
        "neither.yaml:1:1: exec: a service needs one of exec, internal or redirect",
        "nolisten.yaml:1:1: listen: a service needs at least one listen address",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    // `relative` itself failed, so the name is free for `dup-name`.
    assert!(!stderr.contains("duplicate service name"), "{stderr}");
}

#[test]
fn duplicate_names_are_an_error() {
    let config = Config::new();
    config.service(
        "one",
        "name: same\nlisten: 127.0.0.1:1\nexec: [/bin/true]\n",
    );
    config.service(
        "two",
        "name: same\nlisten: 127.0.0.1:2\nexec: [/bin/true]\n",
    );
    let (code, _, stderr) = check_errors(&config);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("two.yaml:1:1: name: duplicate service name \"same\""),
        "{stderr}"
    );
}

#[test]
fn ignored_file_names_are_skipped() {
    let config = Config::new();
    config.service("good", "listen: 127.0.0.1:1\nexec: [/bin/true]\n");
    let dir = config.path().join("services.d");
    for name in [
        ".hidden.yaml",
        "x.yaml~",
        "x.yaml.swp",
        "x.yaml.dpkg-old",
        "x.yaml.rpmnew",
        "x.yaml.bak",
        "x.yaml.disabled",
        "README",
    ] {
        std::fs::write(dir.join(name), "this: is not valid\n").unwrap();
    }
    let (code, stdout, stderr) = check_errors(&config);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("1 services, 0 errors"), "{stdout}");
}

#[test]
fn hostile_files_are_refused_without_blocking() {
    let config = Config::new();
    let dir = config.path().join("services.d");
    nix::unistd::mkfifo(
        &dir.join("fifo.yaml"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    std::os::unix::fs::symlink("loop.yaml", dir.join("loop.yaml")).unwrap();
    std::fs::write(dir.join("huge.yaml"), vec![b'#'; 2 << 20]).unwrap();
    std::fs::create_dir(dir.join("dir.yaml")).unwrap();
    std::os::unix::net::UnixListener::bind(dir.join("sock.yaml")).unwrap();
    config.service("good", "listen: 127.0.0.1:1\nexec: [/bin/true]\n");
    let (code, stdout, stderr) = check_errors(&config);
    assert_eq!(code, 1);
    assert!(stdout.contains("ok good"), "{stdout}");
    for expected in [
        "fifo.yaml: a FIFO, not a regular file",
        "loop.yaml: too many levels of symbolic links",
        "huge.yaml: larger than 1 MiB",
        "dir.yaml: a directory, not a regular file",
        "sock.yaml: a socket, not a regular file",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}

#[test]
fn unreadable_directory_and_bad_global_file_are_fatal() {
    let out = std::process::Command::new(BIN)
        .args(["check", "-c", "/nonexistent/spawnd"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("/nonexistent/spawnd: cannot read configuration directory"));

    let config = Config::new();
    config.global("splice: maybe\n");
    config.service("good", "listen: 127.0.0.1:1\nexec: [/bin/true]\n");
    let (code, _, stderr) = check_errors(&config);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("spawnd.yaml:1:9: splice: invalid type"),
        "{stderr}"
    );

    let config = Config::new();
    config.global("log: {level: info}\ninclude_inetd_conf: etc/inetd.conf\n");
    config.service("good", "listen: 127.0.0.1:1\nexec: [/bin/true]\n");
    let (code, _, stderr) = check_errors(&config);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(
            "spawnd.yaml:2:1: include_inetd_conf: \"etc/inetd.conf\" must be an absolute path"
        ),
        "{stderr}"
    );

    let config = Config::new();
    config.global("max_children: lots\n");
    config.service("good", "listen: 127.0.0.1:1\nexec: [/bin/true]\n");
    let (code, _, stderr) = check_errors(&config);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("spawnd.yaml:1:15: max_children: invalid value \"lots\""),
        "{stderr}"
    );
    let mut run = Spawnd::spawn(
        {
            let mut c = std::process::Command::new(BIN);
            c.arg("run").arg("-c").arg(config.path());
            c
        },
        |_| {},
    );
    assert_eq!(
        run.wait_exit(),
        Some(1),
        "a spawnd.yaml that does not check stops run"
    );
}

#[test]
fn defaults_apply_to_services() {
    let config = Config::new();
    config.global("defaults:\n  env: {FROM_DEFAULTS: 'yes'}\n  limits: {instances: 3}\n");
    let port = free_port();
    config.service(
        "show",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/sh, -c, 'echo $FROM_DEFAULTS']\n"),
    );
    let _spawnd = Spawnd::start(&config);
    assert_eq!(tcp_read(port), "yes\n");
}

#[test]
fn list_prints_a_table() {
    let config = Config::new();
    config.service("daytime", "listen: 127.0.0.1:8013\nexec: [/bin/date, -u]\n");
    config.service(
        "udp",
        "socket: dgram\nlisten: 127.0.0.1:8069\nexec: [/bin/cat]\ndisabled: true\n",
    );
    let out = std::process::Command::new(BIN)
        .arg("list")
        .arg("-c")
        .arg(config.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "SOCKET", "LISTEN", "WAIT", "PROGRAM"]
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        [
            "daytime",
            "stream",
            "127.0.0.1:8013",
            "no",
            "/bin/date",
            "-u"
        ]
    );
    assert!(lines[2].starts_with("udp (disabled)"), "{text}");
    assert!(
        lines[2].contains("dgram") && lines[2].contains("yes"),
        "{text}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let out = std::process::Command::new(BIN)
        .args(["run", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn config_dir_from_environment() {
    let config = Config::new();
    config.service("x", "listen: 127.0.0.1:1\nexec: [/bin/true]\n");
    let out = std::process::Command::new(BIN)
        .arg("check")
        .env("SPAWND_CONFIG_DIR", config.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok x"));
}

#[test]
fn unknown_socket_owner_is_a_check_error() {
    let config = Config::new();
    let path = config.path().join("s.sock");
    config.service(
        "sock",
        &format!(
            "listen: {}\nunix_owner: no-such-user-here\nexec: [/bin/true]\n",
            path.display()
        ),
    );
    let (code, _, stderr) = check_errors(&config);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("sock.yaml:2:1: unix_owner: no such user \"no-such-user-here\""),
        "{stderr}"
    );
}

#[test]
fn new_session_takes_only_a_boolean() {
    let config = Config::new();
    config.service(
        "odd",
        "listen: 127.0.0.1:1\nexec: [/bin/true]\nnew_session: sometimes\n",
    );
    let (code, _, stderr) = check_errors(&config);
    assert_eq!(code, 1);
    assert!(stderr.contains("odd.yaml:3:14: new_session: "), "{stderr}");
    assert!(stderr.contains("sometimes"), "{stderr}");
}
