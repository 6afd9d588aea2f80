//! The trace-context filter in the real Envoy (`--concurrency 2`), with real HTTP/1.1, HTTP/2 and gRPC
//! traffic to a real upstream that echoes what Envoy forwarded. One module per concern of the filter.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod config;
mod correlation;
mod observability;
mod propagation;
mod support;
mod validation;
