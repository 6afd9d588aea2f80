//! Counting what a request costs inside the module: host calls (by kind) and heap allocations. Built
//! only with the cargo feature `count-host-calls` (`make perf-counts`); without it every function here is
//! an empty inline function, so release modules carry none of it.
//!
//! Each filter calls `host::stream_end` when a stream ends (`on_log`); it adds what the stream cost to
//! counters named `perf.<root id>.<what>` (Envoy shows them as `wasmcustom.perf...`), plus
//! `perf.<root id>.streams`, so `/stats?filter=perf` divided by `streams` is the cost per request.
//! The flush itself (one `increment_metric` per non-zero counter) is not counted.
//!
//! This module calls no host function itself (the host module counts its calls here, and hands the
//! flush the metric calls it needs), so the two do not import each other.

/// The host calls counted, one counter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    HeaderPairs,
    HeaderValue,
    SetHeader,
    AddHeader,
    RemoveHeader,
    GetProperty,
    SetProperty,
    GetSharedData,
    SetSharedData,
    Now,
    Buffer,
    Metric,
    Other,
}

#[cfg(feature = "count-host-calls")]
mod imp {
    use super::Call;
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::RefCell;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

    const NAMES: [&str; 13] = [
        "host.header_pairs",
        "host.header_value",
        "host.set_header",
        "host.add_header",
        "host.remove_header",
        "host.get_property",
        "host.set_property",
        "host.get_shared_data",
        "host.set_shared_data",
        "host.now",
        "host.buffer",
        "host.metric",
        "host.other",
    ];
    const ALLOCS: usize = NAMES.len();
    const ALLOC_BYTES: usize = NAMES.len() + 1;
    const TOTAL: usize = NAMES.len() + 2;

    // A Wasm VM runs on one thread; atomics keep the statics `Sync` at no real cost.
    static COUNTS: [AtomicU64; TOTAL] = [const { AtomicU64::new(0) }; TOTAL];
    /// Off while flushing, so the flush does not count itself.
    static PAUSED: AtomicBool = AtomicBool::new(false);

    struct Counting;

    // SAFETY: forwards to the system allocator unchanged; only counts.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if !PAUSED.load(Relaxed) {
                if let (Some(n), Some(b)) = (COUNTS.get(ALLOCS), COUNTS.get(ALLOC_BYTES)) {
                    n.fetch_add(1, Relaxed);
                    b.fetch_add(layout.size() as u64, Relaxed);
                }
            }
            System.alloc(layout)
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            System.dealloc(ptr, layout)
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            if !PAUSED.load(Relaxed) {
                if let (Some(n), Some(b)) = (COUNTS.get(ALLOCS), COUNTS.get(ALLOC_BYTES)) {
                    n.fetch_add(1, Relaxed);
                    b.fetch_add(new_size as u64, Relaxed);
                }
            }
            System.realloc(ptr, layout, new_size)
        }
    }

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    pub fn hit(call: Call) {
        if !PAUSED.load(Relaxed) {
            if let Some(c) = COUNTS.get(call as usize) {
                c.fetch_add(1, Relaxed);
            }
        }
    }

    thread_local! {
        /// Metric ids by counter index, defined on first use; the streams counter last.
        static IDS: RefCell<Vec<Option<u32>>> = const { RefCell::new(Vec::new()) };
    }

    pub fn stream_end(
        root_id: impl FnOnce() -> String,
        mut define: impl FnMut(&str) -> Option<u32>,
        mut increment: impl FnMut(u32, i64),
    ) {
        PAUSED.store(true, Relaxed);
        IDS.with(|ids| {
            let mut ids = ids.borrow_mut();
            if ids.is_empty() {
                let root = root_id();
                let name = |what: &str| format!("perf.{root}.{what}");
                *ids = NAMES
                    .iter()
                    .copied()
                    .map(&name)
                    .chain([name("allocs"), name("alloc_bytes"), name("streams")])
                    .map(|n| define(&n))
                    .collect();
            }
            for (i, id) in ids.iter().enumerate() {
                let delta = match COUNTS.get(i) {
                    Some(c) => c.swap(0, Relaxed),
                    None => 1, // the streams counter
                };
                if let (Some(id), Ok(delta)) = (id, i64::try_from(delta)) {
                    if delta > 0 {
                        increment(*id, delta);
                    }
                }
            }
        });
        PAUSED.store(false, Relaxed);
    }
}

/// Counts one host call (feature `count-host-calls` only).
#[inline(always)]
pub fn hit(_call: Call) {
    #[cfg(feature = "count-host-calls")]
    imp::hit(_call);
}

/// Adds this stream's counts to the `perf.*` counters (feature `count-host-calls` only), through the
/// host calls it is given: the plugin's root id (names the counters), defining a counter, incrementing.
#[inline(always)]
pub fn stream_end(
    _root_id: impl FnOnce() -> String,
    _define: impl FnMut(&str) -> Option<u32>,
    _increment: impl FnMut(u32, i64),
) {
    #[cfg(feature = "count-host-calls")]
    imp::stream_end(_root_id, _define, _increment);
}
