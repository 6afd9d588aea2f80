//! Configuration as Envoy loads it: invalid fields are refused by name, every documented field is accepted.

use e2e_harness::serde_json::{json, Value};
use e2e_harness::*;
use tokio::task::JoinSet;

use crate::support::*;

/// A configuration with the filter configured as `config`, only to be validated (no upstream).
fn yaml_with(config: &Value) -> String {
    validation_yaml(fallback_filter(Some(config)))
}

/// A stale response whose `otherwise` nests `depth` levels deep.
fn deep_otherwise(depth: usize) -> Value {
    (0..depth).fold(
        json!({"kind": "static"}),
        |inner, _| json!({"kind": "stale", "otherwise": inner}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configuration_is_rejected_naming_the_field() {
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"rules": [{"name": "r", "triggers": {"status": "503"}, "response": {"kind": "bogus"}}]}),
            "rules[0].response.kind",
        ),
        (
            json!({"rules": [{"name": "r", "triggers": {"status": "503"}, "response": {"kind": "alternate"}}]}),
            "rules[0].response.cluster",
        ),
        (
            json!({"rules": [{"name": "bad name!", "triggers": {"status": "503"}}]}),
            "rules[0].name",
        ),
        (
            json!({"rules": [{"triggers": {"status": "503"}}]}),
            "rules[0].name",
        ),
        (
            json!({"rules": [{"name": "r", "triggers": {"grpcStatus": [17]}}]}),
            "rules[0].triggers.grpcStatus",
        ),
        (
            json!({"rules": [{"name": "r", "triggers": {"envoy": ["meltdown"]}}]}),
            "rules[0].triggers.envoy",
        ),
        (
            json!({"rules": [{"name": "r", "triggers": {"status": "abc"}}]}),
            "rules[0].triggers.status",
        ),
        (
            json!({"rules": [{"name": "ok", "triggers": {"status": "503"}},
                             {"name": "r", "triggers": {"status": "503"}, "response": {"kind": "stale", "ttl": "soon"}}]}),
            "rules[1].response.ttl",
        ),
        (
            json!({"rules": [{"name": "r", "triggers": {"status": "503"},
                             "response": {"kind": "alternate", "cluster": "b", "timeout": "never"}}]}),
            "rules[0].response.timeout",
        ),
        (
            json!({"rules": [{"name": "r", "triggers": {"status": "503"},
                             "response": {"kind": "stale", "otherwise": {"kind": "stale"}}}]}),
            "rules[0].response.otherwise",
        ),
        (json!({"cache": {"maxBytes": -1}}), "cache.maxBytes"),
        // Nesting past serde_json's recursion limit, through the one recursive field: refused in the
        // Wasm VM with one line, no trap.
        (
            json!({"rules": [{"name": "r", "triggers": {"status": "503"}, "response": deep_otherwise(200)}]}),
            "rules[0].response.otherwise",
        ),
        (json!({"cache": {"maxBytes": 1.5}}), "cache.maxBytes"),
        (
            json!({"rules": [{"name": "r", "triggers": {"status": "503"},
                             "response": {"kind": "stale", "privateHeaders": ["x-api-key", "x api key"]}}]}),
            "rules[0].response.privateHeaders",
        ),
    ];
    assert_refused_naming_the_field(cases).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_field_is_accepted() {
    let config = json!({
        "rules": [
            {
                "name": "full_1",
                "match": {
                    "cluster": "upstream",
                    "route": "default",
                    "authority": "example.com",
                    "pathPrefix": "/api",
                    "method": "GET",
                    "header": {"name": "x-tenant", "value": "acme"}
                },
                "triggers": {
                    "status": ["503", "500-599"],
                    "grpcStatus": [0, 14, 16],
                    "envoy": ["connectionFailure", "timeout", "reset", "noHealthyUpstream", "overflow", "localReply"],
                    "circuitBreaker": true
                },
                "response": {"kind": "problem", "status": 503, "title": "Try later",
                             "type": "https://example.com/probs/later"}
            },
            {"name": "full-2", "triggers": {"status": "503"},
             "response": {"kind": "static", "status": 200, "headers": {"content-type": "application/json"},
                          "body": "{\"t\": \"{{traceId}}\", \"r\": \"{{requestId}}\", \"s\": {{status}}, \"why\": \"{{reason}}\"}"}},
            {"name": "full-3", "match": {"header": {"name": "x-canary"}}, "triggers": {"status": "500-599"},
             "response": {"kind": "stale", "ttl": "5m", "maxBodyBytes": 1024, "keyHeaders": ["x-tenant", "accept"],
                          "privateHeaders": ["Authorization", "x-session"],
                          "otherwise": {"kind": "static", "status": 200, "body": "none"}}},
            {"name": "Full4", "triggers": {"envoy": ["timeout"]},
             "response": {"kind": "alternate", "cluster": "backup", "timeout": "250ms", "keyHeaders": ["x-tenant"],
                          "otherwise": {"kind": "problem"}}}
        ],
        "cache": {"maxBytes": 1048576, "maxBodyBytes": 4096},
        "maxSharedMemory": "16Mi",
        "trace": {"responseHeader": "x-trace-id", "traceResponse": true, "filterStateName": "trace_id"}
    });
    validate_yaml(&yaml_with(&config)).unwrap();
    // An empty object is the defaults too.
    validate_yaml(&yaml_with(&json!({}))).unwrap();
}

