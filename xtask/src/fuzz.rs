//! `cargo xtask fuzz`: the fuzz targets in fuzz/ (cargo-fuzz: libFuzzer on nightly), each run
//! for `--runs` generated inputs, with the count, time and coverage of each.
//!
//! Targets: `decode` (the ring-buffer record decoder, built with AddressSanitizer: it reads
//! records with `unsafe`), `record` (the recording reader, as `report` and `compare` use it)
//! and `fail_if` (the `--fail-if` parser and the rule's evaluation). Every input is checked for
//! panics (overflow checks on) and for memory beyond a bound linear in its size
//! (fuzz/src/lib.rs); libFuzzer's RSS limit is the backstop. The corpus grows in
//! fuzz/corpus/TARGET (not committed) from the seeds in fuzz/seeds/TARGET; an input that fails
//! is saved in fuzz/artifacts/TARGET; libFuzzer's output goes to target/fuzz-logs/TARGET.log.

use std::{fs, process::Command, time::Instant};

use anyhow::{Context as _, Result, bail};

use crate::{
    setup::{self, NIGHTLY},
    util::{run, workspace_root},
};

#[derive(clap::Args, Debug)]
pub struct FuzzArgs {
    /// Generated inputs per target.
    #[arg(long, default_value_t = 1_000_000)]
    pub runs: u64,
    /// Only this target [default: all three].
    #[arg(value_parser = ["decode", "record", "fail_if"])]
    pub target: Option<String>,
}

struct Target {
    name: &'static str,
    /// `cargo fuzz build` options: the sanitizer, features, and the target directory (under
    /// target/) the build with those options lives in.
    build: &'static [&'static str],
    target_dir: &'static str,
}

/// The reader targets need the tool's library (the `reader` feature). They are safe code, and
/// without AddressSanitizer and comparison tracing they run ~2.5x faster (155 → 400 inputs/s
/// for `record`).
const READER: &[&str] = &[
    "--features",
    "reader",
    "--sanitizer",
    "none",
    "--no-trace-compares",
];

const TARGETS: &[Target] = &[
    Target {
        name: "decode",
        build: &[],
        target_dir: "fuzz",
    },
    Target {
        name: "record",
        build: READER,
        target_dir: "fuzz-reader",
    },
    Target {
        name: "fail_if",
        build: READER,
        target_dir: "fuzz-reader",
    },
];

/// What one run did, from libFuzzer's last lines.
struct Outcome {
    name: &'static str,
    runs: u64,
    secs: f64,
    coverage: Option<u64>,
    corpus: Option<u64>,
}

pub fn fuzz(args: &FuzzArgs) -> Result<()> {
    let env = setup::fuzz_toolchain()?;
    let root = workspace_root();
    let logs = root.join("target/fuzz-logs");
    fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let mut done = Vec::new();
    for t in TARGETS
        .iter()
        .filter(|t| args.target.as_deref().is_none_or(|n| n == t.name))
    {
        let cargo_fuzz = |verb: &str| {
            let mut c = Command::new("rustup");
            c.current_dir(&root)
                .env("PATH", &env.path)
                // The fuzz targets read no eBPF object.
                .env("AYA_BUILD_SKIP", "1")
                .args(["run", NIGHTLY, "cargo", "fuzz", verb, t.name])
                .args(t.build)
                .arg("--target-dir")
                .arg(root.join("target").join(t.target_dir));
            c
        };
        eprintln!("\nxtask fuzz: == {} (building)", t.name);
        run(&mut cargo_fuzz("build"))?;
        let corpus = root.join("fuzz/corpus").join(t.name);
        fs::create_dir_all(&corpus)
            .with_context(|| format!("cannot create {}", corpus.display()))?;
        let log = logs.join(format!("{}.log", t.name));
        eprintln!(
            "xtask fuzz: {}: {} inputs (libFuzzer's output in {})",
            t.name,
            thousands(args.runs),
            log.display()
        );
        let mut c = cargo_fuzz("run");
        c.arg(&corpus)
            .arg(root.join("fuzz/seeds").join(t.name))
            .arg("--")
            .arg(format!("-runs={}", args.runs))
            .args([
                "-rss_limit_mb=512",
                "-max_len=4096",
                "-len_control=0",
                "-timeout=30",
                "-print_final_stats=1",
            ]);
        let out =
            fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        c.stdout(out.try_clone()?).stderr(out);
        let started = Instant::now();
        let status = c.status().with_context(|| format!("cannot start {c:?}"))?;
        let secs = started.elapsed().as_secs_f64();
        let text = fs::read_to_string(&log).unwrap_or_default();
        if !status.success() {
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            for l in tail.iter().rev() {
                eprintln!("  {l}");
            }
            bail!(
                "fuzz target {name} failed after {secs:.0} s ({status}); the input is in \
                 fuzz/artifacts/{name}/ (replay: `target/{dir}/x86_64-unknown-linux-gnu/release/\
                 {name} FILE`), the whole output in {}",
                log.display(),
                name = t.name,
                dir = t.target_dir,
            );
        }
        let o = outcome(t.name, &text, secs)?;
        eprintln!("xtask fuzz: {}", o.line());
        done.push(o);
    }
    eprintln!("\nxtask fuzz: no failure:");
    for o in &done {
        eprintln!("  {}", o.line());
    }
    Ok(())
}

