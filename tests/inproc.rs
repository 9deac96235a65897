//! Internal services (echo, discard, chargen, daytime, time) over TCP and
//! UDP on IPv4 and IPv6, and `redirect`, all served inside spawnd.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use util::*;

fn v4(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn v6(port: u16) -> SocketAddr {
    format!("[::1]:{port}").parse().unwrap()
}

fn internal(config: &Config, kind: &str, socket: &str) -> u16 {
    let port = free_port();
    config.service(
        &format!("{kind}-{socket}"),
        &format!(
            "socket: {socket}\nlisten: [127.0.0.1:{port}, \"[::1]:{port}\"]\ninternal: {kind}\n"
        ),
    );
    port
}

#[test]
fn tcp_internal_services_on_both_families() {
    let config = Config::new();
    let echo = internal(&config, "echo", "stream");
    let discard = internal(&config, "discard", "stream");
    let daytime = internal(&config, "daytime", "stream");
    let time = internal(&config, "time", "stream");
    let chargen = internal(&config, "chargen", "stream");
    let spawnd = Spawnd::start(&config);
    for addr in [v4(echo), v6(echo)] {
        assert_eq!(
            tcp_exchange(addr, b"hello internal\n").unwrap(),
            b"hello internal\n"
        );
    }
    assert_eq!(tcp_exchange(v6(discard), b"dropped").unwrap(), b"");
    let text = String::from_utf8(tcp_exchange(v4(daytime), b"").unwrap()).unwrap();
    assert!(text.ends_with("\r\n") && text.len() == 26, "{text:?}");
    let seconds = tcp_exchange(v4(time), b"").unwrap();
    assert_eq!(seconds.len(), 4);
    let since_1900 = u32::from_be_bytes(seconds[..4].try_into().unwrap()) as u64;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!((since_1900 as i64 - (now + 2_208_988_800) as i64).abs() < 5);
    let mut stream = TcpStream::connect(v4(chargen)).unwrap();
    let mut first = [0u8; 74 * 3];
    stream.read_exact(&mut first).unwrap();
    assert_eq!(
        &first[..74],
        &b" !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefg\r\n"[..]
    );
    assert_eq!(&first[74..76], b"!\"");
    drop(stream);
    spawnd
        .log
        .expect(&["accept service=echo-stream", "internal=echo"]);
    spawnd.log.expect(&["exit service=chargen-stream"]);
    assert!(children_of(spawnd.pid()).is_empty(), "nothing was forked");
}

#[test]
fn udp_internal_services_on_both_families() {
    let config = Config::new();
    let echo = internal(&config, "echo", "dgram");
    let daytime = internal(&config, "daytime", "dgram");
    let time = internal(&config, "time", "dgram");
    let chargen = internal(&config, "chargen", "dgram");
    let discard = internal(&config, "discard", "dgram");
    let _spawnd = Spawnd::start(&config);
    for addr in [v4(echo), v6(echo)] {
        assert_eq!(udp_exchange(addr, b"ping").unwrap(), b"ping");
    }
    assert!(udp_exchange(v6(daytime), b"").unwrap().ends_with(b"\r\n"));
    assert_eq!(udp_exchange(v4(time), b"x").unwrap().len(), 4);
    let ring = udp_exchange(v4(chargen), b"x").unwrap();
    assert_eq!(ring.len(), 512);
    assert!(ring.starts_with(b" !\"#"));
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    socket.send_to(b"into the void", v4(discard)).unwrap();
    let mut buf = [0u8; 16];
    assert!(
        socket.recv_from(&mut buf).is_err(),
        "discard answers nothing"
    );
}

#[test]
fn udp_echo_never_answers_privileged_ports() {
    require!(is_root(), "binding a privileged source port needs root");
    let config = Config::new();
    let echo = internal(&config, "echo", "dgram");
    let _spawnd = Spawnd::start(&config);
    // Port 19 is chargen's: answering would start a loop between the two.
    let Ok(socket) = UdpSocket::bind("127.0.0.1:19") else {
        skip("port 19 is in use");
        return;
    };
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    socket.send_to(b"loop?", v4(echo)).unwrap();
    let mut buf = [0u8; 16];
    assert!(
        socket.recv_from(&mut buf).is_err(),
        "no answer to a privileged port"
    );
    assert_eq!(udp_exchange(v4(echo), b"fine").unwrap(), b"fine");
}

#[test]
fn a_slow_chargen_reader_cannot_grow_spawnd() {
    let config = Config::new();
    let chargen = internal(&config, "chargen", "stream");
    let spawnd = Spawnd::start(&config);
    let before = rss_kib(spawnd.pid());
    let mut readers: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(v4(chargen)).unwrap())
        .collect();
    for reader in &mut readers {
        let mut some = [0u8; 100];
        reader.read_exact(&mut some).unwrap();
    }
    // The clients stop reading; spawnd may only fill the kernel's buffers.
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib(spawnd.pid());
    assert!(
        after < before + 4 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    // Slowly reading on still works.
    let mut more = [0u8; 74 * 100];
    readers[0].read_exact(&mut more).unwrap();
}

#[test]
fn a_thousand_concurrent_echo_connections() {
    let config = Config::new();
    let echo = internal(&config, "echo", "stream");
    let spawnd = Spawnd::start(&config);
    let mut streams: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(v4(echo)).expect("connect"))
        .collect();
    for (index, stream) in streams.iter_mut().enumerate() {
        stream
            .write_all(format!("message {index}\n").as_bytes())
            .unwrap();
    }
    for (index, stream) in streams.iter_mut().enumerate() {
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let expected = format!("message {index}\n");
        let mut got = vec![0u8; expected.len()];
        stream.read_exact(&mut got).unwrap();
        assert_eq!(got, expected.as_bytes());
    }
    drop(streams);
    let all = spawnd.log.wait_for_n(&["exit service=echo-stream"], 1000);
    assert!(
        all,
        "{} exit lines, {} log_dropped lines",
        spawnd.log.count("exit service=echo-stream"),
        spawnd.log.count("log_dropped")
    );
}