/// Loads each configuration in Envoy and asserts it is refused with one log line naming its field (or
/// an element of it, or its parent with the reason naming the missing member).
async fn assert_refused_naming_the_field(cases: Vec<(Value, &'static str)>) {
    let mut set = JoinSet::new();
    for (config, field) in cases {
        let yaml = yaml_with(&config);
        set.spawn_blocking(move || (config, field, validate_yaml(&yaml)));
    }
    let mut failures = Vec::new();
    while let Some(joined) = set.join_next().await {
        let (config, field, result) = joined.unwrap();
        let Err(err) = result else {
            failures.push(format!("{config}: accepted"));
            continue;
        };
        let Some(line) = err
            .lines()
            .find(|l| l.contains("fallback: invalid configuration: field `"))
        else {
            failures.push(format!("{config}: no line naming the field:\n{err}"));
            continue;
        };
        let rest = line.split_once("field `").map_or("", |(_, r)| r);
        let (named, reason) = rest.split_once('`').unwrap_or((rest, ""));
        // The field itself (or an element of it), or its parent with the reason naming the missing
        // member.
        if reason.trim_start_matches(':').trim().is_empty() {
            failures.push(format!("{config}: no reason on the line: {line}"));
            continue;
        }
        let last = field.rsplit('.').next().unwrap_or(field);
        let ok = named.starts_with(field)
            || (!named.is_empty()
                && field.starts_with(named)
                && reason.contains(&format!("`{last}`")));
        if !ok {
            failures.push(format!(
                "{config}: names {named:?}, expected {field:?}: {line}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Issue 16 item 4: a configured header name or value that is no valid field (RFC 9110 §5) would split
/// the fallback reply (`b\r\nset-cookie: ...` reached HTTP/1.1 callers as a header of its own), so it
/// is refused at load, naming the field, in rules and their `otherwise` alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue16_item4_configured_header_values_cannot_split_the_response() {
    let rule = |response: Value| json!({"rules": [{"name": "r", "triggers": {"status": "503"}, "response": response}]});
    let cases: Vec<(Value, &str)> = vec![
        (
            rule(
                json!({"kind": "static", "headers": {"x-a": "b\r\nset-cookie: session=attacker"}}),
            ),
            "rules[0].response.headers.x-a",
        ),
        (
            rule(json!({"kind": "static", "headers": {"x-a": "b\nset-cookie: session=attacker"}})),
            "rules[0].response.headers.x-a",
        ),
        (
            rule(json!({"kind": "problem", "headers": {"x-a": "b\u{0}c"}})),
            "rules[0].response.headers.x-a",
        ),
        (
            rule(json!({"kind": "static", "headers": {"x-a": "b\u{1b}c"}})),
            "rules[0].response.headers.x-a",
        ),
        (
            rule(json!({"kind": "static", "headers": {"x-a": "b "}})),
            "rules[0].response.headers.x-a",
        ),
        (
            rule(json!({"kind": "static", "headers": {"x-a\r\nset-cookie": "b"}})),
            "rules[0].response.headers",
        ),
        (
            rule(json!({"kind": "static", "headers": {"content-type": "text/html\r\nx-b: c"}})),
            "rules[0].response.headers.content-type",
        ),
        (
            rule(json!({"kind": "stale", "otherwise": {"kind": "static",
                        "headers": {"content-type": "text/plain\r\nset-cookie: a=b"}}})),
            "rules[0].response.otherwise.headers.content-type",
        ),
    ];
    assert_refused_naming_the_field(cases).await;
    // A tab inside a value is a valid field value.
    validate_yaml(&yaml_with(&rule(
        json!({"kind": "static", "headers": {"x-a": "b\tc", "content-type": "text/plain; charset=utf-8"}}),
    )))
    .unwrap();
}
