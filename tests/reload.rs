//! SIGHUP reloads: without dropping a connection, keeping what a broken
//! file had, updating services in place with their children.

mod util;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};

use util::*;

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn continuous_clients_see_no_failure_across_twenty_reloads() {
    let config = Config::new();
    let port = free_port();
    let other = free_port();
    config.service(
        "steady",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/echo, steady]\nbacklog: 1024\n"),
    );
    let spawnd = Spawnd::start(&config);
    let clients = ClientLoop::start(4, port, b"steady\n");
    for round in 0..20 {
        // Alternate between touching this service, adding one and removing it.
        if round % 2 == 0 {
            config.service(
                "other",
                &format!("listen: 127.0.0.1:{other}\nexec: [/bin/echo, other]\n"),
            );
        } else {
            config.remove_service("other");
        }
        config.service(
            "steady",
            &format!("listen: 127.0.0.1:{port}\nexec: [/bin/echo, steady]\nbacklog: 1024\nenv: {{ROUND: '{round}'}}\n"),
        );
        spawnd.reload();
    }
    let (ok, failed) = clients.stop();
    assert_eq!(failed, 0, "{ok} ok");
    assert!(ok > 20);
    assert_eq!(spawnd.log.count("reload_done"), 20);
    assert!(spawnd.no_zombies());
}

#[test]
fn add_remove_change_program_address_and_limits() {
    let config = Config::new();
    let (a, b, c) = (free_port(), free_port(), free_port());
    config.service(
        "first",
        &format!("listen: 127.0.0.1:{a}\nexec: [/bin/echo, one]\n"),
    );
    let spawnd = Spawnd::start(&config);
    assert_eq!(tcp_read(a), "one\n");

    // Change the program: same socket, new behaviour.
    config.service(
        "first",
        &format!("listen: 127.0.0.1:{a}\nexec: [/bin/echo, two]\n"),
    );
    config.service(
        "added",
        &format!("listen: 127.0.0.1:{b}\nexec: [/bin/echo, added]\n"),
    );
    spawnd.reload();
    assert_eq!(tcp_read(a), "two\n");
    assert_eq!(tcp_read(b), "added\n");
    spawnd
        .log
        .expect(&["reload_done services=2 added=1 updated=1 removed=0 failed=0"]);

    // Nothing changed: nothing counts as updated.
    spawnd.reload();
    spawnd
        .log
        .expect(&["reload_done services=2 added=0 updated=0 removed=0 failed=0"]);

    // Change the address; limit the other one.
    config.service(
        "first",
        &format!("listen: 127.0.0.1:{c}\nexec: [/bin/echo, moved]\n"),
    );
    config.service(
        "added",
        &format!(
            "listen: 127.0.0.1:{b}\nexec: [/bin/echo, added]\naccess: {{deny: [127.0.0.1]}}\n"
        ),
    );
    spawnd.reload();
    assert!(
        TcpStream::connect(local(a)).is_err(),
        "the old address is closed"
    );
    assert_eq!(tcp_read(c), "moved\n");
    assert!(refused_at_once(b), "the new access rule applies");
    spawnd
        .log
        .expect(&["reload_done services=2 added=0 updated=2 removed=0 failed=0"]);

    // Remove a service.
    config.remove_service("added");
    spawnd.reload();
    assert!(TcpStream::connect(local(b)).is_err());
    spawnd.log.expect(&["service_removed service=added"]);
    spawnd
        .log
        .expect(&["reload_done services=1 added=0 updated=0 removed=1 failed=0"]);
    assert_eq!(tcp_read(c), "moved\n");
}

