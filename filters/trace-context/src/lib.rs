//! The trace-context filter: one trace across services whatever tracing library (or none) each uses.
//!
//! Parse, decide, render in plain Rust, tested natively: `formats` (every trace header format),
//! `tracestate`, `baggage`, `propagation` (the per-request decision and its header edits), `correlation`
//! (entries and who owns a request id), `config` and `memory` (its worst-case shared memory).
//!
//! The request path: `stage` (each stream callback over the `filter_common::host::Host` seam, with
//! `store`, correlation's shared-data I/O, and `metrics`), forwarded to by `filter`, the proxy-wasm shell.

pub mod baggage;
pub mod config;
pub mod context;
pub mod correlation;
pub mod formats;
pub mod headers;
pub mod memory;
pub mod propagation;
pub mod stage;
pub mod tracestate;

// Natively (tests, fuzzing) nothing calls the adapter: only the Wasm build has its entry point.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod filter;
mod metrics;
mod store;
