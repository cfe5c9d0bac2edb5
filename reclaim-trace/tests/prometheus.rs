//! The Grafana dashboard and the alerting rules against a real Prometheus server (Debian's
//! `prometheus`, installed by `cargo xtask setup`) scraping `reclaim-trace serve` under the
//! built-in workload: every dashboard expression must evaluate to plausible values, and the
//! drop and down alerts must trigger when the tracer stalls.

mod common;

use std::{
    fs,
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::{
    serve::{Serve, get},
    *,
};
use serde_json::Value;

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../dashboards/reclaim-trace.json"
);
const RULES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../dashboards");
/// Stands in for Grafana's `$__rate_interval` (at least four scrape intervals).
const RATE_INTERVAL: &str = "15s";

/// Whether a Prometheus tool is installed; under `cargo xtask test` (RECLAIM_TRACE_LIVE=
/// require) a missing one fails the test instead of skipping it.
fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        let msg =
            format!("{tool} is not installed (Debian package prometheus; `cargo xtask setup`)");
        if std::env::var("RECLAIM_TRACE_LIVE").as_deref() == Ok("require") {
            panic!("{msg}");
        }
        skipped(&msg);
    }
    found
}

#[test]
fn rules_pass_promtool_check_and_unit_tests() {
    if !have("promtool") {
        return;
    }
    for args in [
        &["check", "rules", "rules.yml"][..],
        &["test", "rules", "rules.test.yml"],
    ] {
        let o = Command::new("promtool")
            .args(args)
            .current_dir(RULES_DIR)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// A Prometheus server on a free loopback port with its own data directory, scraping one
/// target every second and loading dashboards/rules.yml; killed and removed when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Prometheus {
    fn start(target: SocketAddr) -> Prometheus {
        let dir = tmp("prometheus");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let rules = Path::new(RULES_DIR)
            .join("rules.yml")
            .canonicalize()
            .unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: reclaim-trace\n    static_configs:\n      \
             - targets: ['{target}']\n",
            rules.display()
        );
        fs::write(dir.join("prometheus.yml"), config).unwrap();
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let p = Prometheus { child, addr, dir };
        p.wait_for("the server to be ready", 30, || {
            std::net::TcpStream::connect(addr).is_ok()
                && api_get(addr, "/-/ready").contains("Ready")
        });
        p
    }

    /// The result vector of an instant query (`None` when the query failed).
    fn query(&self, expr: &str) -> Option<Vec<Value>> {
        let body = api_get(self.addr, &format!("/api/v1/query?query={}", encode(expr)));
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("Prometheus answered {expr} with no JSON ({e}): {body}"));
        if v["status"] != "success" {
            eprintln!("query failed: {expr}: {body}");
            return None;
        }
        v["data"]["result"].as_array().cloned()
    }

    fn values(&self, expr: &str) -> Vec<f64> {
        self.query(expr)
            .unwrap_or_else(|| panic!("Prometheus could not evaluate {expr}"))
            .iter()
            .map(|s| s["value"][1].as_str().unwrap().parse::<f64>().unwrap())
            .collect()
    }

    fn wait_for(&self, what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
        let until = Instant::now() + Duration::from_secs(secs);
        while !ok() {
            assert!(Instant::now() < until, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// `GET path` from the Prometheus server: the body (de-chunked: Go's server chunks larger
/// answers).
fn api_get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, mut body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body.to_string();
    }
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Percent-encode a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every PromQL expression of the dashboard's panels, with its panel title.
fn dashboard_expressions() -> Vec<(String, String)> {
    fn walk(panels: &[Value], out: &mut Vec<(String, String)>) {
        for p in panels {
            if let Some(inner) = p["panels"].as_array() {
                walk(inner, out);
            }
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push((p["title"].as_str().unwrap_or("").to_string(), e.to_string()));
                }
            }
        }
    }
    let d: Value = serde_json::from_str(&fs::read_to_string(DASHBOARD).unwrap()).unwrap();
    let mut out = Vec::new();
    walk(d["panels"].as_array().unwrap(), &mut out);
    out
}

