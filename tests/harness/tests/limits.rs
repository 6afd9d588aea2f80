//! Issue 7 item 3: limits an operator can see. Each filter computes the worst-case shared memory of its
//! configuration at load and refuses one above `maxSharedMemory`, and caps its strings, with one log
//! line naming the field; the real Envoy (`--mode validate` runs each plugin's configuration) shows it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use e2e_harness::*;
use serde_json::{json, Value};
use tokio::task::JoinSet;

/// A configuration with the filter named `filter` (its log prefix) configured as `config`, only to be
/// validated.
fn yaml_for(filter: &str, config: &Value) -> String {
    validation_yaml(WasmFilter::project(filter).config_json(config))
}

/// The field the one `invalid configuration` log line names, and the line.
fn refused_field(filter: &str, err: &str) -> (String, String) {
    let marker = format!("{filter}: invalid configuration: field `");
    let line = err
        .lines()
        .find(|l| l.contains(&marker))
        .unwrap_or_else(|| panic!("no line naming the field:\n{err}"));
    let field = line
        .split("field `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .unwrap_or("")
        .to_string();
    (field, line.to_string())
}

fn breakers(count: usize, max_keys: u32) -> Value {
    let list: Vec<Value> = (0..count)
        .map(|i| json!({"name": format!("b{i}"), "match": {"pathPrefix": format!("/b{i}")}, "maxKeys": max_keys}))
        .collect();
    json!({ "breakers": list })
}

fn stale_rule(cache: Value) -> Value {
    json!({
        "rules": [{"name": "s", "triggers": {"status": "503"}, "response": {"kind": "stale"}}],
        "cache": cache
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item3_oversized_configurations_are_refused_naming_the_field() {
    let long = "x".repeat(70_000);
    let long_name = "a".repeat(300);
    // (filter, configuration, field named, words the reason must hold)
    let cases: Vec<(&str, Value, String, &str)> = vec![
        // The configuration: 1000 breakers of 10000 keys each.
        (
            "circuit-breaker",
            breakers(1000, 10_000),
            ".maxKeys".into(),
            "above maxSharedMemory 64.0 MiB",
        ),
        // One breaker is enough when its window is large.
        (
            "circuit-breaker",
            json!({"breakers": [{"name": "big", "maxKeys": 1000, "window": {"type": "count", "size": 1000}}]}),
            "breakers[0].maxKeys".into(),
            "maxSharedMemory",
        ),
        // The ceiling is the operator's: lowered, the default configuration no longer fits.
        (
            "circuit-breaker",
            json!({"maxSharedMemory": "1Mi"}),
            "breakers[0].maxKeys".into(),
            "above maxSharedMemory 1.0 MiB",
        ),
        (
            "circuit-breaker",
            json!({"statusHeader": long}),
            "statusHeader".into(),
            // A header name's own limit; no string is longer than 65536 bytes either.
            "at most 256",
        ),
        (
            "circuit-breaker",
            json!({"breakers": [{"name": "h", "keyBy": format!("header:{long_name}")}]}),
            "breakers[0].keyBy".into(),
            "",
        ),
        (
            "circuit-breaker",
            json!({"breakers": [{"name": "m", "match": {"pathPrefix": "/".repeat(2000)}}]}),
            "breakers[0].match.pathPrefix".into(),
            "at most 1024",
        ),
        // A whole document over 1 MiB (the 50 MB string, smaller).
        (
            "circuit-breaker",
            json!({"statusHeader": "x".repeat(2 << 20)}),
            "(root)".into(),
            "at most 1.0 MiB",
        ),
        (
            "fallback",
            stale_rule(json!({"maxBytes": 1 << 30, "maxBodyBytes": 16 << 20})),
            "cache.maxBytes".into(),
            "above maxSharedMemory 64.0 MiB",
        ),
        (
            "fallback",
            json!({"rules": [{"name": "s", "triggers": {"status": "503"}, "response": {"kind": "static", "body": long}}]}),
            "rules[0].response.body".into(),
            "at most 65536",
        ),
        (
            "fallback",
            json!({"rules": [{"name": "s", "triggers": {"status": "503"}, "response": {"kind": "static", "headers": {"x-note": "n".repeat(9000)}}}]}),
            "rules[0].response.headers.x-note".into(),
            "at most 8192",
        ),
        (
            "fallback",
            json!({"rules": [{"name": "s", "triggers": {"status": "503"}, "response": {"kind": "stale", "keyHeaders": [long_name]}}]}),
            "rules[0].response.keyHeaders".into(),
            "at most 256",
        ),
        (
            "trace-context",
            json!({"correlation": {"enabled": true, "slots": 1_048_576}}),
            "correlation.slots".into(),
            "above maxSharedMemory 64.0 MiB",
        ),
        (
            "trace-context",
            json!({"baggage": {"allowKeys": [long]}}),
            "baggage.allowKeys[0]".into(),
            "at most 256",
        ),
        (
            "trace-context",
            json!({"responseHeader": long_name}),
            "responseHeader".into(),
            "at most 256",
        ),
    ];
    let mut set = JoinSet::new();
    for (filter, config, field, reason) in cases {
        let yaml = yaml_for(filter, &config);
        set.spawn_blocking(move || (filter, field, reason, validate_yaml(&yaml)));
    }
    while let Some(joined) = set.join_next().await {
        let (filter, field, reason, result) = joined.unwrap();
        let err = result.expect_err(&format!(
            "{filter}: Envoy must refuse the configuration for {field}"
        ));
        let (named, line) = refused_field(filter, &err);
        assert!(
            named.contains(field.as_str()),
            "{filter}: named {named:?}, expected {field:?}:\n{line}"
        );
        assert!(line.contains(reason), "{filter} {field}: {line}");
    }
}

/// What fits is accepted: the defaults, a large configuration once `maxSharedMemory` is raised for it,
/// and strings at their limits; and a filter loaded that way serves traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item3_configurations_within_the_limits_load_and_serve() {
    let at_limit = "x".repeat(65_536);
    let cases: Vec<(&str, Value)> = vec![
        ("circuit-breaker", json!({})),
        ("circuit-breaker", {
            let mut c = breakers(10, 1000);
            c["maxSharedMemory"] = json!("512Mi");
            c
        }),
        ("fallback", stale_rule(json!({}))),
        ("fallback", {
            let mut c = stale_rule(json!({"maxBytes": 128 << 20}));
            c["maxSharedMemory"] = json!(256 << 20);
            c
        }),
        (
            "fallback",
            json!({"rules": [{"name": "s", "triggers": {"status": "503"}, "response": {"kind": "static", "body": at_limit}}]}),
        ),
        ("trace-context", json!({"correlation": {"enabled": true}})),
        (
            "trace-context",
            json!({"correlation": {"enabled": true, "slots": 1_048_576}, "maxSharedMemory": "2Gi"}),
        ),
    ];
    let mut set = JoinSet::new();
    for (filter, config) in cases {
        let yaml = yaml_for(filter, &config);
        set.spawn_blocking(move || (filter, config, validate_yaml(&yaml)));
    }
    while let Some(joined) = set.join_next().await {
        let (filter, config, result) = joined.unwrap();
        if let Err(e) = result {
            panic!(
                "{filter} must accept {}: {e}",
                &config.to_string()[..200.min(config.to_string().len())]
            );
        }
    }

    // Loaded for real: a raised ceiling is a working breaker, not only a valid document.
    let upstream = Upstream::start().await;
    let mut config = breakers(10, 1000);
    config["maxSharedMemory"] = json!("512Mi");
    let envoy = Envoy::start(
        EnvoyConfig::simple(INGRESS, upstream.port())
            .filter_all(WasmFilter::project("circuit-breaker").config_json(&config)),
    )
    .await;
    let r = get(&envoy, "/b3/ok", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
}
