//! Soak tests: one sidecar-shaped Envoy with the three shipped WasmPlugins under a steady load of
//! `SOAK_SECONDS` (default 60) while faults are injected (`faults`) and while each filter's
//! configuration and module change through ECDS (`live_changes`). Both are `#[ignore]`d so the
//! ordinary end-to-end run stays short; `make soak-short` (part of `make test`) and `make soak` run
//! them, one at a time. Findings and figures: docs/reliability.md.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod faults;
mod live_changes;
mod support;