/// Connections waiting on many listeners at the same moment: spawnd takes
/// one from each in a turn and then asks, with one poll(), which still hold
/// more. Every one must be served, though no new connection arrives to
/// announce the ones left waiting.
#[test]
fn backlogs_on_many_listeners_at_once_are_all_served() {
    let config = Config::new();
    let ports: Vec<u16> = (0..16)
        .map(|index| {
            let port = free_port();
            config.service(
                &format!("echo{index}"),
                &format!("listen: 127.0.0.1:{port}\ninternal: echo\n"),
            );
            port
        })
        .collect();
    let spawnd = Spawnd::start(&config);
    let pid = spawnd.pid();
    let signal = |signal| {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).unwrap();
    };
    // Stopped, spawnd accepts nothing: the kernel queues every connection.
    signal(nix::sys::signal::Signal::SIGSTOP);
    let stat = format!("/proc/{pid}/stat");
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string(&stat)
        .unwrap()
        .rsplit(')')
        .next()
        .is_some_and(|rest| rest.trim_start().starts_with('T'))
    {
        assert!(Instant::now() < deadline, "spawnd did not stop");
        std::thread::yield_now();
    }
    let mut streams: Vec<TcpStream> = Vec::new();
    for round in 0..40 {
        for port in &ports {
            let mut stream = TcpStream::connect(v4(*port)).expect("connect");
            stream
                .write_all(format!("{port} {round}\n").as_bytes())
                .unwrap();
            streams.push(stream);
        }
    }
    signal(nix::sys::signal::Signal::SIGCONT);
    for (index, stream) in streams.iter_mut().enumerate() {
        let expected = format!("{} {}\n", ports[index % ports.len()], index / ports.len());
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut got = vec![0u8; expected.len()];
        stream
            .read_exact(&mut got)
            .unwrap_or_else(|e| panic!("connection {index} was not served: {e}"));
        assert_eq!(got, expected.as_bytes());
    }
}

/// A connection normally lands in descriptor 3, which spawnd leaves free
/// for it and hands to the child as it is. While a long-lived in-process
/// connection holds 3, a program's connection takes the reserved slot
/// instead; both ways the program gets it, and it closes when the program
/// exits.
#[test]
fn programs_get_their_connection_whether_or_not_slot_3_is_free() {
    let config = Config::new();
    let echo = internal(&config, "echo", "stream");
    let hello = free_port();
    config.service(
        "hello",
        &format!("listen: 127.0.0.1:{hello}\nexec: [/bin/echo, hello]\n"),
    );
    let spawnd = Spawnd::start(&config);
    // Ends only at EOF: a connection spawnd kept open would time out here.
    let hello_once = || {
        let mut stream = TcpStream::connect(v4(hello)).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello\n");
    };
    hello_once();
    let mut held = TcpStream::connect(v4(echo)).unwrap();
    held.write_all(b"x").unwrap();
    let mut x = [0u8; 1];
    held.read_exact(&mut x).unwrap();
    let slot = std::fs::read_link(format!("/proc/{}/fd/3", spawnd.pid())).unwrap();
    assert!(
        slot.to_string_lossy().starts_with("socket:"),
        "the echo connection holds descriptor 3: {slot:?}"
    );
    for _ in 0..3 {
        hello_once();
    }
    drop(held);
    spawnd.log.expect(&["exit service=echo-stream"]);
    for _ in 0..3 {
        hello_once();
    }
}

