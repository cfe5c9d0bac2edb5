//! `cargo xtask setup`: the eBPF toolchain, the musl target of `cargo xtask dist`, and the
//! Debian packages the tests use.
//!
//! Everything is checked first and only done when missing, so a second run takes about a
//! second. bpf-linker must link the same LLVM as the nightly rustc that emits the bitcode: it is
//! built against the nightly toolchain's own libLLVM through a prefix folder of symlinks
//! (bpf-linker's `llvm-sys` wants `lib/libLLVM.so` and the exact soname there).

use std::{
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::{
    arch::Arch,
    util::{capture, is_root, run, stdout_of, workspace_root},
};

/// The toolchain that builds the eBPF crate (aya-build's default).
pub const NIGHTLY: &str = "nightly";
/// bpf-linker release line compatible with aya 0.14 / LLVM 22.
const BPF_LINKER_VERSION: &str = "0.13";
/// cargo-fuzz release line (`cargo xtask fuzz`).
const CARGO_FUZZ_VERSION: &str = "0.13";

/// Debian packages used by the tests and tools, by the command that needs them.
pub const PACKAGES: &[(&str, &str)] = &[
    ("tmux", "tmux"),
    // promtool validates the /metrics exposition in the serve test.
    ("prometheus", "promtool"),
    // `cargo xtask screenshot` renders the dashboard's capture with xtask/src/ansi2png.py.
    ("python3-pil", "python3"),
    ("fonts-dejavu-core", "python3"),
    // `cargo xtask vm`: the kernel matrix under qemu (software emulation).
    ("qemu-system-x86", "qemu-system-x86_64"),
    ("qemu-system-arm", "qemu-system-aarch64"),
    ("busybox-static", "busybox"),
    ("cpio", "cpio"),
    ("e2fsprogs", "mkfs.ext4"),
    ("xz-utils", "xz"),
    ("zstd", "zstd"),
    ("kmod", "depmod"),
];

/// The environment the other tasks run commands in.
pub struct Env {
    /// PATH with the directory of bpf-linker first.
    pub path: OsString,
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from)
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME").map_or_else(|| home().join(".cargo"), PathBuf::from)
}

fn say(what: &str, state: &str) {
    eprintln!("xtask setup: {what:<34} {state}");
}

pub fn setup(with_packages: bool) -> Result<Env> {
    let bin_dir = cargo_home().join("bin");
    let path = std::env::join_paths(std::iter::once(bin_dir.clone()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))?;
    let env = Env { path };
    if stdout_of(Command::new("rustup").arg("--version")).is_none() {
        bail!("rustup is not installed; install Rust with rustup (https://rustup.rs) first");
    }
    ensure_nightly()?;
    let sysroot = nightly_sysroot()?;
    ensure_rust_src(&sysroot)?;
    ensure_bpf_linker(&sysroot, &bin_dir)?;
    for arch in [Arch::Amd64, Arch::Arm64] {
        ensure_musl_target(arch.rust_target())?;
    }
    if with_packages {
        ensure_packages(PACKAGES)?;
    }
    Ok(env)
}

/// What `cargo xtask fuzz` needs: nightly and cargo-fuzz (no eBPF toolchain, no packages).
pub fn fuzz_toolchain() -> Result<Env> {
    let bin_dir = cargo_home().join("bin");
    let path = std::env::join_paths(std::iter::once(bin_dir.clone()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))?;
    if stdout_of(Command::new("rustup").arg("--version")).is_none() {
        bail!("rustup is not installed; install Rust with rustup (https://rustup.rs) first");
    }
    ensure_nightly()?;
    ensure_cargo_fuzz(&bin_dir)?;
    Ok(Env { path })
}

fn ensure_cargo_fuzz(bin_dir: &Path) -> Result<()> {
    let bin = bin_dir.join("cargo-fuzz");
    let version = stdout_of(Command::new(&bin).arg("--version")).unwrap_or_default();
    if version.contains(&format!("cargo-fuzz {CARGO_FUZZ_VERSION}.")) {
        say("cargo-fuzz", &format!("present ({})", version.trim()));
        return Ok(());
    }
    say(
        "cargo-fuzz",
        &format!("installing {CARGO_FUZZ_VERSION} (~2 min)"),
    );
    run(Command::new("cargo")
        .args(["install", "cargo-fuzz", "--locked", "--force"])
        .args(["--version", &format!("~{CARGO_FUZZ_VERSION}")])
        .arg("--root")
        .arg(bin_dir.parent().unwrap_or(bin_dir)))
    .context("installing cargo-fuzz failed")
}

fn ensure_nightly() -> Result<()> {
    let list = stdout_of(Command::new("rustup").args(["toolchain", "list"])).unwrap_or_default();
    if list.lines().any(|l| l.starts_with("nightly-")) {
        say("nightly toolchain", "present");
        return Ok(());
    }
    say("nightly toolchain", "installing");
    run(Command::new("rustup").args([
        "toolchain",
        "install",
        NIGHTLY,
        "--profile",
        "minimal",
        "--component",
        "rust-src",
    ]))
}

