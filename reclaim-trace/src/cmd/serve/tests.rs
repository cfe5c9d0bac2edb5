use super::*;
use crate::export::summary::SCHEMA;

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
    assert_eq!((r.status, r.body.as_ref()), (200, "p"));
    let r = route(
        "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0\r\n\r\n",
        &e,
    );
    assert_eq!(
        (r.status, r.content_type, r.body.as_ref()),
        (200, Format::OpenMetrics.content_type(), "o")
    );
    assert_eq!(
        route("GET /snapshot.json?x=1 HTTP/1.1\r\n\r\n", &e).body,
        "{}"
    );
    assert_eq!(route("GET /nope HTTP/1.1\r\n\r\n", &e).status, 404);
    assert_eq!(route("POST /metrics HTTP/1.1\r\n\r\n", &e).status, 405);
    assert!(route("HEAD /metrics HTTP/1.1\r\n\r\n", &e).head_only);
    // Not a request line at all: nothing to route, no method to refuse.
    for bad in [
        "",
        "\r\n",
        "GET\r\n\r\n",
        "GET /metrics\r\n\r\n",
        "GET / FTP/1\r\n\r\n",
    ] {
        assert_eq!(route(bad, &e).status, 400, "{bad:?}");
    }
}

#[test]
fn root_names_the_current_summary_schema() {
    let e = e();
    let r = route("GET / HTTP/1.1\r\n\r\n", &e);
    assert_eq!(r.status, 200);
    assert!(r.body.contains(SCHEMA), "{}", r.body);
    assert!(
        SCHEMA.ends_with("/v2"),
        "the schema this route advertises moved on"
    );
}

#[test]
fn method_not_allowed_names_the_allowed_methods() {
    let e = e();
    for m in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "get"] {
        for path in ["/metrics", "/snapshot.json", "/", "/nope"] {
            let r = route(&format!("{m} {path} HTTP/1.1\r\n\r\n"), &e);
            assert_eq!(r.status, 405, "{m} {path}");
            let head = r.head();
            assert!(
                head.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
                "{head}"
            );
            assert!(head.contains("\r\nAllow: GET, HEAD\r\n"), "{head}");
        }
    }
    let ok = route("GET /metrics HTTP/1.1\r\n\r\n", &e).head();
    assert!(!ok.contains("Allow:"), "{ok}");
}

#[test]
fn head_gets_the_header_fields_of_get_and_no_body() {
    let e = e();
    for path in ["/metrics", "/snapshot.json", "/", "/nope"] {
        let get = route(&format!("GET {path} HTTP/1.1\r\n\r\n"), &e);
        let head = route(&format!("HEAD {path} HTTP/1.1\r\n\r\n"), &e);
        assert_eq!(head.head(), get.head(), "{path}");
        assert!(
            get.head()
                .contains(&format!("\r\nContent-Length: {}\r\n", get.body.len())),
            "{path}"
        );
        assert_eq!(get.payload(), get.body.as_bytes(), "{path}");
        assert!(!get.payload().is_empty(), "{path}");
        assert_eq!(head.payload(), b"", "{path}");
    }
}

/// Feed `bytes` to a scanner in pieces of `step` bytes, as reads would deliver them.
fn scan_in_steps(bytes: &[u8], step: usize) -> Head {
    let mut s = HeadScanner::default();
    let mut end = 0;
    loop {
        end = (end + step).min(bytes.len());
        match s.scan(&bytes[..end]) {
            Head::Partial if end < bytes.len() => {}
            other => return other,
        }
    }
}

/// `scan_in_steps` gives the same answer whether the bytes come at once or one at a time.
fn scan(bytes: &[u8]) -> Head {
    let whole = scan_in_steps(bytes, bytes.len().max(1));
    assert_eq!(scan_in_steps(bytes, 1), whole);
    assert_eq!(scan_in_steps(bytes, 1000), whole);
    whole
}

fn request(line_len: usize, headers: usize, header_len: usize) -> Vec<u8> {
    let target = "x".repeat(line_len - "GET / HTTP/1.1".len());
    let mut r = format!("GET /{target} HTTP/1.1\r\n");
    assert_eq!(r.len(), line_len + 2);
    for i in 0..headers {
        let h = format!("X-{i:03}: ");
        r += &h;
        r += &"v".repeat(header_len - h.len());
        r += "\r\n";
    }
    r += "\r\n";
    r.into_bytes()
}

