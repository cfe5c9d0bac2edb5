//! A temporary zram swap device for the anonymous workload (`--zram`), removed on exit.
//!
//! zram is `SWP_SYNCHRONOUS_IO`: a folio paged out in a pass is freed in the same pass, so
//! per-pass figures are not skewed by asynchronous writeback (a disk swapfile is).

use std::{
    fs,
    io::{Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

const STATE_DIR: &str = "/run/reclaim-trace";
const SWAP_FLAG_PREFER: i32 = 0x8000;

/// Active swap areas, from /proc/swaps (excluding the header).
pub fn active_swaps() -> Vec<String> {
    fs::read_to_string("/proc/swaps")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Active swap this run may rely on: every active swap area except the zram devices another
/// running reclaim-trace set up, which disappear when that process ends (even under this
/// run's workload).
pub fn usable_swaps() -> Vec<String> {
    let others = devices_of_other_instances();
    active_swaps()
        .into_iter()
        .filter(|s| {
            !others
                .iter()
                .any(|&(dev, _)| *s == dev_path(dev).display().to_string())
        })
        .collect()
}

/// Zram devices set up by reclaim-trace processes other than this one, still running:
/// (device number, pid), from the state files in `STATE_DIR`.
fn devices_of_other_instances() -> Vec<(u32, i32)> {
    let me = std::process::id() as i32;
    state_files()
        .into_iter()
        .filter(|&(_, pid, _)| pid != me && Path::new(&format!("/proc/{pid}")).exists())
        .map(|(dev, pid, _)| (dev, pid))
        .collect()
}

/// The state files (`zram<dev>.<pid>`): device, owner pid, path.
fn state_files() -> Vec<(u32, i32, PathBuf)> {
    let Ok(rd) = fs::read_dir(STATE_DIR) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let (dev, pid) = name.strip_prefix("zram")?.split_once('.')?;
            Some((dev.parse().ok()?, pid.parse().ok()?, e.path()))
        })
        .collect()
}

/// A zram device set up as swap by this process.
#[derive(Debug)]
pub struct ZramSwap {
    pub dev: u32,
    pub size: u64,
    hot_added: bool,
    swapped_on: bool,
    state_file: PathBuf,
    done: bool,
}

fn sys_block(dev: u32) -> PathBuf {
    PathBuf::from(format!("/sys/block/zram{dev}"))
}

fn dev_path(dev: u32) -> PathBuf {
    PathBuf::from(format!("/dev/zram{dev}"))
}

/// Write a version-1 swap header (what mkswap writes): "SWAPSPACE2" at the end of the first
/// page, version/last_page/nr_badpages at offset 1024.
pub fn write_swap_header(dev: &Path, size: u64) -> Result<()> {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    let last_page = (size / page).saturating_sub(1);
    if last_page < 10 {
        bail!("swap device of {size} bytes is too small");
    }
    let mut header = vec![0u8; page as usize];
    header[1024..1028].copy_from_slice(&1u32.to_ne_bytes()); // version
    header[1028..1032].copy_from_slice(&(last_page.min(u32::MAX as u64) as u32).to_ne_bytes());
    // nr_badpages = 0; uuid: any non-zero bytes; label "reclaimtrace".
    let uuid = std::process::id().to_ne_bytes();
    header[1036..1040].copy_from_slice(&uuid);
    header[1052..1064].copy_from_slice(b"reclaimtrace");
    let magic_at = page as usize - 10;
    header[magic_at..].copy_from_slice(b"SWAPSPACE2");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(dev)
        .with_context(|| format!("cannot open {}", dev.display()))?;
    f.seek(SeekFrom::Start(0))?;
    f.write_all(&header)?;
    f.sync_all()?;
    Ok(())
}

fn cstr(p: &Path) -> Result<std::ffi::CString> {
    Ok(std::ffi::CString::new(p.as_os_str().as_encoded_bytes())?)
}

fn swapon(p: &Path) -> std::io::Result<()> {
    let c = cstr(p).map_err(std::io::Error::other)?;
    // SAFETY: valid NUL-terminated path.
    if unsafe { libc::swapon(c.as_ptr(), SWAP_FLAG_PREFER | 100) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn swapoff(p: &Path) -> std::io::Result<()> {
    let c = cstr(p).map_err(std::io::Error::other)?;
    // SAFETY: valid NUL-terminated path.
    if unsafe { libc::swapoff(c.as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl ZramSwap {
    /// Set up a zram device of `size` bytes as swap.
    pub fn setup(size: u64) -> Result<ZramSwap> {
        if !Path::new("/sys/class/zram-control").exists() {
            // Built as a module: try to load it (no-op when built in).
            let _ = std::process::Command::new("modprobe")
                .arg("zram")
                .arg("num_devices=0")
                .status();
        }
        let (dev, hot_added) = pick_device()?;
        let mut z = ZramSwap {
            dev,
            size,
            hot_added,
            swapped_on: false,
            state_file: PathBuf::from(format!("{STATE_DIR}/zram{dev}.{}", std::process::id())),
            done: false,
        };
        let _ = fs::create_dir_all(STATE_DIR);
        let _ = fs::write(&z.state_file, format!("{}\n", hot_added as u8));
        let disksize = sys_block(dev).join("disksize");
        fs::write(&disksize, size.to_string()).with_context(|| {
            format!(
                "cannot set {} to {size} (is zram{dev} in use?)",
                disksize.display()
            )
        })?;
        write_swap_header(&dev_path(dev), size)?;
        swapon(&dev_path(dev))
            .with_context(|| format!("swapon {} failed", dev_path(dev).display()))?;
        z.swapped_on = true;
        Ok(z)
    }

    pub fn path(&self) -> PathBuf {
        dev_path(self.dev)
    }

    /// swapoff, reset, and hot_remove what we hot_added.
    pub fn teardown(&mut self) -> Result<()> {
        if self.done {
            return Ok(());
        }
        teardown_device(self.dev, self.swapped_on, self.hot_added)?;
        let _ = fs::remove_file(&self.state_file);
        self.done = true;
        Ok(())
    }
}

fn teardown_device(dev: u32, swapped_on: bool, hot_added: bool) -> Result<()> {
    if swapped_on || active_swaps().contains(&dev_path(dev).display().to_string()) {
        swapoff(&dev_path(dev)).with_context(|| {
            format!(
                "swapoff {} failed; run `swapoff {}` and `echo 1 > {}/reset` by hand",
                dev_path(dev).display(),
                dev_path(dev).display(),
                sys_block(dev).display()
            )
        })?;
    }
    let _ = fs::write(sys_block(dev).join("reset"), "1");
    if hot_added {
        let _ = fs::write("/sys/class/zram-control/hot_remove", dev.to_string());
    }
    Ok(())
}

impl Drop for ZramSwap {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("reclaim-trace: {e:#}");
        }
    }
}

/// A new device from zram-control, or an existing unused one (disksize 0).
fn pick_device() -> Result<(u32, bool)> {
    let hot_add = Path::new("/sys/class/zram-control/hot_add");
    if hot_add.exists()
        && let Ok(s) = fs::read_to_string(hot_add)
        && let Ok(dev) = s.trim().parse::<u32>()
    {
        return Ok((dev, true));
    }
    for dev in 0..32 {
        let ds = sys_block(dev).join("disksize");
        if let Ok(s) = fs::read_to_string(&ds)
            && s.trim() == "0"
        {
            return Ok((dev, false));
        }
    }
    bail!(
        "no zram device is available: the kernel has no zram support (CONFIG_ZRAM) or all \
         devices are in use; set up swap yourself (`swapon`) and run without --zram"
    )
}

/// Remove zram devices left by reclaim-trace processes that no longer exist (killed with
/// SIGKILL, power loss of the session...).
pub fn sweep_stale() {
    for (dev, pid, path) in state_files() {
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let hot_added = fs::read_to_string(&path).is_ok_and(|s| s.trim() == "1");
        match teardown_device(dev, false, hot_added) {
            Ok(()) => {
                log::warn!(
                    "removed zram{dev}, left behind by reclaim-trace pid {pid} (killed before it \
                     could clean up)"
                );
                let _ = fs::remove_file(&path);
            }
            Err(err) => log::warn!("stale zram{dev}: {err:#}"),
        }
    }
}
