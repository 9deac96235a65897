//! The system super-server: inetd.conf and xinetd files served as they are
//! (`include_inetd_conf`, `include_xinetd`), following every change to them
//! without a signal, and refusing (fail closed) what spawnd cannot honour.

mod util;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};

use util::*;

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A configuration whose spawnd.yaml includes `DIR/etc/inetd.conf` (and,
/// if asked, `DIR/etc/xinetd.conf`), with a control socket of its own.
struct Setup {
    config: Config,
    socket: PathBuf,
}

impl Setup {
    fn new(xinetd: bool) -> Setup {
        let config = Config::new();
        std::fs::create_dir(config.path().join("etc")).expect("etc");
        std::fs::create_dir(config.path().join("hosts")).expect("hosts");
        let socket = config.path().join("c.sock");
        let mut global = format!(
            "control_socket: {}\ninclude_inetd_conf: {}\n",
            socket.display(),
            config.path().join("etc/inetd.conf").display()
        );
        if xinetd {
            global.push_str(&format!(
                "include_xinetd: {}\n",
                config.path().join("etc/xinetd.conf").display()
            ));
        }
        config.global(&global);
        Setup { config, socket }
    }

    fn etc(&self, name: &str) -> PathBuf {
        self.config.path().join("etc").join(name)
    }

    /// Writes a new file and renames it over the old one.
    fn replace(&self, name: &str, text: &str) {
        let temporary = self.config.path().join(format!(".{name}.new"));
        std::fs::write(&temporary, text).expect("write");
        std::fs::rename(&temporary, self.etc(name)).expect("rename");
    }

    /// Rewrites the file in place (same inode), as `cp` or an editor does.
    fn rewrite(&self, path: &Path, text: &str) {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(path)
            .expect("open in place");
        file.write_all(text.as_bytes()).expect("write in place");
    }

    fn start(&self) -> Spawnd {
        let hosts = self.config.path().join("hosts");
        let services = self.config.path().join("services");
        Spawnd::start_with(&self.config, &[], |command| {
            command
                .env("SPAWND_HOSTS_ACCESS_DIR", &hosts)
                .env("SPAWND_SERVICES_FILE", &services);
        })
    }

    fn status(&self, name: &str) -> serde_json::Value {
        let report = status_json(&self.socket);
        report["services"]
            .as_array()
            .and_then(|list| list.iter().find(|s| s["name"] == name).cloned())
            .unwrap_or_else(|| panic!("no {name} in {report}"))
    }
}

/// Waits until spawnd has done `n` reloads in all, none of them asked for
/// with a signal: each one started from a change it noticed.
fn wait_reloads(spawnd: &Spawnd, n: usize) {
    assert!(
        spawnd.log.wait_for_n(&["reload_done"], n),
        "reload {n} did not happen:\n{}",
        spawnd.log.text()
    );
    assert_eq!(
        spawnd.log.count("include_reload"),
        spawnd.log.count("reload_start"),
        "{}",
        spawnd.log.text()
    );
}

fn answer(port: u16) -> String {
    match TcpStream::connect(local(port)) {
        Ok(stream) => read_all(stream),
        Err(e) => format!("refused: {e}"),
    }
}

#[test]
fn inetd_conf_entries_are_served_and_follow_every_edit_without_a_signal() {
    let setup = Setup::new(false);
    let (a, b) = (free_port(), free_port());
    setup.replace(
        "inetd.conf",
        &format!("#:STANDARD: standard services\n127.0.0.1:{a} stream tcp nowait nobody /bin/echo echo one\n"),
    );
    let spawnd = setup.start();
    assert_eq!(answer(a), "one\n");
    let name = format!("echo-{a}");
    spawnd.log.expect(&[&format!(
        "included service={name} source={}:2",
        setup.etc("inetd.conf").display()
    )]);
    let status = setup.status(&name);
    assert_eq!(status["state"], "listening");
    assert_eq!(
        status["source"],
        format!("{}:2", setup.etc("inetd.conf").display())
    );

    // A new file renamed over the old one (update-inetd with /tmp on the
    // same file system).
    setup.replace(
        "inetd.conf",
        &format!(
            "127.0.0.1:{a} stream tcp nowait nobody /bin/echo echo two\n\
             127.0.0.1:{b} stream tcp nowait nobody /bin/echo echo three\n"
        ),
    );
    wait_reloads(&spawnd, 1);
    assert_eq!(answer(a), "two\n");
    assert_eq!(answer(b), "three\n");

    // Rewritten in place (update-inetd copying across file systems), with
    // the second entry disabled the way `update-inetd --disable` does it.
    setup.rewrite(
        &setup.etc("inetd.conf"),
        &format!(
            "127.0.0.1:{a} stream tcp nowait nobody /bin/echo echo four\n\
             #<off># 127.0.0.1:{b} stream tcp nowait nobody /bin/echo echo three\n"
        ),
    );
    wait_reloads(&spawnd, 2);
    assert_eq!(answer(a), "four\n");
    assert!(refused_at_once(b), "{}", spawnd.log.text());

    // `update-inetd --enable` takes the mark off again.
    setup.rewrite(
        &setup.etc("inetd.conf"),
        &format!(
            "127.0.0.1:{a} stream tcp nowait nobody /bin/echo echo four\n\
             127.0.0.1:{b} stream tcp nowait nobody /bin/echo echo three\n"
        ),
    );
    wait_reloads(&spawnd, 3);
    assert_eq!(answer(b), "three\n");
    assert!(spawnd.no_zombies());
}

#[test]
fn a_syntax_error_in_an_included_file_keeps_the_services_it_had() {
    let setup = Setup::new(false);
    let a = free_port();
    setup.replace(
        "inetd.conf",
        &format!("127.0.0.1:{a} stream tcp nowait nobody /bin/echo echo kept\n"),
    );
    let spawnd = setup.start();
    assert_eq!(answer(a), "kept\n");
    setup.rewrite(
        &setup.etc("inetd.conf"),
        &format!("127.0.0.1:{a} stream tcp nowait nobody /bin/echo echo changed\nbroken stream\n"),
    );
    wait_reloads(&spawnd, 1);
    spawnd.log.expect(&[&format!(
        "config_error {}:2: expected 'service socket-type protocol wait user program [arguments]'",
        setup.etc("inetd.conf").display()
    )]);
    // Not even the good line of the broken file is taken: as it ran.
    assert_eq!(answer(a), "kept\n");
    let status = setup.status(&format!("echo-{a}"));
    assert_eq!(status["state"], "kept", "{status}");
    assert!(
        status["reason"]
            .as_str()
            .is_some_and(|r| r.contains("its file has errors")),
        "{status}"
    );
}

#[test]
fn a_missing_inetd_conf_is_no_error_and_is_served_once_it_appears() {
    let setup = Setup::new(false);
    let a = free_port();
    // Not even its directory exists: the watch starts above it.
    std::fs::remove_dir(setup.config.path().join("etc")).expect("rmdir");
    let spawnd = setup.start();
    spawnd
        .log
        .expect(&["ready services=0 failed=0 config_errors=0"]);
    std::fs::create_dir(setup.config.path().join("etc")).expect("mkdir");
    setup.replace(
        "inetd.conf",
        &format!("127.0.0.1:{a} stream tcp nowait nobody /bin/echo echo appeared\n"),
    );
    assert!(
        spawnd
            .log
            .wait_for(&[&format!("listening service=echo-{a}")]),
        "{}",
        spawnd.log.text()
    );
    assert_eq!(answer(a), "appeared\n");
}

#[test]
fn a_services_d_file_wins_a_name_clash() {
    let setup = Setup::new(false);
    let (a, b) = (free_port(), free_port());
    std::fs::write(
        setup.config.path().join("services"),
        format!("spawndtest {b}/tcp\n"),
    )
    .expect("services");
    setup.config.service(
        "spawndtest",
        &format!("listen: 127.0.0.1:{a}\nexec: [/bin/echo, services.d]\n"),
    );
    setup.replace(
        "inetd.conf",
        "127.0.0.1:spawndtest stream tcp nowait nobody /bin/echo echo inetd.conf\n",
    );
    let spawnd = setup.start();
    spawnd.log.expect(&[&format!(
        "config_warning {}:1: service spawndtest: services.d/spawndtest.yaml has the same name and wins",
        setup.etc("inetd.conf").display()
    )]);
    assert_eq!(answer(a), "services.d\n");
    assert!(refused_at_once(b));

    // Its file broken, the services.d service still wins: it is kept as it
    // runs, and the included entry stays out.
    setup.config.service("spawndtest", "listen: [\n");
    spawnd.reload();
    assert_eq!(answer(a), "services.d\n");
    assert!(refused_at_once(b));
    assert_eq!(setup.status("spawndtest")["state"], "kept");
}

#[test]
fn tcp_wrappers_rules_that_would_refuse_a_client_keep_the_entry_from_starting() {
    let setup = Setup::new(false);
    let (wrapped, plain, off) = (free_port(), free_port(), free_port());
    let deny = setup.config.path().join("hosts/hosts.deny");
    std::fs::write(&deny, "# a comment\necho: 10.0.0.1\n").expect("hosts.deny");
    // Served through tcpd, as micro-httpd registers itself: tcpd checks
    // the rules under the name of the program it runs (here `echo`).
    setup.replace(
        "inetd.conf",
        &format!(
            "127.0.0.1:{wrapped} stream tcp nowait nobody /usr/sbin/tcpd /bin/echo wrapped\n\
             127.0.0.1:{plain} stream tcp nowait nobody /bin/true true\n\
             #<off># 127.0.0.1:{off} stream tcp nowait nobody /usr/sbin/tcpd /bin/echo off\n"
        ),
    );
    let check = std::process::Command::new(BIN)
        .args(["check", "-c"])
        .arg(setup.config.path())
        .env("SPAWND_HOSTS_ACCESS_DIR", setup.config.path().join("hosts"))
        .output()
        .expect("run spawnd check");
    let stderr = String::from_utf8_lossy(&check.stderr).to_string();
    assert_eq!(check.status.code(), Some(1), "{stderr}");
    let reason = format!(
        "service echo-{wrapped} not served: TCP Wrappers would refuse some of its clients, \
         and spawnd does not read their rules: {}:2: `echo: 10.0.0.1` refuses clients of echo",
        deny.display()
    );
    assert!(
        stderr.contains(&format!(
            "error: {}:1: {reason}",
            setup.etc("inetd.conf").display()
        )),
        "{stderr}"
    );

    let spawnd = setup.start();
    spawnd.log.expect(&["include_refused", &reason]);
    assert!(refused_at_once(wrapped));
    assert_eq!(answer(plain), "");
    // A disabled entry is not served anyway: it is not refused either.
    spawnd
        .log
        .expect(&[&format!("disabled service=echo-{off}")]);
    assert_eq!(
        spawnd.log.count("include_refused"),
        1,
        "{}",
        spawnd.log.text()
    );
    let status = setup.status(&format!("echo-{wrapped}"));
    assert_eq!(status["state"], "failed");
    assert!(
        status["reason"]
            .as_str()
            .is_some_and(|r| r.contains(&reason)),
        "{status}"
    );

    // The rules are watched too: with the rule gone, it is served.
    setup.rewrite(&deny, "# nothing denied\n");
    assert!(
        spawnd
            .log
            .wait_for(&[&format!("listening service=echo-{wrapped}")]),
        "{}",
        spawnd.log.text()
    );
    assert_eq!(answer(wrapped), "wrapped\n");
}

#[test]
fn xinetd_restrictions_spawnd_cannot_honour_keep_the_service_from_starting() {
    let setup = Setup::new(true);
    let (names, idonly, fine) = (free_port(), free_port(), free_port());
    std::fs::create_dir(setup.etc("xinetd.d")).expect("xinetd.d");
    setup.replace(
        "xinetd.conf",
        &format!(
            "defaults\n{{\n}}\nincludedir {}\n",
            setup.etc("xinetd.d").display()
        ),
    );
    let service = |name: &str, port: u16, extra: &str| {
        format!(
            "service {name}\n{{\n type = UNLISTED\n port = {port}\n bind = 127.0.0.1\n \
             socket_type = stream\n wait = no\n user = nobody\n server = /bin/echo\n \
             server_args = {name}\n flags = NOLIBWRAP\n{extra}}}\n"
        )
    };
    std::fs::write(
        setup.etc("xinetd.d/names"),
        service("names", names, " no_access = bad.example.com\n"),
    )
    .expect("write");
    std::fs::write(
        setup.etc("xinetd.d/idonly"),
        service("idonly", idonly, " flags = IDONLY\n"),
    )
    .expect("write");
    std::fs::write(setup.etc("xinetd.d/fine"), service("fine", fine, "")).expect("write");
    let spawnd = setup.start();
    spawnd.log.expect(&[
        "include_refused service=names",
        "service names not served: it would let in clients the old super-server refused (xinetd: no_access bad.example.com",
    ]);
    spawnd.log.expect(&[
        "include_refused service=idonly",
        &format!(
            "{}:12: flags IDONLY restricts who may connect, which spawnd cannot do",
            setup.etc("xinetd.d/idonly").display()
        ),
    ]);
    assert!(refused_at_once(names));
    assert!(refused_at_once(idonly));
    assert_eq!(answer(fine), "fine\n");
    assert_eq!(setup.status("names")["state"], "failed");

    // A new file dropped into the directory is served without a signal,
    // and an edit to it takes effect.
    let more = free_port();
    std::fs::write(setup.etc("xinetd.d/more"), service("more", more, "")).expect("write");
    assert!(
        spawnd.log.wait_for(&["listening service=more"]),
        "{}",
        spawnd.log.text()
    );
    assert_eq!(answer(more), "more\n");
    let text = std::fs::read_to_string(setup.etc("xinetd.d/more")).expect("read");
    setup.rewrite(
        &setup.etc("xinetd.d/more"),
        &text.replace("server_args = more", "server_args = edited"),
    );
    assert!(
        wait_until(|| answer(more) == "edited\n"),
        "{}",
        spawnd.log.text()
    );
    // Files xinetd's includedir skips are skipped here too.
    std::fs::write(
        setup.etc("xinetd.d/more.rpmsave"),
        service("saved", free_port(), ""),
    )
    .expect("write");
    let reloads = spawnd.log.count("reload_done");
    std::fs::write(setup.etc("xinetd.d/last"), service("last", free_port(), "")).expect("write");
    assert!(spawnd.log.wait_for(&["listening service=last"]));
    assert!(!spawnd.log.text().contains("service=saved"));
    // Both writes may fall in one settling time: the path that started a
    // reload is logged, and it is never the skipped file.
    assert!(
        !spawnd
            .log
            .text()
            .lines()
            .any(|line| line.contains("include_") && line.contains("more.rpmsave")),
        "{}",
        spawnd.log.text()
    );
    assert_eq!(
        spawnd.log.count("reload_done"),
        reloads + 1,
        "the .rpmsave file made a reload"
    );
}

/// An /etc/xinetd.d file of a real package (xinetd's own daytime), copied
/// as it is and served inside a loopback-only network namespace (it
/// listens on port 13); enabling it by editing the file takes effect
/// without a signal.
#[test]
fn a_packaged_xinetd_file_is_served_as_it_is() {
    let packaged = Path::new("/etc/xinetd.d/daytime");
    require!(
        packaged.is_file(),
        "xinetd's /etc/xinetd.d/daytime (apt-get install xinetd)"
    );
    let setup = Setup::new(true);
    std::fs::create_dir(setup.etc("xinetd.d")).expect("xinetd.d");
    let original = std::fs::read_to_string(packaged).expect("read the packaged file");
    std::fs::write(setup.etc("xinetd.d/daytime"), &original).expect("copy");
    setup.replace(
        "xinetd.conf",
        &format!(
            "defaults\n{{\n}}\nincludedir {}\n",
            setup.etc("xinetd.d").display()
        ),
    );
    let Some(spawnd) = start_in_netns(&setup.config) else {
        return;
    };
    // As shipped it is disabled.
    spawnd.log.expect(&["disabled service=daytime-stream"]);
    spawnd.log.expect(&["disabled service=daytime-dgram"]);
    let enabled = original.replace("= yes", "= no");
    assert_ne!(
        enabled, original,
        "the packaged file has no `disable = yes`"
    );
    setup.rewrite(&setup.etc("xinetd.d/daytime"), &enabled);
    assert!(
        spawnd
            .log
            .wait_for(&["listening service=daytime-stream addr=0.0.0.0:13"]),
        "{}",
        spawnd.log.text()
    );
    let (tcp, udp) = in_netns(&spawnd, || {
        let tcp = TcpStream::connect(("127.0.0.1", 13)).map(read_all);
        let udp = udp_exchange(SocketAddr::from(([127, 0, 0, 1], 13)), b"?");
        (tcp, udp)
    });
    let tcp = tcp.expect("daytime over tcp");
    assert!(tcp.chars().any(|c| c.is_ascii_digit()), "{tcp:?}");
    let udp = String::from_utf8(udp.expect("daytime over udp")).expect("text");
    assert!(udp.chars().any(|c| c.is_ascii_digit()), "{udp:?}");
}

/// As root, an included file another user owns (and could rewrite) is not
/// read: none of its entries is served, and the error says why.
#[test]
fn an_included_file_another_user_controls_is_not_read() {
    require!(is_root(), "root (the ownership rules apply to root only)");
    let setup = Setup::new(false);
    let a = free_port();
    setup.replace(
        "inetd.conf",
        &format!("127.0.0.1:{a} stream tcp nowait nobody /bin/echo echo planted\n"),
    );
    nix::unistd::chown(
        &setup.etc("inetd.conf"),
        Some(nix::unistd::Uid::from_raw(65534)),
        None,
    )
    .expect("chown");
    let spawnd = setup.start();
    spawnd.log.expect(&[
        "config_error",
        &setup.etc("inetd.conf").display().to_string(),
        "owned by uid 65534",
    ]);
    assert!(refused_at_once(a));
}
