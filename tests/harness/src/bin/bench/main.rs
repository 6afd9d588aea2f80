//! `make bench`: what each filter costs per request, against the same Envoy with no filter and with
//! an empty Rust Wasm filter, measured in one run so the figures are comparable; then what the
//! circuit breaker changes for callers when the upstream fails (the outage scenarios).
//!
//! **Cost table.** One Envoy gets one listener per variant, all routing to the in-process
//! [`Upstream`]. An in-process load generator (hyper, keep-alive, a fixed number of connections) sends
//! the same number of requests to every variant, interleaved over several rounds to cancel drift. The
//! main figure is Envoy's CPU time per request (utime + stime of its pid from `/proc/PID/stat`): the
//! client and the upstream live in this process, so they cannot pollute it.
//!
//! **Outage scenarios** (`outage.rs`). Per scenario and round a fresh Envoy gets a listener per
//! variant (no protection, outlier detection as Istio renders it, admission_control, the breaker,
//! the breaker with the fallback, breaker configurations considered for the defaults), each on its own
//! cluster and its own port of a [`dependency::Dependency`] that is healthy, fails for a fixed time
//! (503, a hang past the 250 ms route timeout, refused connections, flapping, 10 % random errors),
//! then is healthy again. Every variant gets the same paced load at the same time; the report shows
//! per variant the requests that reached the failing dependency, the callers' latency and useful
//! answers during the outage, the time to trip and to recover, with a timeline chart per scenario
//! (`bench/results/outage-<scenario>.svg`, tables in `bench/results/outage.md`).
//!
//! **Fleet** (`fleet.rs`). 8 caller sidecars, each a separate Envoy in its own network namespace
//! (distinct loopback addresses when namespaces cannot be made), call one dependency sidecar in front
//! of a service that slows down tenfold, then fails; once per protection (none, Envoy's
//! `max_requests`, Envoy's `adaptive_concurrency`, the breaker's defaults, `maxConcurrentCalls`,
//! inbound shedding with `maxPushback` on the callers). A protection this build's module refuses is
//! reported as not available (`bench/results/fleet.md`, `bench/results/fleet.svg`).
//!
//! A default run takes about 30 s for the cost table, about 6 min for the outage scenarios
//! (3 rounds) and about 4 min for the fleet; `BENCH_QUICK=1` shortens the outage part to about 80 s
//! and the fleet to about 2.5 min (`--no-outage`, `--no-fleet` skip them).
//!
//! Settings come from the environment, so `make bench` needs no arguments:
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `BENCH_REQUESTS` | 20000 | measured requests per variant and round |
//! | `BENCH_WARMUP` | 1000 | unmeasured requests per variant before the first round |
//! | `BENCH_CONNECTIONS` | 8 x concurrency | keep-alive connections, one request in flight on each |
//! | `BENCH_ROUNDS` | 5 | interleaved rounds; the report shows medians |
//! | `BENCH_CONCURRENCY` | 1 | Envoy `--concurrency` |
//! | `BENCH_VARIANTS` | all | comma-separated cost-table variants to run; `none` and `empty` always run |
//! | `BENCH_MODULES` | none | `label=path,...`: a cost-table variant per module, default configuration (name them in `BENCH_VARIANTS` too when that is set) |
//! | `BENCH_HTTP2` | unset | `1` adds an HTTP/2 (h2c) pass; so does the `--http2` argument |
//! | `BENCH_OUTAGE` | `1` | `0` skips the outage scenarios (`--no-outage`), `only` runs nothing else (`--outage-only`) |
//! | `BENCH_QUICK` | unset | `1`: the outage part's quick mode (1 round, the shorter times below) |
//! | `BENCH_OUTAGE_RATE` | 200 | outage load in requests/s per variant (4 callers each) |
//! | `BENCH_OUTAGE_ROUNDS` | 3 (quick 1) | rounds of every scenario; the tables show medians |
//! | `BENCH_OUTAGE_PRE` | 10 (quick 3) | healthy seconds before the outage |
//! | `BENCH_OUTAGE_SECS` | 4 (quick 2) | seconds the dependency fails |
//! | `BENCH_OUTAGE_POST` | 8 (quick 7) | healthy seconds after the outage |
//! | `BENCH_PARTIAL_SECS` | 20 (quick 5) | seconds of the 10 % partial failure |
//! | `BENCH_FLAP_SECS` | 1 (quick 0.5) | the flapping dependency's half period |
//! | `BENCH_FLEET` | `1` | `0` (or `skip`) skips the fleet (`--no-fleet`), `only` runs nothing else (`--fleet-only`); with `BENCH_OUTAGE=only` too, both run |
//! | `BENCH_FLEET_RATE` | 200 | requests/s over the whole fleet |
//! | `BENCH_FLEET_USERS` | 16 | users (keep-alive connections) per caller sidecar |
//! | `BENCH_FLEET_PRE` / `_SLOW` / `_FAIL` / `_POST` | 5 / 10 / 5 / 12 (quick 3 / 5 / 3 / 8) | seconds healthy, slow, failing, healthy again |
//! | `BENCH_FLEET_NETNS` | `1` | `0`: distinct loopback addresses instead of network namespaces |
//! | `BENCH_FLEET_PROTECTIONS` | all | comma-separated: `none`, `max_requests`, `adaptive_concurrency`, `breaker`, `max_concurrent_calls`, `inbound_shedding` |
//!
//! The Markdown report goes to stdout and to `target/bench/results.md`, the cost part also to
//! `bench/results/cost.md`; progress goes to stderr.
//! Exit status: 0, or 1 when anything failed: in the cost table any response that was not 200, in the
//! outage scenarios and the fleet an answer that is neither the dependency's, a failure Envoy passed
//! on, a protection's refusal nor a fallback, or a transport error. A fleet protection that is not
//! available in this build is not a failure.

