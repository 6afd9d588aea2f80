//! Trace-context's request path natively, for profilers (`make perf-native` runs it under valgrind's
//! callgrind): the stage over the fake host with the default configuration, on an inbound listener,
//! serving REQUESTS (default 100000) healthy requests (a W3C `traceparent` in, a 200 upstream) after
//! WARMUP (default 1000) first. Only `measured_requests` is meant to be counted
//! (`--toggle-collect=*measured_requests*`, which leaves the set-up and the warm-up out); the fake host's own work (scripting the headers, recording
//! the calls) is in it too, under `filter_common::fake_host`.

use filter_common::fake_host::profile::{self, env_count};
use filter_common::fake_host::FakeHost;
use filter_common::host::MapType;
use std::hint::black_box;
use trace_context::memory;
use trace_context::stage::{Stream, Vm};

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
    let vm = Vm::configure(&host, config);
    // Envoy's attribute on a sidecar's inbound listener.
    host.script_property_u64(&["xds", "listener_direction"], 1);
    serve(&host, &vm, warmup);
    let calls = measured_requests(&host, &vm, requests);
    println!(
        "trace-context: {requests} requests after {warmup} warm-up, {:.1} host calls each",
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
                ("content-length", "42"),
            ],
        );
        black_box(stream.on_response_headers(host, vm));
        calls += host.call_count();
    }
    calls
}
