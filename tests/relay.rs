//! How bytes spawnd moves itself get across (issue 22): spliced through
//! pooled pipes where they can be, copied where they cannot, with the same
//! behaviour either way (half-close, back-pressure), and listeners with
//! the kernel's largest backlog unless told otherwise.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use util::*;

fn v4(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Pipes spawnd holds open: its stdio and log (from the start), and its
/// pool. Compare with the count at start.
fn pipes_of(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("pipe:"))
        .count()
}

/// A backend that echoes each connection until its EOF, then ends its own
/// side: what comes back proves the bytes and the half-close both crossed.
fn echo_backend() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut reader = conn.try_clone().unwrap();
                let _ = std::io::copy(&mut reader, &mut conn);
                let _ = conn.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    port
}

fn payload(size: usize) -> Vec<u8> {
    (0..size as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

/// Sends `data` on `stream` (from another thread, so both directions
/// move at once), half-closes, and reads everything back to EOF.
fn round_trip(stream: TcpStream, data: &[u8]) -> Vec<u8> {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sent = data.to_vec();
    let sender = std::thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    (&stream).read_to_end(&mut back).unwrap();
    sender.join().unwrap();
    back
}

fn relay_service(config: &Config) -> u16 {
    let port = free_port();
    let backend = echo_backend();
    config.service(
        "relay",
        &format!("listen: 127.0.0.1:{port}\nredirect: 127.0.0.1:{backend}\n"),
    );
    port
}

/// Splice is the default: a relayed transfer leaves pipes in spawnd's pool
/// (and only a few: they are reused, one per direction in flight), and
/// nothing else changes.
#[test]
fn relayed_bytes_are_spliced_through_pooled_pipes() {
    let config = Config::new();
    let port = relay_service(&config);
    let echo = free_port();
    config.service(
        "echo",
        &format!("listen: 127.0.0.1:{echo}\ninternal: echo\n"),
    );
    let spawnd = Spawnd::start(&config);
    let stdio = pipes_of(spawnd.pid());
    let data = payload(4 << 20);
    for _ in 0..5 {
        let back = round_trip(TcpStream::connect(v4(port)).unwrap(), &data);
        assert!(
            back == data,
            "{} of {} bytes came back",
            back.len(),
            data.len()
        );
    }
    assert!(spawnd.log.wait_for_n(&["exit service=relay"], 5));
    let pooled = pipes_of(spawnd.pid()) - stdio;
    assert!(
        (2..=4).contains(&pooled),
        "one pipe (two descriptors) per direction in flight, reused: {pooled}"
    );
    // The internal echo splices too, from the same pool.
    let back = round_trip(TcpStream::connect(v4(echo)).unwrap(), &data);
    assert!(
        back == data,
        "{} of {} bytes came back",
        back.len(),
        data.len()
    );
    assert!(spawnd.log.wait_for(&["exit service=echo"]));
    assert_eq!(
        pipes_of(spawnd.pid()) - stdio,
        pooled,
        "the echo reused the pool"
    );
    spawnd.log.expect(&[
        "exit service=relay",
        "status=0",
        &format!("bytes_in={} bytes_out={}", data.len(), data.len()),
    ]);
}

/// `splice: false` copies through spawnd's memory: the same bytes, the same
/// half-close, no pipe.
#[test]
fn with_splice_off_relayed_bytes_are_copied() {
    let config = Config::new();
    config.global("splice: false\n");
    let port = relay_service(&config);
    let spawnd = Spawnd::start(&config);
    let stdio = pipes_of(spawnd.pid());
    let data = payload(4 << 20);
    let back = round_trip(TcpStream::connect(v4(port)).unwrap(), &data);
    assert!(
        back == data,
        "{} of {} bytes came back",
        back.len(),
        data.len()
    );
    spawnd.log.expect(&["exit service=relay", "status=0"]);
    assert_eq!(pipes_of(spawnd.pid()), stdio, "no pipe was made");
}

/// Where no pipe can be made (spawnd's descriptor table is full of
/// connections), the relay copies instead of failing.
#[test]
fn without_descriptors_for_a_pipe_the_relay_copies() {
    let config = Config::new();
    let port = relay_service(&config);
    let spawnd = Spawnd::start_with(&config, &[], |command| limit_files(command, 64));
    let stdio = pipes_of(spawnd.pid());
    // Idle relays until spawnd has no descriptor left for another one.
    let mut held = Vec::new();
    while spawnd.log.count("accept_paused") == 0
        && spawnd.log.count("redirect_failed") == 0
        && held.len() < 64
    {
        held.push(TcpStream::connect(v4(port)).unwrap());
        // Each one is served, or spawnd says it cannot take it.
        let served = held.len();
        assert!(wait_until(|| {
            spawnd.log.count("accept service=relay") >= served
                || spawnd.log.count("accept_paused") > 0
                || spawnd.log.count("redirect_failed") > 0
        }));
    }
    assert!(
        spawnd.log.wait_for(&["Too many open files"]),
        "{}",
        spawnd.log.text()
    );
    let first = held.swap_remove(0);
    let data = payload(1 << 20);
    let back = round_trip(first, &data);
    assert!(
        back == data,
        "{} of {} bytes came back",
        back.len(),
        data.len()
    );
    assert_eq!(pipes_of(spawnd.pid()), stdio, "no pipe could be made");
}

/// A client that stops reading stops spawnd reading from the backend,
/// spliced or copied: spawnd's memory does not grow by what the backend
/// tries to send, and the backend is held back.
#[test]
fn a_client_that_stops_reading_stops_the_backend() {
    for splice in [true, false] {
        let config = Config::new();
        config.global(&format!("splice: {splice}\n"));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let backend = listener.local_addr().unwrap().port();
        let sent = Arc::new(AtomicUsize::new(0));
        let counter = sent.clone();
        let (stalled_tx, stalled) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let block = vec![b'z'; 64 * 1024];
            // A write the kernel cannot take for a second: everything on
            // the way is full.
            conn.set_write_timeout(Some(std::time::Duration::from_secs(1)))
                .unwrap();
            let mut told = false;
            loop {
                match conn.write(&block) {
                    Ok(n) => {
                        counter.fetch_add(n, Ordering::SeqCst);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && !told => {
                        told = true;
                        let _ = stalled_tx.send(counter.load(Ordering::SeqCst));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
        });
        let port = free_port();
        config.service(
            "relay",
            &format!("listen: 127.0.0.1:{port}\nredirect: 127.0.0.1:{backend}\n"),
        );
        let spawnd = Spawnd::start(&config);
        let before = rss_kib(spawnd.pid());
        let client = TcpStream::connect(v4(port)).unwrap();
        // The backend fills every buffer on the way, then stalls.
        let stalled_at = stalled.recv_timeout(WAIT).unwrap();
        // Socket buffers on both sides of spawnd, a few MB each at most on
        // loopback, and one read's worth held by spawnd: far below what a
        // relay without back-pressure would take in a second.
        assert!(
            stalled_at < 64 << 20,
            "splice {splice}: the backend sent {stalled_at} bytes to a client that reads nothing"
        );
        let grown = rss_kib(spawnd.pid()).saturating_sub(before);
        assert!(grown < 1024, "splice {splice}: spawnd grew by {grown} KiB");
        // Reading again lets everything through.
        client.set_read_timeout(Some(WAIT)).unwrap();
        let mut buffer = vec![0u8; 1 << 20];
        let mut got = 0;
        while got < stalled_at {
            let n = (&client).read(&mut buffer).unwrap();
            assert!(n > 0);
            assert!(buffer[..n].iter().all(|b| *b == b'z'));
            got += n;
        }
        assert!(wait_until(|| sent.load(Ordering::SeqCst) > stalled_at));
    }
}

/// The listen backlog queue each listener gets, as `ss` shows it (Send-Q of
/// a listening socket).
fn listen_backlog(port: u16) -> Option<u32> {
    let out = std::process::Command::new("ss")
        .args(["-Hltn", &format!("sport = :{port}")])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().next()?.split_whitespace().nth(2)?.parse().ok()
}

/// Without `backlog`, a listener gets the kernel's most (somaxconn), so a
/// burst of clients waits in the queue instead of having its SYNs dropped;
/// a configured one is kept.
#[test]
fn listeners_get_the_kernels_largest_backlog_by_default() {
    if !has_command("ss") {
        return skip("ss (iproute2) is not installed");
    }
    let config = Config::new();
    let (default, set) = (free_port(), free_port());
    config.service(
        "default",
        &format!("listen: 127.0.0.1:{default}\ninternal: echo\n"),
    );
    config.service(
        "set",
        &format!("listen: 127.0.0.1:{set}\ninternal: echo\nbacklog: 50\n"),
    );
    let _spawnd = Spawnd::start(&config);
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(listen_backlog(default), Some(somaxconn));
    assert_eq!(listen_backlog(set), Some(50));
}

/// A listener on 127.0.0.1 whose accept queue holds one connection: a
/// second connect's SYN is dropped while it is full, and the kernel sends
/// it again about a second later.
fn listener_with_one_slot() -> TcpListener {
    use nix::sys::socket::{bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType};
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    let addr = nix::sys::socket::SockaddrIn::new(127, 0, 0, 1, 0);
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr).unwrap();
    listen(&fd, Backlog::new(0).unwrap()).unwrap();
    let listener = TcpListener::from(fd);
    listener.set_nonblocking(true).unwrap();
    listener
}

/// The next connection `listener` (non-blocking) accepts, within `WAIT`.
fn accept_within(listener: &TcpListener) -> TcpStream {
    let mut accepted = None;
    assert!(
        wait_until(|| {
            accepted = listener.accept().ok();
            accepted.is_some()
        }),
        "nothing reached the backend"
    );
    let (stream, _) = accepted.unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}

/// spawnd sends a client's first bytes without waiting for epoll to say
/// the connect is done (on loopback it usually is). Where it is not, the
/// bytes, and the client's end, wait for it: nothing is lost, and the end
/// is passed on only once connected (a shutdown on a socket still
/// connecting would abort the connect). Once with bytes, once with only
/// the end (read while the connect is pending, since no bytes are held).
#[test]
fn bytes_and_the_end_wait_for_a_slow_connect() {
    let backend = listener_with_one_slot();
    let target = backend.local_addr().unwrap().port();
    let config = Config::new();
    let port = free_port();
    config.service(
        "relay",
        &format!("listen: 127.0.0.1:{port}\nredirect: 127.0.0.1:{target}\n"),
    );
    let spawnd = Spawnd::start(&config);
    for (round, sent) in [&b"hello"[..], b""].into_iter().enumerate() {
        // Fill the accept queue: the relay's SYN will be dropped.
        let filler = TcpStream::connect(v4(target)).unwrap();
        let mut client = TcpStream::connect(v4(port)).unwrap();
        client.write_all(sent).unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        // spawnd has tried to connect by the time it logs the connection;
        // let it see the client's end too.
        assert!(spawnd.log.wait_for_n(&["accept service=relay"], round + 1));
        // Make room; the relay's SYN is sent again and gets in.
        let first = accept_within(&backend);
        drop((first, filler));
        let mut upstream = accept_within(&backend);
        upstream.set_read_timeout(Some(WAIT)).unwrap();
        let mut got = Vec::new();
        upstream.read_to_end(&mut got).unwrap();
        assert_eq!(got, sent);
        upstream.write_all(b"reply").unwrap();
        drop(upstream);
        client.set_read_timeout(Some(WAIT)).unwrap();
        let mut back = Vec::new();
        client.read_to_end(&mut back).unwrap();
        assert_eq!(back, b"reply");
        assert!(spawnd.log.wait_for_n(&["exit service=relay"], round + 1));
    }
}

/// Relays that end while children are starting (a child between its clone
/// and its exec holds copies of spawnd's descriptors, so closing a socket
/// does not take it out of epoll then): relays and programs under load at
/// once, every exchange answered in full.
#[test]
fn relays_and_programs_under_load_at_once() {
    let config = Config::new();
    let relay = relay_service(&config);
    let program = free_port();
    config.service(
        "program",
        &format!("listen: 127.0.0.1:{program}\nexec: [/bin/echo, spawned]\n"),
    );
    let spawnd = Spawnd::start(&config);
    let data = payload(64 * 1024);
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let data = data.clone();
            std::thread::spawn(move || {
                for round in 0..100 {
                    if (worker + round) % 2 == 0 {
                        let back = round_trip(TcpStream::connect(v4(relay)).unwrap(), &data);
                        assert!(
                            back == data,
                            "relay: {} of {} bytes",
                            back.len(),
                            data.len()
                        );
                    } else {
                        let reply = tcp_exchange(v4(program), b"").unwrap();
                        assert_eq!(reply, b"spawned\n");
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    assert!(spawnd
        .log
        .wait_for_n(&["exit service=relay", "status=0"], 200));
    assert_eq!(spawnd.log.count("error="), 0, "{}", spawnd.log.text());
}
