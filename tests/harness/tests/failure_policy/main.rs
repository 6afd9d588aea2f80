//! What callers get under each `failure_policy` (FAIL_OPEN, FAIL_CLOSED, FAIL_RELOAD) when a VM
//! traps at start, in `on_configure` or mid-request, with the test-only module
//! dist/test/trap_filter.wasm (tests/trap-filter) that traps on command. Static configuration in
//! `static_config`, delivery as istiod does it (ECDS) in `ecds`. The table of results is in
//! docs/reliability.md, "Failure policies".

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod ecds;
mod static_config;
mod support;
