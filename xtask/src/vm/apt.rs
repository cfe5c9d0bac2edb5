//! A private apt state per Debian suite: own sources list, package lists, cache and (empty)
//! dpkg status under the cache directory, with the mirror read from the system's apt sources.
//! The system's sources are never changed: installing anything with a sid suite enabled would
//! upgrade libc and break the machine.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, Result, anyhow, bail};

use super::kernel::Release;
use crate::{arch::Arch, util::capture};

/// Keyring of the Debian archive (package debian-archive-keyring, always on Debian).
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// Package indexes younger than this are reused; older ones are refreshed so that a run picks
/// the newest kernel of each suite.
const INDEX_MAX_AGE: Duration = Duration::from_secs(6 * 3600);

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

/// A private apt state for one suite and architecture: its own sources, lists, cache and
/// (empty) dpkg status, so that neither the system's sources nor its installed packages play
/// any part.
pub struct AptState {
    pub dir: PathBuf,
    arch: Arch,
}

impl AptState {
    pub fn new(cache: &Path, r: Release, m: &Mirrors, arch: Arch) -> Result<AptState> {
        // One folder per architecture: the index's age stamp is per folder, so a shared one
        // would keep the other architecture's packages unknown for hours.
        let dir = match arch {
            Arch::Amd64 => cache.join("apt").join(r.suite),
            _ => cache.join("apt").join(format!("{}-{arch}", r.suite)),
        };
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
        Ok(AptState { dir, arch })
    }

    fn options(&self) -> Vec<String> {
        let d = |p: &str| self.dir.join(p).display().to_string();
        [
            format!("Dir::State::Lists={}", d("lists")),
            format!("Dir::State::status={}", d("status")),
            format!("Dir::Etc::SourceList={}", d("sources.list")),
            format!("Dir::Etc::SourceParts={}", d("parts")),
            format!("Dir::Cache={}", d("cache")),
            // Architecture is what `apt-get download pkg=version` fetches; Architectures
            // is what the index holds.
            format!("APT::Architecture={}", self.arch),
            format!("APT::Architectures={}", self.arch),
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

    pub fn output(&self, prog: &str, args: &[&str]) -> Result<String> {
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

    /// The `.deb` of each (package, version, architecture), downloaded into `debs/` unless it
    /// is there already.
    pub fn download(&self, who: &str, want: &[(&str, &str, &str)]) -> Result<Vec<PathBuf>> {
        let debs = self.dir.join("debs");
        // An epoch's colon is %3a in the file name apt-get writes (busybox-static 1:1.37.0).
        let file = |(p, v, a): &(&str, &str, &str)| {
            debs.join(format!("{p}_{}_{a}.deb", v.replace(':', "%3a")))
        };
        let missing: Vec<String> = want
            .iter()
            .filter(|w| !file(w).exists())
            .map(|(p, v, _)| format!("{p}={v}"))
            .collect();
        if !missing.is_empty() {
            eprintln!("xtask {who}: downloading {}", missing.join(" "));
            let mut args = vec!["download"];
            args.extend(missing.iter().map(String::as_str));
            self.output("apt-get", &args)?;
        }
        let files: Vec<PathBuf> = want.iter().map(file).collect();
        if let Some(f) = files.iter().find(|f| !f.exists()) {
            bail!(
                "apt-get download did not produce {} (named differently?)",
                f.display()
            );
        }
        Ok(files)
    }

    pub fn update(&self, suite: &str) -> Result<()> {
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
pub fn parse_candidate(policy: &str) -> Option<String> {
    policy
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(|v| v.trim().to_string())
        .filter(|v| v != "(none)")
}

/// (package, version constraint `= V` if any) of the `Depends:` of the first record.
pub fn parse_depends(show: &str) -> Vec<(String, Option<String>)> {
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
}
