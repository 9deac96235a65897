#!/usr/bin/env python3
"""The relay benchmark (issue 22): spawnd's `redirect` against two reference
C relays and the relaying peers, behind one C backend, in one run.

Started by `bench/relay.sh`, inside a network namespace with only loopback.
Each repetition visits every server (the order rotates), and for each:

- stream c=1, c=8: GB/s read by the client from the backend's source port
  through the relay;
- echo c=1, c=32: short connections (connect, 100 bytes out and back with a
  half-close, close): connections/s and p99 latency;
- CPU: the server's CPU time (all its processes, and the children it reaped)
  per GB over the stream cells and per 1,000 connections over echo c=32;
- burst: 2,000 connections opened back to back and held, then one byte
  echoed on each (every one accepted and served): seconds;
- idle memory: PSS of the server's processes with N idle relayed
  connections, less before, per connection.

Then, for spawnd alone: its memory with as many idle relays as the
descriptor limit allows (up to 10,000), and the burst against its internal
echo service. Writes a Markdown report and an SVG plot.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
ECHO, SOURCE = 7001, 7002            # the backend
RELAY_ECHO, RELAY_SOURCE = 7101, 7102  # every server relays these to those
INTERNAL_ECHO = 7103                 # spawnd's internal echo (burst)


def pids_of_session(sid):
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid:
                found.append(int(entry))
        except (OSError, ValueError, IndexError):
            pass
    return found


def cpu_seconds(pids):
    """utime + stime + the reaped children's, over `pids`."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += sum(int(fields[i]) for i in (11, 12, 13, 14))
        except (OSError, ValueError, IndexError):
            pass
    return total / CLK_TCK


def pss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except (OSError, ValueError):
            pass
    return total


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def listening(port):
    want = f":{port:04X} "
    with open("/proc/net/tcp") as f:
        return any(want in line and line.split()[3] == "0A" for line in f)


def wait_listening(ports, proc, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if all(listening(p) for p in ports):
            return True
        time.sleep(0.01)
    return False


class Server:
    """A server under test: how to start it, with what files."""

    def __init__(self, name, note, argv_list, files=None, idle_n=1000):
        self.name, self.note, self.argv_list = name, note, argv_list
        self.files = files or {}
        self.idle_n = idle_n
        self.procs = []
        self.work = None
        self.deaths = 0

    def start(self, work):
        self.work = work
        for path, text in self.files.items():
            full = os.path.join(work, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w") as f:
                f.write(text)
        slug = "".join(c if c.isalnum() else "-" for c in self.name)
        log = open(os.path.join(work, f"{slug}.log"), "w")
        for argv in self.argv_list:
            argv = [a.replace("@WORK@", work) for a in argv]
            self.procs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                               stderr=log, start_new_session=True))
        ports = [RELAY_ECHO, RELAY_SOURCE]
        return all(wait_listening(ports, p) for p in self.procs)

    def pids(self):
        return [pid for p in self.procs for pid in pids_of_session(p.pid)]

    def alive(self):
        return all(p.poll() is None for p in self.procs)

    def ensure(self):
        """Restarts the server if a cell killed it (counted, and shown)."""
        if not self.alive():
            self.deaths += 1
            self.stop()
            self.start(self.work)

    def stop(self):
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        self.procs = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (listening(RELAY_ECHO) or listening(RELAY_SOURCE)):
            time.sleep(0.01)


