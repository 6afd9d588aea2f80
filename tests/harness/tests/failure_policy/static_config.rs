//! The trap filter in a static bootstrap (`--concurrency 1` unless said otherwise, so every call
//! meets the same worker VM).

use std::time::Duration;

use e2e_harness::*;

use crate::support::*;
use Outcome::*;

/// A VM that traps in `on_vm_start` or `on_configure` is a plugin that fails to load, and Envoy
/// refuses the whole bootstrap: it exits at startup under every policy (its log even says "fail
/// closed" for FAIL_OPEN and FAIL_RELOAD).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_at_start_or_configuration_stops_envoy_whatever_the_policy() {
    let upstream = Upstream::start().await;
    for policy in POLICIES {
        for (point, filter, line) in [
            (
                "start",
                trap_filter(policy).vm_configuration("trap:start"),
                "Wasm VM failed Failed to start base Wasm",
            ),
            (
                "configure",
                trap_filter(policy).configuration(r#"{"trap": "configure"}"#),
                "Wasm VM failed Failed to configure base Wasm plugin",
            ),
        ] {
            let log = match Envoy::try_start(config(&upstream, filter, 1)).await {
                Ok(_) => panic!("{policy}, trap at {point}: Envoy started"),
                Err(log) => log,
            };
            assert!(
                log.contains("exited with exit status: 1"),
                "{policy} {point}: {log}"
            );
            assert!(log.contains(line), "{policy} {point}: {log}");
            assert!(
                log.contains("error `Unable to create Wasm plugin trap` initializing config"),
                "{policy} {point}: {log}"
            );
        }
    }
    assert_eq!(upstream.count(), 0);
}

/// FAIL_OPEN, a trap in the request headers: that request gets a bare 503 and never reaches the
/// upstream (the policy covers later streams, not the one that trapped); from then on the worker
/// skips the filter: every request reaches the upstream, unfiltered, and no new VM is built.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_a_mid_request_trap_fails_that_request_then_skips_the_filter() {
    let upstream = Upstream::start().await;
    let (envoy, port, _) = serving(&upstream, "FAIL_OPEN").await;
    let created = stat(&envoy, "wasm.envoy.wasm.runtime.v8.created").await;
    assert_eq!(call(port, &upstream, Some("request-headers")).await, Failed);
    for _ in 0..5 {
        assert_eq!(call(port, &upstream, None).await, Skipped);
    }
    // Even the trap command finds no VM to trap any more.
    assert_eq!(
        call(port, &upstream, Some("request-headers")).await,
        Skipped
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        call(port, &upstream, None).await,
        Skipped,
        "still, after 1.5 s"
    );
    assert_eq!(
        stat(&envoy, "wasm.envoy.wasm.runtime.v8.created").await,
        created
    );
    envoy
        .wait_log(
            "Function: proxy_on_request_headers failed: Uncaught RuntimeError: unreachable",
            Duration::from_secs(5),
        )
        .await;
}

/// FAIL_CLOSED: the trapping request and every later one on that worker get a bare 503 (Envoy's
/// `wasm_fail_stream`), none reaches the upstream; nothing brings the VM back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_a_mid_request_trap_fails_every_later_request() {
    let upstream = Upstream::start().await;
    let (_envoy, port, _) = serving(&upstream, "FAIL_CLOSED").await;
    let reached = upstream.count();
    assert_eq!(call(port, &upstream, Some("request-headers")).await, Failed);
    for _ in 0..5 {
        assert_eq!(call(port, &upstream, None).await, Failed);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        call(port, &upstream, None).await,
        Failed,
        "still, after 1.5 s"
    );
    assert_eq!(upstream.count(), reached);
}

/// FAIL_RELOAD: the trapping request gets a bare 503; the next request on that worker builds a
/// new VM (`wasm.trap.vm_reload_success`, one more `v8.created`) unless the dead VM was loaded
/// less than Envoy's backoff (about 1 s) ago: until then calls get the 503 and
/// `wasm.trap.vm_reload_backoff` counts them. A VM that dies right after its reload therefore
/// costs its worker's callers up to a second of 503s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_reload_a_mid_request_trap_fails_that_request_then_a_new_vm_serves() {
    let upstream = Upstream::start().await;
    let (envoy, port, first) = serving(&upstream, "FAIL_RELOAD").await;
    let created = stat(&envoy, "wasm.envoy.wasm.runtime.v8.created").await;
    assert_eq!(call(port, &upstream, Some("request-headers")).await, Failed);
    let (waits, second) = until_new_vm(port, &upstream, &first).await;
    assert!(waits.iter().all(|o| *o == Failed), "{waits:?}");
    assert_eq!(stat(&envoy, "wasm.trap.vm_reload_success").await, 1);
    assert_eq!(
        stat(&envoy, "wasm.envoy.wasm.runtime.v8.created").await,
        created + 1
    );
    assert_eq!(
        stat(&envoy, "wasm.trap.vm_reload_backoff").await,
        waits.len() as u64
    );
    // The new VM serves on.
    assert_eq!(vm(&call(port, &upstream, None).await), second);

    // A trap right after the reload (the new VM is milliseconds old): the backoff applies.
    assert_eq!(call(port, &upstream, Some("request-headers")).await, Failed);
    let (waits, third) = until_new_vm(port, &upstream, &second).await;
    assert!(waits.iter().all(|o| *o == Failed), "{waits:?}");
    assert_ne!(third, first);
    let backoff = stat(&envoy, "wasm.trap.vm_reload_backoff").await;
    assert!(backoff >= waits.len() as u64, "{backoff} {waits:?}");
    eprintln!(
        "FAIL_RELOAD: {} calls answered 503 during the backoff after a trap in a fresh VM",
        waits.len()
    );
    assert_eq!(stat(&envoy, "wasm.trap.vm_reload_success").await, 2);
}

