//! What the fuzz targets share: an allocator that bounds what the code under test may
//! allocate for one input, and small generator helpers.
//!
//! "No unbounded allocation" is checked per input: while the code under test runs, every
//! allocation is counted; a single allocation larger than the input's bound is refused (the
//! process aborts with "memory allocation of N bytes failed", which libFuzzer reports as a
//! crash and saves the input), and after the call the peak of live bytes must be within the
//! bound too. Bounds are linear in the size of the generated input: a JSON object costs a
//! B-tree node per nesting level, so a few hundred bytes per input byte is normal; what is
//! caught is memory that grows with a *value* in the input (a count, a length field) rather
//! than with its size.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering::Relaxed},
};

use libfuzzer_sys::arbitrary::Unstructured;

/// The global allocator of every fuzz target (`#[global_allocator]` in each).
pub struct Bounded;

static ARMED: AtomicBool = AtomicBool::new(false);
/// Largest single allocation allowed while armed.
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
/// Bytes allocated minus bytes freed since arming (frees of older memory make it negative).
static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

impl Bounded {
    fn grew(size: usize) {
        let live = LIVE.fetch_add(size as isize, Relaxed) + size as isize;
        PEAK.fetch_max(live, Relaxed);
        LARGEST.fetch_max(size, Relaxed);
    }

    fn refused(size: usize) -> bool {
        ARMED.load(Relaxed) && size > LIMIT.load(Relaxed)
    }
}

// SAFETY: every call is passed to `System` unchanged; the counters are only bookkeeping, and a
// refused allocation returns null as the `GlobalAlloc` contract allows.
unsafe impl GlobalAlloc for Bounded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if Self::refused(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's layout, passed on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() && ARMED.load(Relaxed) {
            Self::grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if Self::refused(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: as in `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() && ARMED.load(Relaxed) {
            Self::grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ARMED.load(Relaxed) {
            LIVE.fetch_sub(layout.size() as isize, Relaxed);
        }
        // SAFETY: the caller's pointer and layout, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if Self::refused(new_size) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's pointer, layout and size, passed on.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() && ARMED.load(Relaxed) {
            LIVE.fetch_sub(layout.size() as isize, Relaxed);
            Self::grew(new_size);
        }
        p
    }
}

/// How much one input may allocate: `base + per_byte * len` bytes, live at once and in one
/// allocation.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub base: usize,
    pub per_byte: usize,
}

impl Budget {
    pub fn bytes(self, len: usize) -> usize {
        self.base.saturating_add(self.per_byte.saturating_mul(len))
    }
}

/// What `f` allocated: the peak of live bytes and the largest single allocation.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    pub peak: usize,
    pub largest: usize,
}

/// Run `f` (the code under test, fed an input of `len` bytes) with allocations counted and
/// bounded by `budget`; panics if its peak of live bytes exceeds the bound. Not reentrant
/// (libFuzzer runs one input at a time on one thread). With `FUZZ_SHOW_USAGE` set in the
/// environment, prints what each input used (to replay one and see).
pub fn bounded<R>(what: &str, len: usize, budget: Budget, f: impl FnOnce() -> R) -> R {
    let limit = budget.bytes(len);
    LIVE.store(0, Relaxed);
    PEAK.store(0, Relaxed);
    LARGEST.store(0, Relaxed);
    LIMIT.store(limit, Relaxed);
    ARMED.store(true, Relaxed);
    let r = f();
    ARMED.store(false, Relaxed);
    let usage = Usage {
        peak: PEAK.load(Relaxed).max(0) as usize,
        largest: LARGEST.load(Relaxed),
    };
    if std::env::var_os("FUZZ_SHOW_USAGE").is_some() {
        eprintln!(
            "{what}: input of {len} bytes: peak {} bytes live, largest allocation {} (bound {limit})",
            usage.peak, usage.largest
        );
    }
    assert!(
        usage.peak <= limit,
        "{what}: {} bytes live at once for an input of {len} bytes (bound {limit}; largest \
         allocation {})",
        usage.peak,
        usage.largest
    );
    r
}

/// One of `items`, or the first when the input has run out.
pub fn pick<'a, T: ?Sized>(u: &mut Unstructured, items: &[&'a T]) -> &'a T {
    items[u.choose_index(items.len()).unwrap_or(0)]
}

/// An integer in `lo..=hi` (`lo` when the input has run out).
pub fn int(u: &mut Unstructured, lo: usize, hi: usize) -> usize {
    u.int_in_range(lo..=hi).unwrap_or(lo)
}

/// True with probability `num/den` (false when the input has run out).
pub fn chance(u: &mut Unstructured, num: u8, den: u8) -> bool {
    u.ratio(num, den).unwrap_or(false)
}

/// Numbers that make arithmetic on counts interesting.
pub const EDGE_U64: &[u64] = &[
    0,
    1,
    2,
    63,
    64,
    65,
    127,
    128,
    4095,
    u32::MAX as u64,
    u32::MAX as u64 + 1,
    (1 << 53) + 1,
    i64::MAX as u64,
    u64::MAX / 2 + 1,
    u64::MAX - 1,
    u64::MAX,
];

/// An edge-case u64 or any u64.
pub fn edge_u64(u: &mut Unstructured) -> u64 {
    if chance(u, 2, 3) {
        EDGE_U64[u.choose_index(EDGE_U64.len()).unwrap_or(0)]
    } else {
        u.arbitrary().unwrap_or(0)
    }
}

/// The input's remaining bytes.
pub fn rest<'a>(u: &mut Unstructured<'a>) -> &'a [u8] {
    u.bytes(u.len()).unwrap_or(&[])
}
