//! Pieces every filter shares: configuration parsing with field-named errors, a host-call layer that
//! never panics, Istio-style metric names, and id generation.
//!
//! Everything except `host` is plain Rust, unit-tested natively.

pub mod config;
pub mod duration;
pub mod failure;
pub mod hash;
pub mod headers;
pub mod hex;
pub mod host;
pub mod ids;
pub mod keys;
pub mod limits;
pub mod matching;
pub mod metrics;
pub mod plugin;
pub mod response_flags;
pub mod status;
pub mod w3c;
pub mod wire;
