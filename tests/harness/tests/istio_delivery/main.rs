//! The shipped WasmPlugins delivered to one real Envoy (`--concurrency 2`) as istiod and istio-agent
//! deliver them (ECDS, no vm_id, the module as a local file, the resource version in the VM
//! environment), then changed while traffic flows. The findings are in istio/README.md, "What
//! happens when ...".

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod delivery;
mod invalid;
mod outage;
mod shared_data;
mod support;
mod update;