#[test]
fn internal_services_obey_access_rules_and_limits() {
    let config = Config::new();
    let port = free_port();
    config.service(
        "echo",
        &format!("listen: 127.0.0.1:{port}\ninternal: echo\nlimits: {{instances: 1}}\naccess: {{deny: [127.0.0.2]}}\n"),
    );
    let spawnd = Spawnd::start(&config);
    let mut held = TcpStream::connect(v4(port)).unwrap();
    held.write_all(b"x").unwrap();
    let mut x = [0u8; 1];
    held.read_exact(&mut x).unwrap();
    assert!(
        refused_at_once(port),
        "instances: 1 counts the in-process connection"
    );
    spawnd
        .log
        .expect(&["refuse service=echo", "reason=instances"]);
    drop(held);
    spawnd.log.expect(&["exit service=echo"]);
    assert_eq!(read_from("127.0.0.2", port).unwrap(), "");
    spawnd.log.expect(&[
        "refuse service=echo",
        "peer=127.0.0.2:",
        "reason=access_deny",
    ]);
}

/// A backend that reads everything until EOF, then answers with the bytes
/// reversed: proof that the EOF (half-close) crossed the relay.
fn reversing_backend() -> (u16, std::thread::JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut data = Vec::new();
        conn.read_to_end(&mut data).unwrap();
        data.reverse();
        conn.write_all(&data).unwrap();
        data.len()
    });
    (port, handle)
}

#[test]
fn redirect_relays_large_transfers_and_half_close() {
    let config = Config::new();
    let (backend, handle) = reversing_backend();
    let port = free_port();
    config.service(
        "relay",
        &format!("listen: 127.0.0.1:{port}\nredirect: 127.0.0.1:{backend}\n"),
    );
    let spawnd = Spawnd::start(&config);
    let payload: Vec<u8> = (0..8 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut stream = TcpStream::connect(v4(port)).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let writer_payload = payload.clone();
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        writer.write_all(&writer_payload).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    stream.read_to_end(&mut back).unwrap();
    sender.join().unwrap();
    assert_eq!(handle.join().unwrap(), payload.len());
    let mut expected = payload;
    expected.reverse();
    assert!(back == expected, "{} bytes came back", back.len());
    spawnd.log.expect(&[
        "exit service=relay",
        "status=0",
        &format!("bytes_in={}", expected.len()),
    ]);
    assert!(children_of(spawnd.pid()).is_empty(), "nothing was forked");
}

#[test]
fn redirect_to_a_closed_port_closes_the_client() {
    let config = Config::new();
    let (port, dead) = (free_port(), free_port());
    config.service(
        "relay",
        &format!("listen: 127.0.0.1:{port}\nredirect: 127.0.0.1:{dead}\n"),
    );
    let spawnd = Spawnd::start(&config);
    let started = Instant::now();
    assert!(refused_at_once(port));
    assert!(started.elapsed() < Duration::from_secs(10));
    spawnd.log.expect(&["service=relay", "Connection refused"]);
}

#[test]
fn redirect_to_ipv6_with_access_rules() {
    let config = Config::new();
    let listener = TcpListener::bind("[::1]:0").unwrap();
    let backend = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(1) {
            let mut conn = conn.unwrap();
            conn.write_all(b"from v6 backend\n").unwrap();
        }
    });
    let port = free_port();
    config.service(
        "relay6",
        &format!("listen: 127.0.0.1:{port}\nredirect: \"[::1]:{backend}\"\naccess: {{deny: [127.0.0.2]}}\n"),
    );
    let _spawnd = Spawnd::start(&config);
    assert_eq!(read_from("127.0.0.2", port).unwrap(), "");
    assert_eq!(read_from("127.0.0.1", port).unwrap(), "from v6 backend\n");
}

/// `access.times` holds for datagrams answered inside spawnd as it does for
/// connections (they used to be answered at any hour): outside the window a
/// datagram is refused and counted, and gets no answer.
#[test]
fn udp_internal_services_keep_to_their_hours() {
    let config = Config::new();
    let port = free_port();
    let output = std::process::Command::new("date")
        .arg("+%H")
        .output()
        .unwrap();
    let hour: u32 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap();
    // A one-minute window twelve hours from now is never open now.
    let closed = (hour + 12) % 24;
    config.service(
        "timed",
        &format!(
            "socket: dgram\nlisten: 127.0.0.1:{port}\ninternal: echo\naccess: {{times: [\"{closed:02}:00-{closed:02}:01\"]}}\n"
        ),
    );
    let spawnd = Spawnd::start(&config);
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client.send_to(b"at the wrong hour", v4(port)).unwrap();
    // Ask for the counters until the datagram has been seen.
    let mut asked = 0;
    while spawnd.log.count("refused_access=1") == 0 {
        assert!(asked < 200, "the datagram was never counted");
        asked += 1;
        spawnd.signal(nix::sys::signal::Signal::SIGUSR1);
        assert!(spawnd.log.wait_for_n(&["status service=timed"], asked));
    }
    let log = spawnd.log.text();
    let status = log
        .lines()
        .rev()
        .find(|l| l.contains("status service=timed"))
        .unwrap();
    assert!(status.contains("accepted=0"), "{status}");
    // It was refused before any answer could be sent: none is waiting.
    client.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    assert!(client.recv(&mut buf).is_err(), "an answer came");
}
