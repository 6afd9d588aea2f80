//! Which breaker handles a request: the first whose `match` holds.

use e2e_harness::serde_json::{json, Value};
use e2e_harness::*;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_matching_breaker_handles_the_request() {
    let upstream = Upstream::start().await;
    let forced = |name: &str, m: Value| json!({"name": name, "match": m, "mode": "forcedOpen"});
    let config = json!({"breakers": [
        forced("by-header", json!({"header": {"name": "x-tenant", "value": "acme"}})),
        forced("by-presence", json!({"header": {"name": "x-canary"}})),
        forced("by-method", json!({"method": "DELETE"})),
        forced("by-authority", json!({"authority": "Blocked.Example"})),
        forced("by-cluster", json!({"cluster": "backend-b"})),
        forced("by-route", json!({"route": "to-c"})),
        forced("combined", json!({"pathPrefix": "/a/admin", "method": "POST"})),
    ]});
    let envoy = start_routed(
        Some(&config),
        vec![
            Route::to("to-b", "/b", "backend-b"),
            Route::to("to-c", "/c", "backend-a"),
            Route::to("to-a", "/", "backend-a"),
        ],
        vec![
            Cluster::new("backend-a", upstream.port()),
            Cluster::new("backend-b", upstream.port()),
        ],
    )
    .await;
    let port = envoy.port("ingress");
    let cases: &[(&str, &str, Headers<'_>, Option<&str>)] = &[
        ("GET", "/a", &[("x-tenant", "acme")], Some("by-header")),
        ("GET", "/a", &[("x-tenant", "other")], None),
        ("GET", "/a", &[("x-canary", "1")], Some("by-presence")),
        ("DELETE", "/a", &[], Some("by-method")),
        (
            "GET",
            "/a",
            &[("host", "blocked.example")],
            Some("by-authority"),
        ),
        ("GET", "/a", &[("host", "blocked.example.org")], None),
        ("GET", "/b", &[], Some("by-cluster")),
        ("GET", "/c", &[], Some("by-route")),
        ("POST", "/a/admin/x", &[], Some("combined")),
        ("GET", "/a/admin/x", &[], None),
        ("POST", "/a/other", &[], None),
        // First match wins.
        ("GET", "/b", &[("x-tenant", "acme")], Some("by-header")),
        ("DELETE", "/c", &[("x-canary", "1")], Some("by-presence")),
    ];
    let mut passed = 0;
    for (method, path, headers, expected) in cases {
        let r = http1(port, method, path, headers, "").await;
        match expected {
            Some(name) => assert_rejected(&r, name, "forced-open", 503),
            None => {
                assert_eq!(
                    r.status,
                    200,
                    "{method} {path} {headers:?}: {}",
                    r.describe()
                );
                assert_eq!(r.header(STATUS_HEADER), None);
                passed += 1;
            }
        }
    }
    assert_eq!(upstream.count(), passed);
}

/// `match.header` without a value matches on presence, and a header with an empty value is present.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_presence_match_includes_empty_values() {
    let (upstream, envoy) = setup(one(json!({
        "name": "canary",
        "match": {"header": {"name": "x-canary"}},
        "mode": "forcedOpen"
    })))
    .await;
    assert_eq!(get(&envoy, "/", OK).await.status, 200, "absent: no match");
    assert_rejected(
        &get(&envoy, "/", &[("x-canary", "yes")]).await,
        "canary",
        "forced-open",
        503,
    );
    let r = get(&envoy, "/", &[("x-canary", "")]).await;
    assert_rejected(&r, "canary", "forced-open", 503);
    assert_eq!(upstream.count(), 1);
}
