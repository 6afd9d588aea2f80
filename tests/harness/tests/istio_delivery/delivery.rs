//! What Envoy holds after the delivery: the ECDS resources istiod would send and the listeners'
//! chains in istiod's order.

use e2e_harness::istio::{struct_json, Direction, RESOURCE_VERSION_ENV, RUNTIME};
use e2e_harness::serde_json::Value;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_holds_each_plugin_as_istiod_sends_it() {
    let s = Sidecar::start().await;
    for p in &s.plugins {
        let (version, config) = s
            .held(p)
            .await
            .unwrap_or_else(|| panic!("{} not held", p.name));
        assert_eq!(version, "1");
        assert_eq!(
            config["name"],
            Value::from(format!("{NAMESPACE}.{}", p.name))
        );
        assert_eq!(config["root_id"], Value::from(p.plugin_name.as_str()));
        assert_eq!(config["failure_policy"], "FAIL_OPEN", "{config}");
        let vm = &config["vm_config"];
        assert_eq!(vm["runtime"], RUNTIME);
        // No vm_id: every plugin shares one shared-data namespace.
        assert!(vm.get("vm_id").is_none(), "{vm}");
        assert!(vm["code"]["local"]["filename"].is_string(), "{vm}");
        assert_eq!(
            vm["environment_variables"]["key_values"][RESOURCE_VERSION_ENV],
            "1"
        );
        // pluginConfig travels as JSON text; Struct numbers are doubles (1.0 arrives as 1).
        let json: Value =
            e2e_harness::serde_json::from_str(config["configuration"]["value"].as_str().unwrap())
                .unwrap();
        assert_eq!(
            struct_json(&json),
            struct_json(p.plugin_config.as_ref().unwrap())
        );
    }
    // Listener directions and the chain order istiod builds from phase and priority.
    let dump = s
        .envoy
        .admin("GET", "/config_dump?resource=static_listeners")
        .await
        .json();
    for (listener, direction, chain) in [
        ("inbound", Direction::Inbound, vec!["trace-context"]),
        (
            "outbound",
            Direction::Outbound,
            vec!["trace-context", "fallback", "circuit-breaker"],
        ),
    ] {
        let l = dump["configs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| &c["listener"])
            .find(|l| l["name"] == listener)
            .unwrap();
        let want = match direction {
            Direction::Inbound => "INBOUND",
            Direction::Outbound => "OUTBOUND",
        };
        assert_eq!(l["traffic_direction"], want);
        let names: Vec<String> = l["filter_chains"][0]["filters"][0]["typed_config"]
            ["http_filters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect();
        let mut expected: Vec<String> = chain
            .iter()
            .map(|n| format!("extensions.istio.io/wasmplugin/{NAMESPACE}.{n}"))
            .collect();
        expected.push("envoy.filters.http.router".into());
        assert_eq!(names, expected, "{listener}");
    }
}
