//! The guest's initramfs: busybox, the tool, the kernel modules the run needs (decompressed:
//! busybox insmod hands the file to init_module as is), and an /init that reports over a
//! second channel (the serial port ttyS1 on amd64, the virtio console hvc0 on arm64).
//!
//! The tool is the static build of `cargo xtask dist` and the image holds no libc at all
//! (busybox is static too), so which glibc each guest's Debian release would have (bookworm
//! 2.36, trixie 2.41, sid 2.43) is irrelevant: the guests run the very binary a user copies to
//! a machine, nothing of this host's libraries goes with it, and `build` refuses a dynamic one.

use std::{fs, path::Path, process::Command};

use anyhow::{Context as _, Result, anyhow, bail};

use super::{kernel::Kernel, modules::ModuleIndex};
use crate::util::{capture, run};

/// Modules the runs need. zram pulls its compressors and zsmalloc through modules.dep (e.g.
/// lz4hc_compress on 7.2); virtio_blk and ext4 carry the file workload's disk.
pub const REQUIRED_MODULES: &[&str] = &["zram", "virtio_blk", "ext4"];
/// zram asks the crypto API for its default compressor by name (lzo-rle on 6.1), which would
/// need a modprobe in the guest: load the candidates up front where they are modules.
pub const OPTIONAL_MODULES: &[&str] = &["lzo_rle", "lzo", "lz4", "lz4hc", "zstd", "crc32c_generic"];

/// Markers of the report on the report device (parsed by `guest::Report`).
pub const MARK: &str = "@@rt ";