/// What an expression must evaluate to under the anon workload on this machine (one dirty
/// flush of one folio per reclaimed folio, reaching the one other CPU), as (lowest, highest).
/// `None`: data must exist, any finite value.
fn expected(expr: &str) -> Option<(f64, f64)> {
    let per_folio = expr.contains("/ sum(rate(reclaim_trace_folios_reclaimed_total");
    if per_folio && expr.contains("immediate_flushes") {
        Some((0.0, 0.05))
    } else if per_folio {
        Some((0.95, 1.05)) // all and deferred flushes per folio
    } else if expr.contains("histogram_quantile(") {
        Some((1.0, 1.0)) // batch fill and fan-out, p50 and p99: integers, exactly
    } else if expr.contains("batch_fill_sum") {
        Some((0.99, 1.01)) // mean batch fill
    } else if expr.contains("ringbuf_drops") || expr.contains("decode_errors") {
        Some((0.0, 0.0))
    } else if expr.starts_with("sum(rate(reclaim_trace_")
        && [
            "folios_reclaimed",
            "flushes_total",
            "ipis",
            "dirty_flushes",
            "fanout_targets",
        ]
        .iter()
        .any(|m| expr.contains(&format!("reclaim_trace_{m}")))
    {
        Some((1.0, f64::INFINITY)) // rates of what the workload does
    } else {
        None
    }
}

#[test]
#[ignore = "needs root and the live kernel: `cargo xtask test` runs it"]
fn real_prometheus_evaluates_every_dashboard_expression_and_the_alerts() {
    let Some(_lock) = live() else { return };
    if !have("prometheus") {
        return;
    }
    let before = traces();
    let (mut serve, target) = Serve::start(&["--workload", "anon", "--zram", "--interval", "1s"]);
    let prom = Prometheus::start(target);
    prom.wait_for("two scrapes of reclaim-trace", 60, || {
        prom.values("count_over_time(reclaim_trace_uptime_seconds[1m])")
            .first()
            .is_some_and(|n| *n >= 2.0)
    });
    // Enough samples for every rate window, and for the workload to reach steady reclaim.
    thread::sleep(Duration::from_secs(20));

    let metrics = get(target, "/metrics", None).1;
    let has_candidates = metrics.contains("reclaim_trace_fanout_candidates_bucket");
    let exprs = dashboard_expressions();
    let mut failures = Vec::new();
    for (title, expr) in &exprs {
        let q = expr
            .replace("$instance", ".+")
            .replace("$__rate_interval", RATE_INTERVAL);
        let values = prom.values(&q);
        eprintln!("{title}: {q}\n    = {values:?}");
        if values.is_empty() {
            // The candidate CPUs need the precise tier; on the tracepoint tier no bucket of
            // them is exported and the panel is rightly empty.
            if !expr.contains("fanout_candidates") || has_candidates {
                failures.push(format!("{title}: no data for {q}"));
            }
            continue;
        }
        if let Some(v) = values.iter().find(|v| !v.is_finite()) {
            failures.push(format!("{title}: {v} from {q}"));
        }
        if let Some((lo, hi)) = expected(expr) {
            for v in &values {
                if !(lo..=hi).contains(v) {
                    failures.push(format!("{title}: {v} not in [{lo}, {hi}] for {q}"));
                }
            }
        }
    }
    // The dashboard's instance variable (Grafana's label_values()).
    let instances = api_get(
        prom.addr,
        "/api/v1/label/instance/values?match[]=reclaim_trace_build_info",
    );
    assert!(instances.contains(&target.to_string()), "{instances}");
    eprintln!("{} dashboard expressions evaluated", exprs.len());
    assert!(
        exprs.len() >= 27,
        "the dashboard lost expressions: {}",
        exprs.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Stall the reader: the kernel keeps reclaiming into a ring buffer nobody drains, and the
    // scrapes fail meanwhile.
    serve.signal(libc::SIGSTOP);
    prom.wait_for("ReclaimTraceDown to become pending", 30, || {
        !prom
            .values(r#"ALERTS{alertname="ReclaimTraceDown",alertstate="pending"}"#)
            .is_empty()
    });
    thread::sleep(Duration::from_secs(5));
    serve.signal(libc::SIGCONT);
    prom.wait_for("ReclaimTraceRingBufferDrops to fire", 30, || {
        !prom
            .values(r#"ALERTS{alertname="ReclaimTraceRingBufferDrops",alertstate="firing"}"#)
            .is_empty()
    });
    let drops = prom.values("reclaim_trace_ringbuf_drops_total");
    eprintln!("ring-buffer drops after the stall: {drops:?}");
    assert!(drops.iter().sum::<f64>() > 0.0);
    prom.wait_for("ReclaimTraceDown to clear", 30, || {
        prom.values(r#"ALERTS{alertname="ReclaimTraceDown"}"#)
            .is_empty()
    });

    drop(prom);
    let status = serve.stop();
    assert!(status.success(), "serve exit {status}");
    assert_eq!(traces(), before, "left behind");
}
