//! The alternate upstream answers when the primary fails; its own failure or timeout gives the
//! `otherwise` response.

use std::time::{Duration, Instant};

use e2e_harness::serde_json::json;
use e2e_harness::*;

use crate::support::*;

async fn setup_alternate() -> (Upstream, Upstream, Envoy) {
    let upstream = Upstream::start().await;
    let backup = Upstream::start().await;
    let config = json!({"rules": [
        {"name": "alt", "match": {"pathPrefix": "/dead/alt"},
         "triggers": {"envoy": ["connectionFailure"]},
         "response": {"kind": "alternate", "cluster": "backup", "timeout": "500ms",
                      "keyHeaders": ["x-tenant"]}},
        {"name": "alt-live", "match": {"pathPrefix": "/live"}, "triggers": {"status": "500-599"},
         "response": {"kind": "alternate", "cluster": "backup", "timeout": "500ms"}},
        {"name": "alt-ctl", "match": {"pathPrefix": "/dead/ctl"},
         "triggers": {"envoy": ["connectionFailure"]},
         "response": {"kind": "alternate", "cluster": "backup", "timeout": "500ms",
                      "keyHeaders": ["x-upstream-delay-ms", "x-upstream-status"]}},
        {"name": "alt-dead", "match": {"pathPrefix": "/dead/nowhere"},
         "triggers": {"envoy": ["connectionFailure"]},
         "response": {"kind": "alternate", "cluster": "dead", "timeout": "500ms"}}
    ]});
    let envoy = Envoy::start(config_with(
        &upstream,
        vec![fallback_filter(Some(&config))],
        vec![Cluster::new("backup", backup.port())],
    ))
    .await;
    (upstream, backup, envoy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alternate_cluster_answers_when_the_primary_fails() {
    let (upstream, backup, envoy) = setup_alternate().await;
    let port = envoy.port("ingress");
    let authority = format!("localhost:{port}");
    let r = get(
        &envoy,
        "/dead/alt/thing?x=1",
        &[("x-tenant", "acme"), ("x-not-forwarded", "1")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(
        assert_mark(&r, "alternate", "alt"),
        "connectionFailure",
        "{}",
        r.describe()
    );
    let echo = r.json();
    assert_eq!(echo["path"], json!("/dead/alt/thing?x=1"), "{echo}");
    assert_eq!(echo["method"], json!("GET"), "{echo}");
    assert_eq!(echo["authority"], json!(authority), "{echo}");
    assert_eq!(r.echo_header("x-tenant").as_deref(), Some("acme"));
    assert_eq!(r.echo_header("x-not-forwarded"), None, "only keyHeaders");
    assert_eq!(backup.count(), 1);

    // The same request without its body.
    let r = http1(port, "POST", "/dead/alt/post", &[], "a request body").await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_mark(&r, "alternate", "alt");
    assert_eq!(r.json()["method"], json!("POST"));
    assert_eq!(r.json()["body_size"], json!(0));

    // The primary answered 503: the backup's answer instead (the control header is not a keyHeader, so
    // the backup answers 200).
    let r = get(&envoy, "/live/x", FAIL_503).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_mark(&r, "alternate", "alt-live");
    assert_eq!(r.json()["path"], json!("/live/x"));
    assert_eq!(r.echo_header("x-upstream-status"), None);
    assert_eq!(upstream.count_path("/live/x"), 1);
    assert_eq!(backup.count_path("/live/x"), 1);

    // Any answer below 500 is served.
    let r = get(&envoy, "/dead/ctl/missing", &[("x-upstream-status", "404")]).await;
    assert_eq!(r.status, 404, "{}", r.describe());
    assert_mark(&r, "alternate", "alt-ctl");
    assert_eq!(r.json()["path"], json!("/dead/ctl/missing"));
    // A good primary answer never calls the backup.
    let before = backup.count();
    let r = get(&envoy, "/live/ok", OK).await;
    assert_eq!(r.status, 200);
    assert_untouched(&r);
    assert_eq!(backup.count(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alternate_failure_or_timeout_gives_the_otherwise_response() {
    let (_upstream, backup, envoy) = setup_alternate().await;
    // The backup is slower than the alternate timeout.
    let start = Instant::now();
    let r = get(
        &envoy,
        "/dead/ctl/slow",
        &[
            ("x-upstream-delay-ms", "2000"),
            ("accept", "application/json"),
        ],
    )
    .await;
    let elapsed = start.elapsed();
    assert_problem_json(&r, 503);
    assert_mark(&r, "problem", "alt-ctl");
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_millis(1500),
        "answered about the alternate timeout (500 ms) after the start: {elapsed:?}"
    );
    assert!(
        backup.wait_count(1, RECORD_WAIT).await,
        "the backup was asked"
    );
    // The backup answers 5xx.
    let r = get(&envoy, "/dead/ctl/broken", FAIL_503).await;
    assert_problem_json(&r, 503);
    assert_mark(&r, "problem", "alt-ctl");
    assert_eq!(backup.count_path("/dead/ctl/broken"), 1);
    // The alternate cluster cannot be reached either.
    let r = get(&envoy, "/dead/nowhere", &[]).await;
    assert_problem_json(&r, 503);
    assert_mark(&r, "problem", "alt-dead");
}
