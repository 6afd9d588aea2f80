//! End-to-end harness for the proxy-wasm filters: a controllable upstream ([`Upstream`]), the real
//! Envoy on a generated config ([`Envoy`], [`EnvoyConfig`]) and HTTP/1.1, h2c and gRPC clients.
//!
//! ```no_run
//! # async fn demo() {
//! use e2e_harness::*;
//! let upstream = Upstream::start().await;
//! let envoy = Envoy::start(
//!     EnvoyConfig::simple("ingress", upstream.port())
//!         .filter_all(WasmFilter::new("trace_context", dist("trace_context.wasm"))),
//! )
//! .await;
//! let resp = http1(envoy.port("ingress"), "GET", "/", &[("traceparent", "00-...")], "").await;
//! assert_eq!(resp.status, 200);
//! let _forwarded = resp.echo_header("traceparent");
//! # }
//! ```

// Test support: failing loudly is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod client;
pub mod config;
pub mod envoy;
pub mod istio;
pub mod istio_stats;
pub mod load;
pub mod prom;
pub mod prometheus;
pub mod upstream;

pub use client::{
    grpc_unary, http1, http2, raw_http1, try_grpc_unary, try_http1, try_http1_at, try_http2,
    GrpcResponse, Response, CLIENT_TIMEOUT,
};
pub use config::{
    dist, stat_tag_regex, stats_tags_yaml, validation_yaml, wasm_runtime, workspace_root, Cluster,
    EnvoyConfig, HttpFilter, Listener, Route, RouteAction, WasmFilter, INGRESS, STAT_TAGS,
};
pub use envoy::{
    envoy_bin, envoy_version, get, get_h2, validate, validate_yaml, Envoy, READY_TIMEOUT,
    RECORD_WAIT,
};
pub use istio_stats::{SidecarStats, FILTER_STAT_TAGS};
pub use prom::{assert_series, prom_lines, prom_sum, wait_series, Absent, Series};
pub use prometheus::{percent_encode, prometheus_bin, Prometheus};
pub use upstream::{closed_port, free_port, grpc_frame, Recorded, Upstream};

pub use bytes::Bytes;
pub use serde_json;
