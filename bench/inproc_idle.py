#!/usr/bin/env python3
"""What idle connections served inside spawnd cost it in memory.

Starts spawnd (a release build) with an internal echo service and a
redirect to a backend this script holds, opens N connections to each, moves
one byte through every one of them (so each has been read, written and gone
idle again), and reports spawnd's RSS and PSS before and after: the cost of
an idle in-process connection. Nothing here is timed.

Run as root inside a loopback-only network namespace, as bench/run.sh does:

    unshare --net sh -c 'ip link set lo up && exec python3 bench/inproc_idle.py \
        --spawnd target/release/spawnd --connections 10000'

Writes a Markdown table to stdout (and to --out if given).
"""

import argparse
import os
import resource
import select
import socket
import subprocess
import sys
import tempfile
import time


def memory(pid):
    """(RSS, PSS) of a process, in KiB."""
    rss = pss = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def drain_log(process):
    """Keeps reading spawnd's log so it never fills the pipe."""
    while select.select([process.stderr], [], [], 0)[0]:
        if not os.read(process.stderr.fileno(), 1 << 16):
            return


def exchange(conns, process, expect_echo=True, peers=None):
    """One byte through every connection, and back (echo) or across."""
    for conn in conns:
        conn.sendall(b"x")
    pending = list(conns) if expect_echo else list(peers)
    for conn in pending:
        conn.settimeout(20)
        if conn.recv(1) != b"x":
            sys.exit("a connection lost its byte")
        drain_log(process)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--spawnd", default="target/release/spawnd")
    parser.add_argument(
        "--connections", type=int, default=10000,
        help="idle in-process connections in all: half echo, half redirected")
    parser.add_argument("--out")
    parser.add_argument(
        "--before-caps", action="store_true",
        help="leave max_in_process out of spawnd.yaml (builds before it existed)")
    args = parser.parse_args()

    n = args.connections // 2
    # This script holds 3 descriptors per pair (echo client, relay client,
    # backend side), spawnd 3 too.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 3 * n + 1000
    if hard != resource.RLIM_INFINITY and hard < wanted:
        sys.exit(f"needs {wanted} descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))

    backend = socket.socket()
    backend.bind(("127.0.0.1", 0))
    backend.listen(4096)
    backend_port = backend.getsockname()[1]

    config = tempfile.mkdtemp(prefix="spawnd-inproc-idle")
    os.mkdir(f"{config}/services.d")
    with open(f"{config}/spawnd.yaml", "w") as f:
        f.write(f"control_socket: {config}/c.sock\n")
        if not args.before_caps:
            f.write(f"max_in_process: {3 * n}\n")
    with open(f"{config}/services.d/echo.yaml", "w") as f:
        f.write("listen: 127.0.0.1:7007\ninternal: echo\nbacklog: 4096\n")
    with open(f"{config}/services.d/relay.yaml", "w") as f:
        f.write(f"listen: 127.0.0.1:7008\nredirect: 127.0.0.1:{backend_port}\nbacklog: 4096\n")

    process = subprocess.Popen(
        [args.spawnd, "run", "-c", config, "--log-level", "warn"],
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,

    )
    try:
        # --log-level warn (no line per connection): ready once it answers.
        end = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", 7007), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > end or process.poll() is not None:
                    sys.exit("spawnd did not start")
                time.sleep(0.05)
        # One of each first: spawnd's shared buffers exist from then on.
        warm = socket.create_connection(("127.0.0.1", 7007))
        exchange([warm], process)
        warm.close()
        time.sleep(0.2)
        idle = memory(process.pid)

        echo = [socket.create_connection(("127.0.0.1", 7007)) for _ in range(n)]
        exchange(echo, process)
        after_echo = memory(process.pid)

        relayed, upstream = [], []
        for _ in range(n):
            relayed.append(socket.create_connection(("127.0.0.1", 7008)))
            upstream.append(backend.accept()[0])
        exchange(relayed, process, expect_echo=False, peers=upstream)
        after_relay = memory(process.pid)

        def per(before, after, count):
            return (after - before) * 1024 / count

        rows = [
            ("spawnd idle (2 services)", idle, None),
            (f"+ {n:,} idle echo connections", after_echo,
             (per(idle[0], after_echo[0], n), per(idle[1], after_echo[1], n))),
            (f"+ {n:,} idle redirected connections", after_relay,
             (per(after_echo[0], after_relay[0], n), per(after_echo[1], after_relay[1], n))),
        ]
        lines = [
            "| state | RSS | PSS | per added connection (RSS / PSS) |",
            "|---|---|---|---|",
        ]
        for name, (rss, pss), each in rows:
            cost = "" if each is None else f"{each[0]:.0f} B / {each[1]:.0f} B"
            lines.append(f"| {name} | {rss / 1024:.1f} MB | {pss / 1024:.1f} MB | {cost} |")
        above = (after_relay[0] - idle[0]) / 1024
        lines.append("")
        lines.append(
            f"{2 * n:,} idle in-process connections ({n:,} echo, {n:,} redirected): "
            f"{above:.1f} MB of RSS above idle (target: under 16 MB for 10,000)."
        )
        text = "\n".join(lines) + "\n"
        sys.stdout.write(text)
        if args.out:
            with open(args.out, "w") as f:
                f.write(text)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


if __name__ == "__main__":
    main()
