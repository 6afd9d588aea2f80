//! The circuit breaker's request path natively, for profilers (`valgrind --tool=callgrind`, or
//! `make perf-native` where it exists): the stage over the fake host with the default configuration
//! (one breaker keyed by the upstream cluster), serving REQUESTS (default 100000) healthy requests (a
//! W3C `traceparent` in, a 200 upstream) after WARMUP (default 1000) first. Only `measured_requests`
//! is meant to be counted (`--toggle-collect=*measured_requests*` leaves the set-up and the warm-up
//! out); the fake host's own work (scripting the headers, recording the calls) is in it too, under
//! `filter_common::fake_host`.

use circuit_breaker::memory;
use circuit_breaker::stage::{Plugin, Stream, Worker};
use filter_common::fake_host::profile::{self, env_count};
use filter_common::fake_host::FakeHost;
use filter_common::host::MapType;
use std::cell::RefCell;
use std::hint::black_box;
use std::rc::Rc;
use std::time::Duration;

fn main() {
    let requests = env_count("REQUESTS", 100_000);
    let warmup = env_count("WARMUP", 1_000);
    let host = FakeHost::new();
    host.set_clock(1_700_000_000_000_000_000);
    let config = match memory::load(None) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("the default configuration is refused: {e}");
            std::process::exit(1);
        }
    };
    let worker = Rc::new(RefCell::new(Worker::new(0)));
    let plugin = Plugin::configure(&host, config, worker);
    // Envoy's attribute for the upstream cluster the default breaker is keyed by.
    host.script_property(
        &["xds", "cluster_name"],
        b"outbound|8080||orders.shop.svc.cluster.local",
    );
    serve(&host, &plugin, warmup);
    let calls = measured_requests(&host, &plugin, requests);
    println!(
        "circuit-breaker: {requests} requests after {warmup} warm-up, {:.1} host calls each",
        calls as f64 / requests.max(1) as f64
    );
}

/// The requests profiled: only this function's cost is counted.
#[inline(never)]
fn measured_requests(host: &FakeHost, plugin: &Plugin, n: u64) -> usize {
    // Used after the call, so it stays a call (a tail jump would leave this function before it ran).
    black_box(serve(host, plugin, n))
}

/// Serves `n` requests, 1 ms apart, each answered in 1 ms; returns the host calls they made.
#[inline(never)]
fn serve(host: &FakeHost, plugin: &Plugin, n: u64) -> usize {
    let mut calls = 0;
    for _ in 0..n {
        host.clear_calls();
        host.script_headers(MapType::HttpRequestHeaders, &profile::REQUEST_HEADERS);
        let mut stream = Stream::default();
        black_box(stream.on_request_headers(host, plugin));
        host.advance_clock(Duration::from_millis(1));
        host.script_headers(
            MapType::HttpResponseHeaders,
            &[
                (":status", "200"),
                ("content-type", "application/json"),
                ("content-length", "42"),
            ],
        );
        black_box(stream.on_response_headers(host, plugin));
        stream.on_log(host, plugin);
        stream.on_drop(host, plugin);
        calls += host.call_count();
    }
    calls
}
