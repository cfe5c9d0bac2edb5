#![no_std]
// Present so that reclaim-trace can name this crate as a build-dependency; cargo then rebuilds
// the userspace crate whenever the eBPF sources change.
