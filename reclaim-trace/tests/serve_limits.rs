//! Live tests of `serve` against hostile and heavy clients: slow and oversized requests, a
//! thousand clients at once, a process out of file descriptors. The exporter must stay
//! answerable, and the tracing behind it must neither stall nor lose counts.

mod common;

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use common::{serve::Serve, *};

/// Send `request`, read until the server closes: (status line and header fields, body).
fn exchange(addr: SocketAddr, request: &[u8]) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)
        .unwrap_or_else(|e| panic!("reading the answer to {:.40?}: {e}", request));
    let at = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(&resp)));
    let head = String::from_utf8_lossy(&resp[..at]).into_owned();
    (head, resp[at + 4..].to_vec())
}

fn content_length(head: &str) -> Option<usize> {
    head.lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
}

/// GET /metrics as a scraper would: its time, after checking it is a complete 200.
fn scrape(addr: SocketAddr) -> Result<Duration, String> {
    let t = Instant::now();
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(|e| format!("read: {e}"))?;
    let took = t.elapsed();
    let at = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of head")?;
    let head = String::from_utf8_lossy(&resp[..at]);
    let body = resp.len() - at - 4;
    if !head.starts_with("HTTP/1.1 200 OK\r\n") || content_length(&head) != Some(body) || body == 0
    {
        return Err(format!("incomplete: {body} body bytes after {head:?}"));
    }
    Ok(took)
}

/// A slowloris client: a request head that never ends, one byte every 500 ms. Returns how long
/// the server took to close it (None: not within 15 s) and whether it answered 408 first.
fn slowloris(addr: SocketAddr) -> (Option<Duration>, bool) {
    let mut s = TcpStream::connect(addr).unwrap();
    let t0 = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while t0.elapsed() < Duration::from_secs(15) {
        match s.read(&mut buf) {
            Ok(0) => return (Some(t0.elapsed()), got.starts_with(b"HTTP/1.1 408 ")),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if s.write_all(b"a").is_err() {
                    return (Some(t0.elapsed()), got.starts_with(b"HTTP/1.1 408 "));
                }
            }
            Err(_) => return (Some(t0.elapsed()), got.starts_with(b"HTTP/1.1 408 ")),
        }
    }
    (None, false)
}

/// Oversized and refused requests, over real sockets: each is answered, then closed.
fn refusals(addr: SocketAddr) {
    let big = format!(
        "GET /metrics HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(9000)
    );
    let (head, _) = exchange(addr, big.as_bytes());
    assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
    let long = format!("GET /metrics?{} HTTP/1.1\r\n\r\n", "a".repeat(3000));
    let (head, _) = exchange(addr, long.as_bytes());
    assert!(head.starts_with("HTTP/1.1 414 "), "{head}");
    let many: String = (0..101).map(|i| format!("X-{i}: 1\r\n")).collect();
    let (head, _) = exchange(
        addr,
        format!("GET /metrics HTTP/1.1\r\n{many}\r\n").as_bytes(),
    );
    assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
    let (head, _) = exchange(
        addr,
        b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
    );
    assert!(
        head.starts_with("HTTP/1.1 405 ") && head.contains("\r\nAllow: GET, HEAD"),
        "{head}"
    );
    let (head, body) = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        content_length(&head).unwrap() > 1000 && body.is_empty(),
        "{head}"
    );
}

