//! Builds the eBPF programs (reclaim-trace-ebpf) with aya-build: nightly, bpfel target,
//! bpf-linker. With AYA_BUILD_SKIP=1 an empty object is written instead, so that the pure tests
//! build without the eBPF toolchain; loading then fails with a message saying how to rebuild.
//! With RECLAIM_TRACE_EBPF_LOG=0 the programs are built without aya-log (the `log` feature):
//! only to measure what logging anomalies costs the programs (docs/overhead.md).

use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let out_dir = std::path::PathBuf::from(std::env::var_os("OUT_DIR").context("OUT_DIR")?);
    let placeholder = out_dir.join("reclaim-trace");
    let skip =
        std::env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    println!("cargo:rerun-if-env-changed=RECLAIM_TRACE_EBPF_LOG");
    let no_log = std::env::var("RECLAIM_TRACE_EBPF_LOG").is_ok_and(|v| v == "0");
    if skip {
        std::fs::write(&placeholder, [])?;
        return Ok(());
    }
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "reclaim-trace-ebpf")
        .ok_or_else(|| anyhow!("reclaim-trace-ebpf package not found"))?;
    let root = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent of {}", ebpf.manifest_path))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: ebpf.name.as_str(),
            root_dir: root.as_str(),
            no_default_features: no_log,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
    .context(
        "building the eBPF programs failed; run `cargo xtask setup` (nightly rust-src and \
         bpf-linker), or set AYA_BUILD_SKIP=1 to build without them",
    )
}
