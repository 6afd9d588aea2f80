//! The filters' metrics as an Istio mesh exposes them: the sidecar's real `stats_config` (Istio's
//! stats tags, the `extraStatTags` users add, the bootstrap's inclusion list), and the Grafana
//! dashboard in `istio/dashboards/` against a real Prometheus scraping that sidecar.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod dashboard;
mod sidecar_stats;
mod support;
