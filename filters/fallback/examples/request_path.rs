//! The fallback's request path natively, for profilers: the stage over the fake host with the default
//! configuration, serving REQUESTS (default 100000) healthy requests (a W3C `traceparent` in, a 200 with
//! a body from the upstream) after WARMUP (default 1000) first.
//!
//!     cargo run --release -p fallback --example fallback_request_path
//!     valgrind --tool=callgrind --toggle-collect='*measured_requests*' \
//!         target/release/examples/fallback_request_path
//!
//! Only `measured_requests` is meant to be counted (the toggle leaves the set-up and the warm-up out);
//! the fake host's own work (scripting the headers, recording the calls) is in it too, under
//! `filter_common::fake_host`.

use fallback::memory;
use fallback::stage::{Stream, Vm};
use filter_common::fake_host::profile::{self, env_count};
use filter_common::fake_host::FakeHost;
use filter_common::host::{Buffer, MapType};
use std::hint::black_box;

const BODY: &[u8] = br#"{"order": 42, "items": [1, 2, 3]}"#;

fn main() {
    let requests = env_count("REQUESTS", 100_000);
    let warmup = env_count("WARMUP", 1_000);
    let host = FakeHost::new();
    let config = match memory::load(None) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("the default configuration is refused: {e}");
            std::process::exit(1);
        }
    };
    let vm = Vm::new(&host, config);
    // What Envoy's router says of an upstream's answer (read only when a rule could fire).
    host.script_property(&["response", "code_details"], b"via_upstream");
    host.script_property_u64(&["response", "flags"], 0);
    host.script_buffer(Buffer::HttpResponseBody, BODY);
    serve(&host, &vm, warmup);
    let calls = measured_requests(&host, &vm, requests);
    println!(
        "fallback: {requests} requests after {warmup} warm-up, {:.1} host calls each",
        calls as f64 / requests.max(1) as f64
    );
}

/// The requests profiled: only this function's cost is counted.
#[inline(never)]
fn measured_requests(host: &FakeHost, vm: &Vm, n: u64) -> usize {
    // Used after the call, so it stays a call (a tail jump would leave this function before it ran).
    black_box(serve(host, vm, n))
}

/// Serves `n` requests; returns the host calls they made.
#[inline(never)]
fn serve(host: &FakeHost, vm: &Vm, n: u64) -> usize {
    let mut calls = 0;
    for _ in 0..n {
        host.clear_calls();
        host.script_headers(MapType::HttpRequestHeaders, &profile::REQUEST_HEADERS);
        let mut stream = Stream::default();
        black_box(stream.on_request_headers(host, vm));
        host.script_headers(
            MapType::HttpResponseHeaders,
            &[
                (":status", "200"),
                ("content-type", "application/json"),
                ("content-length", "33"),
            ],
        );
        black_box(stream.on_response_headers(host, vm, false));
        black_box(stream.on_response_body(host, vm, BODY.len(), true));
        calls += host.call_count();
    }
    calls
}
