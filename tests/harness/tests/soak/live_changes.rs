//! Live changes under load: while the steady load flows, each filter's configuration changes through
//! ECDS, each module is swapped for a new build (the same code with a custom section: new bytes, new
//! SHA-256, new VMs), and an invalid configuration is published for each. No request fails because of
//! it, an open breaker stays open across the swap (its state is in shared data, which outlives VMs:
//! istio/README.md, "What happens when ..."), the invalid configurations are refused and the previous
//! ones keep serving, and the filters' counters still add up. Findings: docs/reliability.md, "Live
//! changes under load".

use std::time::{Duration, Instant};

use e2e_harness::istio::WasmPlugin;
use e2e_harness::load::Outcome;
use e2e_harness::serde_json::{json, Value};

use crate::support::*;

/// The breaker's open duration after the first change: long enough for the module swaps to land
/// while it is open (at least 90 % of it, with the 10 % jitter).
const OPEN: Duration = Duration::from_secs(12);

fn changed(s: &Sidecar, name: &str, version: &str, config: Value) -> WasmPlugin {
    let mut p = s.plugin(name).clone();
    p.resource_version = version.to_string();
    p.plugin_config = Some(config);
    p
}

/// The same code with a custom section appended: new bytes, the same behaviour.
fn rebuilt(module: &[u8], label: &str) -> Vec<u8> {
    e2e_harness::istio::with_custom_section(module, b"soak-live-change", label)
}

/// The configurations after the first change; each is observable from outside.
fn second_configs(s: &Sidecar) -> Vec<WasmPlugin> {
    vec![
        // b3 is injected too: the upstream sees a `b3` header from now on.
        changed(
            s,
            "trace-context",
            "2",
            json!({"inject": ["tracecontext", "b3"], "samplingRatio": 1.0,
                   "correlation": {"enabled": true, "slots": 4096, "ttl": "60s"}}),
        ),
        // The rule's new name shows in `x-fallback`.
        changed(
            s,
            "fallback",
            "2",
            json!({"rules": [{"name": "envoy-failures-v2",
                "triggers": {"envoy": ["connectionFailure", "timeout", "reset", "noHealthyUpstream", "overflow", "localReply"],
                             "circuitBreaker": true},
                "response": {"kind": "problem"}}]}),
        ),
        // Opens sooner and stays open longer.
        changed(
            s,
            "circuit-breaker",
            "2",
            json!({"breakers": [{"name": "per-cluster", "keyBy": "cluster", "maxKeys": 200,
                "envoyOverloaded": true, "minimumCalls": 10, "openDuration": format!("{}s", OPEN.as_secs())}]}),
        ),
    ]
}

fn invalid(s: &Sidecar, name: &str) -> WasmPlugin {
    let config = match name {
        "trace-context" => json!({"inject": ["no-such-format"]}),
        "fallback" => json!({"rules": [{"name": "x", "response": {"kind": "no-such-kind"}}]}),
        _ => json!({"breakers": [{"name": "per-cluster", "minimumCalls": "many"}]}),
    };
    changed(s, name, "4", config)
}

