//! Building this crate needs the `bpf-linker` binary, a dependency cargo cannot express. Re-run
//! (and so re-link) whenever the linker on PATH changes, e.g. after `cargo xtask setup` rebuilt it.
fn main() {
    match which::which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(_) => println!("cargo:warning=bpf-linker is not on PATH; run `cargo xtask setup`"),
    }
}
