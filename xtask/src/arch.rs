//! The machine architectures the tool is built and checked for: amd64 (x86_64, this host and
//! its guests) and arm64 (aarch64 guests under qemu's software emulation). Named as Debian
//! names them, since its kernel packages and the `--arch` arguments use these words.

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Arch {
    #[default]
    Amd64,
    Arm64,
}

impl Arch {
    /// Debian's architecture name (package names, `APT::Architecture`).
    pub fn deb(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The Rust target of the static binary for this architecture.
    pub fn rust_target(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64-unknown-linux-musl",
            Arch::Arm64 => "aarch64-unknown-linux-musl",
        }
    }

    /// The qemu that emulates it, and the Debian package that has it.
    pub fn qemu(self) -> (&'static str, &'static str) {
        match self {
            Arch::Amd64 => ("qemu-system-x86_64", "qemu-system-x86"),
            Arch::Arm64 => ("qemu-system-aarch64", "qemu-system-arm"),
        }
    }

    /// `e_machine` of its ELF executables.
    pub fn elf_machine(self) -> u16 {
        match self {
            Arch::Amd64 => 62,
            Arch::Arm64 => 183,
        }
    }

    /// The architecture this xtask runs on: binaries of any other cannot run here.
    pub fn host() -> Arch {
        if cfg!(target_arch = "aarch64") {
            Arch::Arm64
        } else {
            Arch::Amd64
        }
    }

    pub fn from_elf_machine(m: u16) -> Option<Arch> {
        [Arch::Amd64, Arch::Arm64]
            .into_iter()
            .find(|a| a.elf_machine() == m)
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.deb())
    }
}
