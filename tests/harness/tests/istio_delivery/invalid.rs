//! An invalid pluginConfig (one the filter refuses in on_configure) against the manifests'
//! failStrategy, FAIL_OPEN for all three: what Envoy really does with it, on a running sidecar and
//! on a new one.

use e2e_harness::istio::WasmPlugin;
use e2e_harness::serde_json::{json, Value};

use crate::support::*;

fn invalid_config(name: &str) -> Value {
    match name {
        "trace-context" => json!({"inject": ["no-such-format"]}),
        "fallback" => json!({"rules": [{"name": "x", "response": {"kind": "no-such-kind"}}]}),
        _ => json!({"breakers": [{"name": "per-cluster", "minimumCalls": "many"}]}),
    }
}

/// Running sidecar: Envoy rejects the update (the configuration canary fails, whatever the failure
/// policy) and the previous version keeps serving, filter and state included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_plugin_config_is_rejected_and_the_previous_version_keeps_serving() {
    let mut s = Sidecar::start().await;
    open_breaker(&s, "/dead", 3 * MINIMUM_CALLS).await;
    for name in ["trace-context", "fallback", "circuit-breaker"] {
        let mut p = s.plugin(name).clone();
        assert_eq!(p.fail_strategy, "FAIL_OPEN");
        p.resource_version = "2".into();
        p.plugin_config = Some(invalid_config(name));
        let module = module_bytes(&p);
        let before = s.ecds_counters(&p).await;
        assert_eq!(
            s.publish(p.clone(), &module).await,
            Update::Rejected,
            "{name}"
        );
        let after = s.ecds_counters(&p).await;
        assert_eq!(
            after,
            (before.0, before.1 + 1),
            "{name}: one update, rejected"
        );
    }
    // All three filters still run with their previous configuration: the open breaker rejects, the
    // fallback answers with its rule, trace-context gives the trace id.
    assert_breaker_open(&s, "/dead").await;
    let r = call(s.port("outbound"), "/dead", &[("traceparent", TRACEPARENT)]).await;
    assert_eq!(
        mark(&r).map(|m| m.1),
        Some("envoy-failures".into()),
        "{}",
        r.describe()
    );
    assert_eq!(r.header("x-trace-id"), Some(TRACE_ID));
    let ok = call(s.port("inbound"), "/ok", &[("traceparent", TRACEPARENT)]).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("x-trace-id"), Some(TRACE_ID));
}

/// New sidecar whose first delivery is invalid: the ECDS resource is rejected and there is no
/// previous version nor a default config (istiod sets none), so FAIL_OPEN does not apply: Envoy
/// answers every request on the listeners carrying that filter with a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_plugin_config_at_first_delivery_fails_the_listeners_requests() {
    let mut plugins = WasmPlugin::base(NAMESPACE);
    let cb = plugins
        .iter_mut()
        .find(|p| p.name == "circuit-breaker")
        .unwrap();
    cb.plugin_config = Some(invalid_config("circuit-breaker"));
    let s = Sidecar::start_with(plugins).await;
    assert_eq!(s.ecds_counters(s.plugin("circuit-breaker")).await, (0, 1));
    // Outbound (where the breaker is): even the healthy upstream is unreachable. The fallback,
    // before the missing filter, turns Envoy's 500 into its problem response.
    let r = call(s.port("outbound"), "/ok", &[("traceparent", TRACEPARENT)]).await;
    assert_eq!(r.status, 500, "{}", r.describe());
    assert_eq!(
        mark(&r).map(|m| m.2),
        Some("localReply".into()),
        "{}",
        r.describe()
    );
    assert_eq!(s.upstream.count_path("/ok"), 0);
    // Inbound (no breaker there) is unaffected.
    let ok = call(s.port("inbound"), "/ok", &[("traceparent", TRACEPARENT)]).await;
    assert_eq!(ok.status, 200, "{}", ok.describe());
}
