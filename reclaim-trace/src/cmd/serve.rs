//! `reclaim-trace serve`: Prometheus/OpenMetrics on `/metrics`, the summary on
//! `/snapshot.json`. The session loop renders immutable snapshots every interval and publishes
//! them on a watch channel; connections only read the latest one. Whoever can connect is
//! served within bounds: MAX_CONNECTIONS at once, a request head within the limits of
//! `http.rs` and READ_TIMEOUT, the response within WRITE_TIMEOUT.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Result;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpSocket, TcpStream},
    sync::{Semaphore, watch},
};

use crate::{
    cli::ServeArgs,
    error::BadInput,
    export::prometheus::{self, Format},
    session::{Session, Stop},
};

mod http;
pub use http::{Head, HeadScanner, MAX_HEAD, MAX_HEADER_LINES, MAX_REQUEST_LINE, Response, route};

/// What one refresh publishes.
#[derive(Default)]
pub struct Exports {
    pub prometheus: String,
    pub openmetrics: String,
    pub snapshot_json: String,
}

fn render(session: &Session) -> Exports {
    let w = session.agg.window();
    let summary = session.summarize(&w);
    Exports {
        prometheus: prometheus::render(&summary, &w, Format::Prometheus),
        openmetrics: prometheus::render(&summary, &w, Format::OpenMetrics),
        snapshot_json: serde_json::to_string_pretty(&summary).unwrap_or_default(),
    }
}

pub async fn run(args: ServeArgs) -> Result<()> {
    // Bind before anything is attached: a busy port is the user's to fix, and cheap to find.
    let listener = listen(args.listen).map_err(|e| {
        BadInput(format!(
            "cannot listen on {}: {e}; choose another address with --listen",
            args.listen
        ))
    })?;
    let addr = listener.local_addr()?;
    if let Some(w) = exposure_warning(addr) {
        eprintln!("{w}");
    }
    let opts = super::session_options(&args.session, false);
    let mut session = Session::start(&opts).await?;
    let (tx, rx) = watch::channel(Arc::new(render(&session)));
    let server = tokio::spawn(accept_loop(listener, rx));
    eprintln!(
        "reclaim-trace: serving http://{addr}/metrics and http://{addr}/snapshot.json; Ctrl-C stops"
    );
    let stop = session
        .run(None, args.interval.max(Duration::from_millis(100)), |s| {
            let _ = tx.send(Arc::new(render(s)));
            Ok(true)
        })
        .await;
    server.abort();
    let exit = session.workload_exit.clone();
    let summary = session.finish().await?;
    eprintln!(
        "reclaim-trace: stopped after {:.1} s ({} folios reclaimed, {} reclaim flushes)",
        summary.duration_s, summary.totals.folios_reclaimed, summary.totals.flushes
    );
    if let Stop::WorkloadExited = stop? {
        anyhow::bail!(
            "the workload ended while serving: {}",
            exit.as_deref().unwrap_or("unknown reason")
        );
    }
    Ok(())
}

/// How many connections are served at once. Past it, connections wait in the kernel's accept
/// queue (BACKLOG) until one ends, rather than being answered 503: a 503 would need the
/// connection accepted, so it saves no file descriptor, and turns a burst that the queue
/// absorbs in milliseconds into failed scrapes. 512 leaves the tracer's own descriptors (about
/// 60) room under the usual soft RLIMIT_NOFILE of 1024 (systemd's default), so a crowd of
/// clients does not exhaust them; and it is far above the number of scrapers a host has, so a
/// few hundred idle or slow clients cannot lock Prometheus out.
const MAX_CONNECTIONS: usize = 512;
/// Connections waiting to be accepted. std and tokio listen with 128, which a burst of clients
/// overflows even while the server keeps up: the kernel then drops SYNs, and clients retry
/// after 1 s, 3 s, 7 s (with 1,000 clients, up to 8 s a request against 0.3 s with 1024).
/// The kernel caps it at net.core.somaxconn (4096 by default).
const BACKLOG: u32 = 1024;
/// The request head must have arrived this long after `accept()`: a client that trickles it
/// (one byte now and then, slowloris) is answered 408 and closed then, not held forever.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Writing the response must be done within this: a client that reads slowly is cut off.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Draining a refused client's input before closing (see `Response::drains_input`) stops
/// after this long or this many bytes: it is a courtesy, not a second read timeout.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
const DRAIN_BYTES: usize = 64 * 1024;
/// Pause after `accept()` fails for a reason not the connection's own (out of file
/// descriptors, of memory): the listener stays readable, so retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As std and tokio do: a restarted server can bind while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

async fn accept_loop(listener: TcpListener, rx: watch::Receiver<Arc<Exports>>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut failing = false;
    loop {
        // A slot first, then the connection: past MAX_CONNECTIONS, clients wait in the queue.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) if connection_error(&e) => continue,
            Err(e) => {
                if !failing {
                    log::warn!(
                        "cannot accept connections: {e}; retrying every {} ms",
                        ACCEPT_BACKOFF.as_millis()
                    );
                }
                failing = true;
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if std::mem::take(&mut failing) {
            log::warn!("accepting connections again");
        }
        let exports = rx.borrow().clone();
        tokio::spawn(async move {
            let _ = handle(stream, exports).await;
            drop(slot);
        });
    }
}

/// An `accept()` error that concerns one connection only (reset or aborted before it was
/// accepted): the next one may be accepted at once.
pub fn connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
    )
}

async fn handle(mut stream: TcpStream, exports: Arc<Exports>) -> std::io::Result<()> {
    // The response is written in a few large writes and then the socket is shut down: there
    // is no small write that Nagle's algorithm would usefully hold back.
    stream.set_nodelay(true)?;
    let head = tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await;
    let response = match head {
        Err(_) => Response::refusal(408),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Ok(head))) => route(&head, &exports),
        Ok(Ok(Err(status))) => Response::refusal(status),
    };
    tokio::time::timeout(WRITE_TIMEOUT, send(&mut stream, &response))
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))?;
    if response.drains_input() {
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain(&mut stream)).await;
    }
    Ok(())
}

/// The request head, or the status it is refused with. A client that closes before its head
/// ends gets the answer to what it sent.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Result<String, u16>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let mut scanner = HeadScanner::default();
    let end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break buf.len();
        }
        buf.extend_from_slice(&chunk[..n]);
        match scanner.scan(&buf) {
            Head::Partial => {}
            Head::Complete(end) => break end,
            Head::Refused(status) => return Ok(Err(status)),
        }
    };
    Ok(Ok(String::from_utf8_lossy(&buf[..end]).into_owned()))
}

async fn send(s: &mut TcpStream, r: &Response<'_>) -> std::io::Result<()> {
    s.write_all(r.head().as_bytes()).await?;
    s.write_all(r.payload()).await?;
    s.shutdown().await
}

/// Read and discard what the client still sends, until it closes or DRAIN_BYTES have come.
async fn drain(s: &mut TcpStream) {
    let mut sink = [0u8; 4096];
    let mut left = DRAIN_BYTES;
    while left > 0 {
        match s.read(&mut sink).await {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// The warning printed when `addr` can be reached from other hosts.
pub fn exposure_warning(addr: SocketAddr) -> Option<String> {
    (!addr.ip().to_canonical().is_loopback()).then(|| {
        format!(
            "reclaim-trace: warning: listening on {addr}, not loopback: anyone who can reach it \
             can read this host's reclaim statistics"
        )
    })
}

/// The address a running `serve` listens on is printed on stderr; tests parse it from there.
pub fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    line.split("http://")
        .nth(1)?
        .split('/')
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests;
