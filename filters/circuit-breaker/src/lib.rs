//! The circuit-breaker filter: sidecar-wide breakers on failure rate, slow-call rate and consecutive
//! failures, shared by every Envoy worker thread.
//!
//! Pure logic (configuration, outcome rules, windows, the state machine, matching) is plain Rust tested
//! natively; `filter` is the thin proxy-wasm adapter.

pub mod classify;
pub mod config;
pub mod leases;
pub mod matching;
pub mod memory;
pub mod slots;
pub mod state;
pub mod store;
pub mod window;

mod filter;
