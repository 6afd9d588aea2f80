//! The fallback filter: a useful answer instead of a raw failure.
//!
//! Parse, decide, render in plain Rust, tested natively: `config` (and `memory`, its worst-case shared
//! memory), `trigger` (which rule fires), `policy` (what the stale cache may keep, RFC 9111/5861),
//! `cache` (its entries and keys), `render` (problem details, templates, escaping), `reply` (what a
//! fallback reply carries), `alternate` (the alternate call and its answer), `trace` (the trace headers
//! a reply carries).
//!
//! Modules that touch the host: `filter` (the proxy-wasm adapter, moving data between Envoy and the
//! modules above), `store` (the cache's shared-data I/O) and `metrics`.

pub mod alternate;
pub mod cache;
pub mod config;
pub mod memory;
pub mod policy;
pub mod render;
pub mod reply;
pub mod trace;
pub mod trigger;

// Natively (tests, fuzzing) nothing calls the adapter: only the Wasm build has its entry point.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod filter;
mod metrics;
mod store;
