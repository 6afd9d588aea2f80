//! gRPC callers always get a gRPC status: trailers-only failures, status in trailers, HTTP statuses
//! mapped to gRPC codes.

use e2e_harness::serde_json::{json, Value};
use e2e_harness::*;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_callers_get_unavailable_for_connection_refused() {
    let (_upstream, envoy) = setup(None).await;
    let port = envoy.port("ingress");
    let r = grpc_unary(
        port,
        "/dead.v1.Svc/Call",
        &[("traceparent", TRACEPARENT), ("accept", "application/json")],
        b"hi",
    )
    .await;
    assert_grpc_trailers_only(&r, 14);
    assert!(
        r.grpc_message.as_deref().is_some_and(|m| !m.is_empty()),
        "a grpc-message: {r:?}"
    );
    let m = grpc_mark(&r);
    assert_eq!(
        (m.kind.as_str(), m.rule.as_str()),
        ("problem", "default"),
        "{r:?}"
    );
    // A good gRPC call passes untouched.
    let r = grpc_unary(port, "/pkg.v1.Svc/Call", &[], b"hi").await;
    assert_eq!(r.grpc_status, Some(0), "{r:?}");
    assert_eq!(r.message_json()["path"], json!("/pkg.v1.Svc/Call"));
    assert_eq!(r.header(FALLBACK_HEADER), None, "{r:?}");
}

/// Rules for the gRPC tests: a problem and a static rule on gRPC UNAVAILABLE, a problem rule mapping
/// HTTP statuses, and a static rule (status 200) on HTTP statuses.
fn grpc_rules() -> Value {
    json!({"rules": [
        {"name": "grpc-problem", "match": {"pathPrefix": "/pkg.Svc/"},
         "triggers": {"grpcStatus": [14]}, "response": {"kind": "problem"}},
        {"name": "grpc-static", "match": {"pathPrefix": "/static.Svc/"},
         "triggers": {"grpcStatus": [14]},
         "response": {"kind": "static", "status": 200, "headers": {"content-type": "text/plain"},
                      "body": "static body"}},
        {"name": "map", "match": {"pathPrefix": "/map"}, "triggers": {"status": "400-599"},
         "response": {"kind": "problem"}},
        {"name": "smap", "match": {"pathPrefix": "/smap"}, "triggers": {"status": "400-599"},
         "response": {"kind": "static", "status": 200, "body": "not for gRPC"}}
    ]})
}

