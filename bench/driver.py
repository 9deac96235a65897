#!/usr/bin/env python3
"""Benchmark driver for spawnd and its peers (run by bench/run.sh).

Runs inside a network namespace that has only loopback (run.sh sees to that):
starts one server at a time with the same service program on 127.0.0.1, drives
it with bench's loadgen at each concurrency, alternating servers between
repetitions, and writes a Markdown table (medians, min-max, ratio to the bare
vfork loop) and an SVG plot. Python standard library only.
"""

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXPECT = b"spawnd-bench-ok\n"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# ---------------------------------------------------------------------------
# /proc helpers


def smaps_rollup(pid):
    """(Pss, USS) in KiB from /proc/PID/smaps_rollup: USS is what only this
    process maps (private clean + private dirty); PSS shares each shared page
    among the processes mapping it. RSS alone counts a binary's text pages
    the page cache holds anyway."""
    fields = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0].endswith(":"):
                    try:
                        fields[parts[0][:-1]] = int(parts[1])
                    except ValueError:
                        pass
    except OSError:
        return None, None
    uss = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return fields.get("Pss"), uss


def proc_status(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def cpu_ns(pid):
    """CPU time of a process (all its threads) in ns: sum of the threads'
    schedstat run time, or utime+stime from /proc/PID/stat as a fallback."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        return total
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // CLK_TCK
    except (OSError, ValueError, IndexError):
        return 0


def ctx_switches(pid):
    """Voluntary + involuntary context switches over all threads (wake-ups)."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
    except (OSError, ValueError):
        pass
    return total


def descendants(pid):
    """pid and its descendants (for servers that are several processes)."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            kids.setdefault(ppid, []).append(int(d))
        except (OSError, ValueError, IndexError):
            pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def listening_count():
    n = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split(None, 4)
                    if len(parts) > 3 and parts[3] == "0A":
                        n += 1
        except OSError:
            pass
    return n


def probe(port, timeout=1.0):
    """One connection: True if the expected reply came back."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            data = b""
            while True:
                chunk = s.recv(256)
                if not chunk:
                    break
                data += chunk
            return data == EXPECT
    except OSError:
        return False


# ---------------------------------------------------------------------------
# servers


class Server:
    """One super-server under test. start() returns the argv (and writes any
    configuration into workdir); multi says whether one process serves many
    ports (False: one process per port, like tcpserver)."""

    name = ""
    multi = True
    throttle_note = ""
    notify = False  # speaks sd_notify (READY=1, RELOADING=1): reload time is measured

    def __init__(self, tools):
        self.tools = tools

    def available(self):
        return None  # or a reason why not

    def argvs(self, prog, ports, workdir):
        raise NotImplementedError

    def precheck(self, workdir):
        return None  # or why the configuration written by argvs() is not accepted


class Bare(Server):
    """The bare C loop; mode "epoll" is the vfork loop shaped like spawnd's
    event loop (bareloop -e), the least any server built that way can do."""

    def __init__(self, tools, mode):
        super().__init__(tools)
        self.mode = mode
        self.name = f"bare {mode}"

    def available(self):
        return None if os.access(self.tools["bareloop"], os.X_OK) else "bareloop not built"

    def argvs(self, prog, ports, workdir):
        how = {
            "epoll": ["-m", "vfork", "-e"],
            "launch": ["-m", "launch", "-e"],
            "shared": ["-m", "vfork", "-s", "-e"],
            "handoff": ["-m", "launch", "-s", "-e"],
        }.get(self.mode, ["-m", self.mode])
        return [[self.tools["bareloop"], *how, "-p", str(ports[0]), "-n", str(len(ports)), "--", prog]]


class Spawnd(Server):
    notify = True

    def __init__(self, tools, full, before=False):
        super().__init__(tools)
        self.full = full
        # `before`: another build (SPAWND_BEFORE), run beside this one.
        self.binary = "spawnd_before" if before else "spawnd"
        self.name = ("spawnd (before)" if before else "spawnd") + ("+checks" if full else "")
        self.throttle_note = (
            f"{self.name}: `access.allow: [127.0.0.0/8]`, `limits: {{instances: 100000, per_source: 100000, "
            "rate: 1000000/s, timeout: 5m}` and per-connection logging on (no `-q`; log to a file)"
            if full
            else ""
        )

    def available(self):
        b = self.tools.get(self.binary)
        if not b or not os.access(b, os.X_OK):
            if self.binary == "spawnd_before":
                return "no SPAWND_BEFORE binary given"
            return "spawnd binary not built (cargo build --release failed?)"
        return None if self.binary == "spawnd_before" else self.tools.get("spawnd_broken")

    def argvs(self, prog, ports, workdir):
        cdir = os.path.join(workdir, "spawnd")
        sdir = os.path.join(cdir, "services.d")
        os.makedirs(sdir, mode=0o755)
        os.chmod(cdir, 0o755)
        extra = ""
        if self.full:
            extra = (
                "access:\n  allow: [127.0.0.0/8]\n"
                "limits:\n  instances: 100000\n  per_source: 100000\n  rate: 1000000/s\n  timeout: 5m\n"
            )
        for i, p in enumerate(ports):
            fn = os.path.join(sdir, f"s{i:05d}.yaml")
            with open(fn, "w") as f:
                f.write(f"listen: 127.0.0.1:{p}\nexec: [{prog}]\n{extra}")
            os.chmod(fn, 0o644)
        self.cdir = cdir
        argv = [self.tools[self.binary], "run", "-c", cdir]
        if not self.full:
            argv.append("-q")
        return [argv]


    def precheck(self, workdir):
        p = subprocess.run([self.tools[self.binary], "check", "-c", self.cdir], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        if p.returncode != 0:
            lines = [l for l in p.stdout.splitlines() if l.strip() and not l.startswith("ok ")]
            return f"`spawnd check` exited {p.returncode}: " + " | ".join(lines[:3])[:300]
        return None


class Xinetd(Server):
    name = "xinetd"
    throttle_note = "xinetd: `cps = 100000 1`, `instances = UNLIMITED`, `per_source = UNLIMITED` (default `cps 50 10`)"

    def available(self):
        return None if self.tools.get("xinetd") else "xinetd not installed"

    def argvs(self, prog, ports, workdir):
        conf = os.path.join(workdir, "xinetd.conf")
        with open(conf, "w") as f:
            f.write("defaults\n{\n\tinstances = UNLIMITED\n\tper_source = UNLIMITED\n\tcps = 100000 1\n}\n")
            for p in ports:
                f.write(
                    f"service bench{p}\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n\tprotocol = tcp\n"
                    f"\twait = no\n\tuser = root\n\tserver = {prog}\n\tport = {p}\n\tbind = 127.0.0.1\n"
                    "\tflags = IPv4\n\tinstances = UNLIMITED\n\tper_source = UNLIMITED\n\tcps = 100000 1\n}\n"
                )
        return [[self.tools["xinetd"], "-dontfork", "-f", conf, "-pidfile", os.path.join(workdir, "xinetd.pid")]]


class InetdConf(Server):
    """openbsd-inetd and busybox inetd share the classic inetd.conf format."""

    def conf(self, prog, ports, workdir):
        conf = os.path.join(workdir, f"{self.key}.conf")
        with open(conf, "w") as f:
            for p in ports:
                f.write(f"127.0.0.1:{p} stream tcp nowait.1000000 root {prog} {os.path.basename(prog)}\n")
        return conf


class OpenbsdInetd(InetdConf):
    name = "openbsd-inetd"
    key = "obinetd"
    throttle_note = "openbsd-inetd: `nowait.1000000` and `-R 1000000` (default 256 per minute)"

    def available(self):
        return None if self.tools.get("openbsd-inetd") else self.tools.get("openbsd-inetd-why", "not unpacked")

    def argvs(self, prog, ports, workdir):
        return [[self.tools["openbsd-inetd"], "-i", "-R", "1000000", self.conf(prog, ports, workdir)]]


class BusyboxInetd(InetdConf):
    name = "busybox inetd"
    key = "bbinetd"
    throttle_note = "busybox inetd: `nowait.1000000` and `-R 1000000` (per-minute limit)"

    def available(self):
        return None if self.tools.get("busybox") else self.tools.get("busybox-why", "not built")

    def argvs(self, prog, ports, workdir):
        return [[self.tools["busybox"], "inetd", "-f", "-R", "1000000", self.conf(prog, ports, workdir)]]


class Tcpserver(Server):
    name = "tcpserver"
    multi = False
    throttle_note = "tcpserver: `-b 1024 -c 1000` (default backlog 20, 40 connections), lookups off: `-H -R -l0`"

    def available(self):
        return None if self.tools.get("tcpserver") else "tcpserver (ucspi-tcp) not installed"

    def argvs(self, prog, ports, workdir):
        return [
            [self.tools["tcpserver"], "-H", "-R", "-l0", "-b", "1024", "-c", "1000", "127.0.0.1", str(p), prog]
            for p in ports
        ]


class Tcpsvd(Server):
    name = "tcpsvd"
    multi = False
    throttle_note = "tcpsvd: `-b 1024 -c 1000` (default backlog 20, 30 connections), lookups off: `-l localhost`, no `-h`"

    def available(self):
        return None if self.tools.get("tcpsvd") else "tcpsvd (ipsvd) not installed"

    def argvs(self, prog, ports, workdir):
        return [
            [self.tools["tcpsvd"], "-l", "localhost", "-b", "1024", "-c", "1000", "127.0.0.1", str(p), prog]
            for p in ports
        ]


class SocketActivate(Server):
    name = "systemd-socket-activate"
    throttle_note = ""

    def available(self):
        return None if self.tools.get("systemd-socket-activate") else "systemd-socket-activate not installed"

    def argvs(self, prog, ports, workdir):
        argv = [self.tools["systemd-socket-activate"]]
        for p in ports:
            argv += ["-l", f"127.0.0.1:{p}"]
        return [argv + ["-a", "--inetd", prog]]


ALL_SERVERS = [
    "bare-vfork", "bare-epoll", "bare-fork", "bare-spawn", "spawnd", "spawnd+checks", "busybox-inetd",
    "tcpserver", "tcpsvd", "xinetd", "openbsd-inetd", "systemd-socket-activate",
]
# Run only when named in --servers: `bare launch` is `bare epoll` starting
# children as spawnd does, without waiting for their exec (bareloop -m launch -e);
# `bare shared` and `bare handoff` are `bare epoll` and `bare launch` with the
# descriptor table shared with the child until it unshares it (bareloop -s), as
# spawnd's is with many listeners: the references for a scaling run.
OPTIONAL_SERVERS = [
    "bare-launch", "bare-shared", "bare-handoff", "spawnd-before", "spawnd-before+checks",
]


def make_server(key, tools):
    if key.startswith("bare-"):
        return Bare(tools, key[5:])
    return {
        "spawnd": lambda: Spawnd(tools, False),
        "spawnd+checks": lambda: Spawnd(tools, True),
        "spawnd-before": lambda: Spawnd(tools, False, before=True),
        "spawnd-before+checks": lambda: Spawnd(tools, True, before=True),
        "xinetd": lambda: Xinetd(tools),
        "openbsd-inetd": lambda: OpenbsdInetd(tools),
        "busybox-inetd": lambda: BusyboxInetd(tools),
        "tcpserver": lambda: Tcpserver(tools),
        "tcpsvd": lambda: Tcpsvd(tools),
        "systemd-socket-activate": lambda: SocketActivate(tools),
    }[key]()


# ---------------------------------------------------------------------------
# running one server


class Running:
    def __init__(self, server, prog, ports, workroot, ready_timeout, same_session=False):
        self.server = server
        self.ports = ports
        self.workdir = tempfile.mkdtemp(prefix=server.name.replace(" ", "-") + ".", dir=workroot)
        self.procs = []
        self.log = open(os.path.join(self.workdir, "server.log"), "wb")
        base = listening_count()
        self.startup = None
        argvs = server.argvs(prog, ports, self.workdir)
        self.error = server.precheck(self.workdir)
        if self.error:
            return
        env = dict(os.environ)
        self.notify_sock = None
        if server.notify:
            path = os.path.join(self.workdir, "notify.sock")
            self.notify_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.notify_sock.bind(path)
            env["NOTIFY_SOCKET"] = path
        # A process group of its own either way, so that stop() can signal
        # everything the server started.
        if not same_session:
            group = {"start_new_session": True}
        elif sys.version_info >= (3, 11):
            group = {"process_group": 0}
        else:
            group = {"preexec_fn": os.setpgrp}  # the driver has no threads
        t0 = time.monotonic()
        for argv in argvs:
            self.procs.append(
                subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
                    cwd=self.workdir, env=env, **group,
                )
            )
        deadline = t0 + ready_timeout
        want = base + len(ports)
        # ready (start-up time) = every port listening (counted in
        # /proc/net/tcp) and the first port answering with the expected reply;
        # then the last port must answer too
        while time.monotonic() < deadline:
            dead = [p for p in self.procs if p.poll() is not None]
            if dead:
                self.error = f"exited with status {dead[0].returncode} during start-up"
                break
            if listening_count() >= want and probe(ports[0], 0.5):
                self.startup = time.monotonic() - t0
                if len(ports) > 1 and not probe(ports[-1], 1.0):
                    # listening but not serving every port (busybox inetd's
                    # select() stops at FD_SETSIZE): find where it stops
                    lo, hi = 0, len(ports) - 1  # lo answers, hi does not
                    while hi - lo > 1:
                        mid = (lo + hi) // 2
                        if probe(ports[mid], 0.3):
                            lo = mid
                        else:
                            hi = mid
                    self.error = (f"all {len(ports):,} ports listen, but only about the first {lo + 1:,} "
                                  "answer; not measured")
                break
            time.sleep(0.002)
        else:
            got = listening_count() - base
            self.error = f"not ready after {ready_timeout:.0f} s ({got} of {len(ports)} ports listening)"
        if self.error:
            self.log.flush()
            tail = self.log_tail()
            if tail:
                self.error += f"; log: {tail}"

    def notifications(self, timeout):
        """sd_notify datagrams received within timeout (non-blocking drain when 0)."""
        out = []
        if not self.notify_sock:
            return out
        self.notify_sock.settimeout(timeout if timeout > 0 else 0.0)
        try:
            while True:
                out.append(self.notify_sock.recv(4096).decode("utf-8", "replace"))
                self.notify_sock.settimeout(0.0)
        except (BlockingIOError, socket.timeout, OSError):
            pass
        return out

    def reload_time(self, timeout=30.0):
        """SIGHUP, then the time until READY=1 (after RELOADING=1), in s; or a reason."""
        if not self.notify_sock:
            return None
        self.notifications(0)
        t0 = time.monotonic()
        os.kill(self.procs[0].pid, signal.SIGHUP)
        seen_reloading = False
        while time.monotonic() - t0 < timeout:
            for msg in self.notifications(0.05):
                fields = msg.split("\n")
                if "RELOADING=1" in fields:
                    seen_reloading = True
                if "READY=1" in fields:
                    dt = time.monotonic() - t0
                    return dt if seen_reloading else f"READY=1 without RELOADING=1 after {dt * 1000:.0f} ms"
            if self.procs[0].poll() is not None:
                return "exited on SIGHUP"
        return f"no READY=1 within {timeout:.0f} s of SIGHUP"

    def log_tail(self, n=300):
        try:
            with open(os.path.join(self.workdir, "server.log"), "rb") as f:
                data = f.read()[-n:]
            return data.decode("utf-8", "replace").strip().replace("\n", " | ")
        except OSError:
            return ""

    def pids(self):
        if self.server.multi:
            return [p.pid for p in self.procs]
        return [p.pid for p in self.procs]

    def rss_kb(self):
        return sum(proc_status(p, "VmRSS") or 0 for p in self.pids())

    def pss_uss_kb(self):
        pairs = [smaps_rollup(p) for p in self.pids()]
        if not pairs or any(p is None for pair in pairs for p in pair):
            return None, None
        return sum(p for p, _ in pairs), sum(u for _, u in pairs)

    def cpu_ns(self):
        return sum(cpu_ns(p) for p in self.pids())

    def ctx(self):
        return sum(ctx_switches(p) for p in self.pids())

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 3
        for p in self.procs:
            try:
                p.wait(timeout=max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                p.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        self.log.close()
        if self.notify_sock:
            self.notify_sock.close()


RUNNING = []
LOAD_AT_START = "?"


def stop_all(*_):
    while RUNNING:
        r = RUNNING.pop()
        try:
            r.stop()
        except Exception:
            pass


def on_signal(signum, _frame):
    stop_all()
    sys.exit(128 + signum)


# ---------------------------------------------------------------------------
# formatting


def fmt_int(x):
    return f"{x:,.0f}"


def fmt_cell(vals, fmt=fmt_int):
    if not vals:
        return "–"
    med = statistics.median(vals)
    if len(vals) == 1:
        return fmt(med)
    return f"{fmt(med)} ({fmt(min(vals))}–{fmt(max(vals))})"


def fmt_ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}"


def med(vals):
    return statistics.median(vals) if vals else None


def autogroups():
    try:
        with open("/proc/sys/kernel/sched_autogroup_enabled") as f:
            return "on" if f.read().strip() == "1" else "off"
    except OSError:
        return "not in this kernel"


def machine_desc():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = proc_meminfo_gb()
    return f"{model}, {os.cpu_count()} CPUs, {mem} GiB RAM, Linux {os.uname().release}"


def proc_meminfo_gb():
    try:
        with open("/proc/meminfo") as f:
            return round(int(f.readline().split()[1]) / 1024 / 1024)
    except (OSError, ValueError):
        return "?"


# ---------------------------------------------------------------------------
# SVG plot


COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf", "#000000", "#aec7e8"]


def svg_plot(panels, conc, title):
    """panels: [(subtitle, {server: {c: median conns/s}})] -> SVG text.
    One panel per service program, connections/s by concurrency."""
    pw, ph, ml, mr, mt, mb = 430, 300, 70, 20, 50, 50
    legend_h = 18 * ((len(panels[0][1]) + 1) // 2) + 10 if panels else 0
    W, H = pw * len(panels), ph + legend_h
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="18" text-anchor="middle" font-size="14" font-weight="bold">{esc(title)}</text>']
    servers = list(panels[0][1].keys()) if panels else []
    for pi, (sub, data) in enumerate(panels):
        ox = pi * pw
        x0, x1, y0, y1 = ox + ml, ox + pw - mr, ph - mb, mt
        ymax = max([v for d in data.values() for v in d.values() if v] + [1])
        step = nice_step(ymax / 5)
        ymax = step * (int(ymax / step) + 1)
        out.append(f'<text x="{(x0 + x1) / 2}" y="38" text-anchor="middle">{esc(sub)}</text>')
        v = 0
        while v <= ymax + 1e-9:
            y = y0 - (y0 - y1) * v / ymax
            out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="#ddd"/>')
            out.append(f'<text x="{x0 - 5}" y="{y + 4:.1f}" text-anchor="end">{v:,.0f}</text>')
            v += step
        xs = {c: x0 + (x1 - x0) * (i + 0.5) / len(conc) for i, c in enumerate(conc)}
        for c, x in xs.items():
            out.append(f'<text x="{x:.1f}" y="{y0 + 16}" text-anchor="middle">{c}</text>')
        out.append(f'<text x="{(x0 + x1) / 2}" y="{y0 + 34}" text-anchor="middle">concurrent connections</text>')
        out.append(f'<text transform="translate({ox + 14},{(y0 + y1) / 2}) rotate(-90)" '
                   f'text-anchor="middle">connections/s</text>')
        out.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="black"/>')
        out.append(f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="black"/>')
        for si, s in enumerate(servers):
            col = COLORS[si % len(COLORS)]
            pts = [(xs[c], y0 - (y0 - y1) * data[s][c] / ymax) for c in conc if data.get(s, {}).get(c)]
            dash = ' stroke-dasharray="5,3"' if s.startswith("bare") and s != "bare vfork" else ""
            width = 3 if s.startswith("spawnd") or s == "bare vfork" else 1.5
            if len(pts) > 1:
                out.append(f'<polyline fill="none" stroke="{col}" stroke-width="{width}"{dash} points="'
                           + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + '"/>')
            for x, y in pts:
                out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{col}"/>')
    for si, s in enumerate(servers):
        col = COLORS[si % len(COLORS)]
        lx = 20 + (si % 2) * (W / 2)
        ly = ph + 8 + 18 * (si // 2)
        dash = ' stroke-dasharray="5,3"' if s.startswith("bare") and s != "bare vfork" else ""
        out.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 24}" y2="{ly}" stroke="{col}" stroke-width="3"{dash}/>')
        out.append(f'<text x="{lx + 30}" y="{ly + 4}">{esc(s)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def nice_step(x):
    if x <= 0:
        return 1
    mag = 10 ** int(f"{x:e}".split("e")[1])
    for m in (1, 2, 2.5, 5, 10):
        if m * mag >= x:
            return m * mag
    return 10 * mag


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ---------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tools", required=True, help="JSON file: paths of the built tools and peers")
    ap.add_argument("--quick", action="store_true", help="CI smoke run: 1 repetition, ~1 s per cell")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds measured per cell")
    ap.add_argument("--warmup", type=float, default=0.5, help="seconds of warm-up per cell")
    ap.add_argument("--conns", default="1,8,32", help="concurrencies, comma-separated")
    ap.add_argument("--servers", default=",".join(ALL_SERVERS), help="comma-separated, from: " + ",".join(ALL_SERVERS + OPTIONAL_SERVERS))
    ap.add_argument("--programs", default="libc,nolibc", help="service programs: libc,nolibc")
    ap.add_argument("--services", default="1", help="numbers of configured services, e.g. 1,3000,10000")
    ap.add_argument("--per-port-max", type=int, default=100,
                    help="skip one-process-per-port servers (tcpserver, tcpsvd) above this many services")
    ap.add_argument("--idle-secs", type=float, default=10.0, help="idle wake-up measurement (0: off)")
    ap.add_argument("--same-session", action="store_true",
                    help="start the servers in the driver's session (a process group of their own only) instead "
                         "of a session of their own, as a daemon runs; with the kernel's autogroups the server then "
                         "shares the load generator's scheduling group, which changes the c=1 figures")
    ap.add_argument("--port", type=int, default=10000, help="first port of the port pool (up to 49999)")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--ready-timeout", type=float, default=60.0)
    ap.add_argument("--workdir", default=os.path.join(HERE, "target", "bench", "work"),
                    help="configurations and logs of the servers (emptied at start)")
    a = ap.parse_args()
    if a.quick:
        a.reps, a.duration, a.warmup = 1, 0.8, 0.2
        a.idle_secs = min(a.idle_secs, 1.0)

    with open(a.tools) as f:
        tools = json.load(f)
    conc = [int(x) for x in a.conns.split(",") if x]
    nservices = [int(x) for x in a.services.split(",") if x]
    progs = [p for p in a.programs.split(",") if p]
    prog_path = {"libc": tools["hello"], "nolibc": tools["hello-nolibc"]}
    prog_title = {"libc": "libc service (dynamic)", "nolibc": "libc-free service (static, 2 syscalls)"}

    # Limits: enough descriptors for 10,000 services; a local port range that
    # leaves 10000-49999 to the servers.
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (200_000, 200_000))
    except (ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", "w") as f:
            f.write("50000 65535")
    except OSError:
        pass
    # sanity: only loopback here
    with open("/proc/net/dev") as f:
        ifaces = [line.split(":")[0].strip() for line in f if ":" in line]
    if ifaces != ["lo"]:
        print(f"driver: refusing to run outside a loopback-only network namespace (interfaces: {ifaces})",
              file=sys.stderr)
        return 2

    global LOAD_AT_START
    LOAD_AT_START = loadavg()
    try:
        if float(LOAD_AT_START.split()[0]) > 0.7:
            print(f"driver: warning: load average {LOAD_AT_START} before the run: something else is using the "
                  "CPUs, the figures will be noisy", file=sys.stderr)
    except ValueError:
        pass
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    servers, skipped = [], []
    for key in [s for s in a.servers.split(",") if s]:
        if key not in ALL_SERVERS + OPTIONAL_SERVERS:
            print(f"driver: unknown server {key!r}", file=sys.stderr)
            return 2
        srv = make_server(key, tools)
        why = srv.available()
        if why:
            skipped.append((srv.name, why))
            print(f"driver: skipping {srv.name}: {why}", file=sys.stderr)
        else:
            servers.append(srv)
    if not servers:
        print("driver: no server to run", file=sys.stderr)
        return 1

    os.makedirs(a.out, exist_ok=True)
    # per-server configuration and logs of the last run (kept for a look after a failure)
    workroot = a.workdir
    if os.path.isdir(workroot):
        shutil.rmtree(workroot)
    os.makedirs(workroot, mode=0o755)
    raw_path = os.path.join(a.out, "raw.jsonl")
    raw = open(raw_path, "w")

    # results[(n, prog, server, c)] = [result dicts]; info[(n, server)] = {...}
    results, info, failures = {}, {}, []
    next_port = [a.port]

    def take_ports(n):
        if next_port[0] + n > 50000:
            next_port[0] = a.port
        p = next_port[0]
        next_port[0] += n
        return list(range(p, p + n))

    total_cells = len(nservices) * a.reps * len(progs) * len(servers) * len(conc)
    done = 0
    t_start = time.monotonic()
    # Every repetition visits every service count (starting from a different
    # one each time), so that a ratio between service counts compares cells
    # measured minutes apart at most, not a whole run apart: on a shared
    # machine the speed drifts.
    for rep in range(a.reps):
        k = rep % len(servers)
        order = servers[k:] + servers[:k]  # alternate who goes first
        m = rep % len(nservices)
        for n in nservices[m:] + nservices[:m]:
            for prog in progs:
                for srv in order:
                    if not srv.multi and n > a.per_port_max:
                        if (n, srv.name) not in info:
                            info[(n, srv.name)] = {"skip": f"one process per port; not run with {n:,} services"}
                        done += len(conc)
                        continue
                    if "error" in info.get((n, srv.name), {}):
                        done += len(conc)  # failed to start before: don't wait for it again
                        continue
                    ports = take_ports(n)
                    r = Running(srv, prog_path[prog], ports, workroot, a.ready_timeout, a.same_session)
                    RUNNING.append(r)
                    inf = info.setdefault((n, srv.name), {})
                    if r.error:
                        msg = f"{srv.name} ({plural(n)}, {prog}): {r.error}"
                        print("driver: " + msg, file=sys.stderr)
                        failures.append(msg)
                        inf.setdefault("error", r.error)
                        RUNNING.remove(r)
                        r.stop()
                        done += len(conc)
                        continue
                    inf.setdefault("startup", []).append(r.startup)
                    if prog == progs[0] and "rss_kb" not in inf:
                        time.sleep(0.3)
                        inf["rss_kb"] = r.rss_kb()
                        inf["pss_kb"], inf["uss_kb"] = r.pss_uss_kb()
                        inf["nprocs"] = len(r.pids())
                        if a.idle_secs > 0:
                            c0 = r.ctx()
                            time.sleep(a.idle_secs)
                            inf["wakeups"] = r.ctx() - c0
                        if srv.notify:
                            rt = r.reload_time()
                            inf["reload"] = rt
                            if isinstance(rt, str):
                                failures.append(f"{srv.name} ({plural(n)}): reload: {rt}")
                            elif not probe(ports[-1], 2.0):
                                failures.append(f"{srv.name} ({plural(n)}): no answer after reload")
                    for c in conc:
                        cpu0 = r.cpu_ns()
                        label = f"{srv.name}|{prog}|n={n}|c={c}|rep={rep}"
                        cmd = [tools["loadgen"], "--ports", f"{ports[0]}-{ports[-1]}", "--conns", str(c),
                               "--duration", str(a.duration), "--warmup", str(a.warmup),
                               "--timeout-ms", "5000", "--label", label]
                        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                           timeout=a.duration + a.warmup + 60)
                        cpu1 = r.cpu_ns()
                        done += 1
                        try:
                            res = json.loads(p.stdout.strip().splitlines()[-1])
                        except (ValueError, IndexError):
                            failures.append(f"{label}: loadgen failed: {p.stderr.strip()[:200]}")
                            continue
                        res.update(server=srv.name, prog=prog, services=n, rep=rep,
                                   server_cpu_ms=(cpu1 - cpu0) / 1e6, alive=all(x.poll() is None for x in r.procs))
                        raw.write(json.dumps(res) + "\n")
                        raw.flush()
                        results.setdefault((n, prog, srv.name, c), []).append(res)
                        el = time.monotonic() - t_start
                        print(f"[{done}/{total_cells} {el:4.0f}s] {srv.name:24s} {prog:6s} n={n:<5d} c={c:<3d} "
                              f"{res['conns_per_s']:9.1f}/s  p99 {res['p99_us']:8.0f} us  errors {res['errors']}"
                              + ("" if res["alive"] else "  [SERVER DIED]"),
                              file=sys.stderr)
                        if res["first_error"] and res["errors"]:
                            print(f"    first error: {res['first_error']}", file=sys.stderr)
                    RUNNING.remove(r)
                    r.stop()
    raw.close()

    md = report(a, servers, skipped, results, info, failures, conc, nservices, progs, prog_title)
    with open(os.path.join(a.out, "latest.md"), "w") as f:
        f.write(md)
    # plot: the first number of services
    n0 = nservices[0]
    panels = []
    for prog in progs:
        data = {}
        for srv in servers:
            d = {c: med([x["conns_per_s"] for x in results.get((n0, prog, srv.name, c), [])]) for c in conc}
            if any(d.values()):
                data[srv.name] = d
        panels.append((prog_title[prog], data))
    if panels and panels[0][1]:
        # every panel must list the same servers, in the same order (colors)
        names = [s.name for s in servers if any(s.name in p[1] for p in panels)]
        panels = [(t, {s: d.get(s, {}) for s in names}) for t, d in panels]
        title = f"Connections/s by concurrency ({n0:,} service{'s' if n0 != 1 else ''}; median of {a.reps})"
        with open(os.path.join(a.out, "conns.svg"), "w") as f:
            f.write(svg_plot(panels, conc, title))
    print(md)
    print(f"driver: wrote {a.out}/latest.md, {a.out}/conns.svg, {raw_path}", file=sys.stderr)
    return 0


def targets(a, servers, results, info, conc, nservices, progs):
    """Issue 6's targets, checked against this run (spawnd+checks where it ran,
    else spawnd)."""
    names = [s.name for s in servers]
    who = next((w for w in ("spawnd+checks", "spawnd") if w in names and any(
        results.get((n, p, w, c)) for n in nservices for p in progs for c in conc)), None)
    if who is None or "bare vfork" not in names:
        return []
    L = [f"### Issue 6 targets, checked with `{who}` against `bare vfork` (medians of this run)\n",
         "| target | measured | met |", "|---|---|---|"]

    def m(n, prog, srv, c, key):
        return med([x[key] for x in results.get((n, prog, srv, c), [])])

    def row(what, val, ok):
        L.append(f"| {what} | {val} | {'yes' if ok else '**no**'} |")

    n0 = nservices[0]
    for prog in progs:
        for c in conc:
            v, b = m(n0, prog, who, c, "conns_per_s"), m(n0, prog, "bare vfork", c, "conns_per_s")
            if v is not None and b:
                row(f"conns/s ≥ 0.95 × bare, {prog}, c={c}", f"{v / b:.3f} × ({v:,.0f} vs {b:,.0f})", v / b >= 0.95)
    for prog in progs:
        for c in conc:
            v, b = m(n0, prog, who, c, "p99_us"), m(n0, prog, "bare vfork", c, "p99_us")
            if v is not None and b:
                row(f"p99 ≤ 1.1 × bare, {prog}, c={c}", f"{v / b:.3f} × ({v:,.0f} vs {b:,.0f} µs)", v / b <= 1.1)
    cmid = 8 if 8 in conc else conc[len(conc) // 2]
    for prog in progs:
        def cpu(srv):
            return med([x["server_cpu_ms"] / x["ok"] * 1000 for x in results.get((n0, prog, srv, cmid), []) if x["ok"]])
        v, b = cpu(who), cpu("bare vfork")
        if v is not None and b:
            row(f"server CPU / 1,000 conns ≤ 1.5 × bare, {prog}, c={cmid}", f"{v / b:.3f} × ({v:.1f} vs {b:.1f} ms)",
                v / b <= 1.5)
    for n in nservices:
        inf = info.get((n, who), {})
        if inf.get("rss_kb") is not None:
            # Judged on PSS since issue 20: RSS also counts spawnd's program
            # text, which the page cache (and the memory cgroup) holds
            # whether it is mapped or not; PSS shares what is shared.
            lim = 3 * 1024 + max(0, n - 1)  # 3 MB, +1 KB per additional service
            pss, uss = inf.get("pss_kb"), inf.get("uss_kb")
            judged = pss if pss is not None else inf["rss_kb"]
            shown = f"PSS {judged / 1024:.1f} MB (RSS {inf['rss_kb'] / 1024:.1f}" + (
                f", USS {uss / 1024:.1f})" if uss is not None else ")")
            row(f"idle memory ≤ 3 MB + 1 KB per extra service, {plural(n)}", shown, judged <= lim)
        if "wakeups" in inf:
            row(f"zero idle wake-ups in {a.idle_secs:g} s, {plural(n)}", str(inf["wakeups"]), inf["wakeups"] == 0)
    rs = [(n, info.get((n, who), {}).get("rss_kb")) for n in nservices]
    rs = [(n, r) for n, r in rs if r is not None]
    if len(rs) > 1 and rs[-1][0] > rs[0][0]:
        per = (rs[-1][1] - rs[0][1]) / (rs[-1][0] - rs[0][0])
        row(f"RSS per additional service ≤ 1 KB ({rs[0][0]:,} → {rs[-1][0]:,})", f"{per * 1024:,.0f} bytes", per <= 1.0)
    for n in nservices:
        if n >= 10000:
            inf = info.get((n, who), {})
            st = [x for x in inf.get("startup", []) if x is not None]
            if st:
                row(f"start-up < 1 s, {n:,} services", f"{med(st) * 1000:,.0f} ms", med(st) < 1.0)
            rl = inf.get("reload")
            if rl is not None:
                row(f"reload of unchanged services < 0.5 s, {n:,} services",
                    f"{rl * 1000:,.0f} ms" if isinstance(rl, float) else rl, isinstance(rl, float) and rl < 0.5)
    for n in nservices[1:]:
        for prog in progs:
            v, v0 = m(n, prog, who, cmid, "conns_per_s"), m(n0, prog, who, cmid, "conns_per_s")
            if v is not None and v0:
                row(f"conns/s with {n:,} services ≥ 0.95 × with {n0:,}, {prog}, c={cmid}",
                    f"{v / v0:.3f} × ({v:,.0f} vs {v0:,.0f})", v / v0 >= 0.95)
    L.append("")
    return L + event_loop_share(servers, results, n0, conc, progs, who)


def event_loop_share(servers, results, n0, conc, progs, who):
    """How far the bare loop's figures are reachable by a server built like
    spawnd at all: `bare epoll` has spawnd's event loop and none of its work."""
    if "bare epoll" not in [s.name for s in servers]:
        return []
    L = [f"### The event loop's share: `bare epoll` against `bare vfork`, and `{who}` against `bare epoll`\n",
         "| service | " + " | ".join(f"c={c} epoll/vfork" for c in conc) + " | "
         + " | ".join(f"c={c} {who}/epoll" for c in conc) + " |",
         "|---|" + "---|" * (2 * len(conc))]
    for prog in progs:
        def ratio(a, b, c):
            va = med([x["conns_per_s"] for x in results.get((n0, prog, a, c), [])])
            vb = med([x["conns_per_s"] for x in results.get((n0, prog, b, c), [])])
            return f"{va / vb:.3f}" if va is not None and vb else "–"
        L.append(f"| {prog} | " + " | ".join(ratio("bare epoll", "bare vfork", c) for c in conc) + " | "
                 + " | ".join(ratio(who, "bare epoll", c) for c in conc) + " |")
    L.append("")
    return L


def plural(n, what="service"):
    return f"{n:,} {what}{'' if n == 1 else 's'}"


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def report(a, servers, skipped, results, info, failures, conc, nservices, progs, prog_title):
    L = []
    L.append("# spawnd benchmark results\n")
    L.append(f"- Machine: {machine_desc()}")
    cmd = os.environ.get("BENCH_CMDLINE", "bash bench/run.sh")
    L.append(f"- Date: {time.strftime('%Y-%m-%d %H:%M %Z')}; command: `{cmd}`")
    L.append(f"- Load average (1, 5, 15 min) before the run: {LOAD_AT_START}; after: {loadavg()}. Anything "
             "else running on the machine shows up as wide min–max ranges: compare ratios, rerun if they are wide.")
    L.append(f"- {a.reps} repetition(s), {a.duration:g} s measured after {a.warmup:g} s warm-up per cell; servers "
             "alternate (each repetition starts with the next server, and visits every service count); cells show the median and (min–max) of the "
             "repetitions; ratios are of medians against `bare vfork` in the same run.")
    L.append("- One loopback-only network namespace; the load generator (`loadgen`) and the server share the machine's "
             "CPUs. Each connection: connect to 127.0.0.1, read to EOF, compare the 16-byte reply.")
    if a.same_session:
        L.append("- `--same-session`: the servers ran in the driver's session, so with the kernel's autogroups they "
                 "shared the load generator's scheduling group (the default gives each server a session of its own, "
                 "as a daemon has).")
    else:
        L.append("- Each server runs in a session of its own, as a daemon does; with the kernel's autogroups "
                 f"(`kernel.sched_autogroup_enabled`: {autogroups()} in this run) it is then scheduled as a group "
                 "apart from the load generator (`--same-session` changes that).")
    notes = [s.throttle_note for s in servers if s.throttle_note]
    if notes:
        L.append("- Throttles lifted: " + "; ".join(notes) + ".")
    for name, why in skipped:
        L.append(f"- Not run: **{name}**: {why}.")
    L.append("")
    base_name = "bare vfork"
    for n in nservices:
        nl = f"{n:,} configured service{'s' if n != 1 else ''}"
        if len(nservices) > 1:
            L.append(f"## {nl}\n")
        for prog in progs:
            L.append(f"### Connections/s, {prog_title[prog]}, {nl}\n")
            hdr = ["server"] + [f"c={c} conns/s" for c in conc] + [f"c={c} vs bare" for c in conc] \
                + [f"p99 µs c={c}" for c in conc] + ["errors"]
            L.append("| " + " | ".join(hdr) + " |")
            L.append("|" + "---|" * len(hdr))
            for srv in servers:
                inf = info.get((n, srv.name), {})
                if "skip" in inf or ("error" in inf and not any(results.get((n, prog, srv.name, c)) for c in conc)):
                    why = inf.get("skip") or ("failed: " + inf["error"][:120])
                    L.append(f"| {srv.name} | " + " | ".join([why] + ["–"] * (len(hdr) - 2)) + " |")
                    continue
                row = [srv.name]
                meds = {}
                for c in conc:
                    vals = [x["conns_per_s"] for x in results.get((n, prog, srv.name, c), [])]
                    meds[c] = med(vals)
                    row.append(fmt_cell(vals))
                for c in conc:
                    bv = med([x["conns_per_s"] for x in results.get((n, prog, base_name, c), [])])
                    row.append(fmt_ratio(meds[c], bv))
                for c in conc:
                    row.append(fmt_int(med([x["p99_us"] for x in results.get((n, prog, srv.name, c), [])]) or 0)
                               if results.get((n, prog, srv.name, c)) else "–")
                errs = sum(x["errors"] for c in conc for x in results.get((n, prog, srv.name, c), []))
                died = any(not x["alive"] for c in conc for x in results.get((n, prog, srv.name, c), []))
                row.append(f"{errs:,}" + (" (server died)" if died else ""))
                L.append("| " + " | ".join(row) + " |")
            L.append("")
        # resources
        cmid = 8 if 8 in conc else conc[len(conc) // 2]
        L.append(f"### Resources, {nl}\n")
        hdr = ["server", "idle RSS MB", "PSS MB", "USS MB", "processes", "start-up ms", "reload ms"]
        if a.idle_secs > 0:
            hdr.append(f"idle wake-ups in {a.idle_secs:g} s")
        for prog in progs:
            hdr += [f"server CPU ms / 1,000 conns ({prog}, c={cmid})", "vs bare"]
        L.append("| " + " | ".join(hdr) + " |")
        L.append("|" + "---|" * len(hdr))

        def cpu_per_k(name, prog):
            vals = [x["server_cpu_ms"] / x["ok"] * 1000 for x in results.get((n, prog, name, cmid), []) if x["ok"]]
            return vals

        for srv in servers:
            inf = info.get((n, srv.name), {})
            if "skip" in inf:
                continue
            row = [srv.name]
            for key in ("rss_kb", "pss_kb", "uss_kb"):
                row.append(f"{inf[key] / 1024:.1f}" if inf.get(key) is not None else "–")
            row.append(str(inf.get("nprocs", "–")))
            st = inf.get("startup") or []
            row.append(fmt_cell([s * 1000 for s in st if s is not None]) if st else "–")
            rl = inf.get("reload")
            row.append("–" if rl is None else (f"{rl * 1000:,.0f}" if isinstance(rl, float) else rl))
            if a.idle_secs > 0:
                row.append(str(inf["wakeups"]) if "wakeups" in inf else "–")
            for prog in progs:
                v = cpu_per_k(srv.name, prog)
                row.append(fmt_cell(v, lambda x: f"{x:.1f}"))
                b = cpu_per_k(base_name, prog)
                row.append(fmt_ratio(med(v), med(b)))
            L.append("| " + " | ".join(row) + " |")
        L.append("")
    if len(nservices) > 1:
        n0 = nservices[0]
        L.append(f"## Scaling with the number of services (c={conc[-1] if 8 not in conc else 8})\n")
        cm = 8 if 8 in conc else conc[-1]
        hdr = ["server"]
        for prog in progs:
            for n in nservices:
                hdr.append(f"{prog} n={n:,}")
            for n in nservices[1:]:
                hdr.append(f"{prog} n={n:,} vs n={n0:,}")
        L.append("| " + " | ".join(hdr) + " |")
        L.append("|" + "---|" * len(hdr))
        for srv in servers:
            row = [srv.name]
            for prog in progs:
                ms = {n: med([x["conns_per_s"] for x in results.get((n, prog, srv.name, cm), [])]) for n in nservices}
                for n in nservices:
                    row.append(fmt_int(ms[n]) if ms[n] is not None else "–")
                for n in nservices[1:]:
                    row.append(fmt_ratio(ms[n], ms[n0]))
            L.append("| " + " | ".join(row) + " |")
        L.append("")
    L.append("Columns: **conns/s** completed connections per second (connect, read the whole reply, check it) at "
             "c concurrent client connections; **vs bare** the median over the bare accept4+vfork+execve loop's "
             "median; **p99 µs** 99th percentile of a connection's latency (connect to EOF); **errors** refused, "
             "reset, timed-out or wrong replies summed over all cells; **idle RSS** VmRSS of the server process(es) (**PSS**, **USS** beside it: proportional and unique set sizes from smaps_rollup; USS is the memory only the server holds) "
             "after start-up; **start-up** from exec until every port listens and the first one answers; **reload** "
             "from SIGHUP to sd_notify `READY=1` (servers that speak sd_notify); **idle wake-ups** "
             "context switches of the server while idle; **server CPU** user+system time of the server process "
             "itself (not its children) per 1,000 connections.\n")
    L += targets(a, servers, results, info, conc, nservices, progs)
    if failures:
        L.append("Problems during the run:\n")
        for f in failures:
            L.append(f"- {f}")
        L.append("")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        stop_all()
