//! Configuration as Envoy loads it: invalid fields are refused by name, every documented field is accepted.

use e2e_harness::serde_json::{json, Value};
use e2e_harness::*;
use tokio::task::JoinSet;

use crate::support::*;

/// A configuration with the filter configured as `config`, only to be validated (no upstream).
fn yaml_with(config: &Value) -> String {
    validation_yaml(cb_filter(Some(config)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configuration_is_rejected_naming_the_field() {
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"breakers": [{"name": "x", "failureRateThreshold": 150}]}),
            "failureRateThreshold",
        ),
        (json!({"breakers": [{"name": "bad name!"}]}), "name"),
        (
            json!({"breakers": [{"name": "x", "window": {"type": "sliding"}}]}),
            "type",
        ),
        (
            json!({"breakers": [{"name": "x", "openDuration": "soon"}]}),
            "openDuration",
        ),
        (
            json!({"breakers": [{"name": "x", "keyBy": "tenant"}]}),
            "keyBy",
        ),
        (
            json!({"breakers": [{"name": "x", "rejectStatus": 200}]}),
            "rejectStatus",
        ),
        (
            json!({"breakers": [{"name": "x", "openJitter": 0.9}]}),
            "openJitter",
        ),
        (
            json!({"breakers": [{"name": "x", "halfOpenProbes": 0}]}),
            "halfOpenProbes",
        ),
        (
            json!({"breakers": [{"name": "x", "mode": "sometimes"}]}),
            "mode",
        ),
        // Issue 16 item 7: loading costs about a millisecond per breaker in every VM.
        (
            json!({"breakers": (0..1001).map(|i| json!({"name": format!("b{i}")})).collect::<Vec<_>>()}),
            "breakers",
        ),
    ];
    let mut set = JoinSet::new();
    for (config, field) in cases {
        let yaml = yaml_with(&config);
        set.spawn_blocking(move || (config, field, validate_yaml(&yaml)));
    }
    while let Some(joined) = set.join_next().await {
        let (config, field, result) = joined.unwrap();
        let err = result.expect_err(&format!("Envoy must refuse {config}"));
        let line = err
            .lines()
            .find(|l| l.contains("circuit-breaker: invalid configuration: field `"))
            .unwrap_or_else(|| panic!("{config}: no line naming the field:\n{err}"));
        let named = line
            .split("field `")
            .nth(1)
            .and_then(|rest| rest.split('`').next())
            .unwrap_or("");
        assert!(
            named.contains(field),
            "{config}: the error names field {named:?}, expected {field:?}:\n{line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_field_is_accepted() {
    let config = json!({
        "statusHeader": "x-breaker",
        // The first breaker (10000 keys, a 60-bucket window) needs about 920 MiB in the worst case.
        "maxSharedMemory": "1Gi",
        "breakers": [
            {
                "name": "full_1",
                "match": {
                    "cluster": "upstream",
                    "route": "default",
                    "authority": "Example.com",
                    "pathPrefix": "/api",
                    "method": "GET",
                    "header": {"name": "x-tenant", "value": "acme"}
                },
                "keyBy": "header:x-tenant",
                "maxKeys": 10000,
                "mode": "dryRun",
                "window": {"type": "time", "duration": "1h", "buckets": 60},
                "minimumCalls": 5,
                "failureRateThreshold": 100,
                "slowCallDuration": "2s",
                "slowCallRateThreshold": 1,
                "consecutiveFailures": 5,
                "classify": [
                    {"envoy": ["overflow"], "outcome": "ignore"},
                    {"envoy": ["connectionFailure", "timeout", "reset", "noHealthyUpstream", "noResponse"], "outcome": "failure"},
                    {"envoy": ["downstreamCancel"], "outcome": "failure"},
                    {"status": "404", "outcome": "success"},
                    {"status": ["500", "502-504"], "outcome": "failure"},
                    {"grpcStatus": [4, 13, 14], "outcome": "failure"}
                ],
                "openDuration": "1s",
                "openDurationMultiplier": 10.0,
                "maxOpenDuration": "30s",
                "openJitter": 0.5,
                "halfOpenProbes": 1000,
                "maxHalfOpenDuration": "10s",
                "rejectStatus": 599,
                "retryAfter": false,
                "envoyOverloaded": true
            },
            {"name": "full-2", "match": {"header": {"name": "x-canary"}}, "keyBy": "authority",
             "window": {"type": "count", "size": 1000}, "maxKeys": 1, "mode": "forcedOpen"},
            {"name": "full-3", "keyBy": "route", "mode": "disabled", "window": {"type": "time", "duration": "1s", "buckets": 1}},
            {"name": "Full4", "keyBy": "cluster", "mode": "normal", "window": {"type": "count", "size": 1},
             "failureRateThreshold": 1, "openDurationMultiplier": 1.0, "openJitter": 0.0, "rejectStatus": 400}
        ]
    });
    validate_yaml(&yaml_with(&config)).unwrap();
    // An empty configuration object is the defaults too.
    validate_yaml(&yaml_with(&json!({}))).unwrap();
}