def servers(tools, args):
    crelay = tools["crelay"]
    pairs = ["-l", str(RELAY_ECHO), "-t", str(ECHO), "-l", str(RELAY_SOURCE), "-t", str(SOURCE)]
    big = 100000

    def spawnd_files(splice):
        return {
            "spawnd/spawnd.yaml": f"max_in_process: {big}\nsplice: {str(splice).lower()}\n",
            "spawnd/services.d/echo.yaml": f"listen: 127.0.0.1:{RELAY_ECHO}\nredirect: 127.0.0.1:{ECHO}\n",
            "spawnd/services.d/source.yaml": f"listen: 127.0.0.1:{RELAY_SOURCE}\nredirect: 127.0.0.1:{SOURCE}\n",
            "spawnd/services.d/iecho.yaml": f"listen: 127.0.0.1:{INTERNAL_ECHO}\ninternal: echo\n",
        }

    haproxy_cfg = f"""global
    nbthread 1
    maxconn 7500
defaults
    mode tcp
    timeout connect 10s
    timeout client 5m
    timeout server 5m
    option splice-request
    option splice-response
listen echo
    bind 127.0.0.1:{RELAY_ECHO}
    server b 127.0.0.1:{ECHO}
listen source
    bind 127.0.0.1:{RELAY_SOURCE}
    server b 127.0.0.1:{SOURCE}
"""
    xinetd_conf = "defaults\n{\n    instances = UNLIMITED\n    per_source = UNLIMITED\n    cps = 100000 1\n}\n"
    for name, port, target in (("recho", RELAY_ECHO, ECHO), ("rsource", RELAY_SOURCE, SOURCE)):
        xinetd_conf += (f"service {name}\n{{\n    type = UNLISTED\n    socket_type = stream\n"
                        f"    protocol = tcp\n    wait = no\n    user = root\n    bind = 127.0.0.1\n"
                        f"    port = {port}\n    redirect = 127.0.0.1 {target}\n}}\n")
    rinetd_conf = (f"127.0.0.1 {RELAY_ECHO} 127.0.0.1 {ECHO}\n"
                   f"127.0.0.1 {RELAY_SOURCE} 127.0.0.1 {SOURCE}\n")
    table = [
        Server("C relay (splice)", "bench/relay/crelay.c -m splice", [[crelay, "-m", "splice", *pairs]], idle_n=1000),
        Server("C relay (splice 256 KiB)", "bench/relay/crelay.c -m splice -p 262144",
               [[crelay, "-m", "splice", "-p", "262144", *pairs]], idle_n=1000),
        Server("C relay (splice 1 MiB)", "bench/relay/crelay.c -m splice -p 1048576, as spawnd's pipes",
               [[crelay, "-m", "splice", "-p", "1048576", *pairs]], idle_n=1000),
        Server("C relay (read/write)", "bench/relay/crelay.c -m copy", [[crelay, "-m", "copy", *pairs]], idle_n=1000),
        Server("spawnd", "redirect, -q", [[tools["spawnd"], "run", "-c", "@WORK@/spawnd", "-q"]],
               spawnd_files(True)),
        Server("spawnd (splice: false)", "redirect, -q, copying", [[tools["spawnd"], "run", "-c", "@WORK@/spawnd", "-q"]],
               spawnd_files(False)),
    ]
    if tools.get("spawnd_before"):
        table.append(Server("spawnd before", "another build (SPAWND_BEFORE), redirect, -q",
                            [[tools["spawnd_before"], "run", "-c", "@WORK@/spawnd", "-q"]],
                            {k: v.replace("splice: true\n", "") for k, v in spawnd_files(True).items()}))
    if tools.get("proxyd") and tools.get("socket-activate"):
        table.append(Server("systemd-socket-proxyd", "--connections-max=100000, under systemd-socket-activate", [
            [tools["socket-activate"], "-l", f"127.0.0.1:{port}", tools["proxyd"], "--connections-max=100000",
             f"127.0.0.1:{target}"] for port, target in ((RELAY_ECHO, ECHO), (RELAY_SOURCE, SOURCE))]))
    if tools.get("haproxy"):
        table.append(Server("HAProxy", "nbthread 1, splice-request/response, maxconn 7500",
                            [[tools["haproxy"], "-db", "-f", "@WORK@/haproxy.cfg"]], {"haproxy.cfg": haproxy_cfg}))
    if tools.get("rinetd"):
        table.append(Server("rinetd", "", [[tools["rinetd"], "-f", "-c", "@WORK@/rinetd.conf"]],
                            {"rinetd.conf": rinetd_conf}))
    if tools.get("socat"):
        table.append(Server("socat", "fork, backlog=4096", [
            [tools["socat"], f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr,backlog=4096",
             f"TCP:127.0.0.1:{target}"] for port, target in ((RELAY_ECHO, ECHO), (RELAY_SOURCE, SOURCE))],
            idle_n=200))
    if tools.get("xinetd"):
        table.append(Server("xinetd", "redirect =, cps 100000 1, instances UNLIMITED",
                            [[tools["xinetd"], "-dontfork", "-f", "@WORK@/xinetd.conf", "-pidfile",
                              "@WORK@/xinetd.pid"]], {"xinetd.conf": xinetd_conf}, idle_n=200))
    wanted = set(args.servers.split(",")) if args.servers else None
    return [s for s in table if wanted is None or s.name in wanted]


def load(tools, *argv, timeout=120):
    out = subprocess.run([tools["relayload"], *map(str, argv)], capture_output=True, text=True,
                         timeout=timeout)
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"relayload {' '.join(map(str, argv))}: {out.stderr.strip()}")


