//! The fallback filter: a useful answer instead of a raw failure.
//!
//! Pure logic (configuration, triggers, rendering and escaping, the stale cache's entries) is plain Rust
//! tested natively; `filter` is the thin proxy-wasm adapter.

pub mod cache;
pub mod config;
pub mod memory;
pub mod policy;
pub mod render;
pub mod trace;
pub mod trigger;

mod filter;