/// A trap after the upstream answered (in the response headers): the upstream did the work but
/// the caller gets a 503, under every policy. A trap in `on_log` comes after the response went
/// out: the caller has its 200. Later calls then follow the policy as for a request-header trap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_after_the_upstream_answered_follows_the_same_policy() {
    for policy in POLICIES {
        for point in ["response-headers", "log"] {
            let upstream = Upstream::start().await;
            let (envoy, port, first) = serving(&upstream, policy).await;
            let (trapping, callback) = match point {
                "log" => (Filtered(first.clone()), "proxy_on_log"),
                _ => (FailedAfterUpstream, "proxy_on_response_headers"),
            };
            assert_eq!(
                call(port, &upstream, Some(point)).await,
                trapping,
                "{policy} {point}"
            );
            // on_log runs after the caller has its answer.
            envoy
                .wait_log(
                    &format!("Function: {callback} failed"),
                    Duration::from_secs(5),
                )
                .await;
            match policy {
                "FAIL_OPEN" => assert_eq!(call(port, &upstream, None).await, Skipped, "{point}"),
                "FAIL_CLOSED" => assert_eq!(call(port, &upstream, None).await, Failed, "{point}"),
                _ => {
                    let (waits, _) = until_new_vm(port, &upstream, &first).await;
                    assert!(waits.iter().all(|o| *o == Failed), "{point}: {waits:?}");
                }
            }
        }
    }
}

/// A VM that traps again at every start (the trap module marks shared data, which outlives VMs):
/// FAIL_RELOAD cannot bring it back (`wasm.trap.vm_reload_failure`) and the worker answers 503
/// like FAIL_CLOSED; FAIL_OPEN skips the filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_that_cannot_start_again() {
    for (policy, after) in [("FAIL_RELOAD", Failed), ("FAIL_OPEN", Skipped)] {
        let upstream = Upstream::start().await;
        let (envoy, port, _) = serving(&upstream, policy).await;
        assert_eq!(call(port, &upstream, Some("restarts")).await, Failed);
        // Past the backoff, so that FAIL_RELOAD does try.
        for _ in 0..4 {
            assert_eq!(call(port, &upstream, None).await, after, "{policy}");
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        let failures = stat(&envoy, "wasm.trap.vm_reload_failure").await;
        if policy == "FAIL_RELOAD" {
            assert!(failures >= 1, "{failures}");
            assert_eq!(stat(&envoy, "wasm.trap.vm_reload_success").await, 0);
        } else {
            assert_eq!(failures, 0);
        }
    }
}

/// A Rust panic ends the same way as `unreachable`: the SDK's panic hook logs the message, then
/// `panic = "abort"` traps the VM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_traps_the_vm() {
    let upstream = Upstream::start().await;
    let envoy = Envoy::start(config(&upstream, trap_filter("FAIL_CLOSED"), 1)).await;
    let port = envoy.port(INGRESS);
    let r = http1(
        port,
        "GET",
        "/panic",
        &[("x-trap", "request-headers"), ("x-trap-how", "panic")],
        "",
    )
    .await;
    assert_eq!(classify(&r, upstream.count() > 0), Failed);
    assert_eq!(call(port, &upstream, None).await, Failed);
    for line in [
        "trap-filter: panic in RequestHeaders",
        "Function: proxy_on_request_headers failed: Uncaught RuntimeError: unreachable",
    ] {
        envoy.wait_log(line, Duration::from_secs(5)).await;
    }
}

/// Each worker has its own VM: a trap fails only the VM of the worker that ran it. With two
/// workers under FAIL_CLOSED, later calls (each on a new connection, spread over the workers by
/// the kernel) are either answered through the other worker's live VM or get the 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_fails_only_its_workers_vm() {
    let upstream = Upstream::start().await;
    let envoy = Envoy::start(config(&upstream, trap_filter("FAIL_CLOSED"), 2)).await;
    let port = envoy.port(INGRESS);
    assert_eq!(call(port, &upstream, Some("request-headers")).await, Failed);
    let mut live = 0;
    let mut failed = 0;
    for _ in 0..40 {
        match call(port, &upstream, None).await {
            Filtered(_) => live += 1,
            Failed => failed += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(live > 0 && failed > 0, "live {live}, failed {failed}");
}
