//! Changing a WasmPlugin while traffic flows: a new pluginConfig (so a new resource version) and a
//! new module, delivered by ECDS to the running Envoy.

use e2e_harness::envoy_version;
use e2e_harness::istio::{sha256_hex, WasmPlugin};
use e2e_harness::serde_json::json;

use crate::support::*;

/// The shipped breaker with `consecutiveFailures` 2: observable as a breaker that opens after 2
/// failures instead of the default 5.
fn quicker_breaker(s: &Sidecar, resource_version: &str) -> WasmPlugin {
    let mut cb = s.plugin("circuit-breaker").clone();
    cb.resource_version = resource_version.to_string();
    cb.plugin_config = Some(json!({"breakers": [
        {"name": "per-cluster", "keyBy": "cluster", "maxKeys": 200, "envoyOverloaded": true,
         "consecutiveFailures": 2}
    ]}));
    cb
}

/// VMs built by an accepted update: (new base VMs, VMs created in all).
struct Built {
    bases: usize,
    vms: u64,
}

/// Opens the breaker of `/dead`, puts requests in flight, publishes `plugin` with `module`, and
/// checks that the in-flight requests all succeed and the open breaker stayed open.
async fn update_under_traffic(s: &mut Sidecar, plugin: WasmPlugin, module: &[u8]) -> Built {
    open_breaker(s, "/dead", 3 * MINIMUM_CALLS).await;
    let (created, bases) = (s.vms_created().await, base_vms(s));
    let calls = in_flight(s, 6, 1500).await;
    assert_eq!(s.publish(plugin, module).await, Update::Accepted);
    let vms = s.vms_created_settled().await - created;
    let built = Built {
        bases: base_vms(s) - bases,
        vms,
    };
    assert_all_ok(calls).await;
    // The breaker's record is in shared data, which outlives root contexts and VMs.
    assert_breaker_open(s, "/dead").await;
    built
}

/// The new configuration decides: another cluster's breaker opens after 2 failures, not 5.
async fn assert_quicker_breaker(s: &Sidecar) {
    let n = open_breaker(s, "/dead2", 3 * MINIMUM_CALLS).await;
    assert!(
        n < MINIMUM_CALLS,
        "opened after {n} calls: the old consecutiveFailures still applies"
    );
}

/// What Istio does on every edit: new pluginConfig and a new resource version in the VM's
/// environment. Envoy builds a new VM set; shared data (the breaker's state) outlives it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_plugin_config_takes_effect_in_new_vms_without_failing_requests() {
    let mut s = Sidecar::start().await;
    let pid = s.envoy.pid();
    let cb = quicker_breaker(&s, "2");
    let module = module_bytes(&cb);
    let built = update_under_traffic(&mut s, cb, &module).await;
    if envoy_version() >= (1, 39, 0) {
        // A new base VM and its clones: canary, main thread, 2 workers. Since Envoy 1.39 the VM's
        // environment (Istio's resource version) is part of the VM key.
        assert_eq!((built.bases, built.vms), (1, 5));
    } else {
        // Envoy 1.36 to 1.38 key VMs by vm_id, VM configuration and code only: the existing VMs get a
        // new root context; only the configuration canary is built.
        assert_eq!((built.bases, built.vms), (0, 1));
    }
    assert_quicker_breaker(&s).await;
    // Same process, listeners untouched (ECDS does not drain them).
    assert_eq!(s.envoy.pid(), pid);
    assert_eq!(
        s.envoy.stat("listener_manager.listener_modified").await,
        Some(0)
    );
}

/// The VM key: a configuration change alone (same code, same environment) gets a new root context
/// in the existing VMs; only the configuration canary VM is built.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_resource_version_with_a_new_plugin_config_reuses_the_vms() {
    let mut s = Sidecar::start().await;
    let cb = quicker_breaker(&s, "1");
    let module = module_bytes(&cb);
    let built = update_under_traffic(&mut s, cb, &module).await;
    assert_eq!((built.bases, built.vms), (0, 1));
    assert_quicker_breaker(&s).await;
}

/// A new module version (new bytes: the same code with a custom section appended) is a new VM key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_module_version_builds_new_vms_and_keeps_breaker_state() {
    let mut s = Sidecar::start().await;
    let mut cb = s.plugin("circuit-breaker").clone();
    cb.resource_version = "2".into();
    let module = with_custom_section(&module_bytes(&cb), "0.1.1");
    let built = update_under_traffic(&mut s, cb.clone(), &module).await;
    assert_eq!((built.bases, built.vms), (1, 5));
    let (_, held) = s.held(&cb).await.unwrap();
    let file = held["vm_config"]["code"]["local"]["filename"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(file.contains(&sha256_hex(&module)), "{file}");
}
