//! Debian cloud kernels for the matrix, fetched with `apt-get download` into a PRIVATE apt
//! state under the cache directory. The system's apt sources are only read (to find the
//! mirror), never changed: installing anything with a sid suite enabled would upgrade libc and
//! break the machine.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::util::capture;

/// A Debian release whose newest cloud kernel the matrix boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Release {
    /// What `--kernel` calls it.
    pub label: &'static str,
    pub suite: &'static str,
    /// Kernel updates of stable releases also land in `<suite>-security`.
    pub security: bool,
}

pub const RELEASES: &[Release] = &[
    Release {
        label: "6.1",
        suite: "bookworm",
        security: true,
    },
    Release {
        label: "6.12",
        suite: "trixie",
        security: true,
    },
    Release {
        label: "sid",
        suite: "sid",
        security: false,
    },
];

pub fn release(label: &str) -> Option<Release> {
    RELEASES.iter().copied().find(|r| r.label == label)
}

/// The metapackage that always depends on the newest cloud kernel of a suite.
const META: &str = "linux-image-cloud-amd64";
/// Keyring of the Debian archive (package debian-archive-keyring, always on Debian).
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// Package indexes younger than this are reused; older ones are refreshed so that a run picks
/// the newest kernel of each suite.
const INDEX_MAX_AGE: Duration = Duration::from_secs(6 * 3600);

/// A kernel ready to boot: image and a module tree with a generated modules.dep.
#[derive(Clone, Debug)]
pub struct Kernel {
    /// `6.1`, `6.12`, `sid`, or the path given.
    pub label: String,
    /// Debian package version, e.g. `6.12.118-1` (empty for a local kernel without packages).
    pub version: String,
    /// `uname -r` of the kernel, e.g. `6.12.118+deb13-cloud-amd64`.
    pub abi: String,
    pub vmlinuz: PathBuf,
    /// `lib/modules/<abi>` (with modules.dep).
    pub modules: PathBuf,
    /// The packages it came from.
    pub packages: Vec<String>,
}

/// Where Debian is mirrored, as configured for this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirrors {
    pub debian: String,
    pub security: Option<String>,
}

/// One `deb` source: URI and suites.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Source {
    uri: String,
    suites: Vec<String>,
}

/// Sources from deb822 `.sources` text.
fn parse_deb822(text: &str) -> Vec<Source> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut fields: HashMap<String, String> = HashMap::new();
        for line in stanza.lines() {
            if line.starts_with('#') || line.starts_with(' ') {
                continue;
            }
            if let Some((k, v)) = line.split_once(':') {
                fields.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let is_deb = fields
            .get("types")
            .is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
        let enabled = fields.get("enabled").is_none_or(|e| e != "no");
        if let (true, true, Some(uris), Some(suites)) =
            (is_deb, enabled, fields.get("uris"), fields.get("suites"))
        {
            for uri in uris.split_whitespace() {
                out.push(Source {
                    uri: uri.to_string(),
                    suites: suites.split_whitespace().map(String::from).collect(),
                });
            }
        }
    }
    out
}

/// Sources from one-line `.list` text (`deb [opts] URI SUITE COMPONENTS...`).
fn parse_one_line(text: &str) -> Vec<Source> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("deb ") else {
            continue;
        };
        let rest = match rest.trim_start().strip_prefix('[') {
            Some(r) => r.split_once(']').map_or("", |(_, r)| r),
            None => rest,
        };
        let mut it = rest.split_whitespace();
        if let (Some(uri), Some(suite)) = (it.next(), it.next()) {
            out.push(Source {
                uri: uri.to_string(),
                suites: vec![suite.to_string()],
            });
        }
    }
    out
}

const DEBIAN_SUITES: &[&str] = &[
    "buster",
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "duke",
    "sid",
    "oldstable",
    "stable",
    "testing",
    "unstable",
];

