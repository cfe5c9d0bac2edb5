//! Memory cgroups (v2 `memory.max`, or v1 `memory.limit_in_bytes`) for the built-in workload.

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

/// Where the memory controller lives on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryHierarchy {
    pub version: u32,
    pub mount: PathBuf,
}

impl MemoryHierarchy {
    /// Find the memory controller: cgroup v2 if its root offers `memory`, else a v1 hierarchy
    /// mounted with the `memory` option.
    pub fn detect() -> Result<MemoryHierarchy> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")
            .context("cannot read /proc/self/mountinfo")?;
        Self::from_mountinfo(&mountinfo, |p| fs::read_to_string(p).ok()).ok_or_else(|| {
            anyhow::anyhow!(
                "no memory cgroup controller is mounted: mount cgroup v2 \
                 (`mount -t cgroup2 none /sys/fs/cgroup`) or a v1 memory hierarchy \
                 (`mount -t cgroup -o memory none /sys/fs/cgroup/memory`)"
            )
        })
    }

    /// Pure part of `detect`: `read` returns a file's contents (for `cgroup.controllers`).
    pub fn from_mountinfo(
        mountinfo: &str,
        read: impl Fn(&Path) -> Option<String>,
    ) -> Option<MemoryHierarchy> {
        let mut v1 = None;
        for line in mountinfo.lines() {
            // id parent maj:min root mountpoint opts [optional...] - fstype source superopts
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let l: Vec<&str> = left.split_whitespace().collect();
            let r: Vec<&str> = right.split_whitespace().collect();
            let (Some(mount), Some(fstype)) = (l.get(4), r.first()) else {
                continue;
            };
            let mount = PathBuf::from(unescape(mount));
            match *fstype {
                "cgroup2" => {
                    let ctrls = read(&mount.join("cgroup.controllers")).unwrap_or_default();
                    if ctrls.split_whitespace().any(|c| c == "memory") {
                        return Some(MemoryHierarchy { version: 2, mount });
                    }
                }
                "cgroup" => {
                    let opts = r.get(2).copied().unwrap_or("");
                    if opts.split(',').any(|o| o == "memory") && v1.is_none() {
                        v1 = Some(MemoryHierarchy { version: 1, mount });
                    }
                }
                _ => {}
            }
        }
        v1
    }

    /// Map cgroup ids (kernfs ids = directory inode numbers) to paths below the mount.
    pub fn paths_by_id(&self, max_depth: usize) -> BTreeMap<u64, String> {
        let mut out = BTreeMap::new();
        let mut stack = vec![(self.mount.clone(), 0usize)];
        while let Some((dir, depth)) = stack.pop() {
            let Ok(meta) = fs::metadata(&dir) else {
                continue;
            };
            let rel = dir.strip_prefix(&self.mount).unwrap_or(Path::new(""));
            out.insert(meta.ino(), format!("/{}", rel.display()));
            if depth >= max_depth {
                continue;
            }
            if let Ok(rd) = fs::read_dir(&dir) {
                for e in rd.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push((e.path(), depth + 1));
                    }
                }
            }
        }
        out
    }
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\134", "\\")
}

/// A memory cgroup this process created; removed on drop.
#[derive(Debug)]
pub struct Cgroup {
    pub path: PathBuf,
    pub version: u32,
    removed: bool,
}

impl Cgroup {
    /// Create `name` under the hierarchy's root with a memory limit (and unlimited swap).
    pub fn create(h: &MemoryHierarchy, name: &str, limit: u64) -> Result<Cgroup> {
        if h.version == 2 {
            let ctl = h.mount.join("cgroup.subtree_control");
            let cur = fs::read_to_string(&ctl).unwrap_or_default();
            if !cur.split_whitespace().any(|c| c == "memory") {
                fs::write(&ctl, "+memory").with_context(|| {
                    format!("cannot enable the memory controller in {}", ctl.display())
                })?;
            }
        }
        let path = h.mount.join(name);
        fs::create_dir(&path)
            .with_context(|| format!("cannot create memory cgroup {}", path.display()))?;
        let cg = Cgroup {
            path,
            version: h.version,
            removed: false,
        };
        if h.version == 2 {
            cg.write("memory.max", &limit.to_string())?;
            // Let the group swap freely: reclaim, not the swap limit, is what we measure.
            let _ = cg.write("memory.swap.max", "max");
        } else {
            cg.write("memory.limit_in_bytes", &limit.to_string())?;
        }
        Ok(cg)
    }

