//! One Envoy with the trap filter in front of a live upstream, and what a call's answer means.

use std::time::{Duration, Instant};

use e2e_harness::*;

pub const POLICIES: [&str; 3] = ["FAIL_OPEN", "FAIL_CLOSED", "FAIL_RELOAD"];
/// Longer than Envoy's reload backoff (about 1 s, measured from the VM's last load) with room for
/// a loaded machine.
pub const RELOAD_WAIT: Duration = Duration::from_secs(10);

/// The trap filter (plugin name `trap`, so its stats are `wasm.trap.*`) under `policy`.
pub fn trap_filter(policy: &str) -> WasmFilter {
    WasmFilter::new("trap", dist("test/trap_filter.wasm"))
        .vm_id("trap")
        .failure_policy(policy)
}

pub fn config(upstream: &Upstream, filter: WasmFilter, concurrency: u32) -> EnvoyConfig {
    EnvoyConfig::simple(INGRESS, upstream.port())
        .concurrency(concurrency)
        .filter_all(filter)
}

/// Envoy (`--concurrency 1`) with the trap filter under `policy`, its listener port, and the id of
/// the VM that served a first call.
pub async fn serving(upstream: &Upstream, policy: &str) -> (Envoy, u16, String) {
    let envoy = Envoy::start(config(upstream, trap_filter(policy), 1)).await;
    let port = envoy.port(INGRESS);
    let first = vm(&call(port, upstream, None).await);
    (envoy, port, first)
}

/// What one call got, from the caller's side and the upstream's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 200 from the upstream, through a live VM (its id).
    Filtered(String),
    /// 200 from the upstream, the filter skipped.
    Skipped,
    /// 503 with an empty body from Envoy, the upstream not reached.
    Failed,
    /// 503, but the upstream had the request (and answered it).
    FailedAfterUpstream,
    /// Anything else (status, whether the upstream was reached).
    Other(u16, bool),
}

/// A GET on a new connection (with `--concurrency 1` always the same worker), with `x-trap: trap`
/// when given, classified.
pub async fn call(port: u16, upstream: &Upstream, trap: Option<&str>) -> Outcome {
    let before = upstream.count();
    let headers: Vec<(&str, &str)> = trap.map(|t| vec![("x-trap", t)]).unwrap_or_default();
    let r = http1(port, "GET", "/call", &headers, "").await;
    // The upstream records a request before it answers, so the count is settled here.
    let reached = upstream.count() > before;
    classify(&r, reached)
}

pub fn classify(r: &Response, reached: bool) -> Outcome {
    match (r.status, reached, r.header("x-trap-filter")) {
        (200, true, Some(vm)) => Outcome::Filtered(vm.to_string()),
        (200, true, None) => Outcome::Skipped,
        (503, false, _) if r.body.is_empty() => Outcome::Failed,
        (503, true, _) => Outcome::FailedAfterUpstream,
        (status, reached, _) => Outcome::Other(status, reached),
    }
}

/// The VM id of a [`Outcome::Filtered`] call; panics otherwise.
pub fn vm(o: &Outcome) -> String {
    match o {
        Outcome::Filtered(vm) => vm.clone(),
        other => panic!("expected a call through a live VM, got {other:?}"),
    }
}

/// Calls until one goes through a VM other than `old`, up to [`RELOAD_WAIT`]; returns the
/// outcomes before it (each must be [`Outcome::Failed`]: the reload backoff) and the new VM id.
pub async fn until_new_vm(port: u16, upstream: &Upstream, old: &str) -> (Vec<Outcome>, String) {
    let deadline = Instant::now() + RELOAD_WAIT;
    let mut before = Vec::new();
    loop {
        match call(port, upstream, None).await {
            Outcome::Filtered(vm) if vm != old => return (before, vm),
            o => before.push(o),
        }
        assert!(
            Instant::now() < deadline,
            "no new VM within {RELOAD_WAIT:?}: {before:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn stat(envoy: &Envoy, name: &str) -> u64 {
    envoy.stat(name).await.unwrap_or(0)
}