/// What /init runs.
pub struct InitPlan {
    /// Arguments of the tool's measured run.
    pub tool_args: Vec<String>,
    /// Mount /dev/vda (ext4) on /mnt for the file workload.
    pub disk: bool,
    /// Value written to /sys/kernel/mm/lru_gen/enabled before the run (`y`/`n`), if any.
    pub lru_gen: Option<&'static str>,
    /// (size in kB, value) written to /sys/kernel/mm/transparent_hugepage/hugepages-<size>kB/
    /// enabled before the run (the mthp workload: 64 kB folios only).
    pub thp_sizes: Vec<(u32, &'static str)>,
    /// Where the report goes: the second serial port (`/dev/ttyS1`) on amd64, a virtio console
    /// (`/dev/hvc0`) on arm64, whose `virt` machine has one serial port.
    pub report_dev: &'static str,
}

const THP: &str = "/sys/kernel/mm/transparent_hugepage";

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The /init script. Sections are framed by `@@rt begin NAME` / `@@rt end NAME` on the report
/// device; the console only carries the kernel log and progress.
pub fn init_script(p: &InitPlan) -> String {
    let args: Vec<String> = p.tool_args.iter().map(|a| sh_quote(a)).collect();
    let disk = if p.disk {
        "mkdir -p /mnt\nif mount -t ext4 /dev/vda /mnt; then mark disk ok; \
         else mark error 'cannot mount /dev/vda (ext4) on /mnt'; fi\n"
    } else {
        ""
    };
    let lru_gen = match p.lru_gen {
        Some(v) => format!(
            "if ! echo {v} >/sys/kernel/mm/lru_gen/enabled; then \
             mark error 'cannot set /sys/kernel/mm/lru_gen/enabled to {v}'; fi\n"
        ),
        None => String::new(),
    };
    let thp: String = p
        .thp_sizes
        .iter()
        .map(|(kb, v)| {
            format!(
                "if ! echo {v} >{THP}/hugepages-{kb}kB/enabled; then \
                 mark error 'cannot set {THP}/hugepages-{kb}kB/enabled to {v}'; fi\n"
            )
        })
        .collect();
    // The per-size swap-out counters (6.10+) go with /proc/vmstat, as mthp_swpout_<N>kB.
    let counters = format!(
        "counters() {{ cat /proc/vmstat; for d in {THP}/hugepages-*kB; do \
         [ -f $d/stats/swpout ] && echo \"mthp_swpout_${{d##*-}} $(cat $d/stats/swpout)\"; \
         done; }}\n"
    );
    format!(
        r#"#!/bin/busybox sh
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin /proc /sys /dev /tmp /run /var/tmp
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t cgroup2 cgroup2 /sys/fs/cgroup
stty -F {dev} raw -echo 2>/dev/null
exec 3>{dev}
mark() {{ echo "{MARK}$*" >&3; }}
section() {{ mark "begin $1"; cat "$2" >&3; echo >&3; mark "end $1"; }}
mark boot
for m in $(cat /etc/modules.order); do
  if ! insmod "/lib/modules/$m" >/tmp/insmod.log 2>&1; then
    mark error "insmod $m: $(cat /tmp/insmod.log)"
  fi
done
{disk}{lru_gen}{thp}{counters}uname -r >/tmp/uname; section uname /tmp/uname
cat /sys/kernel/mm/lru_gen/enabled >/tmp/lru_gen 2>/dev/null; section lru_gen /tmp/lru_gen
echo "doctor" >/dev/console
/reclaim-trace doctor >/tmp/doctor.txt 2>&1; echo "exit $?" >>/tmp/doctor.txt
section doctor /tmp/doctor.txt
echo "measured run: reclaim-trace {printed}" >/dev/console
counters >/tmp/vmstat0; cat /proc/interrupts >/tmp/interrupts0
/reclaim-trace {args} >/tmp/stdout 2>/tmp/stderr
rc=$?
counters >/tmp/vmstat1; cat /proc/interrupts >/tmp/interrupts1
mark "exit $rc"
section vmstat_before /tmp/vmstat0
section vmstat_after /tmp/vmstat1
section interrupts_before /tmp/interrupts0
section interrupts_after /tmp/interrupts1
section stdout /tmp/stdout
section stderr /tmp/stderr
[ -f /tmp/summary.json ] && section summary_json /tmp/summary.json
cat /tmp/stdout /tmp/stderr >/dev/console
mark done
sync
{settle}poweroff -f
"#,
        dev = p.report_dev,
        // A virtio console's last writes can still be in its queue when the machine powers
        // off; a serial port's are written synchronously.
        settle = if p.report_dev.contains("hvc") {
            "sleep 1\n"
        } else {
            ""
        },
        printed = p.tool_args.join(" "),
        args = args.join(" "),
    )
}

fn copy_into(staging: &Path, src: &Path, dst_abs: &Path) -> Result<()> {
    let dst = staging.join(dst_abs.strip_prefix("/").unwrap_or(dst_abs));
    if let Some(d) = dst.parent() {
        fs::create_dir_all(d)?;
    }
    fs::copy(src, &dst)
        .with_context(|| format!("cannot copy {} to {}", src.display(), dst.display()))?;
    Ok(())
}

/// Write a module, decompressing `.ko.xz` / `.ko.zst` / `.ko.gz`.
fn copy_module(src: &Path, dst: &Path) -> Result<()> {
    let name = src.display().to_string();
    let tool = if name.ends_with(".xz") {
        Some("xz")
    } else if name.ends_with(".zst") {
        Some("zstd")
    } else if name.ends_with(".gz") {
        Some("gzip")
    } else {
        None
    };
    match tool {
        None => {
            fs::copy(src, dst).with_context(|| format!("cannot copy {name}"))?;
        }
        Some(t) => {
            let o = capture(Command::new(t).arg("-dc").arg(src))?
                .ok_or_else(|| anyhow!("{t} is not installed: run `cargo xtask setup`"))?;
            if !o.status.success() {
                bail!(
                    "{t} -dc {name} failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
            }
            fs::write(dst, o.stdout)?;
        }
    }
    Ok(())
}

/// Build `out` (an uncompressed newc cpio) from the tool (static), busybox, the kernel's
/// modules and /init.
pub fn build(
    tool: &Path,
    busybox: &Path,
    kernel: &Kernel,
    plan: &InitPlan,
    work: &Path,
    out: &Path,
) -> Result<()> {
    crate::dist::check_static(tool)
        .context("the guests have no libc: build with `cargo xtask dist`")?;
    let arch = crate::dist::arch_of(tool)?;
    if arch != kernel.arch {
        bail!(
            "{} is an {arch} executable, the kernel {} is {}: build with `cargo xtask dist \
             --arch {}`",
            tool.display(),
            kernel.abi,
            kernel.arch,
            kernel.arch
        );
    }
    let staging = work.join("initramfs");
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(staging.join("etc"))?;
    copy_into(&staging, busybox, Path::new("/bin/busybox"))?;
    copy_into(&staging, tool, Path::new("/reclaim-trace"))?;
    let idx = ModuleIndex::load(&kernel.modules)?;
    let order = idx
        .load_order(REQUIRED_MODULES, OPTIONAL_MODULES)
        .with_context(|| format!("kernel {}", kernel.abi))?;
    let moddir = staging.join("lib/modules");
    fs::create_dir_all(&moddir)?;
    let mut names = Vec::new();
    for rel in &order {
        let name = format!("{}.ko", super::modules::module_name(rel));
        copy_module(&kernel.modules.join(rel), &moddir.join(&name))?;
        names.push(name);
    }
    fs::write(staging.join("etc/modules.order"), names.join("\n") + "\n")?;
    let init = staging.join("init");
    fs::write(&init, init_script(plan))?;
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755))?;
    let mut c = Command::new("sh");
    c.current_dir(&staging).arg("-c").arg(format!(
        "find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 > '{}'",
        out.display()
    ));
    run(&mut c).context("cpio failed (package cpio: run `cargo xtask setup`)")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_quotes_the_tool_arguments() {
        let s = init_script(&InitPlan {
            thp_sizes: vec![],
            tool_args: vec!["summary".into(), "--json".into(), "/tmp/it's.json".into()],
            disk: true,
            lru_gen: Some("n"),
            report_dev: "/dev/ttyS1",
        });
        assert!(s.contains(r"/reclaim-trace 'summary' '--json' '/tmp/it'\''s.json' >/tmp/stdout"));
        assert!(s.contains("mount -t ext4 /dev/vda /mnt"));
        assert!(s.contains("echo n >/sys/kernel/mm/lru_gen/enabled"));
        assert!(s.starts_with("#!/bin/busybox sh\n"));
    }
}
