//! Regression tests for the holes a security audit found (issue 19), one
//! per hole, each named after what must never happen again. SECURITY.md
//! points at them.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

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

/// Runs `program args` as uid/gid 65534 (nobody).
fn as_nobody(program: &str) -> std::process::Command {
    let mut command = std::process::Command::new("setpriv");
    command.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
        program,
    ]);
    command
}

fn owner_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

/// A socket directory that another user owns lets that user swap the
/// socket for a link between spawnd's bind and its chown: spawnd refuses
/// to create a socket there (naming the directory), so a racing user never
/// gets a root-only file chowned to them. Before the fix spawnd bound and
/// chowned by path.
#[test]
fn a_socket_directory_another_user_controls_is_refused() {
    require!(
        is_root() && has_command("setpriv"),
        "needs root and setpriv to act as another user"
    );
    let config = Config::new();
    config.private_control_socket();
    let theirs = config.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let secret = config.path().join("secret");
    std::fs::write(&secret, "root only").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let socket = theirs.join("s.sock");
    // The other user keeps putting a link to the secret where the socket goes.
    let mut racer = as_nobody("sh")
        .arg("-c")
        .arg(format!(
            "while :; do rm -f {s}; ln -s {t} {s}; done",
            s = socket.display(),
            t = secret.display()
        ))
        .spawn()
        .unwrap();
    std::fs::set_permissions(config.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let port = free_port();
    config.service(
        "sock",
        &format!(
            "listen: {}\nunix_owner: nobody\nunix_mode: \"0600\"\nexec: [/bin/true]\n",
            socket.display()
        ),
    );
    config.service(
        "other",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/echo, fine]\n"),
    );
    let spawnd = Spawnd::start(&config);
    let _ = racer.kill();
    let _ = racer.wait();
    spawnd.log.expect(&[
        "service_error service=sock",
        "is a directory owned by uid 65534",
    ]);
    assert_eq!(owner_of(&secret), 0, "the secret stays root's");
    assert_eq!(tcp_read(port), "fine\n", "the other service runs");
}

/// In a sticky directory such as /tmp, others cannot remove or rename the
/// socket root creates: spawnd binds there, with the mode set at bind.
#[test]
fn a_socket_in_a_sticky_directory_is_created_with_its_mode() {
    let config = Config::new();
    config.private_control_socket();
    let sticky = config.path().join("sticky");
    std::fs::create_dir(&sticky).unwrap();
    std::fs::set_permissions(&sticky, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let socket = sticky.join("s.sock");
    config.service(
        "sock",
        &format!(
            "listen: {}\nunix_mode: \"0640\"\nexec: [/bin/echo, unix]\n",
            socket.display()
        ),
    );
    let _spawnd = Spawnd::start(&config);
    let meta = std::fs::symlink_metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.mode() & 0o777, 0o640);
    let mut reply = String::new();
    std::os::unix::net::UnixStream::connect(&socket)
        .unwrap()
        .read_to_string(&mut reply)
        .unwrap();
    assert_eq!(reply, "unix\n");
}

/// A live datagram socket sitting at a stream service's path answers a
/// stream connect with EPROTOTYPE, which was taken for "stale": spawnd
/// removed a socket another process was using. Only a socket that no type
/// of connection reaches is stale now.
#[test]
fn a_live_socket_of_another_type_is_never_removed() {
    let config = Config::new();
    config.private_control_socket();
    let path = config.path().join("dgram.sock");
    let live = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    config.service(
        "stream",
        &format!("listen: {}\nexec: [/bin/true]\n", path.display()),
    );
    let port = free_port();
    config.service(
        "other",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/echo, fine]\n"),
    );
    let spawnd = Spawnd::start(&config);
    spawnd.log.expect(&[
        "service_error service=stream",
        "another process is listening",
    ]);
    let sender = std::os::unix::net::UnixDatagram::unbound().unwrap();
    sender.send_to(b"still mine", &path).unwrap();
    let mut buffer = [0u8; 32];
    live.set_read_timeout(Some(WAIT)).unwrap();
    let n = live.recv(&mut buffer).unwrap();
    assert_eq!(&buffer[..n], b"still mine");
}