/// libFuzzer's `Done N runs in S second(s)` and its last status line (`cov: C ... corp: N/..`).
fn outcome(name: &'static str, log: &str, secs: f64) -> Result<Outcome> {
    let runs = log
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("Done ")?.split(' ').next()?.parse().ok())
        .with_context(|| format!("no `Done N runs` in libFuzzer's output for {name}"))?;
    let status = log.lines().rev().find(|l| l.contains(" cov: "));
    let field = |key: &str| -> Option<u64> {
        let rest = status?.split(key).nth(1)?.trim_start();
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    Ok(Outcome {
        name,
        runs,
        secs,
        coverage: field(" cov:"),
        corpus: field(" corp:"),
    })
}

impl Outcome {
    fn line(&self) -> String {
        let opt = |v: Option<u64>| v.map_or("?".into(), thousands);
        format!(
            "{:<8} {:>11} inputs in {:>5.0} s ({:>7}/s), coverage {} points, corpus {} inputs",
            self.name,
            thousands(self.runs),
            self.secs,
            thousands((self.runs as f64 / self.secs.max(1e-9)) as u64),
            opt(self.coverage),
            opt(self.corpus)
        )
    }
}

fn thousands(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_count_and_status_from_libfuzzer_output() {
        let log = "INFO: Seed: 1\n#2\tINITED cov: 10 ft: 11 corp: 1/1b exec/s: 0 rss: 30Mb\n\
                   #1000000\tDONE   cov: 1234 ft: 5678 corp: 321/9876b lim: 4096 exec/s: 9000 rss: 80Mb\n\
                   Done 1000000 runs in 111 second(s)\n";
        let o = outcome("decode", log, 111.4).unwrap();
        assert_eq!(
            (o.runs, o.coverage, o.corpus),
            (1_000_000, Some(1234), Some(321))
        );
        assert!(o.line().contains("1,000,000 inputs"), "{}", o.line());
        assert!(outcome("decode", "crashed\n", 1.0).is_err());
    }

    /// Every target is a binary of the fuzz crate and has its committed seeds (a missing
    /// folder would make libFuzzer start from nothing without saying so).
    #[test]
    fn every_target_is_built_and_seeded() {
        let root = workspace_root();
        let manifest = fs::read_to_string(root.join("fuzz/Cargo.toml")).unwrap();
        for t in TARGETS {
            assert!(
                manifest.contains(&format!("name = \"{}\"", t.name)),
                "{}",
                t.name
            );
            let seeds = root.join("fuzz/seeds").join(t.name);
            assert!(
                fs::read_dir(&seeds).unwrap().count() > 0,
                "{}",
                seeds.display()
            );
        }
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(12_345_678), "12,345,678");
    }
}