#[test]
fn a_broken_file_keeps_the_previous_definition_while_others_change() {
    let config = Config::new();
    let (a, b) = (free_port(), free_port());
    config.service(
        "kept",
        &format!("listen: 127.0.0.1:{a}\nexec: [/bin/echo, old]\n"),
    );
    config.service(
        "changed",
        &format!("listen: 127.0.0.1:{b}\nexec: [/bin/echo, before]\n"),
    );
    let spawnd = Spawnd::start(&config);
    config.service(
        "kept",
        &format!("listen: 127.0.0.1:{a}\nexec: [/bin/echo, new]\nlimits: {{timeout: forever}}\n"),
    );
    config.service(
        "changed",
        &format!("listen: 127.0.0.1:{b}\nexec: [/bin/echo, after]\n"),
    );
    spawnd.reload();
    spawnd
        .log
        .expect(&["config_error", "kept.yaml:3:", "limits.timeout"]);
    spawnd.log.expect(&["reload_kept service=kept"]);
    assert_eq!(tcp_read(a), "old\n", "the previous definition answers");
    assert_eq!(tcp_read(b), "after\n", "the valid change applied");
}

#[test]
fn a_kept_service_keeps_its_socket_from_a_newcomer_on_the_same_address() {
    let config = Config::new();
    let a = free_port();
    config.service(
        "kept",
        &format!("listen: 127.0.0.1:{a}\nexec: [/bin/echo, old]\n"),
    );
    let spawnd = Spawnd::start(&config);
    config.service("kept", "listen: [not, an, address]\n");
    config.service(
        "newcomer",
        &format!("listen: 127.0.0.1:{a}\nexec: [/bin/echo, newcomer]\n"),
    );
    spawnd.reload();
    spawnd.log.expect(&["reload_kept service=kept"]);
    spawnd
        .log
        .expect(&["service_error service=newcomer", "cannot listen on stream"]);
    assert_eq!(tcp_read(a), "old\n", "the kept service still answers");
}

/// Descriptor 3 is where connections land (the child keeps it as it is);
/// a socket a reload binds must not take it.
#[test]
fn sockets_bound_by_a_reload_leave_descriptor_3_free() {
    let config = Config::new();
    let (a, b) = (free_port(), free_port());
    config.service(
        "first",
        &format!("listen: 127.0.0.1:{a}\nexec: [/bin/echo, first]\n"),
    );
    let spawnd = Spawnd::start(&config);
    assert_eq!(tcp_read(a), "first\n");
    let slot = format!("/proc/{}/fd/3", spawnd.pid());
    assert!(std::fs::read_link(&slot).is_err(), "descriptor 3 is free");
    config.service(
        "added",
        &format!("listen: 127.0.0.1:{b}\nexec: [/bin/echo, added]\n"),
    );
    spawnd.reload();
    assert_eq!(tcp_read(b), "added\n");
    assert!(
        std::fs::read_link(&slot).is_err(),
        "descriptor 3 is still free: {:?}",
        std::fs::read_link(&slot)
    );
}

#[test]
fn a_broken_spawnd_yaml_rejects_the_whole_reload() {
    let config = Config::new();
    let port = free_port();
    config.service(
        "svc",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/echo, before]\n"),
    );
    let spawnd = Spawnd::start(&config);
    config.global("max_children: -1\n");
    config.service(
        "svc",
        &format!("listen: 127.0.0.1:{port}\nexec: [/bin/echo, after]\n"),
    );
    spawnd.reload();
    spawnd.log.expect(&["reload_rejected"]);
    assert_eq!(tcp_read(port), "before\n");
}

#[test]
fn children_started_before_a_reload_are_reaped_after_it() {
    let config = Config::new();
    let (port, other) = (free_port(), free_port());
    config.service("slow", &format!("listen: 127.0.0.1:{port}\nexec: [/bin/sh, -c, 'echo hi; exec cat >/dev/null']\nlimits: {{instances: 1}}\n"));
    let spawnd = Spawnd::start(&config);
    let mut held = TcpStream::connect(local(port)).unwrap();
    let mut hi = [0u8; 3];
    held.read_exact(&mut hi).unwrap();
    // Remove it and add another; the running child is left alone.
    config.remove_service("slow");
    config.service(
        "other",
        &format!("listen: 127.0.0.1:{other}\nexec: [/bin/echo, other]\n"),
    );
    spawnd.reload();
    assert_eq!(tcp_read(other), "other\n");
    drop(held);
    spawnd.log.expect(&["exit service=slow", "status=0"]);
    assert!(spawnd.no_zombies());
}

