//! `cargo xtask dist`: a binary you can copy. reclaim-trace built for x86_64-unknown-linux-musl
//! (static: it runs on any x86_64 Linux whatever its libc, the eBPF object embedded as in every
//! build), checked to be static from its ELF headers, with the shell completions and man pages
//! it generates from its own clap definitions (`completions SHELL`, `__man DIR`), in
//! target/dist/:
//!
//! ```text
//! target/dist/reclaim-trace
//! target/dist/completions/{reclaim-trace.bash,_reclaim-trace,reclaim-trace.fish}
//! target/dist/man/reclaim-trace.1, reclaim-trace-SUBCOMMAND.1
//! ```
//!
//! `--arch arm64` builds aarch64-unknown-linux-musl into target/dist/arm64/reclaim-trace (linked
//! by rust-lld, see .cargo/config.toml). Its eBPF object is built for arm64 too: aya-build
//! passes the outer target's architecture to the eBPF build, which decides the `pt_regs` layout
//! the kprobe programs read their arguments from. An arm64 binary cannot run here, so it comes
//! without completions and man pages (they are the same as amd64's).
//!
//! `cargo xtask vm` and `ab` boot their guests with this binary (cargo decides whether anything
//! needs rebuilding).

mod elf;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::{
    arch::Arch,
    setup,
    util::{cargo, workspace_root},
};

pub use self::elf::Linkage;

const COMPLETIONS: &[(&str, &str)] = &[
    ("bash", "reclaim-trace.bash"),
    ("zsh", "_reclaim-trace"),
    ("fish", "reclaim-trace.fish"),
];

pub fn dir() -> PathBuf {
    workspace_root().join("target/dist")
}

/// The linkage of the executable at `path`.
pub fn linkage(path: &Path) -> Result<Linkage> {
    let b = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    elf::linkage(&b).with_context(|| path.display().to_string())
}

/// The architecture of the executable at `path`.
pub fn arch_of(path: &Path) -> Result<Arch> {
    let b = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let m = elf::machine(&b).with_context(|| path.display().to_string())?;
    Arch::from_elf_machine(m).ok_or_else(|| {
        anyhow!(
            "{} is for ELF machine {m}, neither x86_64 nor aarch64",
            path.display()
        )
    })
}

/// Fail, in one line, unless `path` is a static executable.
pub fn check_static(path: &Path) -> Result<()> {
    match linkage(path)? {
        Linkage::Static => Ok(()),
        Linkage::Dynamic(why) => bail!("{} is not static: {why}", path.display()),
    }
}

/// Build, check and lay out target/dist/ (target/dist/arm64/ for arm64); returns the
/// executable.
pub fn dist(env: &setup::Env, arch: Arch) -> Result<PathBuf> {
    let started = Instant::now();
    let target = arch.rust_target();
    eprintln!("xtask dist: building reclaim-trace for {target} (static)");
    let built = build(env, target)?;
    check_static(&built)?;
    if arch_of(&built)? != arch {
        bail!("{} is not an {arch} executable", built.display());
    }
    let dir = if arch == Arch::host() {
        dir()
    } else {
        dir().join(arch.deb())
    };
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let bin = dir.join("reclaim-trace");
    // Copied beside, then renamed over: a running target/dist/reclaim-trace (ETXTBSY) or a
    // half-written one is never a problem.
    let tmp = dir.join(".reclaim-trace.new");
    fs::copy(&built, &tmp)
        .with_context(|| format!("cannot copy {} to {}", built.display(), tmp.display()))?;
    fs::rename(&tmp, &bin).with_context(|| format!("cannot write {}", bin.display()))?;
    if arch != Arch::host() {
        eprintln!(
            "xtask dist: {} (static, {arch}) in {:.0} s",
            bin.display(),
            started.elapsed().as_secs_f64()
        );
        return Ok(bin);
    }
    let comp = dir.join("completions");
    fs::create_dir_all(&comp).with_context(|| format!("cannot create {}", comp.display()))?;
    for (shell, file) in COMPLETIONS {
        let script = tool_output(&bin, &["completions", shell])?;
        if script.is_empty() {
            bail!("`{} completions {shell}` printed nothing", bin.display());
        }
        fs::write(comp.join(file), script)?;
    }
    let man = dir.join("man");
    let _ = fs::remove_dir_all(&man);
    tool_output(&bin, &["__man", &man.to_string_lossy()])?;
    let pages = fs::read_dir(&man)
        .with_context(|| format!("`{} __man` wrote no {}", bin.display(), man.display()))?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".1"))
        .count();
    if pages == 0 {
        bail!("`{} __man` wrote no man page", bin.display());
    }
    let size = fs::metadata(&bin)?.len();
    eprintln!(
        "xtask dist: {} (static, {:.1} MiB), {} completions, {pages} man pages in {:.0} s",
        bin.display(),
        size as f64 / (1 << 20) as f64,
        COMPLETIONS.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(bin)
}

/// `cargo build --release -p reclaim-trace --target <target>`; returns the executable cargo
/// reports (wherever the target directory is).
fn build(env: &setup::Env, target: &str) -> Result<PathBuf> {
    let mut c = cargo(env);
    c.args([
        "build",
        "--release",
        "-p",
        "reclaim-trace",
        "--target",
        target,
    ])
    .arg("--message-format=json-render-diagnostics")
    // A binary to hand out carries its eBPF programs: never the empty placeholder.
    .env_remove("AYA_BUILD_SKIP")
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    let o = c.output().with_context(|| format!("cannot start {c:?}"))?;
    if !o.status.success() {
        bail!("{c:?} failed ({})", o.status);
    }
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "reclaim-trace")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| anyhow!("cargo built no reclaim-trace executable for {target}"))
}

fn tool_output(bin: &Path, args: &[&str]) -> Result<Vec<u8>> {
    let o = Command::new(bin)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    if !o.status.success() {
        bail!(
            "`{} {}` failed ({}): {}",
            bin.display(),
            args.join(" "),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(o.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_binary_fails_the_check_in_one_line() {
        let e = check_static(Path::new("/bin/ls")).unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.starts_with("/bin/ls is not static: it asks for the loader /lib"),
            "{msg}"
        );
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn what_cannot_be_read_is_an_error_not_static() {
        assert!(check_static(Path::new("/nonexistent/reclaim-trace")).is_err());
        assert!(check_static(Path::new("/etc/hostname")).is_err());
    }
}
