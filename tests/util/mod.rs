//! Test harness: runs the real `spawnd` binary on a fresh configuration
//! directory, waits for readiness from its log (never a fixed sleep), and
//! gives the tests its log and pid. Every test uses loopback only.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_spawnd");
/// Generous: CI machines are shared and slow; waits end as soon as the
/// condition holds.
pub const WAIT: Duration = Duration::from_secs(20);

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A port free on 127.0.0.1 (TCP and UDP) and on ::1, and held for the
/// rest of the test binary's life so that nothing takes it before spawnd
/// binds it: a TCP socket is kept bound on each address, not listening,
/// with SO_REUSEADDR. spawnd (which binds with SO_REUSEADDR too) can bind
/// and listen there; a program binding without SO_REUSEADDR cannot, nor
/// does the kernel choose a held port for an outgoing connection. UDP is
/// only checked, not held: a socket bound there could receive datagrams
/// meant for spawnd.
///
/// Ports come from below the kernel's ephemeral range (32768 and up) and
/// from a counter shared by the test binary's threads, so no two tests get
/// the same port. Each test binary starts at its own offset.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    static HELD: Mutex<Vec<std::os::fd::OwnedFd>> = Mutex::new(Vec::new());
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % COUNT,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..COUNT {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % COUNT) as u16;
        let v4 = SocketAddr::from(([127, 0, 0, 1], port));
        let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
        let (Some(hold_v4), Some(hold_v6)) = (hold(v4), hold(v6)) else {
            continue;
        };
        // A listener elsewhere fails these binds even though the holders
        // (not listening) did not.
        if TcpListener::bind(v4).is_ok()
            && TcpListener::bind(v6).is_ok()
            && UdpSocket::bind(v4).is_ok()
        {
            let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
            held.push(hold_v4);
            held.push(hold_v6);
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + COUNT);
}

/// A TCP socket bound to `addr` with SO_REUSEADDR and not listening.
fn hold(addr: SocketAddr) -> Option<std::os::fd::OwnedFd> {
    use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrStorage};
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).ok()?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true).ok()?;
    if addr.is_ipv6() {
        socket::setsockopt(&fd, sockopt::Ipv6V6Only, &true).ok()?;
    }
    socket::bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrStorage::from(addr),
    )
    .ok()?;
    Some(fd)
}

/// A configuration directory with `services.d/`.
pub struct Config {
    pub dir: tempfile::TempDir,
}

