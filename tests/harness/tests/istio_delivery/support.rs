//! One sidecar-shaped Envoy (`--concurrency 2`) given the three shipped WasmPlugins the way istiod
//! gives them: ECDS resources (here files, see `e2e_harness::istio`), an inbound and an outbound
//! listener with the sidecar's traffic directions and the filters in istiod's order.
//!
//! Routes, on both listeners: `/dead...` to the cluster `dead` (nothing listens: connection
//! refused, the outage), `/dead2...` to `dead2` (the same, a second breaker key), anything else to
//! the live upstream.

use std::time::{Duration, Instant};

use e2e_harness::istio::{chain, publish_and_wait, Direction, Ecds, WasmPlugin};
pub use e2e_harness::istio::{module_bytes, Update};
use e2e_harness::serde_json::Value;
use e2e_harness::*;

pub const NAMESPACE: &str = "shop";
pub const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
pub const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
/// How long an ECDS file change may take to reach Envoy (inotify, then a main-thread update).
pub const UPDATE_WAIT: Duration = Duration::from_secs(10);
/// Failures in a row before the shipped breaker opens: the filter's default `consecutiveFailures`
/// (with a fresh window it is also below the default `minimumCalls`, 20).
pub const MINIMUM_CALLS: usize = 5;

pub struct Sidecar {
    pub upstream: Upstream,
    pub envoy: Envoy,
    pub ecds: Ecds,
    /// The plugins as currently published, by manifest name.
    pub plugins: Vec<WasmPlugin>,
}

impl Sidecar {
    /// The shipped manifests, published, and Envoy started on them.
    pub async fn start() -> Sidecar {
        Self::start_with(WasmPlugin::base(NAMESPACE)).await
    }

    /// `plugins` published, then Envoy started.
    pub async fn start_with(plugins: Vec<WasmPlugin>) -> Sidecar {
        let upstream = Upstream::start().await;
        let ecds = Ecds::new();
        for p in &plugins {
            ecds.publish(p, &ecds.module(&module_bytes(p)));
        }
        let mut config = EnvoyConfig::new()
            .concurrency(2)
            // xDS subscriptions need a node; this is the shape of a sidecar's.
            .extra_yaml(format!(
                "node: {{id: \"sidecar~127.0.0.1~app-0.{NAMESPACE}~{NAMESPACE}.svc.cluster.local\", cluster: \"app.{NAMESPACE}\"}}"
            ))
            .cluster(Cluster::new("upstream", upstream.port()))
            .cluster(Cluster::new("dead", closed_port()))
            .cluster(Cluster::new("dead2", closed_port()));
        for (name, direction) in [
            ("inbound", Direction::Inbound),
            ("outbound", Direction::Outbound),
        ] {
            let mut l = Listener::new(name)
                .route(Route::to("dead2", "/dead2", "dead2"))
                .route(Route::to("dead", "/dead", "dead"))
                .route(Route::to("main", "/", "upstream"));
            l = match direction {
                Direction::Inbound => l.inbound(),
                Direction::Outbound => l.outbound(),
            };
            for p in chain(&plugins, direction) {
                l = l.filter(ecds.http_filter(p));
            }
            config = config.listener(l);
        }
        let envoy = Envoy::start(config).await;
        Sidecar {
            upstream,
            envoy,
            ecds,
            plugins,
        }
    }

    pub fn plugin(&self, name: &str) -> &WasmPlugin {
        self.plugins
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no plugin {name}"))
    }

    /// Publishes `plugin` with `module` and waits until Envoy accepted (or rejected) it: the ECDS
    /// counters of its resource move.
    pub async fn publish(&mut self, plugin: WasmPlugin, module: &[u8]) -> Update {
        let update = publish_and_wait(&self.envoy, &self.ecds, &plugin, module, UPDATE_WAIT).await;
        if update == Update::Accepted {
            let i = self.plugins.iter().position(|p| p.name == plugin.name);
            match i {
                Some(i) => self.plugins[i] = plugin,
                None => self.plugins.push(plugin),
            }
        }
        update
    }

    /// (`update_success`, `update_rejected`) of a plugin's ECDS subscription. (`config_reload` counts
    /// attempts: it moves for a rejected update too.)
    pub async fn ecds_counters(&self, plugin: &WasmPlugin) -> (u64, u64) {
        e2e_harness::istio::ecds_counters(&self.envoy, plugin).await
    }

    /// Wasm VMs Envoy has created so far (`wasm.envoy.wasm.runtime.v8.created`): base VMs, the
    /// configuration canaries and the per-worker clones.
    pub async fn vms_created(&self) -> u64 {
        self.envoy
            .stat("wasm.envoy.wasm.runtime.v8.created")
            .await
            .unwrap_or(0)
    }

