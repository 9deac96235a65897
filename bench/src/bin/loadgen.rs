//! loadgen: a closed-loop connection load generator for super-server benchmarks.
//!
//! N threads (the concurrency), each in a loop: connect to a loopback port (round
//! robin over a list or range of ports), read to EOF, compare the reply with the
//! expected bytes, record the connection's latency (connect start -> EOF) in a
//! log-linear histogram. A warm-up phase is run first and not recorded; then the
//! run lasts a fixed time (`--duration`) or a fixed number of successful
//! connections (`--count`). Errors (refused, reset, timeout, wrong reply) are
//! counted, never fatal; refused/reset connections back off for 1 ms.
//!
//! Output: one JSON line on stdout.
//!
//! Only loopback addresses are accepted as targets.

use std::io::{ErrorKind, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Histogram: log-linear buckets, 32 linear sub-buckets per power of two
// (relative error < 3.2%), values in nanoseconds, exact maximum and sum.

const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
const NBUCKETS: usize = ((64 - SUB_BITS as usize) + 1) * SUB as usize;

#[derive(Clone)]
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    sum: u128,
    max: u64,
    min: u64,
}

impl Histogram {
    fn new() -> Self {
        Histogram { counts: vec![0; NBUCKETS], total: 0, sum: 0, max: 0, min: u64::MAX }
    }

    fn index(v: u64) -> usize {
        if v < SUB {
            return v as usize;
        }
        let e = 63 - v.leading_zeros(); // >= SUB_BITS
        let m = v >> (e - SUB_BITS); // in [SUB, 2*SUB)
        ((e - SUB_BITS + 1) as u64 * SUB + (m - SUB)) as usize
    }

    /// Lowest and highest value that map to bucket `i`.
    fn bounds(i: usize) -> (u64, u64) {
        let i = i as u64;
        if i < SUB {
            return (i, i);
        }
        let e = i / SUB + SUB_BITS as u64 - 1;
        let m = i % SUB + SUB;
        let shift = e - SUB_BITS as u64;
        (m << shift, ((m + 1) << shift) - 1)
    }

    fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.total += 1;
        self.sum += v as u128;
        self.max = self.max.max(v);
        self.min = self.min.min(v);
    }

    fn merge(&mut self, o: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(o.counts.iter()) {
            *a += *b;
        }
        self.total += o.total;
        self.sum += o.sum;
        self.max = self.max.max(o.max);
        self.min = self.min.min(o.min);
    }

    /// Value at quantile q (0..=1): the midpoint of the bucket holding it,
    /// clamped to the exact min/max.
    fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        if rank == self.total {
            return self.max;
        }
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (lo, hi) = Self::bounds(i);
                return (lo + (hi - lo) / 2).clamp(self.min, self.max);
            }
        }
        self.max
    }
}

// ---------------------------------------------------------------------------

#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    refused: AtomicU64,
    reset: AtomicU64,
    timeout: AtomicU64,
    mismatch: AtomicU64,
    other: AtomicU64,
}

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

struct Shared {
    phase: AtomicU8,
    counters: Counters,
    first_error: Mutex<Option<String>>,
    /// count mode: successful connections still wanted
    remaining: AtomicU64,
    count_mode: bool,
    end: Mutex<Option<Instant>>,
}

struct Opts {
    host: IpAddr,
    ports: Vec<u16>,
    conns: usize,
    duration: f64,
    warmup: f64,
    count: u64,
    expect: Vec<u8>,
    timeout: Duration,
    label: String,
}

fn usage() -> ! {
    eprintln!(
        "usage: loadgen [--host 127.0.0.1|::1] --ports P|A-B|P,Q,... [--conns N]\n\
         \x20              [--duration SECS | --count N] [--warmup SECS]\n\
         \x20              [--expect STR | --expect-file FILE] [--timeout-ms MS] [--label STR]\n\
         Prints one JSON line: conns_per_s, errors, latency percentiles in microseconds."
    );
    std::process::exit(2);
}

fn parse_ports(spec: &str) -> Result<Vec<u16>, String> {
    let mut v = Vec::new();
    for part in spec.split(',').filter(|s| !s.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a: u16 = a.trim().parse().map_err(|_| format!("bad port {a:?}"))?;
            let b: u16 = b.trim().parse().map_err(|_| format!("bad port {b:?}"))?;
            if b < a {
                return Err(format!("empty range {part}"));
            }
            v.extend(a..=b);
        } else {
            v.push(part.trim().parse().map_err(|_| format!("bad port {part:?}"))?);
        }
    }
    if v.is_empty() || v.contains(&0) {
        return Err("no ports (or port 0)".into());
    }
    Ok(v)
}