/// Banner files were opened as root following links, and with a blocking
/// open: a link planted in the banner's place sent a root-only file to
/// clients, and a FIFO hung spawnd (at start and on reload). Now a banner
/// that is a link, a FIFO or not root's is a configuration error.
#[test]
fn a_banner_is_never_read_through_a_link_or_from_a_fifo() {
    let config = Config::new();
    config.private_control_socket();
    let secret = config.path().join("secret");
    std::fs::write(&secret, "root only\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let link = config.path().join("banner-link");
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    let fifo = config.path().join("banner-fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let banner = config.path().join("banner");
    std::fs::write(&banner, "welcome\n").unwrap();
    let (linked, piped, fine) = (free_port(), free_port(), free_port());
    let service = |name: &str, port: u16, banner: &Path| {
        config.service(
            name,
            &format!(
                "listen: 127.0.0.1:{port}\nbanner: {}\nexec: [/bin/echo, {name}]\n",
                banner.display()
            ),
        );
    };
    service("linked", linked, &link);
    service("piped", piped, &fifo);
    service("fine", fine, &banner);
    let out = config.check();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("linked.yaml") && stderr.contains("a symbolic link"),
        "{stderr}"
    );
    assert!(
        stderr.contains("piped.yaml") && stderr.contains("a FIFO"),
        "{stderr}"
    );
    let spawnd = Spawnd::start(&config);
    assert_eq!(tcp_read(fine), "welcome\nfine\n");
    let reply = tcp_exchange(local(linked), b"").unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&reply).contains("root only"),
        "the secret reached a client"
    );
    // A reload meeting a FIFO in a banner's place finishes, and keeps the
    // service as it was.
    service("fine", fine, &fifo);
    spawnd.reload();
    spawnd.log.expect(&["reload_kept service=fine"]);
    assert_eq!(tcp_read(fine), "welcome\nfine\n");
}

/// The pid file was written through a predictable temporary name
/// (`NAME.tmp.PID`) with a call that follows links: a link planted under
/// that name made root overwrite its target. The temporary name is
/// unpredictable now, and created without following anything.
#[test]
fn the_pid_file_never_writes_through_a_planted_link() {
    let config = Config::new();
    config.private_control_socket();
    // Enough services that start-up takes a while after the pid is known.
    for n in 0..300 {
        config.service(
            &format!("s{n}"),
            &format!(
                "listen: \"@spawnd-pid-{}-{n}\"\nexec: [/bin/true]\n",
                std::process::id()
            ),
        );
    }
    let victim = config.path().join("victim");
    std::fs::write(&victim, "untouched\n").unwrap();
    let pid_file = config.path().join("spawnd.pid");
    let mut command = std::process::Command::new(BIN);
    command
        .arg("run")
        .arg("-c")
        .arg(config.path())
        .arg("--pid-file")
        .arg(&pid_file);
    let spawnd = Spawnd::spawn(command, |_| {});
    let planted = pid_file.with_extension(format!("tmp.{}", spawnd.pid()));
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    spawnd.log.expect(&["ready services="]);
    assert!(wait_until(|| pid_file.exists()));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched\n");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        spawnd.pid().to_string()
    );
}

/// The control socket's directory was used as found, and whatever sat at
/// the socket's path was removed: another user could pre-create the
/// directory and answer `spawnd status` in spawnd's place, or have spawnd
/// delete a file. Now a directory others may write to is refused, a
/// non-socket is never removed, and the client trusts only root or its own
/// user at the other end.
#[test]
fn the_control_socket_is_never_placed_where_others_control_it() {
    let config = Config::new();
    let open = config.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    config.global(&format!(
        "control_socket: {}\n",
        open.join("control.sock").display()
    ));
    config.service("a", "listen: \"@spawnd-ctl-a\"\nexec: [/bin/true]\n");
    {
        let spawnd = Spawnd::start(&config);
        spawnd.log.expect(&["control_error", "others can write to"]);
        assert!(!open.join("control.sock").exists());
    }
    // A regular file at the path is left alone.
    let file = config.path().join("control.sock");
    std::fs::write(&file, "data\n").unwrap();
    config.global(&format!("control_socket: {}\n", file.display()));
    {
        let spawnd = Spawnd::start(&config);
        spawnd.log.expect(&["control_error", "not a socket"]);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "data\n");
    }
}

/// `spawnd status` believed whoever answered on the socket.
#[test]
fn status_trusts_only_root_or_its_own_user() {
    require!(
        is_root() && has_command("setpriv") && Path::new("/usr/bin/python3").exists(),
        "needs root, setpriv and /usr/bin/python3 to run a fake server as another user"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let socket = dir.path().join("fake.sock");
    let fake = r#"{"pid":1,"version":"fake","children":0,"services":[]}"#;
    let mut server = as_nobody("/usr/bin/python3")
        .arg("-c")
        .arg(format!(
            "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])\ns.listen(1)\nprint('up',flush=True)\nc,_=s.accept()\nc.sendall(b'{fake}')\nc.close()\n"
        ))
        .arg(&socket)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut up = [0u8; 3];
    server.stdout.take().unwrap().read_exact(&mut up).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["status", "--json", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("fake"));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("served by uid 65534"),
        "{out:?}"
    );
}