#[test]
fn head_scanner_finds_the_end() {
    let r = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nbody";
    assert_eq!(scan(r), Head::Complete(r.len() - 4));
    assert_eq!(scan(b"GET / HTTP/1.1\nHost: x\n\n"), Head::Complete(24));
    assert_eq!(scan(b"GET / HTTP/1.1\r\nHost: x\r\n"), Head::Partial);
    assert_eq!(scan(b""), Head::Partial);
}

#[test]
fn head_scanner_limits_the_request_line() {
    let r = request(MAX_REQUEST_LINE, 1, 10);
    assert_eq!(scan(&r), Head::Complete(r.len()));
    assert_eq!(
        scan(&request(MAX_REQUEST_LINE + 1, 1, 10)),
        Head::Refused(414)
    );
    // Refused as soon as the line cannot end within the limit, not when it ends.
    let endless = vec![b'G'; MAX_REQUEST_LINE + 2];
    assert_eq!(scan(&endless), Head::Refused(414));
    assert_eq!(scan(&endless[..MAX_REQUEST_LINE + 1]), Head::Partial);
}

#[test]
fn head_scanner_limits_the_header_lines() {
    let r = request(20, MAX_HEADER_LINES, 10);
    assert_eq!(scan(&r), Head::Complete(r.len()));
    assert_eq!(
        scan(&request(20, MAX_HEADER_LINES + 1, 10)),
        Head::Refused(431)
    );
}

#[test]
fn head_scanner_limits_the_head() {
    // 80 headers of 99 bytes, the rest made up by the request line: exactly MAX_HEAD.
    let line = MAX_HEAD - 80 * 101 - 4;
    let r = request(line, 80, 99);
    assert_eq!(r.len(), MAX_HEAD);
    assert_eq!(scan(&r), Head::Complete(MAX_HEAD));
    assert_eq!(scan(&request(line + 1, 80, 99)), Head::Refused(431));
    // A head that never ends is refused as soon as it passes the limit.
    let endless = request(20, 0, 0)[..22]
        .iter()
        .copied()
        .chain(std::iter::repeat_n(b'a', MAX_HEAD))
        .collect::<Vec<u8>>();
    assert_eq!(scan(&endless), Head::Refused(431));
    assert_eq!(scan(&endless[..MAX_HEAD]), Head::Partial);
}

#[test]
fn refusals_say_why_and_close() {
    for (status, reason) in [
        (408, "Request Timeout"),
        (414, "URI Too Long"),
        (431, "Request Header Fields Too Large"),
    ] {
        let r = Response::refusal(status);
        let head = r.head();
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status} {reason}\r\n")),
            "{head}"
        );
        assert!(head.contains("\r\nConnection: close\r\n"), "{head}");
        assert_eq!(r.payload(), r.body.as_bytes());
    }
    // A client that stalled is cut off at once; one that may still be sending is drained.
    assert!(!Response::refusal(408).drains_input());
    assert!(Response::refusal(431).drains_input());
    assert!(!route("GET / HTTP/1.1\r\n\r\n", &e()).drains_input());
}

#[test]
fn accept_backs_off_on_errors_that_are_not_the_connections() {
    for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
        let e = std::io::Error::from_raw_os_error(errno);
        assert!(!connection_error(&e), "{e}");
    }
    for errno in [libc::ECONNABORTED, libc::EINTR] {
        let e = std::io::Error::from_raw_os_error(errno);
        assert!(connection_error(&e), "{e}");
    }
}

#[test]
fn non_loopback_addresses_are_warned_about() {
    for a in [
        "127.0.0.1:9464",
        "127.3.2.1:1",
        "[::1]:9464",
        "[::ffff:127.0.0.1]:9464",
    ] {
        assert_eq!(exposure_warning(a.parse().unwrap()), None, "{a}");
    }
    for a in [
        "0.0.0.0:9464",
        "192.168.1.20:9464",
        "[::]:9464",
        "[2001:db8::1]:80",
    ] {
        let w = exposure_warning(a.parse().unwrap()).unwrap_or_default();
        assert!(
            w.starts_with("reclaim-trace: warning: listening on ")
                && w.contains(&a.parse::<SocketAddr>().unwrap().to_string())
                && w.contains("not loopback"),
            "{a}: {w:?}"
        );
    }
}

#[test]
fn listening_line() {
    let l = "reclaim-trace: serving http://127.0.0.1:9464/metrics and http://127.0.0.1:9464/snapshot.json; Ctrl-C stops";
    assert_eq!(
        parse_listening_line(l),
        Some("127.0.0.1:9464".parse().unwrap())
    );
}
