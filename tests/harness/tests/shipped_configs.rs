//! Every configuration the project ships (the local Envoy config, Docker Compose, the Istio manifests)
//! is checked against the real Envoy and the built modules.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use e2e_harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_envoy_config_is_valid_and_carries_the_stat_tags() {
    let path = workspace_root().join("envoy/envoy.yaml");
    validate(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    for tag in STAT_TAGS {
        let line = format!("{{ tag_name: {tag}, regex: \"({tag}=\\\\.=(.*?);\\\\.;)\" }}");
        assert!(text.contains(&line), "envoy/envoy.yaml lacks {line}");
    }
}

/// `make docker-up` must run the very file `make run` runs, not a copy.
#[test]
fn docker_compose_uses_the_shared_envoy_config() {
    let compose = std::fs::read_to_string(workspace_root().join("docker-compose.yaml")).unwrap();
    assert!(compose.contains("./envoy:/work/envoy:ro"), "{compose}");
    assert!(compose.contains("./dist:/work/dist:ro"), "{compose}");
    assert!(
        compose.contains("\"-c\", \"envoy/envoy.yaml\""),
        "{compose}"
    );
    assert!(compose.contains("working_dir: /work"), "{compose}");
}

/// The `pluginConfig` of every shipped WasmPlugin is loaded by its real filter in Envoy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_plugin_configs_are_accepted_by_their_filters() {
    let upstream = Upstream::start().await;
    for (manifest, module) in [
        ("istio/base/trace-context.yaml", "trace_context.wasm"),
        ("istio/base/circuit-breaker.yaml", "circuit_breaker.wasm"),
        ("istio/base/fallback.yaml", "fallback.wasm"),
        (
            "istio/examples/inbound-shedding.yaml",
            "circuit_breaker.wasm",
        ),
    ] {
        let text = std::fs::read_to_string(workspace_root().join(manifest)).unwrap();
        let start = text
            .find("pluginConfig: {")
            .expect("pluginConfig in JSON flow style")
            + "pluginConfig: ".len();
        let end = text[start..].find("\n  }").expect("closing brace") + start + 4;
        let json: serde_json::Value = serde_json::from_str(&text[start..end]).unwrap();
        let name = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("pluginName: "))
            .expect("pluginName");
        let yaml = EnvoyConfig::new()
            .listener(
                Listener::new("ingress")
                    .filter(
                        WasmFilter::new(name, dist(module))
                            .vm_id(name)
                            .configuration(json.to_string()),
                    )
                    .route(Route::to("default", "/", "upstream")),
            )
            .cluster(Cluster::new("upstream", upstream.port()))
            .render();
        validate_yaml(&yaml).unwrap_or_else(|e| panic!("{manifest}: {e}"));
    }
}