    pub fn write(&self, file: &str, value: &str) -> Result<()> {
        let p = self.path.join(file);
        fs::write(&p, value).with_context(|| format!("cannot write `{value}` to {}", p.display()))
    }

    /// The file a pid is written to to join the group.
    pub fn procs_file(&self) -> PathBuf {
        self.path.join("cgroup.procs")
    }

    /// The cgroup id (kernfs id): the inode number of its directory.
    pub fn id(&self) -> Option<u64> {
        fs::metadata(&self.path).ok().map(|m| m.ino())
    }

    /// `memory.stat` as name → value.
    pub fn memory_stat(&self) -> BTreeMap<String, u64> {
        parse_kv(&fs::read_to_string(self.path.join("memory.stat")).unwrap_or_default())
    }

    /// Tasks its OOM killer killed (`oom_kill` of v2 `memory.events`, v1
    /// `memory.oom_control`); None when the file cannot be read (the group is gone).
    pub fn oom_kills(&self) -> Option<u64> {
        let file = if self.version == 2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        let text = fs::read_to_string(self.path.join(file)).ok()?;
        Some(parse_kv(&text).get("oom_kill").copied().unwrap_or(0))
    }

    /// Swap allocations that failed for the group (v2 `memory.swap.events` `fail`: swap full
    /// or at its limit); None on v1 or when the file cannot be read.
    pub fn swap_fails(&self) -> Option<u64> {
        let text = fs::read_to_string(self.path.join("memory.swap.events")).ok()?;
        Some(parse_kv(&text).get("fail").copied().unwrap_or(0))
    }

    fn pids(&self) -> Vec<i32> {
        fs::read_to_string(self.procs_file())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Kill what is left inside and remove the directory (retrying while the kernel finishes
    /// tearing down exiting tasks and uncharging their memory).
    pub fn remove(&mut self) -> Result<()> {
        if self.removed {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for pid in self.pids() {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            match fs::remove_dir(&self.path) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) if Instant::now() >= deadline => {
                    bail!(
                        "cannot remove cgroup {}: {e}; remove it by hand with `rmdir {}` once \
                         its tasks have exited",
                        self.path.display(),
                        self.path.display()
                    )
                }
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        }
        self.removed = true;
        Ok(())
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            eprintln!("reclaim-trace: {e:#}");
        }
    }
}

/// Parse `name value` lines (memory.stat, /proc/vmstat).
pub fn parse_kv(text: &str) -> BTreeMap<String, u64> {
    reclaim_trace_common::procfs::key_values(text)
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO_V1: &str = "\
24 1 0:22 / /sys rw,nosuid - sysfs sysfs rw
30 24 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
33 30 0:29 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 30 0:35 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn v1_memory_when_v2_root_has_no_memory_controller() {
        let h = MemoryHierarchy::from_mountinfo(MOUNTINFO_V1, |_| Some(String::new())).unwrap();
        assert_eq!(h.version, 1);
        assert_eq!(h.mount, PathBuf::from("/sys/fs/cgroup/memory"));
    }

    #[test]
    fn v2_preferred_when_it_offers_memory() {
        let h = MemoryHierarchy::from_mountinfo(MOUNTINFO_V1, |p| {
            (p == Path::new("/sys/fs/cgroup/unified/cgroup.controllers"))
                .then(|| "cpu io memory pids\n".to_string())
        })
        .unwrap();
        assert_eq!(h.version, 2);
        assert_eq!(h.mount, PathBuf::from("/sys/fs/cgroup/unified"));
    }

    #[test]
    fn none_without_memory_controller() {
        let mi = "24 1 0:22 / /sys rw - sysfs sysfs rw\n";
        assert_eq!(MemoryHierarchy::from_mountinfo(mi, |_| None), None);
    }

    #[test]
    fn kv_parsing_skips_junk() {
        let m = parse_kv("pgsteal 10\nnonsense\npswpout 3 extra\n");
        assert_eq!(m["pgsteal"], 10);
        assert_eq!(m["pswpout"], 3);
        assert_eq!(m.len(), 2);
    }
}