/// Strict mode checked a service file's owner and mode but not the
/// directories a link to it leads through: a link to a file in a
/// directory anyone may write to was accepted.
#[test]
fn strict_mode_checks_the_directories_a_config_link_leads_through() {
    require!(is_root(), "strict mode applies when spawnd runs as root");
    let config = Config::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let open = elsewhere.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let target = open.join("linked.yaml");
    std::fs::write(&target, "listen: \"@spawnd-linked\"\nexec: [/bin/true]\n").unwrap();
    std::os::unix::fs::symlink(&target, config.path().join("services.d/linked.yaml")).unwrap();
    let out = config.check();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("linked.yaml") && stderr.contains("others can write to"),
        "{stderr}"
    );
    // The same link into a directory only root can write is fine.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(config.check().status.code(), Some(0));
}

/// A reload whose listing of services.d failed (EMFILE while clients held
/// every descriptor) took "no files" for "no services" and retired every
/// service, for good. A configuration that cannot be read now rejects the
/// reload and keeps everything as it runs.
#[test]
fn a_reload_that_cannot_read_the_configuration_keeps_every_service() {
    // No spawnd.yaml: its read would fail first and reject the reload anyway.
    let config = Config::new();
    let (echo, other) = (free_port(), free_port());
    config.service(
        "echo",
        &format!("listen: 127.0.0.1:{echo}\ninternal: echo\n"),
    );
    config.service(
        "other",
        &format!("listen: 127.0.0.1:{other}\nexec: [/bin/echo, fine]\n"),
    );
    let spawnd = Spawnd::start_with(&config, &[], |command| limit_files(command, 64));
    // Clients hold every descriptor spawnd has left.
    let mut held = Vec::new();
    while spawnd.log.count("accept_paused") == 0 && held.len() < 200 {
        if let Ok(stream) = TcpStream::connect(local(echo)) {
            held.push(stream);
        }
        if held.len() > 60 {
            spawnd.log.wait_for(&["accept_paused"]);
        }
    }
    spawnd.log.expect(&["accept_paused", "Too many open files"]);
    spawnd.reload();
    spawnd.log.expect(&["reload_rejected"]);
    assert_eq!(
        spawnd.log.count("service_removed"),
        0,
        "{}",
        spawnd.log.text()
    );
    drop(held);
    assert!(
        wait_until(|| tcp_exchange(local(other), b"").is_ok_and(|r| r == b"fine\n")),
        "{}",
        spawnd.log.text()
    );
    assert_eq!(tcp_exchange(local(echo), b"back\n").unwrap(), b"back\n");
}

/// The same when services.d cannot be listed (EACCES, spawnd not root).
#[test]
fn a_reload_that_cannot_list_services_d_keeps_every_service() {
    require!(
        is_root() && has_command("setpriv"),
        "needs root and setpriv to run spawnd as another user"
    );
    let config = Config::new();
    let port = free_port();
    config.service(
        "other",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/echo, fine]\n"),
    );
    config.global(&format!(
        "control_socket: {}\n",
        config.path().join("c.sock").display()
    ));
    for path in [
        config.path().to_path_buf(),
        config.path().join("services.d"),
    ] {
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    }
    std::fs::set_permissions(config.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut command = as_nobody(BIN);
    command.arg("run").arg("-c").arg(config.path());
    let spawnd = Spawnd::spawn(command, |_| {});
    spawnd.log.expect(&["ready services=1"]);
    let services = config.path().join("services.d");
    std::fs::set_permissions(&services, std::fs::Permissions::from_mode(0o000)).unwrap();
    spawnd.signal(Signal::SIGHUP);
    spawnd.log.expect(&["reload_rejected"]);
    assert_eq!(
        spawnd.log.count("service_removed"),
        0,
        "{}",
        spawnd.log.text()
    );
    assert_eq!(tcp_read(port), "fine\n");
    // Readable again, the next reload goes through.
    std::fs::set_permissions(&services, std::fs::Permissions::from_mode(0o755)).unwrap();
    spawnd.reload();
    spawnd.log.expect(&["reload_done services=1"]);
}

/// Raises this test process's descriptor limit (clients hold many).
fn raise_own_files(wanted: u64) {
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    let soft = wanted.min(hard);
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, soft, hard).unwrap();
}

/// A listener that accepts nothing: its backlog is full, so further
/// connection attempts get no answer (a blackholed target).
fn blackhole() -> (std::net::TcpListener, u16, Vec<TcpStream>) {
    use nix::sys::socket::{
        bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn,
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    bind(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0)).unwrap();
    listen(&fd, Backlog::new(0).unwrap()).unwrap();
    let listener = std::net::TcpListener::from(fd);
    let port = listener.local_addr().unwrap().port();
    // Fill the backlog; later SYNs are dropped.
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let addr = local(port);
        if let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            fillers.push(stream);
        }
    }
    (listener, port, fillers)
}