fn unescape(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut it = s.bytes();
    while let Some(c) = it.next() {
        if c == b'\\' {
            match it.next() {
                Some(b'n') => out.push(b'\n'),
                Some(b'r') => out.push(b'\r'),
                Some(b't') => out.push(b'\t'),
                Some(b'0') => out.push(0),
                Some(o) => out.push(o),
                None => out.push(b'\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_args() -> Opts {
    let mut o = Opts {
        host: IpAddr::V4(Ipv4Addr::LOCALHOST),
        ports: Vec::new(),
        conns: 1,
        duration: 3.0,
        warmup: 0.5,
        count: 0,
        expect: b"spawnd-bench-ok\n".to_vec(),
        timeout: Duration::from_millis(5000),
        label: String::new(),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    let val = |i: &mut usize| -> String {
        *i += 1;
        args.get(*i).cloned().unwrap_or_else(|| usage())
    };
    while i < args.len() {
        let a = args[i].clone();
        let bad = |what: &str| -> ! {
            eprintln!("loadgen: bad value for {what}");
            std::process::exit(2)
        };
        match a.as_str() {
            "--host" => {
                let h = val(&mut i);
                o.host = h.parse().unwrap_or_else(|_| bad("--host"));
                if !o.host.is_loopback() {
                    eprintln!("loadgen: refusing non-loopback target {h}");
                    std::process::exit(2);
                }
            }
            "--ports" | "-p" => {
                o.ports = parse_ports(&val(&mut i)).unwrap_or_else(|e| {
                    eprintln!("loadgen: --ports: {e}");
                    std::process::exit(2)
                })
            }
            "--conns" | "-c" => o.conns = val(&mut i).parse().unwrap_or_else(|_| bad("--conns")),
            "--duration" | "-d" => {
                o.duration = val(&mut i).parse().unwrap_or_else(|_| bad("--duration"))
            }
            "--warmup" | "-w" => o.warmup = val(&mut i).parse().unwrap_or_else(|_| bad("--warmup")),
            "--count" | "-n" => o.count = val(&mut i).parse().unwrap_or_else(|_| bad("--count")),
            "--expect" => o.expect = unescape(&val(&mut i)),
            "--expect-file" => {
                let p = val(&mut i);
                o.expect = std::fs::read(&p).unwrap_or_else(|e| {
                    eprintln!("loadgen: {p}: {e}");
                    std::process::exit(2)
                })
            }
            "--timeout-ms" => {
                o.timeout =
                    Duration::from_millis(val(&mut i).parse().unwrap_or_else(|_| bad("--timeout-ms")))
            }
            "--label" => o.label = val(&mut i),
            "-h" | "--help" => usage(),
            _ => {
                eprintln!("loadgen: unknown argument {a}");
                usage()
            }
        }
        i += 1;
    }
    if o.ports.is_empty() || o.conns == 0 {
        usage();
    }
    o
}

fn note_error(sh: &Shared, msg: String) {
    let mut f = sh.first_error.lock().unwrap();
    if f.is_none() {
        *f = Some(msg);
    }
}

fn worker(id: usize, o: Arc<Opts>, sh: Arc<Shared>) -> Histogram {
    let mut h = Histogram::new();
    let mut buf = vec![0u8; o.expect.len().max(64) + 64];
    let nports = o.ports.len();
    let mut k = id % nports;
    loop {
        let phase = sh.phase.load(Ordering::Relaxed);
        if phase == STOP {
            break;
        }
        let port = o.ports[k];
        k += o.conns;
        if k >= nports {
            k %= nports;
        }
        let addr = SocketAddr::new(o.host, port);
        let t0 = Instant::now();
        let res = (|| -> std::io::Result<Result<(), usize>> {
            let mut s = TcpStream::connect_timeout(&addr, o.timeout)?;
            s.set_read_timeout(Some(o.timeout))?;
            let mut got = 0usize;
            loop {
                if got == buf.len() {
                    buf.resize(buf.len() * 2, 0);
                }
                let n = s.read(&mut buf[got..])?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            if buf[..got] == o.expect[..] {
                Ok(Ok(()))
            } else {
                Ok(Err(got))
            }
        })();
        let dt = t0.elapsed();
        // Only what completes inside the measurement window counts.
        let phase = sh.phase.load(Ordering::Relaxed);
        if phase != MEASURE {
            if phase == STOP {
                break;
            }
            if res.is_err() {
                std::thread::sleep(Duration::from_millis(1));
            }
            continue;
        }
        let c = &sh.counters;
        match res {
            Ok(Ok(())) => {
                h.record(dt.as_nanos() as u64);
                c.ok.fetch_add(1, Ordering::Relaxed);
                if sh.count_mode {
                    let before = sh.remaining.fetch_sub(1, Ordering::AcqRel);
                    if before == 1 {
                        *sh.end.lock().unwrap() = Some(Instant::now());
                        sh.phase.store(STOP, Ordering::Release);
                    }
                }
            }
            Ok(Err(got)) => {
                c.mismatch.fetch_add(1, Ordering::Relaxed);
                note_error(&sh, format!("port {port}: reply of {got} bytes differs from expected"));
            }
            Err(e) => {
                let backoff = match e.kind() {
                    ErrorKind::ConnectionRefused => {
                        c.refused.fetch_add(1, Ordering::Relaxed);
                        true
                    }
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
                        c.reset.fetch_add(1, Ordering::Relaxed);
                        true
                    }
                    ErrorKind::TimedOut | ErrorKind::WouldBlock => {
                        c.timeout.fetch_add(1, Ordering::Relaxed);
                        false
                    }
                    _ => {
                        c.other.fetch_add(1, Ordering::Relaxed);
                        true
                    }
                };
                note_error(&sh, format!("port {port}: {e}"));
                if backoff {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    h
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn main() {
    let o = Arc::new(parse_args());
    let sh = Arc::new(Shared {
        phase: AtomicU8::new(WARMUP),
        counters: Counters::default(),
        first_error: Mutex::new(None),
        remaining: AtomicU64::new(o.count),
        count_mode: o.count > 0,
        end: Mutex::new(None),
    });
    let mut handles = Vec::with_capacity(o.conns);
    for id in 0..o.conns {
        let (o2, sh2) = (o.clone(), sh.clone());
        handles.push(
            std::thread::Builder::new()
                .name(format!("conn{id}"))
                .stack_size(256 * 1024)
                .spawn(move || worker(id, o2, sh2))
                .expect("spawn thread"),
        );
    }
    std::thread::sleep(Duration::from_secs_f64(o.warmup.max(0.0)));
    let t0 = Instant::now();
    sh.phase.store(MEASURE, Ordering::Release);
    let t1;
    if o.count > 0 {
        // Wait for the count, with a safety cap (duration x 20, at least 60 s).
        let cap = Duration::from_secs_f64((o.duration * 20.0).max(60.0));
        loop {
            std::thread::sleep(Duration::from_millis(2));
            if sh.phase.load(Ordering::Acquire) == STOP {
                t1 = sh.end.lock().unwrap().unwrap_or_else(Instant::now);
                break;
            }
            if t0.elapsed() > cap {
                sh.phase.store(STOP, Ordering::Release);
                t1 = Instant::now();
                break;
            }
        }
    } else {
        std::thread::sleep(Duration::from_secs_f64(o.duration));
        sh.phase.store(STOP, Ordering::Release);
        t1 = Instant::now();
    }
    let secs = (t1 - t0).as_secs_f64();
    let mut h = Histogram::new();
    for th in handles {
        if let Ok(hh) = th.join() {
            h.merge(&hh);
        }
    }
    let c = &sh.counters;
    let ok = c.ok.load(Ordering::Relaxed);
    let (refused, reset, timeout, mismatch, other) = (
        c.refused.load(Ordering::Relaxed),
        c.reset.load(Ordering::Relaxed),
        c.timeout.load(Ordering::Relaxed),
        c.mismatch.load(Ordering::Relaxed),
        c.other.load(Ordering::Relaxed),
    );
    let errors = refused + reset + timeout + mismatch + other;
    let us = |ns: u64| ns as f64 / 1000.0;
    let mean = if h.total > 0 { (h.sum / h.total as u128) as u64 } else { 0 };
    let first = sh.first_error.lock().unwrap().clone();
    println!(
        "{{\"label\":{},\"conns\":{},\"ports\":{},\"secs\":{:.4},\"ok\":{},\"conns_per_s\":{:.1},\
         \"errors\":{},\"refused\":{},\"reset\":{},\"timeout\":{},\"mismatch\":{},\"other\":{},\
         \"mean_us\":{:.1},\"p50_us\":{:.1},\"p90_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1},\
         \"first_error\":{}}}",
        json_str(&o.label),
        o.conns,
        o.ports.len(),
        secs,
        ok,
        if secs > 0.0 { ok as f64 / secs } else { 0.0 },
        errors,
        refused,
        reset,
        timeout,
        mismatch,
        other,
        us(mean),
        us(h.quantile(0.50)),
        us(h.quantile(0.90)),
        us(h.quantile(0.99)),
        us(h.quantile(0.999)),
        us(if h.total > 0 { h.max } else { 0 }),
        first.map(|s| json_str(&s)).unwrap_or_else(|| "null".into()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_bound_values() {
        let mut prev_hi = None;
        for i in 0..NBUCKETS - 1 {
            let (lo, hi) = Histogram::bounds(i);
            if let Some(p) = prev_hi {
                assert_eq!(lo, p + 1, "bucket {i}");
            }
            assert_eq!(Histogram::index(lo), i);
            assert_eq!(Histogram::index(hi), i);
            prev_hi = Some(hi);
        }
    }

    #[test]
    fn quantiles_are_close() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 / 50_000_000.0 - 1.0).abs() < 0.04, "{p50}");
        let p99 = h.quantile(0.99) as f64;
        assert!((p99 / 99_000_000.0 - 1.0).abs() < 0.04, "{p99}");
        assert_eq!(h.quantile(1.0), 100_000_000);
    }

    #[test]
    fn ports() {
        assert_eq!(parse_ports("5-7,9").unwrap(), vec![5, 6, 7, 9]);
        assert!(parse_ports("7-5").is_err());
    }
}