#[test]
#[ignore = "needs root and the live kernel: `cargo xtask test` runs it"]
fn slow_and_oversized_clients_do_not_hold_serve() {
    let Some(_lock) = live() else { return };
    let before = traces();
    let t = Instant::now();
    let (mut serve, addr) = Serve::start(&[]);
    let slow: Vec<_> = (0..200)
        .map(|_| thread::spawn(move || slowloris(addr)))
        .collect();
    // A scraper meanwhile, three times over the slow clients' life.
    let mut worst = Duration::ZERO;
    for _ in 0..3 {
        thread::sleep(Duration::from_millis(1200));
        let took = scrape(addr).unwrap();
        worst = worst.max(took);
        refusals(addr);
    }
    let closed: Vec<(Option<Duration>, bool)> =
        slow.into_iter().map(|h| h.join().unwrap()).collect();
    let open = closed.iter().filter(|c| c.0.is_none()).count();
    assert_eq!(open, 0, "{open} of 200 slow clients still open after 15 s");
    let times = closed.iter().map(|c| c.0.unwrap());
    let (first, last) = (times.clone().min().unwrap(), times.max().unwrap());
    let answered = closed.iter().filter(|c| c.1).count();
    eprintln!(
        "200 slowloris clients closed by the server after {first:.2?} to {last:.2?}, {answered} \
         answered 408; GET /metrics meanwhile took at most {worst:.2?}"
    );
    assert!(
        last < Duration::from_secs(10),
        "last slow client closed after {last:?}"
    );
    assert!(
        worst < Duration::from_secs(1),
        "GET /metrics took {worst:?}"
    );
    let status = serve.stop();
    assert!(status.success(), "serve exit {status}");
    assert_eq!(traces(), before, "left behind");
    eprintln!("test took {:.1?}", t.elapsed());
}

/// Raise this process's soft RLIMIT_NOFILE to `want` (or to the hard limit if lower).
fn raise_nofile(want: u64) -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get/setrlimit on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut r), 0);
        r.rlim_cur = r.rlim_cur.max(want.min(r.rlim_max));
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &r), 0);
    }
    r.rlim_cur
}

fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Σ TcpExt ListenOverflows: connections dropped because an accept queue was full.
fn listen_overflows() -> u64 {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap();
    let mut tcpext = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (tcpext.next().unwrap(), tcpext.next().unwrap());
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "ListenOverflows")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap()
}

/// The processes `pid` started (the workload's).
fn children(pid: i32) -> Vec<i32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .map(|p| p.parse().unwrap())
                .collect::<Vec<i32>>()
        })
        .collect()
}

fn snapshot(addr: SocketAddr) -> serde_json::Value {
    let (head, body) = exchange(addr, b"GET /snapshot.json HTTP/1.1\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    serde_json::from_slice(&body).unwrap()
}

/// What 1,000 scraping threads saw: responses, failures (the first few), latencies.
struct Load {
    served: usize,
    failed: Vec<String>,
    latencies: Vec<Duration>,
    max_fds: usize,
}

/// 1,000 threads scraping `/metrics` in a loop for `for_`, while the open descriptors of the
/// server `pid` are sampled.
fn thousand_clients(addr: SocketAddr, pid: i32, for_: Duration) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..1000)
        .map(|_| {
            let stop = stop.clone();
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let (mut ok, mut bad) = (Vec::new(), Vec::new());
                    while !stop.load(Ordering::Relaxed) {
                        match scrape(addr) {
                            Ok(t) => ok.push(t),
                            Err(e) => bad.push(e),
                        }
                    }
                    (ok, bad)
                })
                .unwrap()
        })
        .collect();
    let t = Instant::now();
    let mut max_fds = 0;
    while t.elapsed() < for_ {
        max_fds = max_fds.max(open_fds(pid));
        thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let mut load = Load {
        served: 0,
        failed: Vec::new(),
        latencies: Vec::new(),
        max_fds,
    };
    for c in clients {
        let (ok, bad) = c.join().unwrap();
        load.served += ok.len();
        load.latencies.extend(ok);
        load.failed.extend(bad);
    }
    load.latencies.sort();
    load
}