/// Idle in-process connections held a 64 KiB buffer each (the read buffer
/// was grown before a read that found nothing): 3,000 idle echo clients
/// took spawnd from 1.3 MB to 194 MB. Now an idle one holds no buffer.
#[test]
fn idle_in_process_connections_hold_no_buffer() {
    raise_own_files(8192);
    let (backend, backend_port) = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        (listener, port)
    };
    let config = Config::new();
    config.private_control_socket();
    let (echo, relay) = (free_port(), free_port());
    config.service(
        "echo",
        &format!("listen: 127.0.0.1:{echo}\ninternal: echo\nbacklog: 1024\n"),
    );
    config.service(
        "relay",
        &format!("listen: 127.0.0.1:{relay}\nredirect: 127.0.0.1:{backend_port}\nbacklog: 1024\n"),
    );
    let spawnd = Spawnd::start(&config);
    // Warm up: one of each, so the shared buffer exists.
    assert_eq!(tcp_exchange(local(echo), b"x").unwrap(), b"x");
    let mut held = Vec::new();
    let before = rss_kib(spawnd.pid());
    const ECHO: usize = 1500;
    const RELAYED: usize = 500;
    for _ in 0..ECHO {
        held.push(TcpStream::connect(local(echo)).unwrap());
    }
    let mut upstream = Vec::new();
    for _ in 0..RELAYED {
        held.push(TcpStream::connect(local(relay)).unwrap());
        upstream.push(backend.accept().unwrap().0);
    }
    // Every connection has been served at least once (accepted and read).
    assert!(
        spawnd.log.wait_for_n(&["accept service=echo"], ECHO + 1),
        "{}",
        spawnd.log.text()
    );
    assert!(spawnd.log.wait_for_n(&["accept service=relay"], RELAYED));
    let grown = rss_kib(spawnd.pid()).saturating_sub(before);
    // 64 KiB each before the fix: 128 MiB. Kernel-side socket memory is not
    // spawnd's; its own state is a few hundred bytes a connection.
    assert!(
        grown < 4 * 1024,
        "{} idle in-process connections grew spawnd by {grown} KiB",
        ECHO + RELAYED
    );
    // And they still work.
    let mut stream = held.swap_remove(0);
    stream.write_all(b"still here").unwrap();
    let mut reply = [0u8; 10];
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"still here");
}

/// In-process connections never timed out, and `limits.timeout` was
/// accepted for them but ignored; a relay to a blackholed target held its
/// client for good. Now `timeout`, `idle_timeout` and `connect_timeout`
/// end them, logged and counted.
#[test]
fn in_process_connections_time_out() {
    let config = Config::new();
    let control = config.private_control_socket();
    let (idle, long, relay) = (free_port(), free_port(), free_port());
    let (_listener, dead, _fillers) = blackhole();
    config.service(
        "idle",
        &format!("listen: 127.0.0.1:{idle}\ninternal: echo\nlimits: {{idle_timeout: 300ms}}\n"),
    );
    config.service(
        "long",
        &format!("listen: 127.0.0.1:{long}\ninternal: chargen\nlimits: {{timeout: 500ms}}\n"),
    );
    config.service(
        "relay",
        &format!(
            "listen: 127.0.0.1:{relay}\nredirect: 127.0.0.1:{dead}\nlimits: {{connect_timeout: 300ms}}\n"
        ),
    );
    let spawnd = Spawnd::start(&config);
    // An idle client is closed; spawnd does not wait for it to speak.
    let mut quiet = TcpStream::connect(local(idle)).unwrap();
    quiet.set_read_timeout(Some(WAIT)).unwrap();
    let mut buffer = [0u8; 16];
    assert_eq!(quiet.read(&mut buffer).unwrap(), 0, "closed by spawnd");
    spawnd.log.expect(&["exit service=idle", "timeout=idle"]);
    // A reading client of chargen is closed when `timeout` is over.
    let mut reader = TcpStream::connect(local(long)).unwrap();
    reader.set_read_timeout(Some(WAIT)).unwrap();
    let mut sink = Vec::new();
    let _ = reader.read_to_end(&mut sink);
    assert!(!sink.is_empty());
    spawnd.log.expect(&["exit service=long", "timeout=limit"]);
    // A relay whose target never answers gives up.
    let reply = tcp_exchange(local(relay), b"").unwrap_or_default();
    assert!(reply.is_empty());
    spawnd
        .log
        .expect(&["exit service=relay", "timeout=connect"]);
    let report = status_json(&control);
    let service = |name: &str| {
        report["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(service("idle")["timeouts"], 1);
    assert_eq!(service("long")["timeouts"], 1);
    assert_eq!(service("relay")["timeouts"], 1);
    assert_eq!(service("relay")["spawn_failures"], 1);
}

/// `max_in_process` caps connections served inside spawnd, across
/// services; over it a client is accepted and closed, and the refusal is
/// logged and counted like every other.
#[test]
fn max_in_process_caps_connections_served_inside_spawnd() {
    let config = Config::new();
    let socket = config.path().join("c.sock");
    config.global(&format!(
        "control_socket: {}\nmax_in_process: 3\n",
        socket.display()
    ));
    let port = free_port();
    config.service(
        "echo",
        &format!("listen: 127.0.0.1:{port}\ninternal: echo\n"),
    );
    let spawnd = Spawnd::start(&config);
    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(local(port)).unwrap())
        .collect();
    assert!(spawnd.log.wait_for_n(&["accept service=echo"], 3));
    assert!(refused_at_once(port));
    spawnd
        .log
        .expect(&["refuse service=echo", "reason=max_in_process"]);
    drop(held);
    assert!(wait_until(
        || tcp_exchange(local(port), b"ok").is_ok_and(|r| r == b"ok")
    ));
    let out = config.check();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

/// The new keys are checked: `connect_timeout` only with redirect,
/// `idle_timeout` only for what spawnd serves itself.
#[test]
fn in_process_timeouts_are_refused_where_they_mean_nothing() {
    let config = Config::new();
    config.service(
        "program",
        "listen: \"@spawnd-p\"\nexec: [/bin/true]\nlimits: {idle_timeout: 1m}\n",
    );
    config.service(
        "echo",
        "listen: \"@spawnd-e\"\ninternal: echo\nlimits: {connect_timeout: 1s}\n",
    );
    config.service(
        "zero",
        "listen: 127.0.0.1:1\nredirect: 127.0.0.1:2\nlimits: {connect_timeout: 0s}\n",
    );
    let out = config.check();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("program.yaml:3:") && stderr.contains("limits.idle_timeout: applies only"),
        "{stderr}"
    );
    assert!(
        stderr.contains("echo.yaml")
            && stderr.contains("limits.connect_timeout: applies only to redirect"),
        "{stderr}"
    );
    assert!(
        stderr.contains("zero.yaml") && stderr.contains("must be more than 0"),
        "{stderr}"
    );
}

fn service_report(control: &Path, name: &str) -> serde_json::Value {
    status_json(control)["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no service {name}"))
}

