//! `reclaim-trace top`: check the arguments and the terminal, then run the dashboard.

use std::{
    io::IsTerminal as _,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result};

use crate::{
    cli::TopArgs,
    error::BadInput,
    tui::{
        model::Filter,
        run::{self, TopOptions},
    },
    workload::cgroup::MemoryHierarchy,
};

const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// `--cgroup` as a path below the memory controller's mount (`/a/b`, `/` for the root).
pub fn resolve_cgroup(arg: &Path, mount: &Path) -> Result<String> {
    let mount = mount
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", mount.display()))?;
    let full = if arg.starts_with(&mount) {
        arg.to_path_buf()
    } else {
        mount.join(arg.strip_prefix("/").unwrap_or(arg))
    };
    let not_found = || {
        BadInput(format!(
            "memory cgroup {} not found (looked for the directory {}): pass a path below {} \
             such as /system.slice, or a full path under it",
            arg.display(),
            full.display(),
            mount.display()
        ))
    };
    let canon = full.canonicalize().map_err(|_| not_found())?;
    if !canon.is_dir() {
        return Err(not_found().into());
    }
    let rel = canon.strip_prefix(&mount).map_err(|_| not_found())?;
    Ok(format!("/{}", rel.display()))
}

pub async fn run(args: TopArgs) -> Result<()> {
    if args.interval < MIN_INTERVAL {
        return Err(BadInput(format!(
            "--interval {:?} is too short: use at least 100ms (each refresh reads every \
             per-CPU map)",
            args.interval
        ))
        .into());
    }
    let cgroup = match &args.cgroup {
        Some(p) => Some(resolve_cgroup(p, &MemoryHierarchy::detect()?.mount)?),
        None => None,
    };
    let export_dir = match args.export_dir {
        Some(d) => d,
        None => PathBuf::from("."),
    };
    let export_dir = std::path::absolute(&export_dir).map_err(|e| {
        BadInput(format!(
            "--export-dir {}: {e}; pass an existing directory",
            export_dir.display()
        ))
    })?;
    if !export_dir.is_dir() {
        return Err(BadInput(format!(
            "--export-dir {} is not a directory; create it or pass another",
            export_dir.display()
        ))
        .into());
    }
    // The arguments first (each error names one), then the environment.
    if !std::io::stdout().is_terminal() {
        return Err(BadInput(
            "`reclaim-trace top` draws a live dashboard and needs a terminal, but stdout is not \
             one: use `reclaim-trace summary` (or `record`) for output you can redirect"
                .into(),
        )
        .into());
    }
    run::run(TopOptions {
        session: super::session_options(&args.session, true),
        interval: args.interval,
        filter: Filter {
            cgroup,
            pid: args.pid,
        },
        export_dir,
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_paths_resolve_relative_or_full_and_unknown_ones_are_usage_errors() {
        let mount = std::env::temp_dir().join(format!("rt-top-cg-{}", std::process::id()));
        std::fs::create_dir_all(mount.join("app/worker")).unwrap();
        let m = mount.canonicalize().unwrap();
        assert_eq!(resolve_cgroup(Path::new("/app"), &mount).unwrap(), "/app");
        assert_eq!(
            resolve_cgroup(Path::new("app/worker/"), &mount).unwrap(),
            "/app/worker"
        );
        assert_eq!(resolve_cgroup(&m.join("app"), &mount).unwrap(), "/app");
        assert_eq!(resolve_cgroup(Path::new("/"), &mount).unwrap(), "/");
        let e = resolve_cgroup(Path::new("/nope"), &mount).unwrap_err();
        assert_eq!(crate::error::exit_code(&e), 2);
        assert!(
            e.to_string().contains("memory cgroup /nope not found"),
            "{e}"
        );
        let e = resolve_cgroup(Path::new("/app/../.."), &mount).unwrap_err();
        assert_eq!(crate::error::exit_code(&e), 2, "{e}");
        std::fs::remove_dir_all(&mount).unwrap();
    }
}