    /// [`Sidecar::vms_created`] once it has stopped moving: worker threads build their VMs for an
    /// accepted update on their own schedule, later on a loaded machine.
    pub async fn vms_created_settled(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = self.vms_created().await;
        let mut same = 0;
        while same < 5 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = self.vms_created().await;
            same = if now == last { same + 1 } else { 0 };
            last = now;
        }
        last
    }

    /// The ECDS resource Envoy holds for `plugin`: (version_info, the Wasm filter config).
    pub async fn held(&self, plugin: &WasmPlugin) -> Option<(String, Value)> {
        let dump = self
            .envoy
            .admin("GET", "/config_dump?resource=ecds_filters")
            .await
            .json();
        dump["configs"].as_array()?.iter().find_map(|c| {
            let f = &c["ecds_filter"];
            (f["name"] == plugin.resource_name().as_str()).then(|| {
                (
                    c["version_info"].as_str().unwrap_or("").to_string(),
                    f["typed_config"]["config"].clone(),
                )
            })
        })
    }

    pub fn port(&self, listener: &str) -> u16 {
        self.envoy.port(listener)
    }
}

/// GET on a listener over HTTP/1.1 (a new connection each time, so both workers take calls).
pub async fn call(port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
    http1(port, "GET", path, headers, "").await
}

/// The fallback's `x-fallback` mark split into (kind, rule, reason), if the reply is the fallback's.
pub fn mark(r: &Response) -> Option<(String, String, String)> {
    let v = r.header("x-fallback")?;
    let mut kind = String::new();
    let mut rule = String::new();
    let mut reason = String::new();
    for (i, part) in v.split(';').map(str::trim).enumerate() {
        if i == 0 {
            kind = part.to_string();
        } else if let Some(x) = part.strip_prefix("rule=") {
            rule = x.to_string();
        } else if let Some(x) = part.strip_prefix("reason=") {
            reason = x.to_string();
        }
    }
    Some((kind, rule, reason))
}

/// Calls `path` on the outbound listener until the fallback answers for an open breaker; returns
/// how many calls that took. Panics after `limit` calls.
pub async fn open_breaker(s: &Sidecar, path: &str, limit: usize) -> usize {
    let port = s.port("outbound");
    for i in 1..=limit {
        let r = call(port, path, &[("traceparent", TRACEPARENT)]).await;
        if mark(&r).is_some_and(|(_, _, reason)| reason == "circuitBreaker") {
            return i;
        }
        assert_eq!(r.status, 503, "call {i} to {path}: {}", r.describe());
        // The breaker records a call when its stream ends, after the caller has the reply.
        if i >= MINIMUM_CALLS {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    panic!("the breaker for {path} did not open within {limit} calls");
}

/// A module with the same code and a custom section appended: different bytes (a new SHA-256, a
/// new VM key), the same behaviour.
pub fn with_custom_section(module: &[u8], label: &str) -> Vec<u8> {
    e2e_harness::istio::with_custom_section(module, b"istio-delivery-test", label)
}

/// How many base VMs Envoy has built so far ("Base Wasm created" in its wasm debug log,
/// source/extensions/common/wasm/wasm.cc): a new base VM means a new VM key, clones on every thread.
pub fn base_vms(s: &Sidecar) -> usize {
    s.envoy.log().matches("Base Wasm created").count()
}

/// Sends `n` outbound requests the upstream answers after `delay_ms`; they are in flight (arrived
/// upstream) when this returns.
pub async fn in_flight(
    s: &Sidecar,
    n: usize,
    delay_ms: u64,
) -> Vec<tokio::task::JoinHandle<Response>> {
    let port = s.port("outbound");
    let before = s.upstream.count_path("/slow");
    let delay = delay_ms.to_string();
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let delay = delay.clone();
            tokio::spawn(async move {
                call(
                    port,
                    "/slow",
                    &[
                        ("traceparent", TRACEPARENT),
                        ("x-upstream-delay-ms", &delay),
                    ],
                )
                .await
            })
        })
        .collect();
    let deadline = Instant::now() + UPDATE_WAIT;
    while s.upstream.count_path("/slow") < before + n {
        assert!(
            Instant::now() < deadline,
            "slow calls did not reach the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    calls
}

/// Every call completed with the upstream's 200, untouched by the fallback.
pub async fn assert_all_ok(calls: Vec<tokio::task::JoinHandle<Response>>) {
    for c in calls {
        let r = c.await.unwrap();
        assert_eq!(
            r.status,
            200,
            "an in-flight request failed: {}",
            r.describe()
        );
        assert!(mark(&r).is_none(), "{}", r.describe());
        assert_eq!(r.header("x-trace-id"), Some(TRACE_ID), "{}", r.describe());
    }
}

/// The next call to `path` is answered by the fallback for an open breaker.
pub async fn assert_breaker_open(s: &Sidecar, path: &str) {
    let r = call(s.port("outbound"), path, &[("traceparent", TRACEPARENT)]).await;
    assert_eq!(
        mark(&r).map(|m| m.2),
        Some("circuitBreaker".to_string()),
        "the breaker for {path} is not open: {}",
        r.describe()
    );
}
