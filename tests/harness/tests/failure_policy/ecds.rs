//! The trap filter delivered as istiod delivers a WasmPlugin (ECDS, see `e2e_harness::istio`):
//! `failStrategy` from the manifest, no vm_id, the module as a local file. Istio cannot set a VM
//! configuration, so the start trap is written into the resource here; a module that traps in
//! `on_vm_start` gets there on its own.

use std::time::{Duration, Instant};

use e2e_harness::istio::{ecds_counters as counters, Ecds, ProxyVersion, WasmPlugin};
use e2e_harness::serde_json::{json, Value};
use e2e_harness::*;

use crate::support::*;
use Outcome::*;

const STRATEGIES: [&str; 3] = ["FAIL_OPEN", "FAIL_CLOSE", "FAIL_RELOAD"];

fn plugin(strategy: &str, version: &str, trap: Option<&str>) -> WasmPlugin {
    let text = format!(
        "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {{name: trap}}\n\
         spec:\n  url: file:///trap_filter.wasm\n  pluginName: trap\n  failStrategy: {strategy}\n"
    );
    let mut p = WasmPlugin::from_yaml(&text, "shop", version).unwrap();
    if trap == Some("configure") {
        p.plugin_config = Some(json!({"trap": "configure"}));
    }
    p
}

/// Publishes `p`, with the VM configuration `trap:start` when `trap` is `start`.
fn publish(ecds: &Ecds, p: &WasmPlugin, trap: Option<&str>) {
    let code = ecds.module(&std::fs::read(dist("test/trap_filter.wasm")).unwrap());
    let mut resource = p.extension_config(&code, ProxyVersion::CURRENT);
    if trap == Some("start") {
        resource["typed_config"]["config"]["vm_config"]["configuration"] = json!({
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": "trap:start",
        });
    }
    let response: Value = json!({"version_info": p.resource_version, "resources": [resource]});
    ecds.publish_raw(p, &response.to_string());
}

/// Waits until Envoy has taken a position on one more update than `before`.
async fn settled(envoy: &Envoy, p: &WasmPlugin, before: (u64, u64)) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = counters(envoy, p).await;
        if now.0 + now.1 > before.0 + before.1 {
            return now;
        }
        assert!(Instant::now() < deadline, "update not picked up: {now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One outbound listener whose only filter is `p`'s ECDS reference, `--concurrency 1`.
async fn sidecar(ecds: &Ecds, p: &WasmPlugin, upstream: &Upstream) -> Envoy {
    let config = EnvoyConfig::new()
        .concurrency(1)
        .extra_yaml(
            "node: {id: \"sidecar~127.0.0.1~app-0.shop~shop.svc.cluster.local\", cluster: \"app.shop\"}",
        )
        .cluster(Cluster::new("upstream", upstream.port()))
        .listener(
            Listener::new("outbound")
                .outbound()
                .route(Route::to("main", "/", "upstream"))
                .filter(ecds.http_filter(p)),
        );
    Envoy::start(config).await
}

/// A new sidecar whose first delivery traps at start or in on_configure: the resource is rejected
/// and, with no previous version and no default config, every request on the listener gets a 500
/// under every failStrategy (as for a pluginConfig the filter refuses, istio/README.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_a_first_delivery_that_traps_at_start_or_configuration_fails_every_request() {
    for strategy in STRATEGIES {
        for trap in ["start", "configure"] {
            let upstream = Upstream::start().await;
            let ecds = Ecds::new();
            let p = plugin(strategy, "1", Some(trap));
            publish(&ecds, &p, Some(trap));
            let envoy = sidecar(&ecds, &p, &upstream).await;
            assert_eq!(counters(&envoy, &p).await, (0, 1), "{strategy} {trap}");
            let port = envoy.port("outbound");
            for _ in 0..3 {
                assert_eq!(
                    call(port, &upstream, None).await,
                    Other(500, false),
                    "{strategy} {trap}"
                );
            }
        }
    }
}

/// A running sidecar: updates that trap at start or in on_configure are rejected under every
/// failStrategy and the previous VM keeps serving. A mid-request trap then follows the strategy
/// as in a static configuration: FAIL_OPEN skips the filter, FAIL_CLOSE fails every later
/// request, FAIL_RELOAD builds a new VM (`wasm.shop.trap.vm_reload_success`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_updates_that_trap_are_rejected_and_mid_request_traps_follow_the_strategy() {
    for strategy in STRATEGIES {
        let upstream = Upstream::start().await;
        let ecds = Ecds::new();
        let good = plugin(strategy, "1", None);
        publish(&ecds, &good, None);
        let envoy = sidecar(&ecds, &good, &upstream).await;
        let port = envoy.port("outbound");
        let serving = vm(&call(port, &upstream, None).await);
        for (version, trap) in [("2", "start"), ("3", "configure")] {
            let p = plugin(strategy, version, Some(trap));
            let before = counters(&envoy, &p).await;
            publish(&ecds, &p, Some(trap));
            let after = settled(&envoy, &p, before).await;
            assert_eq!(
                after,
                (before.0, before.1 + 1),
                "{strategy} {trap}: rejected"
            );
            assert_eq!(
                call(port, &upstream, None).await,
                Filtered(serving.clone()),
                "{strategy} {trap}: the previous VM serves"
            );
        }
        assert_eq!(call(port, &upstream, Some("request-headers")).await, Failed);
        match strategy {
            "FAIL_OPEN" => assert_eq!(call(port, &upstream, None).await, Skipped),
            "FAIL_CLOSE" => assert_eq!(call(port, &upstream, None).await, Failed),
            _ => {
                let (waits, _) = until_new_vm(port, &upstream, &serving).await;
                assert!(waits.iter().all(|o| *o == Failed), "{waits:?}");
                assert_eq!(stat(&envoy, "wasm.shop.trap.vm_reload_success").await, 1);
            }
        }
    }
}