impl Config {
    pub fn new() -> Config {
        let dir = tempfile::Builder::new()
            .prefix("spawnd-test")
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir(dir.path().join("services.d")).expect("services.d");
        Config { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn service(&self, name: &str, yaml: &str) -> PathBuf {
        let path = self
            .dir
            .path()
            .join("services.d")
            .join(format!("{name}.yaml"));
        std::fs::write(&path, yaml).expect("write service file");
        path
    }

    pub fn remove_service(&self, name: &str) {
        std::fs::remove_file(
            self.dir
                .path()
                .join("services.d")
                .join(format!("{name}.yaml")),
        )
        .expect("remove");
    }

    pub fn global(&self, yaml: &str) {
        std::fs::write(self.dir.path().join("spawnd.yaml"), yaml).expect("write spawnd.yaml");
    }

    /// An executable script in the config dir.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.path().join(name);
        std::fs::write(&path, body).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    pub fn check(&self) -> std::process::Output {
        Command::new(BIN)
            .args(["check", "-c"])
            .arg(self.path())
            .output()
            .expect("run spawnd check")
    }
}

#[derive(Default)]
struct LogState {
    lines: Vec<String>,
    closed: bool,
}

/// The log of a running spawnd, collected by a reader thread.
#[derive(Clone, Default)]
pub struct Log(Arc<(Mutex<LogState>, Condvar)>);

impl Log {
    fn push(&self, line: String) {
        let (state, cond) = &*self.0;
        if let Ok(mut s) = state.lock() {
            s.lines.push(line);
        }
        cond.notify_all();
    }

    fn close(&self) {
        let (state, cond) = &*self.0;
        if let Ok(mut s) = state.lock() {
            s.closed = true;
        }
        cond.notify_all();
    }

    pub fn text(&self) -> String {
        self.0
             .0
            .lock()
            .map(|s| s.lines.join("\n"))
            .unwrap_or_default()
    }

    pub fn count(&self, needle: &str) -> usize {
        self.0
             .0
            .lock()
            .map(|s| s.lines.iter().filter(|l| l.contains(needle)).count())
            .unwrap_or(0)
    }

    /// Waits until at least `n` lines contain every one of `needles`.
    pub fn wait_for_n(&self, needles: &[&str], n: usize) -> bool {
        let (state, cond) = &*self.0;
        let deadline = Instant::now() + WAIT;
        let mut guard = state.lock().expect("log lock");
        loop {
            let found = guard
                .lines
                .iter()
                .filter(|l| needles.iter().all(|n| l.contains(n)))
                .count();
            if found >= n {
                return true;
            }
            let now = Instant::now();
            if now >= deadline || guard.closed {
                return false;
            }
            guard = cond
                .wait_timeout(guard, deadline - now)
                .expect("log wait")
                .0;
        }
    }

    pub fn wait_for(&self, needles: &[&str]) -> bool {
        self.wait_for_n(needles, 1)
    }

    #[track_caller]
    pub fn expect(&self, needles: &[&str]) {
        assert!(
            self.wait_for(needles),
            "log never had a line with {needles:?}; log:\n{}",
            self.text()
        );
    }
}

/// A running spawnd; stopped with SIGTERM (then SIGKILL) on drop.
pub struct Spawnd {
    pub child: Child,
    pub log: Log,
}

impl Spawnd {
    pub fn start(config: &Config) -> Spawnd {
        Self::start_with(config, &[], |_| {})
    }

    /// Starts `spawnd run -c DIR ARGS`, after `customize` adjusts the command.
    pub fn start_with(
        config: &Config,
        args: &[&str],
        customize: impl FnOnce(&mut Command),
    ) -> Spawnd {
        let mut command = Command::new(BIN);
        command.arg("run").arg("-c").arg(config.path()).args(args);
        let spawnd = Self::spawn(command, customize);
        spawnd.log.expect(&["ready services="]);
        spawnd
    }

    /// Starts the command without waiting for readiness.
    pub fn spawn(mut command: Command, customize: impl FnOnce(&mut Command)) -> Spawnd {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command.env("RUST_LOG", "debug").env_remove("NOTIFY_SOCKET");
        customize(&mut command);
        let mut child = command.spawn().expect("start spawnd");
        let log = Log::default();
        let stderr = child.stderr.take().expect("stderr pipe");
        // spawnd's logging never blocks: what a full pipe cannot take is
        // dropped and counted (`log_dropped`). Tests count the lines of
        // bursts (a thousand connections closing at once), so the pipe gets
        // room for a burst while this thread catches up.
        let _ = nix::fcntl::fcntl(&stderr, nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20));
        let writer = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                match line {
                    Ok(line) => writer.push(line),
                    Err(_) => break,
                }
            }
            writer.close();
        });
        Spawnd { child, log }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal)
            .expect("signal spawnd");
    }

    /// Sends SIGHUP and waits for the reload to finish (the n-th one).
    pub fn reload(&self) {
        let before = self.log.count("reload_done") + self.log.count("reload_rejected");
        self.signal(nix::sys::signal::Signal::SIGHUP);
        let deadline = Instant::now() + WAIT;
        while self.log.count("reload_done") + self.log.count("reload_rejected") <= before {
            assert!(
                Instant::now() < deadline,
                "reload did not finish; log:\n{}",
                self.log.text()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Zombie children of spawnd right now.
    pub fn zombies(&self) -> usize {
        children_of(self.pid())
            .iter()
            .filter(|(_, state)| *state == 'Z')
            .count()
    }

    /// Waits until spawnd has reaped every exited child.
    pub fn no_zombies(&self) -> bool {
        wait_until(|| self.zombies() == 0)
    }

    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for Spawnd {
    fn drop(&mut self) {
        // Children lead their own process groups and would outlive a
        // spawnd stopped before its shutdown grace ends (a wait-mode child
        // blocked in accept, say): end them first.
        for (pid, _) in children_of(self.pid()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid()),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `condition` until it holds or `WAIT` passes.
pub fn wait_until(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// (pid, state) of every process whose parent is `parent`.
pub fn children_of(parent: i32) -> Vec<(i32, char)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The command may contain spaces and parentheses: parse after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid: i32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if ppid == parent {
            found.push((pid, state));
        }
    }
    found
}

/// Connects and reads everything until EOF, writing `input` first (then
/// half-closing).
pub fn tcp_exchange(addr: impl Into<SocketAddr>, input: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&addr.into(), WAIT)?;
    stream.set_read_timeout(Some(WAIT))?;
    if !input.is_empty() {
        stream.write_all(input)?;
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out)?;
    Ok(out)
}

pub fn tcp_read(port: u16) -> String {
    let out = tcp_exchange(SocketAddr::from(([127, 0, 0, 1], port)), b"").expect("tcp exchange");
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends one datagram and waits for one reply.
pub fn udp_exchange(addr: SocketAddr, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let bind: SocketAddr = if addr.is_ipv4() {
        "127.0.0.1:0".parse().unwrap()
    } else {
        "[::1]:0".parse().unwrap()
    };
    let socket = UdpSocket::bind(bind)?;
    socket.set_read_timeout(Some(Duration::from_secs(5)))?;
    socket.send_to(data, addr)?;
    let mut buf = vec![0u8; 65536];
    let (n, _) = socket.recv_from(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// True when a connection is closed by the server without any data.
pub fn refused_at_once(port: u16) -> bool {
    match tcp_exchange(SocketAddr::from(([127, 0, 0, 1], port)), b"") {
        Ok(data) => data.is_empty(),
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionRefused
        ),
    }
}

pub fn has_command(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
        .unwrap_or(false)
}

/// Skips a test (with a visible reason) when a precondition is missing;
/// under `CI=true` a missing precondition fails it instead (`skip`).
#[macro_export]
macro_rules! require {
    ($cond:expr, $why:expr) => {
        if !$cond {
            $crate::util::skip($why);
            return;
        }
    };
}

/// Where skipped tests are noted, for `tests/zz_skipped.rs` to report at
/// the end of the run.
fn skip_record() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("skipped-tests.txt")
}

/// A test cannot run here: say so on the real stderr (libtest captures
/// only `eprintln!`, so this shows without `--nocapture`), and note it for
/// the summary. Under `CI=true` (the CI machine installs everything the
/// tests need) a missing prerequisite is a failure, not a skip.
pub fn skip(why: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: a prerequisite is missing under CI=true: {why}");
    }
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
    if let Ok(mut record) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(skip_record())
    {
        let _ = writeln!(record, "{test}: {why}");
    }
}

/// Prints how many tests were skipped in this run and why (then forgets
/// them, for the next run).
pub fn report_skips() {
    let text = std::fs::read_to_string(skip_record()).unwrap_or_default();
    let _ = std::fs::remove_file(skip_record());
    let lines: Vec<&str> = text.lines().collect();
    let mut out = std::io::stderr();
    if lines.is_empty() {
        let _ = writeln!(out, "\nspawnd tests: none skipped");
        return;
    }
    let _ = writeln!(out, "\nspawnd tests: {} skipped here:", lines.len());
    for line in lines {
        let _ = writeln!(out, "  {line}");
    }
}

/// Starts spawnd inside a new network namespace that has only loopback (so
/// third-party daemons' name lookups cannot leave the machine). `None` when
/// namespaces are not available here (not root).
pub fn start_in_netns(config: &Config) -> Option<Spawnd> {
    if !is_root() || !has_command("unshare") || !has_command("ip") {
        skip("a loopback-only network namespace needs root, unshare and ip");
        return None;
    }
    let mut command = Command::new("unshare");
    command
        .args([
            "--net",
            "--",
            "sh",
            "-c",
            "ip link set lo up && exec \"$@\"",
            "sh",
            BIN,
            "run",
            "-c",
        ])
        .arg(config.path());
    let spawnd = Spawnd::spawn(command, |_| {});
    spawnd.log.expect(&["ready services="]);
    Some(spawnd)
}

/// Runs a client command inside spawnd's network namespace.
pub fn netns_command(spawnd: &Spawnd, program: &str) -> Command {
    let mut command = Command::new("nsenter");
    command
        .arg(format!("--net=/proc/{}/ns/net", spawnd.pid()))
        .arg("--")
        .arg(program);
    command
}

/// Runs `work` on a thread that has joined spawnd's network namespace.
pub fn in_netns<T: Send + 'static>(
    spawnd: &Spawnd,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    let ns = std::fs::File::open(format!("/proc/{}/ns/net", spawnd.pid())).expect("open netns");
    std::thread::spawn(move || {
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        work()
    })
    .join()
    .expect("netns thread")
}

/// A TCP connection from a chosen loopback source address (127.0.0.2 plays
/// a second client).
pub fn connect_from(source: &str, target: SocketAddr) -> std::io::Result<TcpStream> {
    use nix::sys::socket::{
        bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrStorage,
    };
    use std::os::fd::AsRawFd;
    let source: SocketAddr = format!("{source}:0")
        .parse()
        .or_else(|_| format!("[{source}]:0").parse())
        .expect("source address");
    let family = if source.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    bind(fd.as_raw_fd(), &SockaddrStorage::from(source))?;
    connect(fd.as_raw_fd(), &SockaddrStorage::from(target))?;
    let stream = TcpStream::from(fd);
    stream.set_read_timeout(Some(WAIT))?;
    Ok(stream)
}

/// Reads until EOF from a connection made from `source`.
pub fn read_from(source: &str, port: u16) -> std::io::Result<String> {
    let mut stream = connect_from(source, SocketAddr::from(([127, 0, 0, 1], port)))?;
    let mut out = String::new();
    stream.read_to_string(&mut out)?;
    Ok(out)
}

/// Reads until EOF; a reset counts as an empty answer (a refusal).
pub fn read_all(mut stream: TcpStream) -> String {
    stream.set_read_timeout(Some(WAIT)).ok();
    let mut out = Vec::new();
    match stream.read_to_end(&mut out) {
        Ok(_) => String::from_utf8_lossy(&out).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            String::from_utf8_lossy(&out).into_owned()
        }
        Err(e) => panic!("read failed: {e}"),
    }
}

/// VmRSS of a process, in KiB.
pub fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

impl Config {
    /// A control socket inside this directory, so tests running at the same
    /// time do not share the default one.
    pub fn private_control_socket(&self) -> PathBuf {
        let socket = self.path().join("c.sock");
        self.global(&format!("control_socket: {}\n", socket.display()));
        socket
    }

    /// Runs `spawnd check` as uid/gid 65534 (root runs the tests); the
    /// directory and services.d are opened up for reading first.
    pub fn check_as_nobody(&self) -> std::process::Output {
        use std::os::unix::fs::PermissionsExt;
        for dir in [self.path().to_path_buf(), self.path().join("services.d")] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                BIN,
                "check",
                "-c",
            ])
            .arg(self.path())
            .output()
            .expect("run check through setpriv")
    }
}