const UNAVAILABLE_IN_TRAILERS: &[(&str, &str)] = &[
    ("x-upstream-grpc-status", "14"),
    ("x-upstream-grpc-in", "trailers"),
];
const UNAVAILABLE_TRAILERS_ONLY: &[(&str, &str)] = &[
    ("x-upstream-grpc-status", "14"),
    ("x-upstream-grpc-in", "headers"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_status_rule_replaces_a_trailers_only_failure_and_passes_others() {
    let (upstream, envoy) = setup(Some(grpc_rules())).await;
    let port = envoy.port("ingress");
    // A trailers-only UNAVAILABLE from the upstream: the fallback's own trailers-only UNAVAILABLE.
    let r = grpc_unary(port, "/pkg.Svc/Call", UNAVAILABLE_TRAILERS_ONLY, b"hi").await;
    assert_grpc_trailers_only(&r, 14);
    let m = grpc_mark(&r);
    assert_eq!(
        (m.kind.as_str(), m.rule.as_str(), m.reason.as_str()),
        ("problem", "grpc-problem", "grpcStatus"),
        "{r:?}"
    );
    // OK and a status the rule does not name pass through with their message and trailers.
    let r = grpc_unary(port, "/pkg.Svc/Call", &[], b"hi").await;
    assert_eq!(r.grpc_status, Some(0), "{r:?}");
    assert_eq!(r.trailer("grpc-status"), Some("0"), "{r:?}");
    assert_eq!(r.message_json()["path"], json!("/pkg.Svc/Call"));
    assert_eq!(r.header(FALLBACK_HEADER), None, "{r:?}");
    assert_eq!(r.trailer(FALLBACK_HEADER), None, "{r:?}");
    let r = grpc_unary(
        port,
        "/pkg.Svc/Call",
        &[
            ("x-upstream-grpc-status", "5"),
            ("x-upstream-grpc-in", "trailers"),
        ],
        b"hi",
    )
    .await;
    assert_eq!(r.grpc_status, Some(5), "{r:?}");
    assert_eq!(r.trailer("grpc-status"), Some("5"), "{r:?}");
    assert_eq!(r.grpc_message.as_deref(), Some("upstream grpc status 5"));
    assert_eq!(r.message_json()["path"], json!("/pkg.Svc/Call"));
    assert_eq!(r.header(FALLBACK_HEADER), None, "{r:?}");
    assert_eq!(r.trailer(FALLBACK_HEADER), None, "{r:?}");
    assert_eq!(upstream.count(), 3);
}

/// README: "a gRPC failure that arrives only in trailers is replaced only when the rule has a
/// `grpcStatus` trigger, in which case that rule's gRPC responses are held until the trailers arrive",
/// and gRPC callers get "a trailers-only gRPC status (never an HTTP body)" from every kind.
/// A gRPC failure in the trailers comes after the response headers went downstream, so it cannot be
/// replaced (README): the status stands, and the trailers say the mesh saw it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_status_in_trailers_is_marked_in_the_trailers() {
    let (_upstream, envoy) = setup(Some(grpc_rules())).await;
    let port = envoy.port("ingress");
    for (path, kind, rule) in [
        ("/pkg.Svc/Call", "problem", "grpc-problem"),
        ("/static.Svc/Call", "static", "grpc-static"),
    ] {
        let r = grpc_unary(port, path, UNAVAILABLE_IN_TRAILERS, b"hi").await;
        assert_eq!(r.grpc_status, Some(14), "{r:?}");
        assert!(
            r.header(FALLBACK_HEADER).is_none(),
            "headers were already sent: {r:?}"
        );
        let mark = r
            .trailer(FALLBACK_HEADER)
            .expect("x-fallback in the trailers");
        assert_eq!(
            mark,
            format!("{kind}; rule={rule}; reason=grpcStatus"),
            "{r:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_status_maps_to_grpc_status_for_grpc_callers() {
    let (_upstream, envoy) = setup(Some(grpc_rules())).await;
    let port = envoy.port("ingress");
    for (status, code) in [
        ("503", 14),
        ("502", 14),
        ("504", 14),
        ("429", 14),
        ("404", 12),
        ("403", 7),
        ("401", 16),
        ("500", 2),
    ] {
        let r = grpc_unary(
            port,
            "/map.Svc/Call",
            &[("x-upstream-status", status)],
            b"hi",
        )
        .await;
        assert_grpc_trailers_only(&r, code);
        let m = grpc_mark(&r);
        assert_eq!(
            (m.kind.as_str(), m.rule.as_str()),
            ("problem", "map"),
            "HTTP {status}: {r:?}"
        );
    }
}

/// A static rule whose HTTP answer is 200 still tells gRPC callers what failed: the upstream's HTTP
/// status mapped as gRPC does (README: "Every kind answers gRPC callers this way").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_rule_answers_grpc_callers_with_the_mapped_failure_status() {
    let (_upstream, envoy) = setup(Some(grpc_rules())).await;
    let port = envoy.port("ingress");
    // HTTP callers of the rule get the static body.
    let r = get(&envoy, "/smap", FAIL_503).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.text(), "not for gRPC");
    assert_mark(&r, "static", "smap");
    let mut wrong = Vec::new();
    for (status, code) in [("503", 14), ("404", 12)] {
        let r = grpc_unary(
            port,
            "/smap.Svc/Call",
            &[("x-upstream-status", status)],
            b"hi",
        )
        .await;
        assert_eq!(r.http_status, 200, "{r:?}");
        assert!(r.messages.is_empty(), "no body for gRPC callers: {r:?}");
        let m = grpc_mark(&r);
        assert_eq!((m.kind.as_str(), m.rule.as_str()), ("static", "smap"));
        if r.grpc_status != Some(code) {
            wrong.push(format!(
                "HTTP {status}: grpc-status {:?} (expected {code}), grpc-message {:?}",
                r.grpc_status, r.grpc_message
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