/// The Debian archive and security mirrors among `sources`.
fn pick_mirrors(sources: &[Source]) -> Option<Mirrors> {
    let base = |s: &str| s.split('-').next().unwrap_or(s).to_string();
    let is_debian = |s: &Source| s.suites.iter().any(|x| DEBIAN_SUITES.contains(&&*base(x)));
    let debian = sources
        .iter()
        .filter(|s| is_debian(s))
        .find(|s| s.suites.iter().any(|x| !x.ends_with("-security")))?
        .uri
        .trim_end_matches('/')
        .to_string();
    let security = sources
        .iter()
        .filter(|s| is_debian(s))
        .find(|s| s.suites.iter().any(|x| x.ends_with("-security")))
        .map(|s| s.uri.trim_end_matches('/').to_string());
    Some(Mirrors { debian, security })
}

/// The mirrors configured in /etc/apt (read only).
pub fn mirrors() -> Result<Mirrors> {
    let mut sources = Vec::new();
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(rd) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    for f in &files {
        let Ok(text) = fs::read_to_string(f) else {
            continue;
        };
        match f.extension().and_then(|e| e.to_str()) {
            Some("sources") => sources.extend(parse_deb822(&text)),
            Some("list") | None => sources.extend(parse_one_line(&text)),
            _ => {}
        }
    }
    pick_mirrors(&sources).ok_or_else(|| {
        anyhow!(
            "no Debian mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d/*.sources: \
             the kernel matrix downloads Debian's cloud kernels from the mirror this machine uses"
        )
    })
}

/// A private apt state for one suite: its own sources, lists, cache and (empty) dpkg status,
/// so that neither the system's sources nor its installed packages play any part.
struct AptState {
    dir: PathBuf,
}