/// Clients that connect to `port` over and over, each reading to EOF and
/// comparing the reply, until stopped.
pub struct ClientLoop {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ok: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    failed: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl ClientLoop {
    pub fn start(clients: usize, port: u16, expected: &'static [u8]) -> ClientLoop {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let threads = (0..clients)
            .map(|_| {
                let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match tcp_exchange(SocketAddr::from(([127, 0, 0, 1], port)), b"") {
                            Ok(reply) if reply == expected => ok.fetch_add(1, Ordering::Relaxed),
                            _ => failed.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                })
            })
            .collect();
        ClientLoop {
            stop,
            ok,
            failed,
            threads,
        }
    }

    pub fn served(&self) -> usize {
        self.ok.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops the clients; returns (served, failed).
    pub fn stop(self) -> (usize, usize) {
        use std::sync::atomic::Ordering;
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            let _ = thread.join();
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

impl Config {
    /// A `wait: true` service whose program accepts two connections on fd 0
    /// itself, answering each with `pid N`, then exits.
    pub fn accept_two_service(&self, name: &str, port: u16) {
        let program = self.script(
            "accept-two",
            "#!/usr/bin/perl\nopen(my $l, '+<&=', 0) or die;\nfor (1..2) { accept(my $c, $l) or die; print $c \"pid $$\\n\"; close $c; }\n",
        );
        self.service(
            name,
            &format!(
                "listen: 127.0.0.1:{port}\nwait: true\nexec: [{}]\n",
                program.display()
            ),
        );
    }
}

/// `spawnd status --json --socket PATH`, parsed.
pub fn status_json(socket: &Path) -> serde_json::Value {
    let out = Command::new(BIN)
        .args(["status", "--json", "--socket"])
        .arg(socket)
        .output()
        .expect("run spawnd status");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("status output {out:?}: {e}"))
}

/// Makes `command` run with RLIMIT_NOFILE `limit` (soft and hard).
pub fn limit_files(command: &mut Command, limit: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
