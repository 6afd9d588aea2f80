//! The pure part of trace-context's request path, natively, for profiling (issue 19, levers 1 and 3):
//! with the default configuration, a healthy request carrying a `traceparent` is read from the host's
//! encoded header map, decided, and its filter state and two response headers are formatted, exactly
//! as `filter.rs` does, minus the host calls. Run it under callgrind to see where instructions go:
//!
//! ```sh
//! cargo build --release -p trace-context --example decide_path
//! REQUESTS=20000 valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!     target/release/examples/decide_path
//! callgrind_annotate /tmp/cg.out | head -60
//! ```
//!
//! It prints the heap allocations per request (a counting allocator); instructions per request are
//! callgrind's total divided by REQUESTS (set-up is a few thousand instructions in all).

use filter_common::config::parse;
use filter_common::ids::IdGenerator;
use filter_common::wire::encode_map;
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use trace_context::config::Config;
use trace_context::formats::w3c;
use trace_context::headers::RequestHeaders;
use trace_context::propagation::Propagator;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() {
    let requests: u64 = std::env::var("REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let Ok(config) = parse::<Config>(None) else {
        eprintln!("the default configuration did not load");
        std::process::exit(1);
    };
    let propagator = Propagator::new(config);
    let config = propagator.config();
    let mut ids = IdGenerator::from_seed(7);
    // What Envoy hands the filter for `make perf-counts`' GET (HTTP/1.1, a keep-alive client).
    let traceparent = "00-0000000000000000000000000000002a-000000000000002a-01";
    let request_id = "3d5c6a0e-7f1b-4c7e-9a44-2f7b8f1f0c11";
    let pairs: [(&str, &[u8]); 7] = [
        (":authority", b"shop.example.internal"),
        (":path", b"/perf"),
        (":method", b"GET"),
        (":scheme", b"http"),
        ("traceparent", traceparent.as_bytes()),
        ("x-forwarded-proto", b"http"),
        ("x-request-id", request_id.as_bytes()),
    ];
    let encoded = encode_map(&pairs);

    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let mut edits = 0usize;
    for _ in 0..requests {
        // The host call returns a fresh buffer each time (`host::header_map_encoded`).
        let headers = RequestHeaders::from_encoded(black_box(encoded.clone()));
        let request_id = headers.get_first("x-request-id");
        let decision = propagator.decide(&headers, &mut ids, false, 0, || None);
        edits += decision.edits.len();
        black_box(request_id);
        // filter state, then on the response `x-trace-id` and `traceresponse`.
        if !config.filter_state_name.is_empty() {
            black_box(decision.context.trace_id_hex_bytes());
        }
        let context = decision.context.clone();
        if !config.response_header.is_empty() {
            black_box(context.trace_id_hex_bytes());
        }
        if config.trace_response {
            black_box(w3c::traceparent_bytes(&context));
        }
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    println!(
        "{requests} requests, {edits} header edits, {:.2} allocations per request (one is the \
         harness's copy of the encoded map)",
        allocations as f64 / requests.max(1) as f64
    );
}
