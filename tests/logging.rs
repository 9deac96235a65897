//! Log targets against the real binary: `log: {target: syslog}` and
//! `{target: journal}` in `spawnd.yaml`, with the sockets redirected into a
//! temporary directory by `SPAWND_SYSLOG_SOCKET` / `SPAWND_JOURNAL_SOCKET`.
//! Loopback only.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_spawnd");
const WAIT: Duration = Duration::from_secs(20);

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// A configuration directory with one service answering `hello` on a free
/// loopback port, and the given `spawnd.yaml`.
fn config(global: &str) -> (tempfile::TempDir, u16) {
    let dir = tempfile::Builder::new()
        .prefix("spawnd-logging")
        .tempdir()
        .expect("temp dir");
    let port = free_port();
    std::fs::create_dir(dir.path().join("services.d")).expect("services.d");
    std::fs::write(dir.path().join("spawnd.yaml"), global).expect("spawnd.yaml");
    std::fs::write(
        dir.path().join("services.d/hello.yaml"),
        format!("listen: 127.0.0.1:{port}\nexec: [/bin/echo, hello]\n"),
    )
    .expect("service file");
    (dir, port)
}

/// A datagram socket standing in for `/dev/log` or the journal.
fn log_socket(dir: &Path) -> (UnixDatagram, std::path::PathBuf) {
    let path = dir.join("log.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the log socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    (socket, path)
}

struct Running {
    child: Child,
    received: Vec<Vec<u8>>,
}

impl Running {
    fn start(dir: &Path, env: &[(&str, &Path)]) -> Running {
        let mut command = Command::new(BIN);
        command
            .arg("run")
            .arg("-c")
            .arg(dir)
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("RUST_LOG")
            .env_remove("SPAWND_SYSLOG_SOCKET")
            .env_remove("SPAWND_JOURNAL_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        Running {
            child: command.spawn().expect("start spawnd"),
            received: Vec::new(),
        }
    }

    /// Waits for a datagram containing `needle`; returns it.
    fn wait_for(&mut self, socket: &UnixDatagram, needle: &str) -> Vec<u8> {
        if let Some(found) = self.received.iter().find(|d| contains(d, needle)) {
            return found.clone();
        }
        let deadline = Instant::now() + WAIT;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            match socket.recv(&mut buf) {
                Ok(n) => {
                    let datagram = buf[..n].to_vec();
                    self.received.push(datagram.clone());
                    if contains(&datagram, needle) {
                        return datagram;
                    }
                }
                Err(_) => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        panic!(
                            "spawnd exited ({status}) before logging {needle:?}; stderr:\n{}",
                            self.stderr()
                        );
                    }
                }
            }
        }
        let stderr = self.stop();
        let hint = if stderr.contains(needle) {
            "\n(the line went to stderr: is logging::set_target/apply_config called after the configuration is loaded?)"
        } else {
            ""
        };
        panic!(
            "no datagram with {needle:?} within {WAIT:?}; received:\n{}\nstderr:\n{stderr}{hint}",
            self.received
                .iter()
                .map(|d| String::from_utf8_lossy(d).into_owned())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = stderr.read_to_string(&mut text);
        }
        text
    }

    /// SIGTERM, wait, and return stderr.
    fn stop(&mut self) -> String {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

fn hello(port: u16) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    assert_eq!(answer, "hello\n");
}

/// The journal's native protocol, text fields only (what spawnd sends for
/// one-line messages).
fn journal_field<'a>(datagram: &'a [u8], key: &str) -> Option<&'a str> {
    std::str::from_utf8(datagram)
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn syslog_target_sends_daemon_priorities_to_dev_log() {
    let (dir, port) = config("log: {target: syslog}\n");
    let (socket, path) = log_socket(dir.path());
    let mut spawnd = Running::start(dir.path(), &[("SPAWND_SYSLOG_SOCKET", &path)]);
    let pid = spawnd.child.id();

    let ready = spawnd.wait_for(&socket, "ready services=1");
    let prefix = format!("<30>spawnd[{pid}]: ready services=1");
    assert!(
        ready.starts_with(prefix.as_bytes()),
        "{:?}",
        String::from_utf8_lossy(&ready)
    );

    hello(port);
    let accept = spawnd.wait_for(&socket, "accept service=hello");
    let text = String::from_utf8_lossy(&accept).into_owned();
    assert!(
        text.starts_with(&format!("<30>spawnd[{pid}]: accept service=hello ")),
        "{text:?}"
    );
    assert!(!text.ends_with('\n'), "{text:?}");

    let stderr = spawnd.stop();
    assert!(
        !stderr.contains("accept service=hello"),
        "the accept line also went to stderr:\n{stderr}"
    );
    assert!(spawnd.child.try_wait().ok().flatten().is_some());
}

#[test]
fn journal_target_sends_native_fields() {
    let (dir, port) = config("log: {target: journal, level: info}\n");
    let (socket, path) = log_socket(dir.path());
    let mut spawnd = Running::start(dir.path(), &[("SPAWND_JOURNAL_SOCKET", &path)]);
    let pid = spawnd.child.id().to_string();

    spawnd.wait_for(&socket, "MESSAGE=ready services=1");
    hello(port);
    let accept = spawnd.wait_for(&socket, "MESSAGE=accept service=hello");
    assert!(journal_field(&accept, "MESSAGE")
        .unwrap()
        .starts_with("accept service=hello "));
    assert_eq!(journal_field(&accept, "PRIORITY"), Some("6"));
    assert_eq!(journal_field(&accept, "SYSLOG_IDENTIFIER"), Some("spawnd"));
    assert_eq!(journal_field(&accept, "SYSLOG_FACILITY"), Some("3"));
    assert_eq!(journal_field(&accept, "SYSLOG_PID"), Some(pid.as_str()));
    assert_eq!(journal_field(&accept, "SPAWND_SERVICE"), Some("hello"));
    assert_eq!(journal_field(&accept, "SPAWND_EVENT"), Some("accept"));
    spawnd.stop();
}

#[test]
fn journal_without_its_socket_falls_back_to_syslog() {
    let (dir, port) = config("log: {target: journal}\n");
    let (socket, path) = log_socket(dir.path());
    let missing = dir.path().join("no-journal.sock");
    let mut spawnd = Running::start(
        dir.path(),
        &[
            ("SPAWND_JOURNAL_SOCKET", &missing),
            ("SPAWND_SYSLOG_SOCKET", &path),
        ],
    );
    let warning = spawnd.wait_for(&socket, "log_target_unavailable");
    let text = String::from_utf8_lossy(&warning).into_owned();
    assert!(text.starts_with("<28>spawnd["), "{text:?}");
    assert!(text.contains("wanted=journal using=syslog"), "{text:?}");
    spawnd.wait_for(&socket, "ready services=1");
    hello(port);
    spawnd.wait_for(&socket, "<30>spawnd[");
    spawnd.wait_for(&socket, "accept service=hello");
    spawnd.stop();
}