#[test]
fn a_kept_service_keeps_counting_its_running_children() {
    let config = Config::new();
    let port = free_port();
    let yaml = format!("listen: 127.0.0.1:{port}\nexec: [/bin/sh, -c, 'echo hi; exec cat >/dev/null']\nlimits: {{instances: 1}}\n");
    config.service("one", &yaml);
    let spawnd = Spawnd::start(&config);
    let mut held = TcpStream::connect(local(port)).unwrap();
    let mut hi = [0u8; 3];
    held.read_exact(&mut hi).unwrap();
    config.service("one", &(yaml + "env: {CHANGED: '1'}\n"));
    spawnd.reload();
    assert!(
        refused_at_once(port),
        "the child from before the reload still counts"
    );
    drop(held);
}

#[test]
fn wait_service_keeps_its_socket_handed_off_across_a_reload() {
    let config = Config::new();
    let port = free_port();
    config.accept_two_service("w", port);
    let spawnd = Spawnd::start(&config);
    let first = tcp_read(port);
    spawnd.reload();
    let second = tcp_read(port);
    assert_eq!(
        first, second,
        "the same child still owns the socket after the reload"
    );
    spawnd.log.expect(&["exit service=w"]);
    let third = tcp_read(port);
    assert_ne!(third, first);
}

#[test]
fn a_bind_failure_on_reload_fails_only_that_service() {
    let config = Config::new();
    let (a, c) = (free_port(), free_port());
    config.service(
        "stays",
        &format!("listen: 127.0.0.1:{a}\nexec: [/bin/echo, old]\n"),
    );
    let spawnd = Spawnd::start(&config);
    let holder = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let taken = holder.local_addr().unwrap().port();
    config.service(
        "stays",
        &format!("listen: 127.0.0.1:{taken}\nexec: [/bin/echo, moved]\n"),
    );
    config.service(
        "fresh",
        &format!("listen: 127.0.0.1:{c}\nexec: [/bin/echo, fresh]\n"),
    );
    spawnd.reload();
    spawnd
        .log
        .expect(&["service_error service=stays", "Address already in use"]);
    assert_eq!(tcp_read(c), "fresh\n", "the other change applied");
    spawnd.log.expect(&["reload_done", "failed=1"]);
}

/// A reload replaces a service's command line while its children are being
/// started: a child that has not exec'd yet still reads the old one, which
/// must stay intact until it has. Every reply names one of the rounds.
#[test]
fn a_changed_command_line_under_load_starts_only_whole_programs() {
    use std::sync::atomic::{AtomicBool, Ordering};
    const ROUNDS: usize = 150;
    use std::sync::{Arc, Mutex};
    let config = Config::new();
    let port = free_port();
    let write = |round: usize| {
        config.service(
            "changing",
            &format!(
                "listen: 127.0.0.1:{port}\nexec: [/bin/echo, round-{round}, {}]\nbacklog: 1024\n",
                "x".repeat(round * 7 + 1)
            ),
        );
    };
    write(0);
    let spawnd = Spawnd::start(&config);
    let stop = Arc::new(AtomicBool::new(false));
    let replies = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let (stop, replies) = (stop.clone(), replies.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let reply = tcp_exchange(local(port), b"").unwrap_or_default();
                    replies.lock().unwrap().push(reply);
                }
            })
        })
        .collect();
    for round in 1..=ROUNDS {
        write(round);
        spawnd.reload();
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let replies = replies.lock().unwrap();
    assert!(replies.len() > ROUNDS, "{} replies", replies.len());
    for reply in replies.iter() {
        let text = String::from_utf8_lossy(reply);
        let whole = (0..=ROUNDS)
            .any(|round| text == format!("round-{round} {}\n", "x".repeat(round * 7 + 1)));
        assert!(whole, "reply {text:?}");
    }
    assert_eq!(spawnd.log.count("exec_failed"), 0, "{}", spawnd.log.text());
    assert!(spawnd.no_zombies());
}