const UPPER: &str = "exec: [/usr/bin/perl, -e, 'my $p = recv(STDIN, my $d, 65535, 0); send(STDOUT, uc($d), 0, $p);']\n";

/// A wait-mode datagram program that exits without reading its datagram
/// was started again at once, forever (in.tftpd with a missing directory:
/// 1,800 starts in 3 s for one datagram). Now the datagram it left unread
/// is dropped, logged and counted: one start per datagram.
#[test]
fn a_datagram_program_that_never_reads_starts_once_per_datagram() {
    let config = Config::new();
    let control = config.private_control_socket();
    let (failing, upper) = (free_port(), free_port());
    config.service(
        "failing",
        &format!("socket: dgram\nlisten: 127.0.0.1:{failing}\nexec: [/bin/sh, -c, 'exit 66']\n"),
    );
    config.service(
        "upper",
        &format!("socket: dgram\nlisten: 127.0.0.1:{upper}\n{UPPER}"),
    );
    let spawnd = Spawnd::start(&config);
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.send_to(b"read me", local(failing)).unwrap();
    spawnd.log.expect(&["datagram_unread service=failing"]);
    // The service beside it works, and the loop has gone round since.
    assert_eq!(udp_exchange(local(upper), b"hi").unwrap(), b"HI");
    sender.send_to(b"and me", local(failing)).unwrap();
    assert!(spawnd
        .log
        .wait_for_n(&["datagram_unread service=failing"], 2));
    assert_eq!(udp_exchange(local(upper), b"hi").unwrap(), b"HI");
    assert_eq!(
        spawnd.log.count("accept service=failing"),
        2,
        "{}",
        spawnd.log.text()
    );
    let report = service_report(&control, "failing");
    assert_eq!(report["unread_datagrams"], 2);
    assert_eq!(report["accepted"], 2);
}

/// A child that reads its datagram and exits keeps today's behaviour: a
/// datagram that arrived meanwhile, even one with the same sender and
/// bytes (a retransmission), starts a new child.
#[test]
fn a_datagram_that_arrived_while_a_child_ran_starts_another() {
    let config = Config::new();
    config.private_control_socket();
    let port = free_port();
    config.service(
        "upper",
        &format!("socket: dgram\nlisten: 127.0.0.1:{port}\n{UPPER}"),
    );
    let spawnd = Spawnd::start(&config);
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    for _ in 0..3 {
        client.send_to(b"same", local(port)).unwrap();
    }
    let mut buffer = [0u8; 16];
    for _ in 0..3 {
        let (n, _) = client.recv_from(&mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"SAME");
    }
    assert_eq!(
        spawnd.log.count("datagram_unread"),
        0,
        "{}",
        spawnd.log.text()
    );
}