const NAMES: [&str; 3] = ["trace-context", "fallback", "circuit-breaker"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a load test: make soak-short, make soak"]
async fn live_changes_under_load_fail_no_request_and_keep_breaker_state() {
    let _serial = SERIAL.lock().await;
    let mut s = Sidecar::start().await;
    let before = Counters::read(&s).await;
    let load = start_load(&s);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let vms0 = s
        .envoy
        .stat("wasm.envoy.wasm.runtime.v8.created")
        .await
        .unwrap_or(0);

    // 1. A new configuration for each filter.
    for p in second_configs(&s) {
        let module = module_bytes(&p);
        assert_eq!(
            s.publish(p.clone(), &module).await,
            Update::Accepted,
            "{}",
            p.name
        );
    }
    let configured = load.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 2. The upstream fails until the breaker opens, then is healthy again: from now on only the
    // breaker's state keeps requests from it.
    s.set_upstream(&[("x-upstream-status", "500")]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.open_breakers().await == 0 {
        assert!(Instant::now() < deadline, "the breaker did not open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.set_upstream(&[]);
    let opened = load.elapsed();

    // 3. Every module swapped for a new build, with a new configuration for the breaker (back to the
    // shipped one, which would need 20 calls to open again).
    for name in NAMES {
        let mut p = s.plugin(name).clone();
        p.resource_version = "3".into();
        if name == "circuit-breaker" {
            p.plugin_config = WasmPlugin::base(NAMESPACE)
                .into_iter()
                .find(|b| b.name == name)
                .and_then(|b| b.plugin_config);
        }
        let module = rebuilt(&module_bytes(&p), "0.1.1");
        assert_eq!(s.publish(p, &module).await, Update::Accepted, "{name}");
    }
    let swapped = load.elapsed();
    let vms1 = s
        .envoy
        .stat("wasm.envoy.wasm.runtime.v8.created")
        .await
        .unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let checked_until = load.elapsed();
    assert!(
        checked_until + Duration::from_millis(200) < opened + OPEN.mul_f64(0.9),
        "the swaps took too long ({:.1} s) to check the open breaker before it half-opens",
        (swapped - opened).as_secs_f64()
    );

    // 4. An invalid configuration for each: refused, the previous one keeps serving.
    let mut refused = Vec::new();
    for name in NAMES {
        let p = invalid(&s, name);
        let module = module_bytes(&p);
        refused.push((name, s.publish(p, &module).await));
    }
    let invalidated = load.elapsed();

    // 5. The breaker half-opens on its schedule and closes; the load runs a little longer.
    let closed_after = wait_breakers_closed(&s, OPEN * 2 + Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = load.stop().await;

    let t = tally(&report, &s, |_| false);
    t.assert_all_answered();
    assert_eq!(
        refused,
        NAMES.map(|n| (n, Update::Rejected)).to_vec(),
        "invalid configurations must be refused"
    );

    // The breaker opened before the swap stayed open across it: between its opening and a second
    // after the new VMs took over, no outbound call reached the (healthy) upstream, and the new
    // fallback rule answered for it.
    let outbound = s.envoy.port("outbound");
    let window = |o: &&Outcome| {
        o.spec.port == outbound
            && o.started > opened + Duration::from_millis(200)
            && o.started < checked_until
    };
    let during: Vec<&Outcome> = report.outcomes.iter().filter(window).collect();
    assert!(during.len() > 100, "{} requests while open", during.len());
    for o in &during {
        let a = o.result.as_ref().unwrap();
        assert_eq!(
            mark(a),
            Some((
                "problem".into(),
                "envoy-failures-v2".into(),
                "circuitBreaker".into()
            )),
            "#{} at {:.3}s (opened {:.3}s, swapped {:.3}s): {} {:?}",
            o.seq,
            o.started.as_secs_f64(),
            opened.as_secs_f64(),
            swapped.as_secs_f64(),
            a.status,
            a.headers
        );
    }

    // trace-context's second configuration served from its change to the end, the invalid one never:
    // every upstream answer after it shows b3, none before.
    let b3 = |o: &Outcome| {
        o.result
            .as_ref()
            .ok()
            .filter(|a| a.upstream_echo)
            .map(|a| String::from_utf8_lossy(&a.body).contains("[\"b3\","))
    };
    let before_change: Vec<bool> = report
        .outcomes
        .iter()
        .filter(|o| o.finished < configured.saturating_sub(Duration::from_secs(1)))
        .filter_map(b3)
        .collect();
    let after_change: Vec<bool> = report
        .outcomes
        .iter()
        .filter(|o| o.started > configured + Duration::from_millis(500))
        .filter_map(b3)
        .collect();
    assert!(!before_change.is_empty() && before_change.iter().all(|b| !b));
    assert!(!after_change.is_empty() && after_change.iter().all(|b| *b));
    let after_invalid = report
        .outcomes
        .iter()
        .filter(|o| o.started > invalidated)
        .filter_map(b3)
        .count();
    assert!(
        after_invalid > 100,
        "{after_invalid} upstream answers after the invalid updates"
    );

    let c = assert_balanced(&s, &before, &t).await;
    println!("== Live changes under load");
    println!(
        "load: {} requests in {:.1} s, {} outbound, {} over h2c; connections opened {:?}",
        t.sent,
        report.elapsed.as_secs_f64(),
        t.outbound,
        t.h2,
        report.connections
    );
    println!(
        "timeline: configs changed by {:.1}s, breaker open at {:.1}s, modules swapped by {:.1}s ({} VMs created), invalid configs refused by {:.1}s, breaker closed {:.1}s later",
        configured.as_secs_f64(),
        opened.as_secs_f64(),
        swapped.as_secs_f64(),
        vms1 - vms0,
        invalidated.as_secs_f64(),
        closed_after.as_secs_f64()
    );
    println!(
        "answers: upstream {} good + {} 5xx, fallback {:?}; {} rejections while open across the swap; slowest {:.3} s",
        t.upstream_ok,
        t.upstream_5xx,
        t.fallback,
        during.len(),
        t.slowest.as_secs_f64()
    );
    println!(
        "counters: trace-context extracted {} started {} restored {}; breaker {:?}; transitions {:?}; fallback {:?}",
        c.extracted, c.started, c.restored, c.calls, c.transitions, c.served
    );
}