impl Load {
    fn check(&self, fds_idle: usize, overflows: u64) {
        let pct = |p: usize| self.latencies[(self.latencies.len() - 1) * p / 100];
        eprintln!(
            "1,000 clients for 5 s: {} complete 200s, {} failed; latency p50 {:.1?} p99 {:.1?} \
             max {:.1?}; server descriptors {fds_idle} idle, at most {} under load; \
             {overflows} accept-queue overflows",
            self.served,
            self.failed.len(),
            pct(50),
            pct(99),
            pct(100),
            self.max_fds,
        );
        assert!(
            self.failed.is_empty(),
            "{} failed, e.g. {:?}",
            self.failed.len(),
            &self.failed[..self.failed.len().min(5)]
        );
        assert!(self.served >= 1000, "only {} responses", self.served);
        // A connection the accept queue has no room for loses its SYN, and its client retries
        // after 1 s, then 3 s: what a full queue costs shows as seconds here.
        assert!(
            pct(100) < Duration::from_secs(2),
            "a request took {:?} ({overflows} accept-queue overflows)",
            pct(100)
        );
        // The bound on connections served at once (512), with room for the queue's churn.
        assert!(
            self.max_fds <= fds_idle + 512 + 16,
            "server held {} descriptors",
            self.max_fds
        );
    }
}

/// Freeze the workload, wait two intervals and read what `serve` exports and /proc/vmstat:
/// the snapshot (one interval behind at most) then holds all of the workload's reclaim, and
/// can be held to the kernel's own count. (snapshot, /metrics, vmstat)
fn frozen(serve: &Serve, addr: SocketAddr) -> (serde_json::Value, String, BTreeMap<String, u64>) {
    let workload = children(serve.pid());
    assert!(!workload.is_empty(), "no workload process");
    for &p in &workload {
        // SAFETY: signals to the server's own children.
        unsafe { libc::kill(p, libc::SIGSTOP) };
    }
    thread::sleep(Duration::from_millis(2500));
    let s = snapshot(addr);
    let (_, metrics) = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
    let v1 = vmstat();
    for &p in &workload {
        // SAFETY: as above.
        unsafe { libc::kill(p, libc::SIGCONT) };
    }
    (s, String::from_utf8(metrics).unwrap(), v1)
}

#[test]
#[ignore = "needs root and the live kernel: `cargo xtask test` runs it"]
fn a_thousand_clients_get_complete_answers_and_tracing_loses_nothing() {
    let Some(_lock) = live() else { return };
    let t = Instant::now();
    let nofile = raise_nofile(4096);
    assert!(
        nofile >= 1100,
        "RLIMIT_NOFILE {nofile}: 1,000 client sockets need more"
    );
    let before = traces();
    let v0 = vmstat();
    let (mut serve, addr) = Serve::start(&["--workload", "anon", "--zram", "--interval", "1s"]);
    thread::sleep(Duration::from_secs(2));
    let (fds_idle, d0, t0) = (
        open_fds(serve.pid()),
        snapshot(addr)["duration_s"].as_f64().unwrap(),
        Instant::now(),
    );
    let overflows = listen_overflows();
    let load = thousand_clients(addr, serve.pid(), Duration::from_secs(5));
    let overflows = listen_overflows() - overflows;
    let (d1, elapsed) = (
        snapshot(addr)["duration_s"].as_f64().unwrap(),
        t0.elapsed().as_secs_f64(),
    );
    load.check(fds_idle, overflows);
    eprintln!("snapshot advanced {:.2} s in {elapsed:.2} s", d1 - d0);
    // The session loop kept publishing a snapshot every interval under the load.
    assert!(
        d1 - d0 > elapsed - 1.5,
        "snapshot advanced {:.2} s in {elapsed:.2} s",
        d1 - d0
    );
    let (s, metrics, v1) = frozen(&serve, addr);
    let status = serve.stop();
    assert!(status.success(), "serve exit {status}");
    assert_eq!(traces(), before, "left behind");

    assert!(
        metrics
            .lines()
            .any(|l| l == "reclaim_trace_ringbuf_drops_total 0"),
        "ring-buffer drops"
    );
    assert_eq!(u(&s, "/drops/ringbuf"), 0);
    assert_eq!(u(&s, "/drops/decode_errors"), 0);
    within(
        "pages reclaimed (LRU) vs pgsteal, through 1,000 clients",
        lru_pages_reclaimed(&s),
        delta(&v0, &v1, "pgsteal_anon") + delta(&v0, &v1, "pgsteal_file"),
        0.02,
    );
    let ratio = f(&s, "/flushes_per_reclaimed_folio");
    assert!(
        (0.5..=1.5).contains(&ratio),
        "flushes per reclaimed folio {ratio}"
    );
    eprintln!(
        "flushes per reclaimed folio {ratio:.3}; test took {:.1?}",
        t.elapsed()
    );
}

