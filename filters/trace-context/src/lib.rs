//! The trace-context filter: one trace across services whatever tracing library (or none) each uses.
//!
//! Pure logic (formats, tracestate, baggage, the per-request decision, correlation entries) is plain Rust
//! tested natively; `filter` is the thin proxy-wasm adapter.

pub mod baggage;
pub mod config;
pub mod context;
pub mod correlation;
pub mod formats;
pub mod headers;
pub mod memory;
pub mod propagation;
pub mod tracestate;

mod filter;