def idle_memory(tools, server, port, n):
    """PSS of the server with n idle relayed connections, less before (KiB
    per connection), and the total (KiB)."""
    pids = server.pids()
    before = pss_kib(pids)
    holder = subprocess.Popen([tools["relayload"], "hold", "-p", str(port), "-n", str(n)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = holder.stdout.readline()
    result = json.loads(line) if line.startswith("{") else {"errors": n}
    pids = server.pids()
    after = pss_kib(pids)
    rss = sum(rss_kib(p) for p in pids)
    holder.stdin.close()
    holder.wait()
    return {"per_conn_kib": (after - before) / n, "total_kib": after, "rss_kib": rss,
            "errors": result.get("errors", 0), "n": n, "processes": len(pids)}


def measure(tools, server, args):
    cell = {}
    d, w = args.duration, args.warmup
    # Idle memory first, on a fresh server (what the load cells leave
    # allocated would blur the difference).
    idle = idle_memory(tools, server, RELAY_ECHO, server.idle_n if not args.quick else 100)
    cell["idle_kib"] = idle["per_conn_kib"]
    t0 = cpu_seconds(server.pids())
    server.ensure()
    s1 = load(tools, "stream", "-p", RELAY_SOURCE, "-c", 1, "-d", d, "-w", w)
    server.ensure()
    s8 = load(tools, "stream", "-p", RELAY_SOURCE, "-c", 8, "-d", d, "-w", w)
    t1 = cpu_seconds(server.pids())
    cell["gbps1"], cell["gbps8"] = s1["gbps"], s8["gbps"]
    gb = (s1["bytes"] + s8["bytes"]) / 1e9
    # The CPU of warm-ups is in the difference too: scale by measured time.
    share = (s1["secs"] + s8["secs"]) / (s1["secs"] + s8["secs"] + 2 * w)
    cell["cpu_per_gb_ms"] = (t1 - t0) * share / gb * 1000 if gb else None
    server.ensure()
    e1 = load(tools, "echo", "-p", RELAY_ECHO, "-c", 1, "-d", d, "-w", w)
    t2 = cpu_seconds(server.pids())
    server.ensure()
    e32 = load(tools, "echo", "-p", RELAY_ECHO, "-c", 32, "-d", d, "-w", w)
    t3 = cpu_seconds(server.pids())
    cell.update(rate1=e1["rate"], p99_1=e1["p99_us"], rate32=e32["rate"], p99_32=e32["p99_us"])
    share = e32["secs"] / (e32["secs"] + w)
    cell["cpu_per_kconn_ms"] = (t3 - t2) * share / e32["conns"] * 1e6 if e32["conns"] else None
    server.ensure()
    burst = load(tools, "burst", "-p", RELAY_ECHO, "-n", args.burst)
    cell["burst_s"] = burst["secs"]
    cell["errors"] = sum(x.get("errors", 0) for x in (s1, s8, e1, e32, burst, idle))
    server.ensure()
    cell["died"] = server.deaths
    server.deaths = 0
    return cell


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=2):
    if v is None:
        return "–"
    if isinstance(v, float) and abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def svg_plot(rows, path):
    """Four panels of horizontal bars: GB/s c=1, c=8, conns/s c=1, c=32."""
    panels = [("gbps1", "GB/s, 1 stream"), ("gbps8", "GB/s, 8 streams"),
              ("rate1", "connections/s, c=1"), ("rate32", "connections/s, c=32")]
    names = [r["name"] for r in rows]
    bar_h, gap, label_w, panel_w = 14, 4, 170, 220
    height = 40 + len(names) * (bar_h + gap) + 20
    width = label_w + len(panels) * (panel_w + 20)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>']
    for i, name in enumerate(names):
        y = 40 + i * (bar_h + gap) + bar_h - 3
        out.append(f'<text x="{label_w - 6}" y="{y}" text-anchor="end">{name}</text>')
    for p, (key, title) in enumerate(panels):
        x0 = label_w + p * (panel_w + 20)
        values = [r["median"].get(key) or 0 for r in rows]
        top = max(values) or 1
        out.append(f'<text x="{x0}" y="24" font-weight="bold">{title}</text>')
        for i, (row, v) in enumerate(zip(rows, values)):
            y = 40 + i * (bar_h + gap)
            w = v / top * (panel_w - 60)
            colour = "#d9534f" if row["name"].startswith("spawnd") else (
                "#555" if row["name"].startswith("C relay") else "#5b8dd6")
            out.append(f'<rect x="{x0}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colour}"/>')
            label = f"{v:.2f}" if key.startswith("gbps") else f"{v:,.0f}"
            out.append(f'<text x="{x0 + w + 4:.1f}" y="{y + bar_h - 3}">{label}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def report(rows, big, internal_bursts, args, started, loads):
    by = {r["name"]: r["median"] for r in rows}
    lines = [
        "# Relay benchmark: spawnd `redirect` against C relays and the relaying peers",
        "",
        f"`{args.cmdline}`, {time.strftime('%Y-%m-%d %H:%M', time.localtime(started))}, "
        f"{os.cpu_count()} CPUs, load average before/after {loads[0]} / {loads[1]}. "
        f"{args.reps} repetitions (servers rotated), medians; {args.duration} s per cell after "
        f"{args.warmup} s warm-up; all on 127.0.0.1 in a loopback-only network namespace, "
        "behind one C backend (`bench/relay/backend.c`).",
        "",
        "| server | GB/s 1 stream | GB/s 8 streams | conns/s c=1 | p99 µs c=1 | conns/s c=32 | p99 µs c=32 "
        "| CPU ms/GB | CPU ms/1,000 conns | burst of "
        f"{args.burst} s | idle KiB/conn | errors | setup |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r["median"]
        died = f" (died {r['died']}×, restarted)" if r["died"] else ""
        lines.append(
            f"| {r['name']} | {fmt(m.get('gbps1'))} | {fmt(m.get('gbps8'))} | {fmt(m.get('rate1'))} | "
            f"{fmt(m.get('p99_1'))} | {fmt(m.get('rate32'))} | {fmt(m.get('p99_32'))} | "
            f"{fmt(m.get('cpu_per_gb_ms'), 1)} | {fmt(m.get('cpu_per_kconn_ms'), 1)} | "
            f"{fmt(m.get('burst_s'), 3)} | {fmt(m.get('idle_kib'), 2)} | {r['errors']}{died} | "
            f"{r['note']} |")
    for name, why in args.skipped:
        lines.append(f"| {name} | not run: {why} |||||||||||")
    lines += ["", "## Issue 22's targets", ""]
    s = by.get("spawnd")
    splice_c, copy_c = by.get("C relay (splice)"), by.get("C relay (read/write)")

    def ratio(a, b, key):
        if not a or not b or not a.get(key) or not b.get(key):
            return None
        return a[key] / b[key]

    checks = []
    if s and splice_c:
        for key, label in (("gbps1", "1 stream"), ("gbps8", "8 streams")):
            r = ratio(s, splice_c, key)
            checks.append((f"throughput {label} ≥ 0.95 × splice C relay", r, r is not None and r >= 0.95))
        proxyd = by.get("systemd-socket-proxyd")
        if proxyd:
            ok = all((s.get(k) or 0) > (proxyd.get(k) or 0) for k in ("gbps1", "gbps8"))
            checks.append(("throughput ahead of systemd-socket-proxyd (1 and 8 streams)", None, ok))
    if s and splice_c and copy_c:
        for c in ("1", "32"):
            faster = max(splice_c, copy_c, key=lambda m: m.get(f"rate{c}") or 0)
            r = ratio(s, faster, f"rate{c}")
            checks.append((f"conns/s c={c} ≥ 0.95 × faster C relay", r, r is not None and r >= 0.95))
            p = ratio(s, faster, f"p99_{c}")
            checks.append((f"p99 c={c} ≤ 1.1 × that C relay's", p, p is not None and p <= 1.1))
        for peer in ("HAProxy", "rinetd"):
            if by.get(peer):
                ok = all((s.get(f"rate{c}") or 0) > (by[peer].get(f"rate{c}") or 0) for c in ("1", "32"))
                checks.append((f"short connections ahead of {peer} (c=1 and c=32)", None, ok))
        r = ratio(s, splice_c, "cpu_per_gb_ms")
        checks.append(("CPU per GB ≤ 1.1 × splice C relay", r, r is not None and r <= 1.1))
        best = min(splice_c, copy_c, key=lambda m: m.get("cpu_per_kconn_ms") or 1e9)
        r = ratio(s, best, "cpu_per_kconn_ms")
        checks.append(("CPU per 1,000 connections ≤ 1.1 × the C relay's", r, r is not None and r <= 1.1))
        checks.append(("idle relayed connection < 1 KiB", s.get("idle_kib"), (s.get("idle_kib") or 9) < 1))
        r = ratio(s, splice_c, "burst_s")
        checks.append((f"burst of {args.burst} to the redirect ≤ 1.2 × C relay", r, r is not None and r <= 1.2))
        if internal_bursts:
            b = statistics.median(internal_bursts)
            r = b / splice_c["burst_s"] if splice_c.get("burst_s") else None
            checks.append((f"burst of {args.burst} to the internal echo ≤ 1.2 × C relay ({b:.3f} s)", r,
                           r is not None and r <= 1.2))
    if big:
        checks.append((f"{big['n']:,} idle relays: spawnd under 16 MB (PSS {big['total_kib'] / 1024:.1f} MB, "
                       f"RSS {big['rss_kib'] / 1024:.1f} MB)", big["total_kib"] / 1024,
                       big["total_kib"] < 16 * 1024 and big["rss_kib"] < 16 * 1024))
    lines += ["| target | ratio or value | met |", "|---|---|---|"]
    for label, value, ok in checks:
        lines.append(f"| {label} | {fmt(value, 2) if value is not None else ''} | {'yes' if ok else '**no**'} |")
    lines += [
        "",
        "Columns: **GB/s** read by the client from the backend's source through the relay (c streams); "
        "**conns/s** and **p99** of short connections (connect, 100 bytes out and back, close) "
        "with c clients; **CPU** is the server's user+system time, with its reaped "
        "children's, per GB over both stream cells and per 1,000 connections at c=32; **burst**: "
        f"{args.burst} connections opened back to back and held, then one byte echoed on each; **idle "
        "KiB/conn**: the growth of the server's PSS (all its processes) with that many idle relayed "
        "connections, divided by their number (1,000; 200 for the peers that fork per connection).",
        "",
        "![relay benchmark](relay.svg)",
        "",
    ]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tools", required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3)
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--burst", type=int, default=2000)
    ap.add_argument("--servers", default="")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    if args.quick:
        args.reps, args.duration, args.warmup, args.burst = 1, 0.5, 0.2, 200
    args.cmdline = os.environ.get("BENCH_CMDLINE", "bash bench/relay.sh")
    with open(args.tools) as f:
        tools = json.load(f)
    args.skipped = tools.get("skipped", [])
    started = time.time()
    loads = [os.getloadavg()[0]]
    work = tempfile.mkdtemp(prefix="relay-bench-")
    backend = subprocess.Popen([tools["backend"], "-e", str(ECHO), "-s", str(SOURCE)], start_new_session=True)
    if not wait_listening([ECHO, SOURCE], backend):
        print("relay.py: the backend did not start", file=sys.stderr)
        return 1
    table = servers(tools, args)
    results = {s.name: [] for s in table}
    internal_bursts, big = [], None
    try:
        for rep in range(args.reps):
            order = table[rep % len(table):] + table[:rep % len(table)]
            for server in order:
                print(f"relay.py: rep {rep + 1}/{args.reps}: {server.name}", file=sys.stderr)
                if not server.start(work):
                    print(f"relay.py: {server.name} did not start", file=sys.stderr)
                    server.stop()
                    continue
                try:
                    results[server.name].append(measure(tools, server, args))
                    if server.name == "spawnd":
                        internal_bursts.append(load(tools, "burst", "-p", INTERNAL_ECHO, "-n", args.burst)["secs"])
                        if rep == 0:
                            n = min(10000, (tools.get("nofile", 20000) - 200) // 2)
                            if args.quick:
                                n = 1000
                            big = idle_memory(tools, server, RELAY_ECHO, n)
                except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as e:
                    print(f"relay.py: {server.name}: {e}", file=sys.stderr)
                finally:
                    server.stop()
    finally:
        os.killpg(backend.pid, signal.SIGKILL)
    loads.append(os.getloadavg()[0])
    rows = []
    for server in table:
        cells = results[server.name]
        if not cells:
            args.skipped.append((server.name, "did not start or failed every cell"))
            continue
        keys = [k for k in cells[0] if k not in ("errors", "died")]
        rows.append({"name": server.name, "note": server.note,
                     "median": {k: median([c.get(k) for c in cells]) for k in keys},
                     "errors": sum(c["errors"] for c in cells), "died": sum(c["died"] for c in cells)})
    text = report(rows, big, internal_bursts, args, started, [f"{x:.2f}" for x in loads])
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "relay.md"), "w") as f:
        f.write(text)
    svg_plot(rows, os.path.join(out, "relay.svg"))
    with open(os.path.join(out, "relay-raw.json"), "w") as f:
        json.dump({"results": results, "big": big, "internal_bursts": internal_bursts}, f, indent=1)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
