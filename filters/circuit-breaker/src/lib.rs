//! The circuit-breaker filter: sidecar-wide breakers on failure rate, slow-call rate and consecutive
//! failures, shared by every Envoy worker thread.
//!
//! Parse, decide, render in plain Rust, tested natively: `config` (and `memory`, its worst-case shared
//! memory), `matching` (which breaker and key a request has), `classify` (how a finished call counts),
//! `window` (failure and slow rates per worker stripe), `state` (the breaker state machine), `slots`
//! (which slot a key owns), `created` (which slots have a record), `leases` (which worker writes which
//! stripe), `reject` (the rejection), `permits` (calls in flight per key across workers,
//! `maxConcurrentCalls`) and `pushback` (the dependency's own `Retry-After` or gRPC pushback,
//! `maxPushback`).
//!
//! Modules that touch the host, all through `filter_common::host::Host`: `stage` (the request path,
//! callback by callback: admission, rejection, outcome, recording), `store` (the records, stripes,
//! leases and seed in shared data, with their compare-and-swap loops), `overload` (the permit and
//! pushback checks of an admitted call) and `metrics`. `filter` is the proxy-wasm shell that forwards
//! each callback to `stage`.

pub mod classify;
pub mod config;
pub mod created;
pub mod leases;
pub mod matching;
pub mod memory;
pub mod permits;
pub mod pushback;
pub mod reject;
pub mod slots;
pub mod stage;
pub mod state;
pub mod store;
pub mod window;

// Natively (tests, fuzzing) nothing calls the adapter: only the Wasm build has its entry point.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod filter;
mod metrics;
mod overload;
