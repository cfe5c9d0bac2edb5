//! tracefs: where it is, mounting it when absent, and parsing event `format` files.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

/// Where tracefs is normally found (the debugfs path is the pre-4.1 location).
const CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// A tracefs mount: the directory holding `events/`.
#[derive(Clone, Debug)]
pub struct Tracefs {
    pub root: PathBuf,
    /// This process mounted it (it stays mounted: other tools expect it there).
    pub mounted_by_us: bool,
}

impl Tracefs {
    /// Find tracefs, mounting it at `/sys/kernel/tracing` when it is not mounted anywhere.
    pub fn find_or_mount() -> Result<Tracefs> {
        if let Some(root) = Self::find() {
            return Ok(Tracefs {
                root,
                mounted_by_us: false,
            });
        }
        if let Some(why) = Self::denied() {
            bail!("{why}");
        }
        let target = Path::new(CANDIDATES[0]);
        if !target.is_dir() {
            bail!(
                "tracefs is not mounted and {} does not exist: this kernel was built without \
                 CONFIG_TRACING, so its tracepoints cannot be used",
                target.display()
            );
        }
        mount_tracefs(target).with_context(|| {
            format!(
                "tracefs is not mounted and mounting it at {} failed; mount it by hand \
                 (`mount -t tracefs nodev {}`) and retry",
                target.display(),
                target.display()
            )
        })?;
        Ok(Tracefs {
            root: target.to_path_buf(),
            mounted_by_us: true,
        })
    }

    /// A mounted tracefs this process may not enter (mode 0700 on most distributions,
    /// without CAP_DAC_READ_SEARCH): what to say instead of "not mounted".
    pub fn denied() -> Option<String> {
        CANDIDATES.iter().find_map(|c| {
            let events = Path::new(c).join("events");
            match fs::metadata(&events) {
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Some(format!(
                    "cannot read {} (permission denied): reading the tracepoint formats needs \
                     CAP_DAC_READ_SEARCH besides CAP_BPF and CAP_PERFMON, or run as root",
                    events.display()
                )),
                _ => None,
            }
        })
    }

    /// An already-mounted tracefs, if any.
    pub fn find() -> Option<PathBuf> {
        CANDIDATES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.join("events").is_dir())
    }

    pub fn event_dir(&self, category: &str, name: &str) -> PathBuf {
        self.root.join("events").join(category).join(name)
    }

    pub fn has_event(&self, category: &str, name: &str) -> bool {
        self.event_dir(category, name).join("format").is_file()
    }

    /// Parse `events/<category>/<name>/format`.
    pub fn format(&self, category: &str, name: &str) -> Result<EventFormat> {
        let path = self.event_dir(category, name).join("format");
        let text =
            fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(EventFormat::parse(&text))
    }
}

fn mount_tracefs(target: &Path) -> Result<()> {
    use std::ffi::CString;
    let src = CString::new("nodev")?;
    let fstype = CString::new("tracefs")?;
    let dir = CString::new(target.as_os_str().as_encoded_bytes())?;
    // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dir.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}

/// One field of a tracepoint record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub decl: String,
    pub offset: u32,
    pub size: u32,
    pub signed: bool,
}

/// The fields of one event, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFormat {
    pub fields: BTreeMap<String, Field>,
}

impl EventFormat {
    /// Parse the text of a tracefs `format` file. Lines that are not field declarations are
    /// ignored; a malformed field line is skipped (its field then reads as missing).
    pub fn parse(text: &str) -> EventFormat {
        let mut fields = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            let Some(rest) = line.strip_prefix("field:") else {
                continue;
            };
            let mut decl = None;
            let mut offset = None;
            let mut size = None;
            let mut signed = false;
            for part in rest.split(';').map(str::trim).filter(|p| !p.is_empty()) {
                if let Some(v) = part.strip_prefix("offset:") {
                    offset = v.parse().ok();
                } else if let Some(v) = part.strip_prefix("size:") {
                    size = v.parse().ok();
                } else if let Some(v) = part.strip_prefix("signed:") {
                    signed = v == "1";
                } else if decl.is_none() {
                    decl = Some(part.to_string());
                }
            }
            let (Some(decl), Some(offset), Some(size)) = (decl, offset, size) else {
                continue;
            };
            let Some(name) = field_name(&decl) else {
                continue;
            };
            fields.insert(
                name,
                Field {
                    decl,
                    offset,
                    size,
                    signed,
                },
            );
        }
        EventFormat { fields }
    }

    /// Offset of `name` if present with one of the accepted sizes.
    pub fn offset(&self, name: &str, sizes: &[u32]) -> Option<u32> {
        self.fields
            .get(name)
            .filter(|f| sizes.contains(&f.size))
            .map(|f| f.offset)
    }
}

/// The identifier in a C declaration such as `unsigned long nr_taken`, `char comm[16]` or
/// `__data_loc cpumask_t cpumask`.
fn field_name(decl: &str) -> Option<String> {
    let decl = decl.split('[').next()?.trim();
    let name = decl
        .rsplit(|c: char| c.is_whitespace() || c == '*')
        .next()?;
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TLB_FLUSH_6_18: &str = "name: tlb_flush
ID: 597
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int reason;\toffset:8;\tsize:4;\tsigned:1;
\tfield:unsigned long pages;\toffset:16;\tsize:8;\tsigned:0;

print fmt: \"pages:%ld reason:%s (%d)\", REC->pages";

    #[test]
    fn parses_fields_with_offsets_sizes_and_sign() {
        let f = EventFormat::parse(TLB_FLUSH_6_18);
        assert_eq!(f.fields.len(), 6);
        assert_eq!(f.offset("reason", &[4]), Some(8));
        assert_eq!(f.offset("pages", &[8]), Some(16));
        assert!(f.fields["reason"].signed);
        assert!(!f.fields["pages"].signed);
        // A size the program does not expect is treated as missing.
        assert_eq!(f.offset("pages", &[4]), None);
        assert_eq!(f.offset("nope", &[8]), None);
    }

    #[test]
    fn field_names_from_declarations() {
        assert_eq!(
            field_name("unsigned long nr_taken").as_deref(),
            Some("nr_taken")
        );
        assert_eq!(field_name("void * callsite").as_deref(), Some("callsite"));
        assert_eq!(field_name("void *func").as_deref(), Some("func"));
        assert_eq!(field_name("char comm[16]").as_deref(), Some("comm"));
        assert_eq!(
            field_name("__data_loc cpumask_t cpumask").as_deref(),
            Some("cpumask")
        );
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let f = EventFormat::parse("\tfield:int x;\toffset:zz;\tsize:4;\n\tfield:int y;\tsize:4;");
        assert!(f.fields.is_empty());
    }
}
