//! The HTTP/1.1 that `serve` speaks, without sockets: where a request head ends and the limits
//! on it, the route a head takes, and the bytes of the response.

use std::borrow::Cow;

use super::Exports;
use crate::export::{prometheus::Format, summary::SCHEMA};

/// Largest request head accepted, request line and header lines together.
pub const MAX_HEAD: usize = 8192;
/// Longest request line accepted: the longest target served is `/snapshot.json` with a query,
/// and Prometheus sends a few dozen bytes; 2 KiB leaves room for any scraper's query string.
pub const MAX_REQUEST_LINE: usize = 2048;
/// Most header lines accepted after the request line (Prometheus sends 5; curl 3).
pub const MAX_HEADER_LINES: usize = 100;

/// What the bytes received so far make of a request head.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// The head has not ended yet: read more.
    Partial,
    /// The head ends at this offset, just after its empty line.
    Complete(usize),
    /// Refused before it ended (a limit is exceeded): answer with this status and close.
    Refused(u16),
}

/// Scans a request head as it arrives. It keeps its place, so every byte is looked at once:
/// rescanning the whole buffer on each read would cost a client that sends one byte at a time
/// quadratic work.
#[derive(Debug, Default)]
pub struct HeadScanner {
    scanned: usize,
    line_start: usize,
    lines: usize,
}

impl HeadScanner {
    /// Look at `buf[..]` (everything received so far, `buf` only ever grows).
    pub fn scan(&mut self, buf: &[u8]) -> Head {
        while self.scanned < buf.len() {
            let i = self.scanned;
            self.scanned += 1;
            if self.scanned > MAX_HEAD {
                return Head::Refused(431);
            }
            if buf[i] != b'\n' {
                // A request line that cannot end within the limit (its CR still allowed).
                if self.lines == 0 && i - self.line_start > MAX_REQUEST_LINE {
                    return Head::Refused(414);
                }
                continue;
            }
            let line = &buf[self.line_start..i];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            self.line_start = i + 1;
            if line.is_empty() {
                return Head::Complete(i + 1);
            }
            if self.lines == 0 && line.len() > MAX_REQUEST_LINE {
                return Head::Refused(414);
            }
            self.lines += 1;
            if self.lines > 1 + MAX_HEADER_LINES {
                return Head::Refused(431);
            }
        }
        Head::Partial
    }
}

/// One response: status, content type and body; HEAD gets GET's header fields and no body.
#[derive(Debug)]
pub struct Response<'a> {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Cow<'a, str>,
    pub head_only: bool,
}

impl Response<'static> {
    /// A plain-text refusal or error.
    pub fn text(status: u16, body: &'static str) -> Self {
        Response {
            status,
            content_type: "text/plain",
            body: body.into(),
            head_only: false,
        }
    }

    /// The answer to a head refused by `HeadScanner`, or to one that did not arrive in time.
    pub fn refusal(status: u16) -> Self {
        match status {
            408 => Self::text(408, "request head not received in time\n"),
            414 => Self::text(414, "request line too long\n"),
            _ => Self::text(431, "request header too large\n"),
        }
    }
}

impl Response<'_> {
    /// Status line and header fields, through the empty line that ends them.
    pub fn head(&self) -> String {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            414 => "URI Too Long",
            431 => "Request Header Fields Too Large",
            _ => "",
        };
        // RFC 9110 15.5.6: a 405 names the methods the resource has.
        let allow = if self.status == 405 {
            "Allow: GET, HEAD\r\n"
        } else {
            ""
        };
        format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len()
        )
    }

    /// The bytes that follow the head: none for HEAD.
    pub fn payload(&self) -> &[u8] {
        if self.head_only {
            b""
        } else {
            self.body.as_bytes()
        }
    }

    /// Whether the client may still be sending when this is written (a refused head, a
    /// request with a body): its input is then drained before closing, because closing a
    /// socket with unread input sends a reset, which may destroy the response unread.
    pub fn drains_input(&self) -> bool {
        matches!(self.status, 400 | 405 | 414 | 431)
    }
}

/// The response to a complete request head.
pub fn route<'a>(head: &str, e: &'a Exports) -> Response<'a> {
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let (Some(method), Some(target), Some(version)) = (first.next(), first.next(), first.next())
    else {
        return Response::text(400, "malformed request line\n");
    };
    if !version.starts_with("HTTP/1.") || first.next().is_some() {
        return Response::text(400, "malformed request line\n");
    }
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return Response::text(405, "only GET and HEAD\n");
    }
    let openmetrics = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("accept:") && l.contains("application/openmetrics-text")
    });
    let (status, content_type, body): (_, _, Cow<'a, str>) = match target.split('?').next() {
        Some("/metrics") if openmetrics => (
            200,
            Format::OpenMetrics.content_type(),
            e.openmetrics.as_str().into(),
        ),
        Some("/metrics") => (
            200,
            Format::Prometheus.content_type(),
            e.prometheus.as_str().into(),
        ),
        Some("/snapshot.json") => (200, "application/json", e.snapshot_json.as_str().into()),
        Some("/") => (
            200,
            "text/plain",
            format!(
                "reclaim-trace: /metrics (Prometheus/OpenMetrics), /snapshot.json ({SCHEMA})\n"
            )
            .into(),
        ),
        _ => (
            404,
            "text/plain",
            "not found: try /metrics or /snapshot.json\n".into(),
        ),
    };
    Response {
        status,
        content_type,
        body,
        head_only,
    }
}