impl AptState {
    fn new(cache: &Path, r: Release, m: &Mirrors) -> Result<AptState> {
        let dir = cache.join("apt").join(r.suite);
        for sub in ["lists/partial", "cache/archives/partial", "parts", "debs"] {
            fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("cannot create {}", dir.join(sub).display()))?;
        }
        let mut list = format!("deb [signed-by={KEYRING}] {} {} main\n", m.debian, r.suite);
        if let (true, Some(sec)) = (r.security, &m.security) {
            list.push_str(&format!(
                "deb [signed-by={KEYRING}] {sec} {}-security main\n",
                r.suite
            ));
        }
        fs::write(dir.join("sources.list"), list)?;
        if !dir.join("status").exists() {
            fs::write(dir.join("status"), "")?;
        }
        Ok(AptState { dir })
    }

    fn options(&self) -> Vec<String> {
        let d = |p: &str| self.dir.join(p).display().to_string();
        [
            format!("Dir::State::Lists={}", d("lists")),
            format!("Dir::State::status={}", d("status")),
            format!("Dir::Etc::SourceList={}", d("sources.list")),
            format!("Dir::Etc::SourceParts={}", d("parts")),
            format!("Dir::Cache={}", d("cache")),
            "APT::Architectures=amd64".into(),
            "Acquire::Languages=none".into(),
            // The files are ours (root); apt's unprivileged download user could not write them.
            "APT::Sandbox::User=root".into(),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_string(), o])
        .collect()
    }

    fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new(prog);
        c.args(self.options()).current_dir(self.dir.join("debs"));
        c
    }

    fn output(&self, prog: &str, args: &[&str]) -> Result<String> {
        let mut c = self.cmd(prog);
        c.args(args);
        let o = capture(&mut c)?.ok_or_else(|| anyhow!("{prog} is not installed"))?;
        if !o.status.success() {
            bail!(
                "`{prog} {}` failed ({}): {}",
                args.join(" "),
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    fn index_age(&self) -> Option<Duration> {
        let stamp = self.dir.join("updated");
        let t = fs::metadata(stamp).ok()?.modified().ok()?;
        SystemTime::now().duration_since(t).ok()
    }

    fn update(&self, suite: &str) -> Result<()> {
        if self.index_age().is_some_and(|a| a < INDEX_MAX_AGE) {
            return Ok(());
        }
        eprintln!("xtask vm: refreshing the package index of {suite} (private apt state)");
        self.output("apt-get", &["update", "-q"]).with_context(|| {
            format!("cannot read the package index of Debian {suite} from the configured mirror")
        })?;
        fs::write(self.dir.join("updated"), "")?;
        Ok(())
    }
}

/// `Candidate:` of `apt-cache policy`.
fn parse_candidate(policy: &str) -> Option<String> {
    policy
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(|v| v.trim().to_string())
        .filter(|v| v != "(none)")
}

/// (package, version constraint `= V` if any) of the `Depends:` of the first record.
fn parse_depends(show: &str) -> Vec<(String, Option<String>)> {
    let record = show.split("\n\n").next().unwrap_or("");
    let mut out = Vec::new();
    for field in ["Depends:", "Pre-Depends:"] {
        let Some(line) = record.lines().find_map(|l| l.strip_prefix(field)) else {
            continue;
        };
        for alt in line.split([',', '|']) {
            let alt = alt.trim();
            let name = alt
                .split([' ', '('])
                .next()
                .unwrap_or("")
                .trim_end_matches(":any");
            let version = alt
                .split_once("(=")
                .and_then(|(_, v)| v.split_once(')'))
                .map(|(v, _)| v.trim().to_string());
            if !name.is_empty() {
                out.push((name.to_string(), version));
            }
        }
    }
    out
}

/// The newest cloud kernel of `r`: downloaded (once), unpacked (once), modules.dep generated.
pub fn fetch(cache: &Path, r: Release) -> Result<Kernel> {
    let m = mirrors()?;
    let apt = AptState::new(cache, r, &m)?;
    apt.update(r.suite)?;
    let policy = apt.output("apt-cache", &["policy", META])?;
    let version = parse_candidate(&policy).ok_or_else(|| {
        anyhow!(
            "Debian {} has no {META} on {} (apt-cache policy: {})",
            r.suite,
            m.debian,
            policy.trim()
        )
    })?;
    let meta = apt.output("apt-cache", &["show", &format!("{META}={version}")])?;
    let image = parse_depends(&meta)
        .into_iter()
        .map(|(n, _)| n)
        .find(|n| n.starts_with("linux-image-") && n != META)
        .ok_or_else(|| {
            anyhow!(
                "{META} {version} of {} depends on no linux-image-*",
                r.suite
            )
        })?;
    let abi = image.trim_start_matches("linux-image-").to_string();
    // The image package holds the kernel and modules up to 6.12; newer ones split them into
    // linux-binary-<abi> (vmlinuz), linux-modules-<abi> and linux-base-<abi> (seen on 7.2).
    let mut want: BTreeMap<String, String> = BTreeMap::new();
    let mut todo = vec![(image.clone(), version.clone())];
    while let Some((pkg, ver)) = todo.pop() {
        if want.contains_key(&pkg) {
            continue;
        }
        let show = apt.output("apt-cache", &["show", &format!("{pkg}={ver}")])?;
        for (dep, dver) in parse_depends(&show) {
            if dep.contains(&abi) && !want.contains_key(&dep) {
                todo.push((dep, dver.unwrap_or_else(|| ver.clone())));
            }
        }
        want.insert(pkg, ver);
    }
    let debs = apt.dir.join("debs");
    let cached = |pkg: &str, ver: &str| debs.join(format!("{pkg}_{ver}_amd64.deb"));
    let missing: Vec<String> = want
        .iter()
        .filter(|(p, v)| !cached(p, v).exists())
        .map(|(p, v)| format!("{p}={v}"))
        .collect();
    if !missing.is_empty() {
        eprintln!("xtask vm: downloading {}", missing.join(" "));
        let args: Vec<&str> = std::iter::once("download")
            .chain(missing.iter().map(String::as_str))
            .collect();
        apt.output("apt-get", &args)
            .with_context(|| format!("cannot download the {} kernel", r.label))?;
    }
    let files: Vec<PathBuf> = want.iter().map(|(p, v)| cached(p, v)).collect();
    for f in &files {
        if !f.exists() {
            bail!(
                "apt-get download did not produce {} (named differently?)",
                f.display()
            );
        }
    }
    let root = cache.join("kernels").join(format!("{abi}_{version}"));
    let mut k = unpack(&root, &files, &abi)?;
    k.label = r.label.to_string();
    k.version = version;
    k.packages = want.iter().map(|(p, v)| format!("{p}={v}")).collect();
    Ok(k)
}

/// A kernel from a local folder: either `.deb` files (image/binary/modules/base), or an
/// unpacked tree with `boot/vmlinuz-*` or `lib/modules/<abi>/vmlinuz`.
pub fn local(cache: &Path, path: &Path) -> Result<Kernel> {
    let debs: Vec<PathBuf> = fs::read_dir(path)
        .with_context(|| format!("cannot list {}", path.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    let (root, files) = if debs.is_empty() {
        (path.to_path_buf(), vec![])
    } else {
        let name = path.canonicalize()?.display().to_string().replace('/', "_");
        (cache.join("kernels").join(format!("local{name}")), debs)
    };
    if !files.is_empty() {
        extract(&root, &files)?;
    }
    let abi = find_abi(&root)?;
    let mut k = unpack(&root, &[], &abi)?;
    k.label = path.display().to_string();
    Ok(k)
}

fn find_abi(root: &Path) -> Result<String> {
    for dir in ["lib/modules", "usr/lib/modules"] {
        if let Ok(rd) = fs::read_dir(root.join(dir)) {
            for e in rd.flatten() {
                if e.path().join("modules.order").exists() || e.path().join("kernel").exists() {
                    return Ok(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
    }
    bail!(
        "{} holds no lib/modules/<version> tree: pass a folder with the kernel's .deb files \
         (linux-image-*, or linux-binary-* + linux-modules-* + linux-base-*)",
        root.display()
    )
}

fn extract(root: &Path, debs: &[PathBuf]) -> Result<()> {
    let stamp = root.join(".unpacked");
    if stamp.exists() {
        return Ok(());
    }
    let _ = fs::remove_dir_all(root);
    fs::create_dir_all(root)?;
    for d in debs {
        crate::util::run(Command::new("dpkg-deb").arg("-x").arg(d).arg(root))
            .with_context(|| format!("cannot unpack {}", d.display()))?;
    }
    fs::write(stamp, "")?;
    Ok(())
}

/// Unpack (once) and generate modules.dep with depmod: the packages leave that to their
/// postinst, so it is not in them.
fn unpack(root: &Path, debs: &[PathBuf], abi: &str) -> Result<Kernel> {
    if !debs.is_empty() {
        extract(root, debs)?;
    }
    // usr-merged packages (6.12+) install to usr/lib/modules; depmod -b looks in lib/modules.
    let modules = if root.join("lib/modules").join(abi).exists() {
        root.join("lib/modules").join(abi)
    } else if root.join("usr/lib/modules").join(abi).exists() {
        if !root.join("lib").exists() {
            std::os::unix::fs::symlink("usr/lib", root.join("lib"))?;
        }
        root.join("lib/modules").join(abi)
    } else {
        bail!("no lib/modules/{abi} in {}", root.display());
    };
    let vmlinuz = [
        root.join("boot").join(format!("vmlinuz-{abi}")),
        modules.join("vmlinuz"),
    ]
    .into_iter()
    .find(|p| p.exists())
    .ok_or_else(|| anyhow!("no vmlinuz for {abi} under {}", root.display()))?;
    if !modules.join("modules.dep").exists() {
        crate::util::run(Command::new("depmod").arg("-b").arg(root).arg(abi))
            .with_context(|| format!("depmod for {abi} failed"))?;
    }
    Ok(Kernel {
        label: String::new(),
        version: String::new(),
        abi: abi.to_string(),
        vmlinuz,
        modules,
        packages: vec![],
    })
}

/// modules.dep and modules.builtin of one kernel.
#[derive(Debug, Default)]
pub struct ModuleIndex {
    /// name → (path relative to the module dir, dependency names)
    deps: HashMap<String, (String, Vec<String>)>,
    builtin: HashSet<String>,
}

/// `zram`, from `kernel/drivers/block/zram/zram.ko.xz`; `-` and `_` are the same to the kernel.
pub fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let base = base.split(".ko").next().unwrap_or(base);
    base.replace('-', "_")
}

impl ModuleIndex {
    pub fn load(dir: &Path) -> Result<ModuleIndex> {
        let dep = fs::read_to_string(dir.join("modules.dep"))
            .with_context(|| format!("cannot read {}/modules.dep", dir.display()))?;
        let builtin = fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default();
        Ok(ModuleIndex::parse(&dep, &builtin))
    }

    pub fn parse(dep: &str, builtin: &str) -> ModuleIndex {
        let mut idx = ModuleIndex::default();
        for line in dep.lines() {
            let Some((m, deps)) = line.split_once(':') else {
                continue;
            };
            idx.deps.insert(
                module_name(m),
                (
                    m.trim().to_string(),
                    deps.split_whitespace().map(module_name).collect(),
                ),
            );
        }
        idx.builtin = builtin.lines().map(module_name).collect();
        idx
    }

    /// Module files to insert, dependencies first. `required` must exist (as a module or
    /// built in); `optional` are taken when they are modules.
    pub fn load_order(&self, required: &[&str], optional: &[&str]) -> Result<Vec<String>> {
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        for (name, must) in required
            .iter()
            .map(|n| (n, true))
            .chain(optional.iter().map(|n| (n, false)))
        {
            let name = name.replace('-', "_");
            if self.deps.contains_key(&name) {
                self.visit(&name, &mut seen, &mut order, 0)?;
            } else if must && !self.builtin.contains(&name) {
                bail!("module {name} is neither in modules.dep nor built in");
            }
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<String>,
        depth: u32,
    ) -> Result<()> {
        if depth > 64 {
            bail!("module dependencies of {name} are circular");
        }
        if seen.contains(name) {
            return Ok(());
        }
        let (path, deps) = self
            .deps
            .get(name)
            .ok_or_else(|| anyhow!("modules.dep names {name} but has no entry for it"))?;
        for d in deps {
            self.visit(d, seen, order, depth + 1)?;
        }
        seen.insert(name.to_string());
        order.push(path.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_from_deb822_and_one_line() {
        let s = parse_deb822(
            "Types: deb\n# comment\nURIs: http://deb.debian.org/debian\nSuites: bookworm \
             bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: \
             http://deb.debian.org/debian-security\nSuites: bookworm-security\n\nTypes: deb\n\
             URIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\n",
        );
        assert_eq!(
            pick_mirrors(&s),
            Some(Mirrors {
                debian: "http://deb.debian.org/debian".into(),
                security: Some("http://deb.debian.org/debian-security".into()),
            })
        );
        let s = parse_one_line(
            "deb [arch=amd64] http://mirror.example/debian/ trixie main\n\
             deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n",
        );
        assert_eq!(
            pick_mirrors(&s).map(|m| m.debian),
            Some("http://mirror.example/debian".into())
        );
    }

    #[test]
    fn candidate_and_depends() {
        assert_eq!(
            parse_candidate(
                "linux-image-cloud-amd64:\n  Installed: (none)\n  Candidate: 7.2.13-1\n"
            ),
            Some("7.2.13-1".into())
        );
        assert_eq!(parse_candidate("x:\n  Candidate: (none)\n"), None);
        let d = parse_depends(
            "Package: linux-image-7.2.13+deb14-cloud-amd64\nDepends: dracut | initramfs-tools \
             (>= 0.120+deb8u2), linux-binary-7.2.13+deb14-cloud-amd64 (= 7.2.13-1)\n\
             Pre-Depends: linux-base (>= 4.17~)\n\nPackage: other\nDepends: nope\n",
        );
        assert!(d.contains(&(
            "linux-binary-7.2.13+deb14-cloud-amd64".into(),
            Some("7.2.13-1".into())
        )));
        assert!(d.contains(&("initramfs-tools".into(), None)));
        assert!(!d.iter().any(|(n, _)| n == "nope"));
    }

    #[test]
    fn module_load_order_puts_dependencies_first() {
        let idx = ModuleIndex::parse(
            "kernel/drivers/block/zram/zram.ko.xz: kernel/lib/lz4/lz4hc_compress.ko.xz \
             kernel/mm/zsmalloc.ko.xz\nkernel/lib/lz4/lz4hc_compress.ko.xz:\n\
             kernel/mm/zsmalloc.ko.xz:\nkernel/crypto/lzo-rle.ko:\n",
            "kernel/fs/ext4/ext4.ko\n",
        );
        let o = idx
            .load_order(&["zram", "ext4"], &["lzo_rle", "lz4"])
            .unwrap();
        assert_eq!(
            o,
            vec![
                "kernel/lib/lz4/lz4hc_compress.ko.xz",
                "kernel/mm/zsmalloc.ko.xz",
                "kernel/drivers/block/zram/zram.ko.xz",
                "kernel/crypto/lzo-rle.ko",
            ]
        );
        assert!(idx.load_order(&["virtio_blk"], &[]).is_err());
    }
}
