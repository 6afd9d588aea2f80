//! The circuit-breaker filter in the real Envoy (`--concurrency 2`), against a real upstream whose
//! failures, delays and hangs are chosen per request. Every request opens its own connection, so the
//! traffic of each test is spread over both workers and the breaker state must be sidecar-wide.
//!
//! Outcomes are recorded when a stream ends, a few milliseconds after the client has the response, so
//! after the calls that trip a breaker the tests poll for the first rejection
//! ([`support::until_rejected`]) with requests that cannot trip it by themselves, and only then assert
//! exact counts. One module per concern of the filter.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod cancel;
mod classify;
mod config;
mod half_open;
mod hard_down;
mod keys;
mod load;
mod matching;
mod metrics;
mod modes;
mod overload;
mod support;
mod tripping;