/// One spoofed datagram from spawnd's own chargen to its echo started an
/// endless loop between the two (the guard covered only ports below
/// 1024). Now no datagram from one of spawnd's own datagram sockets is
/// answered.
#[test]
fn udp_internal_services_never_answer_spawnds_own_sockets() {
    let config = Config::new();
    let control = config.private_control_socket();
    let (echo, chargen) = (free_port(), free_port());
    config.service(
        "echo",
        &format!("socket: dgram\nlisten: 127.0.0.1:{echo}\ninternal: echo\n"),
    );
    config.service(
        "chargen",
        &format!("socket: dgram\nlisten: 127.0.0.1:{chargen}\ninternal: chargen\n"),
    );
    let spawnd = Spawnd::start(&config);
    // A datagram "from" chargen's address: a socket bound beside it.
    let spoof = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    nix::sys::socket::setsockopt(&spoof, nix::sys::socket::sockopt::ReuseAddr, &true).unwrap();
    nix::sys::socket::bind(
        spoof.as_raw_fd(),
        &nix::sys::socket::SockaddrIn::new(127, 0, 0, 1, chargen),
    )
    .unwrap();
    let spoof = std::net::UdpSocket::from(spoof);
    spoof.send_to(b"start a loop", local(echo)).unwrap();
    spawnd
        .log
        .expect(&["udp_refuse service=echo", "reason=own_address"]);
    let report = service_report(&control, "echo");
    assert_eq!(report["accepted"], 0);
    assert_eq!(service_report(&control, "chargen")["accepted"], 0);
}

/// Two hosts could still be made to loop through spawnd; replies to one
/// source are budgeted (16 a second), which cuts any loop at its first
/// reply held back.
#[test]
fn udp_replies_to_one_source_are_budgeted() {
    let config = Config::new();
    let control = config.private_control_socket();
    let echo = free_port();
    config.service(
        "echo",
        &format!("socket: dgram\nlisten: 127.0.0.1:{echo}\ninternal: echo\n"),
    );
    let spawnd = Spawnd::start(&config);
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..100 {
        client.send_to(b"x", local(echo)).unwrap();
    }
    assert!(spawnd
        .log
        .wait_for_n(&["udp_refuse service=echo", "reason=reply_budget"], 80));
    let report = service_report(&control, "echo");
    let accepted = report["accepted"].as_u64().unwrap();
    assert!((16..=20).contains(&accepted), "{report}");
    // Another source is not held back.
    let other = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
    other.set_read_timeout(Some(WAIT)).unwrap();
    other.send_to(b"other", local(echo)).unwrap();
    let mut buffer = [0u8; 8];
    let (n, _) = other.recv_from(&mut buffer).unwrap();
    assert_eq!(&buffer[..n], b"other");
}

/// Refused datagrams of a wait-mode service were dropped in a loop with no
/// bound: a sender faster than the drop held spawnd in it, serving nobody
/// else. Now it drops a batch per turn.
#[test]
fn a_flood_of_refused_datagrams_does_not_hold_the_loop() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let config = Config::new();
    config.private_control_socket();
    let (denied, other) = (free_port(), free_port());
    config.service(
        "denied",
        &format!(
            "socket: dgram\nlisten: 127.0.0.1:{denied}\naccess: {{deny: [127.0.0.0/8]}}\n{UPPER}"
        ),
    );
    config.service(
        "other",
        &format!("listen: 127.0.0.1:{other}\nexec: [/bin/echo, fine]\n"),
    );
    let spawnd = Spawnd::start(&config);
    let stop = Arc::new(AtomicBool::new(false));
    let floods: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                socket.connect(local(denied)).unwrap();
                // 64 datagrams a system call: far faster than one each.
                let mut payload = *b"flood";
                let mut iov = libc::iovec {
                    iov_base: payload.as_mut_ptr().cast(),
                    iov_len: payload.len(),
                };
                // SAFETY: all-zero mmsghdrs are empty messages, filled below.
                let mut messages: Vec<libc::mmsghdr> = (0..64)
                    .map(|_| unsafe { std::mem::zeroed::<libc::mmsghdr>() })
                    .collect();
                for message in &mut messages {
                    message.msg_hdr.msg_iov = &mut iov;
                    message.msg_hdr.msg_iovlen = 1;
                }
                while !stop.load(Ordering::Relaxed) {
                    // SAFETY: every header points at `iov`, which outlives the call.
                    unsafe {
                        libc::sendmmsg(socket.as_raw_fd(), messages.as_mut_ptr(), 64, 0);
                    }
                }
            })
        })
        .collect();
    spawnd.log.expect(&["refuse service=denied"]);
    let served = (0..5).all(|_| tcp_exchange(local(other), b"").is_ok_and(|r| r == b"fine\n"));
    spawnd.reload();
    stop.store(true, Ordering::Relaxed);
    for flood in floods {
        flood.join().unwrap();
    }
    assert!(served, "{}", spawnd.log.text());
}