/// The standard library for `cargo xtask dist`'s static builds (x86_64 and aarch64), on the
/// toolchain that builds the workspace. It is self-contained (musl's libc.a and C runtime
/// objects included, linked by the host's `cc` or rust-lld): no musl-tools package is needed.
fn ensure_musl_target(target: &str) -> Result<()> {
    let list = |c: &mut Command| -> Result<String> {
        stdout_of(c.current_dir(workspace_root()))
            .ok_or_else(|| anyhow!("`rustup target list --installed` failed"))
    };
    if list(Command::new("rustup").args(["target", "list", "--installed"]))?
        .lines()
        .any(|l| l.trim() == target)
    {
        say(&format!("{target} target"), "present");
        return Ok(());
    }
    say(&format!("{target} target"), "installing");
    run(Command::new("rustup")
        .current_dir(workspace_root())
        .args(["target", "add", target]))
}

fn nightly_sysroot() -> Result<PathBuf> {
    let out =
        stdout_of(Command::new("rustup").args(["run", NIGHTLY, "rustc", "--print", "sysroot"]))
            .ok_or_else(|| anyhow!("`rustup run nightly rustc --print sysroot` failed"))?;
    Ok(PathBuf::from(out.trim()))
}

fn ensure_rust_src(sysroot: &Path) -> Result<()> {
    if sysroot
        .join("lib/rustlib/src/rust/library/core/Cargo.toml")
        .exists()
    {
        say("nightly rust-src", "present");
        return Ok(());
    }
    say("nightly rust-src", "installing");
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))
}

/// The nightly toolchain's libLLVM soname (e.g. `libLLVM.so.22.1-rust-1.97.0-nightly`) and
/// its LLVM major version.
fn nightly_llvm(sysroot: &Path) -> Result<(String, u32)> {
    let vv = stdout_of(Command::new("rustup").args(["run", NIGHTLY, "rustc", "-vV"]))
        .ok_or_else(|| anyhow!("`rustc +nightly -vV` failed"))?;
    let major = vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next()?.parse().ok())
        .ok_or_else(|| anyhow!("no LLVM version in `rustc +nightly -vV`"))?;
    let lib = sysroot.join("lib");
    let soname = fs::read_dir(&lib)
        .with_context(|| format!("cannot list {}", lib.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("libLLVM.so."))
        .ok_or_else(|| {
            anyhow!(
                "no libLLVM.so.* in {} (is this a rustup toolchain?)",
                lib.display()
            )
        })?;
    Ok((soname, major))
}

fn bpf_linker_ok(bin: &Path, soname: &str) -> bool {
    let Some(v) = stdout_of(Command::new(bin).arg("--version")) else {
        return false;
    };
    if !v.contains(&format!("bpf-linker {BPF_LINKER_VERSION}.")) {
        return false;
    }
    // It must load the current nightly's LLVM, not a stale prefix.
    stdout_of(Command::new("ldd").arg(bin))
        .is_some_and(|l| l.contains(soname) && !l.contains("not found"))
}

fn ensure_bpf_linker(sysroot: &Path, bin_dir: &Path) -> Result<()> {
    let (soname, major) = nightly_llvm(sysroot)?;
    let bin = bin_dir.join("bpf-linker");
    if bpf_linker_ok(&bin, &soname) {
        say("bpf-linker", &format!("present (LLVM {major})"));
        return Ok(());
    }
    say(
        "bpf-linker",
        &format!("building {BPF_LINKER_VERSION} against nightly LLVM {major} (~2 min)"),
    );
    let prefix = home()
        .join(".cache/reclaim-trace")
        .join(format!("llvm-{soname}"));
    let lib = prefix.join("lib");
    fs::create_dir_all(&lib).with_context(|| format!("cannot create {}", lib.display()))?;
    let target = sysroot.join("lib").join(&soname);
    for name in ["libLLVM.so", soname.as_str()] {
        let link = lib.join(name);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link)
            .with_context(|| format!("cannot link {} -> {}", link.display(), target.display()))?;
    }
    run(Command::new("rustup")
        .args(["run", NIGHTLY, "cargo", "install", "bpf-linker", "--force"])
        .args(["--version", &format!("~{BPF_LINKER_VERSION}")])
        .args([
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
        ])
        .arg("--root")
        .arg(bin_dir.parent().unwrap_or(bin_dir))
        .env("LLVM_PREFIX", &prefix))
    .context("building bpf-linker failed")?;
    if !bpf_linker_ok(&bin, &soname) {
        bail!("bpf-linker was built but does not run against {soname}");
    }
    Ok(())
}

fn installed(pkg: &str) -> bool {
    stdout_of(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]))
        .is_some_and(|s| s.contains("install ok installed"))
}

pub fn ensure_packages(pkgs: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = pkgs
        .iter()
        .filter(|(pkg, _)| !installed(pkg))
        .map(|(pkg, _)| *pkg)
        .collect();
    if missing.is_empty() {
        say(
            "Debian packages",
            &format!(
                "present ({})",
                pkgs.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
            ),
        );
        return Ok(());
    }
    if !is_root() {
        bail!(
            "Debian packages {} are missing and installing them needs root: run \
             `sudo apt-get install {}` or run xtask as root",
            missing.join(", "),
            missing.join(" ")
        );
    }
    say(
        "Debian packages",
        &format!("installing {}", missing.join(", ")),
    );
    let install = |update: bool| -> Result<bool> {
        if update {
            run(Command::new("apt-get").args(["update", "-q"]))?;
        }
        let o = capture(
            Command::new("apt-get")
                .args(["install", "-y", "-q", "--no-install-recommends"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?
        .ok_or_else(|| {
            anyhow!(
                "apt-get is not available: install {} by hand",
                missing.join(" ")
            )
        })?;
        Ok(o.status.success())
    };
    if !install(false)? && !install(true)? {
        bail!("`apt-get install {}` failed", missing.join(" "));
    }
    Ok(())
}