// Like the library: this is test support, and failing loudly is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

// The modules live in bench/ next to this file; Cargo.toml names this file as the binary's root.
mod chart;
mod clock;
mod cost;
mod dependency;
mod envoy;
mod fleet;
mod load;
mod outage;
mod report;
mod settings;
mod stats;

use std::process::ExitCode;
use std::time::Instant;

use e2e_harness::Upstream;

use settings::Settings;

/// The whole run; returns whether every response was what it should be.
async fn run(started: Instant) -> Result<bool, String> {
    let s = Settings::load()?;
    let variants = if s.cost() {
        Some(cost::variants(s.variants.as_deref(), &s.modules)?)
    } else {
        None
    };
    let upstream = Upstream::start().await;
    let mut errors = Vec::new();
    let mut sections = Vec::new();
    let mut setup = None;
    if let Some(variants) = &variants {
        let (section, cost_setup) = cost::run(&s, variants, &upstream, &mut errors).await?;
        report::publish_cost(&report::document(
            &s,
            &cost_setup,
            Some(variants),
            std::slice::from_ref(&section),
            &errors,
            started.elapsed(),
        ))?;
        sections.push(section);
        setup = Some(cost_setup);
    }
    if s.outage() {
        let (section, outage_setup) = outage::run(&s, &mut errors).await?;
        sections.push(section);
        setup.get_or_insert(outage_setup);
    }
    if s.fleet() {
        let (section, fleet_setup) = fleet::run(&s, &mut errors).await?;
        sections.push(section);
        setup.get_or_insert(fleet_setup);
    }
    let setup = setup.ok_or("nothing to run")?;
    let report = report::document(
        &s,
        &setup,
        variants.as_deref(),
        &sections,
        &errors,
        started.elapsed(),
    );
    report::publish(&report)?;
    Ok(errors.is_empty())
}

// Two runtime threads for the client and the upstream: at the defaults they need about 0.6 of a core
// to saturate Envoy's one worker, and a second thread keeps them ahead when Envoy has more workers.
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let started = Instant::now();
    match run(started).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("bench: some responses were not what they should be (see the report)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}