/// With its stderr on a pipe nobody read, spawnd stalled in the write
/// after about 800 connections and served nobody. Now stderr is written
/// without blocking: what does not fit is dropped, counted, and the count
/// logged once lines get through again; no line is cut.
#[test]
fn a_stderr_nobody_reads_never_stalls_spawnd() {
    let config = Config::new();
    config.private_control_socket();
    let port = free_port();
    config.service(
        "hello",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/echo, hello]\nbacklog: 1024\n"),
    );
    let (reader, writer) = nix::unistd::pipe().unwrap();
    let mut child = std::process::Command::new(BIN)
        .arg("run")
        .arg("-c")
        .arg(config.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(writer))
        .spawn()
        .unwrap();
    let pid = child.id();
    let served = (|| {
        // Ready once it answers; its log is not read meanwhile.
        if !wait_until(|| tcp_exchange(local(port), b"").is_ok()) {
            return false;
        }
        // Each connection logs a line of about 80 bytes: far more than the
        // pipe's 64 KiB.
        (0..3000).all(|_| tcp_exchange(local(port), b"").is_ok_and(|r| r == b"hello\n"))
    })();
    // Drain the pipe, then one more connection: its line comes after the
    // count of those dropped.
    let mut reader = std::fs::File::from(reader);
    nix::fcntl::fcntl(
        &reader,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .unwrap();
    let mut text = Vec::new();
    let _ = reader.read_to_end(&mut text);
    let more = tcp_exchange(local(port), b"").is_ok();
    let found = wait_until(|| {
        let _ = reader.read_to_end(&mut text);
        String::from_utf8_lossy(&text).contains("log_dropped count=")
    });
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
    let _ = child.wait();
    assert!(served, "spawnd stopped serving with a full stderr");
    assert!(more);
    assert!(found, "no log_dropped line");
    // Every line that got through is whole.
    let text = String::from_utf8_lossy(&text);
    for line in text.lines() {
        let level = line.split_whitespace().nth(1).unwrap_or_default();
        assert!(
            ["info", "warn", "error", "debug"].contains(&level),
            "a cut line: {line:?}"
        );
    }
}

/// A program that cannot start failed for every client with a line each
/// (2,928 lines in 0.3 s): failure lines are budgeted per service now,
/// as refusals are, with the number left out.
#[test]
fn failures_to_start_a_program_are_logged_within_a_budget() {
    let config = Config::new();
    config.private_control_socket();
    let port = free_port();
    let program = config.script("vanishing", "#!/bin/sh\necho here\n");
    config.service(
        "gone",
        &format!(
            "listen: 127.0.0.1:{port}\nexec: [{}]\nbacklog: 1024\n",
            program.display()
        ),
    );
    let spawnd = Spawnd::start(&config);
    std::fs::remove_file(&program).unwrap();
    for _ in 0..200 {
        let _ = tcp_exchange(local(port), b"");
    }
    assert!(spawnd.log.wait_for(&["exec_failed service=gone"]));
    let logged = spawnd.log.count("exec_failed service=gone");
    assert!(logged <= 25, "{logged} exec_failed lines for 200 clients");
    // Later, a line says how many were left out.
    assert!(wait_until(|| {
        let _ = tcp_exchange(local(port), b"");
        spawnd.log.count("suppressed=") > 0
    }));
}

/// `unix_mode: 0o660` (YAML 1.2 octal) gave the socket mode 0432, letting
/// others connect, and `check` said it was fine. A mode YAML reads as a
/// number is refused now, with its place; written as a string, every form
/// means its octal digits.
#[test]
fn a_mode_yaml_reads_as_a_number_is_refused() {
    let config = Config::new();
    config.private_control_socket();
    let socket = config.path().join("s.sock");
    config.service(
        "octal",
        &format!(
            "listen: {}\nexec: [/bin/true]\nunix_mode: 0o660\n",
            socket.display()
        ),
    );
    config.service(
        "umask",
        "listen: \"@spawnd-umask\"\nexec: [/bin/true]\numask: 0o077\n",
    );
    let out = config.check();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("octal.yaml:3:12: unix_mode: write the mode as a quoted octal string"),
        "{stderr}"
    );
    assert!(
        stderr.contains("umask.yaml:3:8: umask: write the mode"),
        "{stderr}"
    );
    config.service(
        "octal",
        &format!(
            "listen: {}\nexec: [/bin/true]\nunix_mode: \"0o660\"\n",
            socket.display()
        ),
    );
    config.remove_service("umask");
    let _spawnd = Spawnd::start(&config);
    assert_eq!(
        std::fs::symlink_metadata(&socket).unwrap().mode() & 0o777,
        0o660
    );
}

