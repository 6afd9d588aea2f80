//! Static responses: placeholders filled and escaped for the content type, request data that cannot
//! add headers.

use e2e_harness::serde_json::{json, Value};
use e2e_harness::*;

use crate::support::*;

fn static_rules() -> Value {
    json!({"rules": [
        {"name": "s", "match": {"pathPrefix": "/json"}, "triggers": {"status": "500-599"},
         "response": {"kind": "static", "status": 200,
                      "headers": {"content-type": "application/json", "x-static": "yes"},
                      "body": "{\"items\": [], \"trace\": \"{{traceId}}\", \"rid\": \"{{requestId}}\", \"was\": {{status}}, \"why\": \"{{reason}}\"}"}},
        {"name": "h", "match": {"pathPrefix": "/html"}, "triggers": {"status": "500-599"},
         "response": {"kind": "static", "status": 503,
                      "headers": {"content-type": "text/html; charset=utf-8"},
                      "body": "<p>request {{requestId}}</p>"}},
        {"name": "t", "match": {"pathPrefix": "/text"}, "triggers": {"status": "500-599"},
         "response": {"kind": "static", "status": 503, "headers": {"content-type": "text/plain"},
                      "body": "request [{{requestId}}] trace {{traceId}}"}}
    ]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_response_fills_placeholders() {
    let (upstream, envoy) = setup(Some(static_rules())).await;
    let r = get(
        &envoy,
        "/json/items",
        &[
            ("x-upstream-status", "502"),
            ("traceparent", TRACEPARENT),
            ("x-request-id", "req-static-1"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-static"), Some("yes"), "{}", r.describe());
    let reason = assert_mark(&r, "static", "s");
    let j = r.json();
    assert_eq!(j["items"], json!([]), "{j}");
    assert_eq!(j["trace"], json!(TRACE_ID), "{j}");
    assert_eq!(j["rid"], json!("req-static-1"), "{j}");
    assert_eq!(j["was"], json!(502), "the original status: {j}");
    assert_eq!(
        j["why"],
        json!(reason),
        "{{{{reason}}}} is the trigger: {j}"
    );

    // A status the trigger does not name passes untouched.
    let r = get(&envoy, "/json/items", &[("x-upstream-status", "404")]).await;
    assert_eq!(r.status, 404, "{}", r.describe());
    assert_untouched(&r);
    assert_eq!(r.json()["path"], json!("/json/items"));
    // A request no rule matches passes untouched, even a failing one: Envoy's own reply.
    let r = get(&envoy, "/dead", &[]).await;
    assert_eq!(r.status, 503, "{}", r.describe());
    assert_untouched(&r);
    let r = get(&envoy, "/other", FAIL_500).await;
    assert_eq!(r.status, 500, "{}", r.describe());
    assert_untouched(&r);
    assert_eq!(r.json()["path"], json!("/other"));
    assert_eq!(upstream.count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_placeholders_are_escaped_for_the_content_type() {
    let (_upstream, envoy) = setup(Some(static_rules())).await;
    // JSON: quotes and backslashes cannot break out of the string.
    let nasty = r#"id"</script><b>\"},"x":1"#;
    let r = get(
        &envoy,
        "/json",
        &[("x-upstream-status", "503"), ("x-request-id", nasty)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_mark(&r, "static", "s");
    let j = r.json();
    assert_eq!(j["rid"], json!(nasty), "the raw value after parsing: {j}");
    assert_eq!(j.get("x"), None, "no injected member: {j}");

    // HTML: markup in request data is escaped, the configured markup is not.
    let r = get(
        &envoy,
        "/html",
        &[
            ("x-upstream-status", "503"),
            ("x-request-id", "<script>alert(1)</script>&amp"),
        ],
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.describe());
    assert_mark(&r, "static", "h");
    let body = r.text();
    assert!(body.starts_with("<p>request "), "{body}");
    assert!(body.ends_with("</p>"), "{body}");
    assert!(body.contains("&lt;script&gt;"), "{body}");
    assert!(!body.contains("<script>"), "{body}");
    assert!(body.contains("&amp;amp"), "& is escaped: {body}");

    // Text: control characters (here a tab) are removed.
    let r = get(
        &envoy,
        "/text",
        &[("x-upstream-status", "503"), ("x-request-id", "ab\tcd")],
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.describe());
    assert_mark(&r, "static", "t");
    let body = r.text();
    assert!(body.starts_with("request [ab"), "{body:?}");
    assert!(
        !body.chars().any(|c| c.is_control()),
        "no control characters: {body:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_with_carriage_returns_cannot_add_headers() {
    let (_upstream, envoy) = setup(Some(static_rules())).await;
    let port = envoy.port("ingress");
    // Envoy's HTTP/1.1 parser accepts a bare CR inside a header value (a bare LF or an obs-fold would
    // end or continue the header instead, which is plain request data).
    for path in ["/text", "/html", "/json"] {
        let request = format!(
            "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-upstream-status: 503\r\n\
             x-request-id: evil\rx-injected: yes\r\n\r\n"
        );
        let response = raw_http1(port, request.as_bytes()).await;
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status_line = head.lines().next().unwrap_or("");
        if status_line.starts_with("HTTP/1.1 400") {
            // Envoy refused the request itself: nothing reached the filter.
            continue;
        }
        let header_names: Vec<String> = head
            .split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(n, _)| n.trim().to_ascii_lowercase())
            .collect();
        assert!(
            header_names.contains(&FALLBACK_HEADER.to_string()),
            "{path}: the fallback answered: {response:?}"
        );
        assert!(
            !header_names.iter().any(|n| n == "x-injected"),
            "{path}: a header was injected: {response:?}"
        );
        assert!(
            !head.contains("x-injected: yes"),
            "{path}: a header was injected: {response:?}"
        );
        if path != "/json" {
            assert!(
                !body.contains('\r'),
                "{path}: the CR was not removed: {body:?}"
            );
        } else {
            let j: Value = e2e_harness::serde_json::from_str(body)
                .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body:?}"));
            assert!(j["rid"].is_string(), "{j}");
        }
    }
}
