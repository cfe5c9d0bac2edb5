//! Kernels for `cargo xtask ab`, built from Debian's `linux-source-<ver>`.
//!
//! The baseline is the source configured from Debian's cloud config (`linux-config-<ver>`)
//! plus `kernel-patches/<ver>/ab.config`, built once (`make bzImage`). A patched kernel is a
//! copy of the built baseline tree with the patches applied, so only what they touch
//! recompiles. Everything is cached under `~/.cache/reclaim-trace/ab/` by source version,
//! config fragment and patch contents: a second run with the same inputs builds nothing.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, anyhow, bail};
use sha2::{Digest as _, Sha256};

use crate::{
    util::run,
    vm::{
        apt::{AptState, mirrors, parse_candidate},
        kernel::{Kernel, Release},
    },
};

/// Debian's source and config packages of one kernel release, unpacked.
pub struct Source {
    /// Debian package version, e.g. `6.12.118-1`.
    pub version: String,
    pub tarball: PathBuf,
    /// Debian's cloud-amd64 config.
    pub config: PathBuf,
}

/// Download (once) and unpack (once) `linux-source-<label>` and `linux-config-<label>` of the
/// newest version in `r`'s suite, with the private apt state `xtask vm` uses.
pub fn source(vm_cache: &Path, cache: &Path, r: Release) -> Result<Source> {
    let m = mirrors()?;
    let apt = AptState::new(vm_cache, r, &m, crate::arch::Arch::Amd64)?;
    apt.update(r.suite)?;
    let src_pkg = format!("linux-source-{}", r.label);
    let cfg_pkg = format!("linux-config-{}", r.label);
    let policy = apt.output("apt-cache", &["policy", &src_pkg])?;
    let version = parse_candidate(&policy)
        .ok_or_else(|| anyhow!("Debian {} has no {src_pkg} on {}", r.suite, m.debian))?;
    let dir = cache.join(format!("debian-{version}"));
    let stamp = dir.join(".unpacked");
    if !stamp.exists() {
        let files = apt.download(
            "ab",
            &[(&src_pkg, &version, "all"), (&cfg_pkg, &version, "amd64")],
        )?;
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        for f in files {
            run(Command::new("dpkg-deb").arg("-x").arg(&f).arg(&dir))
                .with_context(|| format!("cannot unpack {}", f.display()))?;
        }
        fs::write(&stamp, "")?;
    }
    let tarball = dir.join(format!("usr/src/linux-source-{}.tar.xz", r.label));
    let config = dir.join(format!(
        "usr/src/linux-config-{}/config.amd64_none_cloud-amd64.xz",
        r.label
    ));
    for f in [&tarball, &config] {
        if !f.exists() {
            bail!(
                "{} is missing from Debian's packages {version} (unpacked in {})",
                f.display(),
                dir.display()
            );
        }
    }
    Ok(Source {
        version,
        tarball,
        config,
    })
}