/// Deeply nested flow collections took the YAML parser 15 s (100,000
/// `[`), in the event loop during a reload. They are refused before
/// parsing now, with the place.
#[test]
fn deeply_nested_yaml_is_refused_before_parsing() {
    let config = Config::new();
    config.private_control_socket();
    let port = free_port();
    config.service(
        "fine",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/echo, fine]\n"),
    );
    let spawnd = Spawnd::start(&config);
    config.service("deep", &format!("listen: {}\n", "[".repeat(100_000)));
    spawnd.reload();
    spawnd
        .log
        .expect(&["config_error", "deep.yaml:1:73", "nested more than 64"]);
    assert_eq!(tcp_read(port), "fine\n");
}

/// With a relative `-c`, services were loaded under relative file names at
/// start and absolute ones on reload: the first reload took every service
/// for a changed one (and rebuilt it).
#[test]
fn a_relative_config_dir_reloads_nothing_that_did_not_change() {
    let config = Config::new();
    config.private_control_socket();
    let port = free_port();
    config.service(
        "same",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/echo, same]\n"),
    );
    let parent = config.path().parent().unwrap().to_path_buf();
    let relative = config.path().file_name().unwrap().to_owned();
    let mut command = std::process::Command::new(BIN);
    command
        .arg("run")
        .arg("-c")
        .arg(&relative)
        .current_dir(&parent);
    let spawnd = Spawnd::spawn(command, |_| {});
    spawnd.log.expect(&["ready services=1"]);
    spawnd.reload();
    spawnd
        .log
        .expect(&["reload_done services=1 added=0 updated=0 removed=0"]);
}

/// The converter wrote a service named `tool.rpmx` to `tool.rpmx.yaml`,
/// which the loader ignores (a package leftover's name): the service was
/// silently lost. Names the loader would skip are changed, with a warning.
#[test]
fn converted_services_get_file_names_the_loader_reads() {
    let dir = tempfile::tempdir().unwrap();
    let xinetd = dir.path().join("tool");
    std::fs::write(
        &xinetd,
        "service tool.rpmx\n{\n socket_type = stream\n protocol = tcp\n port = 4999\n wait = no\n user = root\n server = /bin/true\n}\n",
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    let out = std::process::Command::new(BIN)
        .args(["convert", "xinetd"])
        .arg(&xinetd)
        .arg("-o")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("written as 'tool-rpmx'"),
        "{out:?}"
    );
    assert!(out_dir.join("services.d/tool-rpmx.yaml").exists());
    let check = std::process::Command::new(BIN)
        .args(["check", "--insecure-config", "-c"])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("ok tool-rpmx"),
        "{check:?}"
    );
}

/// Ambient capabilities reached every child (an unprivileged spawnd with
/// ambient CAP_NET_BIND_SERVICE gave its children CapAmb=0x400). A child
/// now gets none.
#[test]
fn children_inherit_no_ambient_capability() {
    require!(
        is_root() && has_command("setpriv"),
        "needs root and setpriv to start spawnd with an ambient capability"
    );
    let config = Config::new();
    let port = free_port();
    config.service(
        "caps",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/grep, CapAmb, /proc/self/status]\n"),
    );
    config.global(&format!(
        "control_socket: {}\n",
        config.path().join("c.sock").display()
    ));
    for path in [
        config.path().to_path_buf(),
        config.path().join("services.d"),
    ] {
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    }
    std::fs::set_permissions(config.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut command = std::process::Command::new("setpriv");
    command
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=+net_bind_service",
            "--ambient-caps=+net_bind_service",
            "--",
            BIN,
            "run",
            "-c",
        ])
        .arg(config.path());
    let spawnd = Spawnd::spawn(command, |_| {});
    spawnd.log.expect(&["ready services=1"]);
    let own = std::fs::read_to_string(format!("/proc/{}/status", spawnd.pid())).unwrap();
    assert!(own.contains("CapAmb:\t0000000000000400"), "{own}");
    assert_eq!(tcp_read(port), "CapAmb:\t0000000000000000\n");
}

/// `limits.processes` (RLIMIT_NPROC) is not enforced for root: `check`
/// says so of a service whose program runs as root.
#[test]
fn check_warns_that_nproc_does_not_bind_root() {
    require!(is_root(), "needs spawnd's children to run as root");
    let config = Config::new();
    config.service(
        "rooted",
        "listen: \"@spawnd-nproc\"\nexec: [/bin/true]\nlimits:\n  processes: 10\n",
    );
    config.service(
        "dropped",
        "listen: \"@spawnd-nproc2\"\nexec: [/bin/true]\nuser: nobody\nlimits: {processes: 10}\n",
    );
    let out = config.check();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a warning, not an error: {stderr}"
    );
    assert!(
        stderr.contains("warning: ")
            && stderr.contains("rooted.yaml:4:3: limits.processes: has no effect"),
        "{stderr}"
    );
    assert!(!stderr.contains("dropped.yaml"), "{stderr}");
}
