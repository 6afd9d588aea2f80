//! The fallback filter: a useful answer instead of a raw failure.
//!
//! Parse, decide, render in plain Rust, tested natively: `config` (and `memory`, its worst-case shared
//! memory), `trigger` (which rule fires), `policy` (what the stale cache may keep, RFC 9111/5861),
//! `cache` (its entries and keys), `render` (problem details, templates, escaping), `reply` (what a
//! fallback reply carries), `alternate` (the alternate call and its answer), `trace` (the trace headers
//! a reply carries).
//!
//! Over the host seam (`filter_common::host::Host`): `stage` (the request path, callback by callback:
//! every decision a fallback takes on a live stream), `store` (the cache's shared-data I/O) and
//! `metrics`. `filter` is the proxy-wasm shell that forwards Envoy's callbacks to the stage.

pub mod alternate;
pub mod cache;
pub mod config;
pub mod memory;
pub mod policy;
pub mod render;
pub mod reply;
pub mod stage;
pub mod trace;
pub mod trigger;

// Natively (tests, fuzzing) nothing calls the adapter: only the Wasm build has its entry point.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod filter;
mod metrics;
mod store;
