//! Transparent huge pages for the `thp` workload: which folio sizes `MADV_HUGEPAGE` memory may
//! get on this kernel (the workload does not change the kernel's settings), read from sysfs.

use std::{fs, path::Path};

use crate::error::BadInput;

pub const THP_DIR: &str = "/sys/kernel/mm/transparent_hugepage";

/// The large folio sizes an `MADV_HUGEPAGE` region may be faulted in with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThpSizes {
    /// PMD size (`hpage_pmd_size`): the alignment the workload gives its mapping.
    pub pmd_bytes: u64,
    /// Allowed sizes in KiB, largest first (the kernel tries the largest that fits first).
    pub sizes_kb: Vec<u64>,
}

/// The value in brackets of a sysfs choice file: `always [madvise] never` → `madvise`.
fn selected(text: &str) -> Option<&str> {
    let start = text.find('[')? + 1;
    let end = start + text[start..].find(']')?;
    Some(&text[start..end])
}

fn read_choice(path: &Path) -> Option<String> {
    fs::read_to_string(path)
        .ok()
        .and_then(|t| selected(&t).map(str::to_string))
}

/// What `MADV_HUGEPAGE` gets under `root` (normally [`THP_DIR`]), or why it gets nothing.
///
/// The top-level `enabled` covers the PMD size on kernels without per-size controls (before
/// 6.8); with them (`hugepages-<N>kB/enabled`), a size is allowed when its own control says
/// `always` or `madvise`, or says `inherit` and the top-level one allows madvised memory.
pub fn madvise_sizes(root: &Path) -> Result<ThpSizes, BadInput> {
    let Some(top) = read_choice(&root.join("enabled")) else {
        return Err(BadInput(format!(
            "this kernel has no transparent huge pages ({} is missing: CONFIG_TRANSPARENT_HUGEPAGE \
             is off), so the thp workload cannot run; use --workload anon",
            root.join("enabled").display()
        )));
    };
    let pmd_bytes = fs::read_to_string(root.join("hpage_pmd_size"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(2 << 20);
    let top_allows = top == "always" || top == "madvise";
    let mut sizes_kb: Vec<u64> = Vec::new();
    let mut per_size = false;
    if let Ok(dir) = fs::read_dir(root) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(kb) = name
                .strip_prefix("hugepages-")
                .and_then(|n| n.strip_suffix("kB"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            per_size = true;
            let allowed = match read_choice(&e.path().join("enabled")).as_deref() {
                Some("always" | "madvise") => true,
                Some("inherit") => top_allows,
                _ => false,
            };
            if allowed {
                sizes_kb.push(kb);
            }
        }
    }
    if !per_size && top_allows {
        sizes_kb.push(pmd_bytes >> 10);
    }
    sizes_kb.sort_unstable_by(|a, b| b.cmp(a));
    if sizes_kb.is_empty() {
        return Err(BadInput(format!(
            "transparent huge pages are off for madvised memory ({}/enabled is [{top}]{}), so \
             the thp workload would reclaim base pages only: `echo madvise > {0}/enabled` (or \
             enable a size under {0}/hugepages-*), or use --workload anon",
            root.display(),
            if per_size {
                " and no hugepages-*/enabled allows it"
            } else {
                ""
            }
        )));
    }
    Ok(ThpSizes {
        pmd_bytes,
        sizes_kb,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory, removed when dropped.
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn tree(top: &str, sizes: &[(u64, &str)]) -> Scratch {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let d = Scratch(std::env::temp_dir().join(format!(
            "rt-thp-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )));
        fs::create_dir_all(d.path()).unwrap();
        fs::write(d.path().join("enabled"), top).unwrap();
        fs::write(d.path().join("hpage_pmd_size"), "2097152\n").unwrap();
        for (kb, v) in sizes {
            let s = d.path().join(format!("hugepages-{kb}kB"));
            fs::create_dir(&s).unwrap();
            fs::write(s.join("enabled"), v).unwrap();
        }
        d
    }

    #[test]
    fn inherit_follows_the_top_level_and_explicit_sizes_stand_alone() {
        let d = tree(
            "always [madvise] never\n",
            &[
                (2048, "always [inherit] madvise never"),
                (64, "always inherit madvise [never]"),
                (16, "always inherit [madvise] never"),
            ],
        );
        let s = madvise_sizes(d.path()).unwrap();
        assert_eq!(s.sizes_kb, vec![2048, 16]);
        assert_eq!(s.pmd_bytes, 2 << 20);
        let d = tree(
            "always madvise [never]\n",
            &[
                (2048, "always [inherit] madvise never"),
                (64, "always inherit [madvise] never"),
            ],
        );
        assert_eq!(madvise_sizes(d.path()).unwrap().sizes_kb, vec![64]);
    }

    #[test]
    fn before_per_size_controls_the_top_level_decides_the_pmd_size() {
        let d = tree("always [madvise] never\n", &[]);
        assert_eq!(madvise_sizes(d.path()).unwrap().sizes_kb, vec![2048]);
        let d = tree("always madvise [never]\n", &[]);
        let e = madvise_sizes(d.path()).unwrap_err().0;
        assert!(
            e.contains("is [never]") && e.contains("echo madvise"),
            "{e}"
        );
    }

    #[test]
    fn everything_off_or_missing_says_what_to_do() {
        let d = tree(
            "always madvise [never]\n",
            &[(2048, "always [inherit] madvise never")],
        );
        let e = madvise_sizes(d.path()).unwrap_err().0;
        assert!(e.contains("no hugepages-*/enabled allows it"), "{e}");
        let e = madvise_sizes(Path::new("/nonexistent")).unwrap_err().0;
        assert!(e.contains("CONFIG_TRANSPARENT_HUGEPAGE"), "{e}");
    }
}
