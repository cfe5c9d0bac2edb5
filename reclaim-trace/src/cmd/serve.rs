//! `reclaim-trace serve`: Prometheus/OpenMetrics on `/metrics`, the summary on
//! `/snapshot.json`. The session loop renders immutable snapshots every interval and publishes
//! them on a watch channel; connections only read the latest one.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Result;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::watch,
};

use crate::{
    cli::ServeArgs,
    error::BadInput,
    export::prometheus::{self, Format},
    session::{Session, Stop},
};

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
    let listener = TcpListener::bind(args.listen).await.map_err(|e| {
        BadInput(format!(
            "cannot listen on {}: {e}; choose another address with --listen",
            args.listen
        ))
    })?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        eprintln!(
            "reclaim-trace: warning: listening on {addr}, not loopback: anyone who can reach it \
             can read this host's reclaim statistics"
        );
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

async fn accept_loop(listener: TcpListener, rx: watch::Receiver<Arc<Exports>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let exports = rx.borrow().clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), handle(stream, exports)).await;
        });
    }
}

/// Largest request head accepted.
const MAX_HEAD: usize = 8192;

async fn handle(mut stream: TcpStream, exports: Arc<Exports>) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_HEAD {
            return respond(
                &mut stream,
                431,
                "text/plain",
                b"request header too large\n",
                false,
            )
            .await;
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let (status, ctype, body, head_only) = route(&head, &exports);
    respond(&mut stream, status, ctype, body.as_bytes(), head_only).await
}

/// (status, content type, body, HEAD request) for a request head.
pub fn route<'a>(
    head: &str,
    e: &'a Exports,
) -> (u16, &'static str, std::borrow::Cow<'a, str>, bool) {
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let (method, path) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return (405, "text/plain", "only GET and HEAD\n".into(), false);
    }
    let openmetrics = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("accept:") && l.contains("application/openmetrics-text")
    });
    match path {
        "/metrics" if openmetrics => (
            200,
            Format::OpenMetrics.content_type(),
            e.openmetrics.as_str().into(),
            head_only,
        ),
        "/metrics" => (
            200,
            Format::Prometheus.content_type(),
            e.prometheus.as_str().into(),
            head_only,
        ),
        "/snapshot.json" => (
            200,
            "application/json",
            e.snapshot_json.as_str().into(),
            head_only,
        ),
        "/" => (
            200,
            "text/plain",
            "reclaim-trace: /metrics (Prometheus/OpenMetrics), /snapshot.json (summary v1)\n"
                .into(),
            head_only,
        ),
        _ => (
            404,
            "text/plain",
            "not found: try /metrics or /snapshot.json\n".into(),
            head_only,
        ),
    }
}

async fn respond(
    s: &mut TcpStream,
    status: u16,
    ctype: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Request Header Fields Too Large",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    if !head_only {
        s.write_all(body).await?;
    }
    s.shutdown().await
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
mod tests {
    use super::*;

    fn e() -> Exports {
        Exports {
            prometheus: "p".into(),
            openmetrics: "o".into(),
            snapshot_json: "{}".into(),
        }
    }

    #[test]
    fn routes() {
        let e = e();
        let r = route("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &e);
        assert_eq!((r.0, r.2.as_ref()), (200, "p"));
        let r = route(
            "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0\r\n\r\n",
            &e,
        );
        assert_eq!(
            (r.0, r.1, r.2.as_ref()),
            (200, Format::OpenMetrics.content_type(), "o")
        );
        assert_eq!(route("GET /snapshot.json?x=1 HTTP/1.1\r\n\r\n", &e).2, "{}");
        assert_eq!(route("GET /nope HTTP/1.1\r\n\r\n", &e).0, 404);
        assert_eq!(route("POST /metrics HTTP/1.1\r\n\r\n", &e).0, 405);
        assert!(route("HEAD /metrics HTTP/1.1\r\n\r\n", &e).3);
        assert_eq!(route("", &e).0, 405);
    }

    #[test]
    fn listening_line() {
        let l = "reclaim-trace: serving http://127.0.0.1:9464/metrics and http://127.0.0.1:9464/snapshot.json; Ctrl-C stops";
        assert_eq!(
            parse_listening_line(l),
            Some("127.0.0.1:9464".parse().unwrap())
        );
    }
}
