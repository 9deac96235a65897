//! The control socket: `spawnd status` (text and JSON), SIGUSR1, and a
//! socket path that is live or stale.

mod util;

use nix::sys::signal::Signal;
use util::*;

#[test]
fn status_over_the_control_socket_and_sigusr1() {
    let config = Config::new();
    let (port, other) = (free_port(), free_port());
    let socket = config.path().join("control.sock");
    config.global(&format!("control_socket: {}\n", socket.display()));
    config.service(
        "served",
        &format!(
            "listen: 127.0.0.1:{port}\nexec: [/bin/echo, hi]\naccess: {{deny: [127.0.0.2]}}\n"
        ),
    );
    config.service(
        "idle",
        &format!("listen: 127.0.0.1:{other}\nexec: [/bin/echo, hi]\n"),
    );
    let spawnd = Spawnd::start(&config);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(tcp_read(port), "hi\n");
    assert_eq!(read_from("127.0.0.2", port).unwrap(), "");
    spawnd.log.expect(&["exit service=served"]);
    let json = std::process::Command::new(BIN)
        .args(["status", "--json", "-c"])
        .arg(config.path())
        .output()
        .unwrap();
    assert!(json.status.success(), "{json:?}");
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["pid"], spawnd.pid());
    let services = report["services"].as_array().unwrap();
    let served = services.iter().find(|s| s["name"] == "served").unwrap();
    assert_eq!(served["state"], "listening");
    assert_eq!(served["accepted"], 1);
    assert_eq!(served["refused_access"], 1);
    assert_eq!(served["children"], 0);
    assert!(services
        .iter()
        .any(|s| s["name"] == "idle" && s["accepted"] == 0));
    let table = std::process::Command::new(BIN)
        .arg("status")
        .arg("--socket")
        .arg(&socket)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()[..5]
                == ["served", "listening", "0", "1", "1"]),
        "{text}"
    );
    spawnd.signal(Signal::SIGUSR1);
    spawnd
        .log
        .expect(&["status service=served", "accepted=1", "refused_access=1"]);
}

#[test]
fn a_live_control_socket_is_not_stolen_and_a_stale_one_is_replaced() {
    let config = Config::new();
    let socket = config.path().join("control.sock");
    // Stale: a socket file nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    config.global(&format!("control_socket: {}\n", socket.display()));
    config.service(
        "a",
        &format!("listen: 127.0.0.1:{}\nexec: [/bin/true]\n", free_port()),
    );
    let first = Spawnd::start(&config);
    let second_config = Config::new();
    second_config.global(&format!("control_socket: {}\n", socket.display()));
    second_config.service(
        "b",
        &format!("listen: 127.0.0.1:{}\nexec: [/bin/true]\n", free_port()),
    );
    let second = Spawnd::start(&second_config);
    second.log.expect(&["control_busy"]);
    let report = status_json(&socket);
    assert_eq!(report["pid"], first.pid(), "the first spawnd still answers");
}