#[test]
#[ignore = "needs root and the live kernel: `cargo xtask test` runs it"]
fn connections_past_the_bound_wait_in_the_accept_queue() {
    let Some(_lock) = live() else { return };
    let t = Instant::now();
    raise_nofile(4096);
    let before = traces();
    let (mut serve, addr) = Serve::start(&[]);
    let fds_idle = open_fds(serve.pid());
    // 600 clients that connect and send nothing: 512 are served (and time out), the rest wait.
    let idle: Vec<TcpStream> = (0..600)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    thread::sleep(Duration::from_millis(1000));
    let held = open_fds(serve.pid()) - fds_idle;
    // A scraper behind them waits for a slot (the first idle clients are answered 408 after
    // the read timeout), and then gets its answer: no 503.
    let took = scrape(addr).unwrap();
    let held_after = open_fds(serve.pid()) - fds_idle;
    drop(idle);
    eprintln!(
        "600 idle clients: serve held {held} connections; a scrape behind them waited \
         {took:.2?}, then {held_after} held"
    );
    assert_eq!(held, 512, "connections served at once");
    assert!(took < Duration::from_secs(8), "scrape waited {took:?}");
    let status = serve.stop();
    assert!(status.success(), "serve exit {status}");
    assert_eq!(traces(), before, "left behind");
    eprintln!("test took {:.1?}", t.elapsed());
}

/// Set the soft RLIMIT_NOFILE of process `pid`; returns the limit it had.
fn set_nofile_of(pid: i32, soft: u64) -> u64 {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit with a null new limit only reads; both structs are local.
    unsafe {
        assert_eq!(
            libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old),
            0
        );
        let new = libc::rlimit {
            rlim_cur: soft,
            rlim_max: old.rlim_max,
        };
        assert_eq!(
            libc::prlimit(pid, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()),
            0
        );
    }
    old.rlim_cur
}

/// CPU time of process `pid` so far (user + system), in seconds.
fn cpu_s(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / hz
}

#[test]
#[ignore = "needs root and the live kernel: `cargo xtask test` runs it"]
fn out_of_descriptors_accept_backs_off_instead_of_spinning() {
    let Some(_lock) = live() else { return };
    let t = Instant::now();
    let before = traces();
    let (mut serve, addr) = Serve::start(&[]);
    let pid = serve.pid();
    // Room for four connections: the fifth accept() fails with EMFILE while the queue holds more.
    let fds = open_fds(pid);
    let old = set_nofile_of(pid, fds as u64 + 4);
    let idle: Vec<TcpStream> = (0..30).map(|_| TcpStream::connect(addr).unwrap()).collect();
    thread::sleep(Duration::from_millis(300));
    let (c0, w0) = (cpu_s(pid), Instant::now());
    thread::sleep(Duration::from_secs(2));
    let busy = (cpu_s(pid) - c0) / w0.elapsed().as_secs_f64();
    set_nofile_of(pid, old);
    // The idle connections are answered 408 within the read timeout; a scrape gets through.
    let took = scrape(addr).unwrap();
    drop(idle);
    let lines = serve.stderr();
    eprintln!(
        "out of descriptors ({fds} open, limit {}): serve used {:.1}% of a CPU; a scrape after \
         the limit was restored took {took:.2?}",
        fds + 4,
        busy * 100.0
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("cannot accept connections") && l.contains("Too many open files")),
        "no warning in {lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("accepting connections again")),
        "{lines:#?}"
    );
    assert!(busy < 0.2, "serve spun at {:.0}% of a CPU", busy * 100.0);
    let status = serve.stop();
    assert!(status.success(), "serve exit {status}");
    assert_eq!(traces(), before, "left behind");
    eprintln!("test took {:.1?}", t.elapsed());
}
