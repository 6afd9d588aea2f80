//! The fallback filter in the real Envoy (`--concurrency 2`), against real upstreams whose failures,
//! delays and hangs are chosen per request. Every request opens its own connection, so the traffic of
//! each test is spread over both workers (the stale cache must be sidecar-wide).
//!
//! Every Envoy here has the same routes: `/dead...` goes to a cluster whose port nothing listens on
//! (connection refused), `/slow...` to the live upstream with a 300 ms route timeout, anything else to
//! the live upstream (over h2c, so gRPC trailers pass end to end). One module per concern of the filter.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod alternate;
mod breaker;
mod cache_control;
mod config;
mod grpc;
mod metrics;
mod problem;
mod retry_after;
mod shared_cache;
mod stale_cache;
mod static_response;
mod support;
mod trace;
