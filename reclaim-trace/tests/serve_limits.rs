//! Live tests of `serve` against hostile and heavy clients: slow and oversized requests. The
//! exporter must stay answerable.

mod common;

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
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
