//! Pieces every filter shares: configuration parsing with field-named errors and limits, a host-call
//! layer that never panics, the rules the filters must apply alike (Envoy's failure reasons, W3C
//! `traceparent`, request matching, shared-data key names), Istio-style metric names, and id generation.
//!
//! The host seam: `host` holds the `Host` trait (every host call a filter makes) and `ProxyHost`, the
//! only code calling the proxy-wasm ABI; `fake_host` (cargo feature `test-support`) is a `Host` in
//! memory for unit tests. Over the trait: `plugin` (configuration loading), `request` (request
//! attributes), `metrics` (`Counter`, `Gauge`) and `shared` (shared data as the stores see it, with an
//! in-memory store for tests). `perf` counts host calls and allocations per request (cargo feature
//! `count-host-calls`). Every other module is plain Rust, unit-tested natively.

pub mod config;
pub mod duration;
pub mod failure;
#[cfg(any(test, feature = "test-support"))]
pub mod fake_host;
pub mod hash;
pub mod headers;
pub mod hex;
pub mod host;
pub mod http_field;
pub mod ids;
pub mod keyed_hash;
pub mod keys;
pub mod limits;
pub mod matching;
pub mod metrics;
pub mod perf;
pub mod plugin;
pub mod request;
pub mod response_flags;
pub mod shared;
pub mod slots;
pub mod status;
pub mod text;
pub mod w3c;
pub mod wire;

/// The maps of the filters: hashbrown's, which proxy-wasm links anyway. std's `HashMap` asks WASI for
/// random keys, and that call's `expect` alone keeps core's `{:?}` of strings and its Unicode tables
/// (about 12 KB) in a module. Every key is from configuration (rule and breaker names, slot numbers),
/// none from a request, so keys an attacker picks to collide are not a concern.
pub use hashbrown::HashMap;