/// The settings lines of a config fragment (`CONFIG_X=...` and `# CONFIG_X is not set`):
/// comments and blank lines do not change the kernel, so they do not change its cache key.
fn fragment_settings(fragment: &str) -> String {
    fragment
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("CONFIG_") || l.starts_with("# CONFIG_"))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn hex12(digest: &[u8]) -> String {
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// A key for several files' contents (length-prefixed: no two lists share a key).
fn contents_key(parts: &[Vec<u8>]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex12(&h.finalize())
}

/// Where one source version + config fragment builds: `<cache>/<version>-<config key>/`.
pub struct BuildRoot {
    pub dir: PathBuf,
    fragment: PathBuf,
}

impl BuildRoot {
    pub fn new(cache: &Path, src: &Source, fragment: &Path) -> Result<BuildRoot> {
        let text = fs::read_to_string(fragment)
            .with_context(|| format!("cannot read the config fragment {}", fragment.display()))?;
        let key = hex12(&Sha256::digest(fragment_settings(&text)));
        Ok(BuildRoot {
            dir: cache.join(format!("{}-{key}", src.version)),
            fragment: fragment.to_path_buf(),
        })
    }

    /// The configured baseline tree (extracted and configured once).
    fn baseline_tree(&self, src: &Source) -> Result<PathBuf> {
        let tree = self.dir.join("baseline");
        if tree.join(".configured").exists() {
            return Ok(tree);
        }
        eprintln!(
            "xtask ab: unpacking {} into {}",
            src.tarball.display(),
            tree.display()
        );
        let _ = fs::remove_dir_all(&tree);
        fs::create_dir_all(&tree)?;
        run(Command::new("tar")
            .arg("-xJf")
            .arg(&src.tarball)
            .arg("--strip-components=1")
            .arg("-C")
            .arg(&tree))
        .context("cannot unpack the kernel source")?;
        let config = Command::new("xz")
            .arg("-dc")
            .arg(&src.config)
            .stderr(Stdio::inherit())
            .output()
            .context("cannot run xz")?;
        if !config.status.success() {
            bail!("cannot decompress {}", src.config.display());
        }
        fs::write(tree.join(".config"), config.stdout)?;
        run(Command::new("scripts/kconfig/merge_config.sh")
            .current_dir(&tree)
            .args(["-m", ".config"])
            .arg(&self.fragment)
            .stdout(Stdio::null()))
        .context("merge_config.sh failed")?;
        run(Command::new("make")
            .current_dir(&tree)
            .arg("olddefconfig")
            .stdout(Stdio::null()))?;
        check_fragment_applied(&tree, &fs::read_to_string(&self.fragment)?)?;
        // `uname -r` tells the kernels apart in every summary: 6.12.118-ab-baseline.
        fs::write(tree.join("localversion-ab"), "-ab-baseline\n")?;
        fs::write(tree.join(".configured"), "")?;
        Ok(tree)
    }

    /// The baseline kernel, built if it is not in the cache.
    pub fn baseline(&self, src: &Source, jobs: u32) -> Result<Built> {
        let tree = self.baseline_tree(src)?;
        build(&tree, "baseline", jobs)
    }

    /// A kernel with `patches` applied to a copy of the built baseline tree.
    pub fn patched(
        &self,
        src: &Source,
        name: &str,
        patches: &[PathBuf],
        jobs: u32,
    ) -> Result<Built> {
        let mut parts: Vec<Vec<u8>> = Vec::new();
        for p in patches {
            parts.push(
                fs::read(p).with_context(|| format!("cannot read the patch {}", p.display()))?,
            );
        }
        let tree = self.dir.join(format!("{name}-{}", contents_key(&parts)));
        if !tree.join(".patched").exists() {
            // The copy must start from a built tree: its objects are what makes the patched
            // build incremental.
            self.baseline(src, jobs)?;
            let tmp = self.dir.join(format!(".{name}.tmp"));
            let _ = fs::remove_dir_all(&tmp);
            eprintln!("xtask ab: copying the built baseline tree for {name}");
            run(Command::new("cp")
                .arg("-a")
                .arg(self.dir.join("baseline"))
                .arg(&tmp))?;
            for p in patches {
                let out = Command::new("patch")
                    .current_dir(&tmp)
                    .args(["-p1", "--forward", "--batch", "-i"])
                    .arg(p)
                    .output()
                    .context("cannot run patch")?;
                if !out.status.success() {
                    bail!(
                        "{} does not apply to Debian's {}: {} {}",
                        p.display(),
                        src.version,
                        String::from_utf8_lossy(&out.stdout).trim(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
            }
            fs::write(tmp.join("localversion-ab"), format!("-ab-{name}\n"))?;
            let _ = fs::remove_file(tmp.join(".built"));
            fs::write(tmp.join(".patched"), "")?;
            let _ = fs::remove_dir_all(&tree);
            fs::rename(&tmp, &tree)?;
        }
        build(&tree, name, jobs)
    }
}

/// A settings line of the fragment that `olddefconfig` dropped (a dependency not met) would
/// silently build another kernel than the one asked for.
fn check_fragment_applied(tree: &Path, fragment: &str) -> Result<()> {
    let config = fs::read_to_string(tree.join(".config"))?;
    let lines: Vec<&str> = config.lines().collect();
    for want in fragment_settings(fragment).lines() {
        if !lines.contains(&want) {
            let name = want
                .trim_start_matches("# ")
                .split(['=', ' '])
                .next()
                .unwrap_or(want);
            let got = lines
                .iter()
                .find(|l| l.contains(&format!("{name}=")) || l.contains(&format!("{name} is")))
                .copied()
                .unwrap_or("absent");
            bail!(
                "the kernel config did not take `{want}` (it has `{got}`): a dependency of it is \
                 not met; fix the fragment"
            );
        }
    }
    Ok(())
}

/// A kernel image the guest can boot.
pub struct Built {
    pub kernel: Kernel,
    /// Seconds spent building it in this run (0 when it came from the cache).
    pub build_s: f64,
}

/// `make bzImage` in `tree` unless it was built already; the guest's module tree (built-in
/// modules only) beside the image.
fn build(tree: &Path, name: &str, jobs: u32) -> Result<Built> {
    let started = Instant::now();
    let stamp = tree.join(".built");
    let mut build_s = 0.0;
    if !stamp.exists() {
        let log = tree.join("build.log");
        eprintln!(
            "xtask ab: building the {name} kernel (make -j{jobs} bzImage; log in {})",
            log.display()
        );
        let out = fs::File::create(&log)?;
        let status = Command::new("make")
            .current_dir(tree)
            .arg(format!("-j{jobs}"))
            .arg("bzImage")
            .stdout(out.try_clone()?)
            .stderr(out)
            .status()
            .context("cannot run make")?;
        if !status.success() {
            bail!(
                "building the {name} kernel failed ({status}); the end of {}:\n{}",
                log.display(),
                crate::vm::guest::tail(&log, 25)
            );
        }
        fs::write(&stamp, "")?;
        build_s = started.elapsed().as_secs_f64();
        eprintln!("xtask ab: {name} kernel built in {build_s:.0} s");
    }
    let release = fs::read_to_string(tree.join("include/config/kernel.release"))
        .context("the built tree has no include/config/kernel.release")?
        .trim()
        .to_string();
    // The guest's /init loads modules from lib/modules/<release>; everything it needs is
    // built in, which modules.builtin (written with vmlinux.o) says.
    let modules = tree.join("ab-modules/lib/modules").join(&release);
    if !modules.join("modules.dep").exists() {
        fs::create_dir_all(&modules)?;
        fs::copy(
            tree.join("modules.builtin"),
            modules.join("modules.builtin"),
        )
        .context("the built tree has no modules.builtin")?;
        fs::write(modules.join("modules.order"), "")?;
        fs::write(modules.join("modules.dep"), "")?;
    }
    Ok(Built {
        kernel: Kernel {
            label: name.to_string(),
            arch: crate::arch::Arch::Amd64,
            version: String::new(),
            abi: release,
            vmlinuz: tree.join("arch/x86/boot/bzImage"),
            modules,
            packages: vec![],
        },
        build_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_key_follows_settings_not_comments() {
        let a = "# why\nCONFIG_A=y\n\n# CONFIG_B is not set\n";
        let b = "# another reason\nCONFIG_A=y\n# CONFIG_B is not set\n";
        let c = "CONFIG_A=y\n";
        let key = |f: &str| hex12(&Sha256::digest(fragment_settings(f)));
        assert_eq!(key(a), key(b));
        assert_ne!(key(a), key(c));
        assert_eq!(key(a).len(), 12);
        let parts = |a: &str, b: &str| contents_key(&[a.into(), b.into()]);
        assert_ne!(parts("ab", "c"), parts("a", "bc"));
    }

    #[test]
    fn a_dropped_setting_is_named() {
        let dir = std::env::temp_dir().join(format!("ab-kbuild-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(".config"), "CONFIG_A=y\nCONFIG_B=m\n").unwrap();
        assert!(check_fragment_applied(&dir, "CONFIG_A=y\n").is_ok());
        let e = check_fragment_applied(&dir, "# c\nCONFIG_B=y\n").unwrap_err();
        assert!(
            e.to_string().contains("`CONFIG_B=y` (it has `CONFIG_B=m`)"),
            "{e}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
