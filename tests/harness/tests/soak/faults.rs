//! Faults under load: a steady load for `SOAK_SECONDS` while the upstream is killed and restarted,
//! flaps, slows down past the route timeout, resets streams and cuts responses mid-body, on a
//! schedule. Every request is answered, the filters' counters add up to the requests sent, no breaker
//! stays open or half-open once the upstream is healthy, and Envoy's memory stays within what the
//! configuration promises. The figures go to docs/reliability.md, "Faults under load".

use std::time::Duration;

use e2e_harness::istio::struct_json;
use e2e_harness::load::Outcome;
use filter_common::config::parse;

use crate::support::*;

/// How long each fault lasts. The shipped breaker opens at a 50 % failure rate over a 10 s window
/// once it has 20 calls; its window restarts when it closes. After the warm-up the window holds 3 s of
/// successes, so the first fault opens it after about 3 s; later ones find a window started when it
/// last closed, a few seconds before.
const FAULT: Duration = Duration::from_secs(5);
/// Healthy time after each fault: longer than the breaker's open duration (5 s, 10 % jitter) after
/// it opened during the fault, so its probes find the upstream healthy and close it.
const HEALTHY: Duration = Duration::from_secs(6);
const WARMUP: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// The upstream process goes away (listener closed, connections dropped), then comes back.
    Kill,
    /// 500 and healthy, alternating every 250 ms.
    Flap,
    /// Answers after [`SLOW_MS`], beyond the route timeout.
    Slow,
    /// No response: h1 connections closed, h2 streams reset.
    Reset,
    /// Headers and a first chunk, then the connection or stream is aborted.
    Close,
}

/// Flapping last: at 50 % failures it may or may not open the breaker, and a breaker whose probes
/// meet a failing upstream stays open twice as long; every other fault opens it.
const CYCLE: [Fault; 5] = [
    Fault::Kill,
    Fault::Slow,
    Fault::Reset,
    Fault::Close,
    Fault::Flap,
];

/// A fault as it happened, on the load's clock.
struct Window {
    fault: Fault,
    start: Duration,
    end: Duration,
}

/// The worst-case shared memory of the shipped configuration, each filter's from its own memory
/// module: (filter, bytes).
fn budgets(s: &Sidecar) -> Vec<(&'static str, u64)> {
    let config = |name: &str| {
        s.plugin(name)
            .plugin_config
            .as_ref()
            .map(struct_json)
            .unwrap_or_default()
    };
    let tc: trace_context::config::Config =
        parse(Some(config("trace-context").as_bytes())).unwrap();
    let fb: fallback::config::Config = parse(Some(config("fallback").as_bytes())).unwrap();
    let cb: circuit_breaker::config::Config =
        parse(Some(config("circuit-breaker").as_bytes())).unwrap();
    vec![
        ("trace-context", trace_context::memory::budget(&tc).total()),
        ("fallback", fallback::memory::budget(&fb).total()),
        (
            "circuit-breaker",
            circuit_breaker::memory::budget(&cb).total(),
        ),
    ]
}

/// What Envoy may grow by besides the filters' shared data: connection buffers and stats for a few
/// hundred connections, allocator caches, V8 heaps growing to their working size. Measured growth
/// with the filters at a steady state is a few MiB (docs/reliability.md); a leak of a few hundred
/// bytes per request would pass 32 MiB within the 5-minute soak (60,000 requests).
const SLACK: u64 = 32 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a load test of SOAK_SECONDS (default 60): make soak-short, make soak"]
async fn faults_under_load_every_request_is_answered_and_accounted_for() {
    let _serial = SERIAL.lock().await;
    let seconds = soak_seconds();
    let mut s = Sidecar::start().await;
    let budget = budgets(&s);
    let budget_total: u64 = budget.iter().map(|(_, b)| b).sum();
    let before = Counters::read(&s).await;
    let load = start_load(&s);

    tokio::time::sleep(WARMUP).await;
    // After the warm-up: connections, VMs and their heaps, stats exist; growth from here is what the
    // traffic and the faults cost.
    let (rss0, (alloc0, heap0)) = (s.rss(), s.memory().await);
    let vms0 = s.envoy.stat("wasm.envoy.wasm.runtime.v8.created").await;

    let total = Duration::from_secs(seconds);
    let cycle_len = (FAULT + HEALTHY) * CYCLE.len() as u32;
    // As many whole cycles as fit, at least one.
    let cycles = (total.saturating_sub(WARMUP).as_secs() / cycle_len.as_secs()).max(1);
    let mut windows = Vec::new();
    for _ in 0..cycles {
        for fault in CYCLE {
            let start = load.elapsed();
            match fault {
                Fault::Kill => {
                    s.kill_upstream();
                    tokio::time::sleep(FAULT).await;
                    s.restart_upstream().await;
                }
                Fault::Flap => {
                    let t0 = tokio::time::Instant::now();
                    let mut failing = true;
                    while t0.elapsed() < FAULT {
                        s.set_upstream(if failing {
                            &[("x-upstream-status", "500")]
                        } else {
                            &[]
                        });
                        failing = !failing;
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                }
                Fault::Slow => {
                    s.set_upstream(&[("x-upstream-delay-ms", &SLOW_MS.to_string())]);
                    tokio::time::sleep(FAULT).await;
                }
                Fault::Reset => {
                    s.set_upstream(&[("x-upstream-action", "reset")]);
                    tokio::time::sleep(FAULT).await;
                }
                Fault::Close => {
                    s.set_upstream(&[("x-upstream-action", "close")]);
                    tokio::time::sleep(FAULT).await;
                }
            }
            s.set_upstream(&[]);
            windows.push(Window {
                fault,
                start,
                end: load.elapsed(),
            });
            tokio::time::sleep(HEALTHY).await;
        }
    }
    // Healthy to the end, then until every breaker key closed: the load keeps running, since a breaker
    // moves from open to half-open and closed on the requests it sees.
    if let Some(rest) = total.checked_sub(load.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    let cb: circuit_breaker::config::Config = parse(Some(
        struct_json(s.plugin("circuit-breaker").plugin_config.as_ref().unwrap()).as_bytes(),
    ))
    .unwrap();
    let b = &cb.breakers[0];
    // The longest a key can stay open (maxOpenDuration is a true maximum), then its probes.
    let limit = b.max_open_duration.0 + Duration::from_secs(10);
    let closed_after = wait_breakers_closed(&s, limit).await;
    let report = load.stop().await;

    let (rss1, (alloc1, heap1)) = (s.rss(), s.memory().await);
    // No VM failed and was replaced, and none was built for anything else.
    assert_eq!(
        s.envoy.stat("wasm.envoy.wasm.runtime.v8.created").await,
        vms0,
        "Envoy built Wasm VMs during the soak"
    );

    // A cut stream is explained when the upstream aborted mid-body (Close) or went away (Kill) while
    // the request was in flight; Envoy had already sent the headers and can only reset the stream.
    let cut_explained = |o: &Outcome| {
        windows.iter().any(|w| {
            matches!(w.fault, Fault::Close | Fault::Kill)
                && o.started < w.end + Duration::from_secs(1)
                && o.finished + Duration::from_secs(1) > w.start
        })
    };
    let t = tally(&report, &s, cut_explained);
    t.assert_all_answered();
    let c = assert_balanced(&s, &before, &t).await;
    // Every fault was met by the filters, so the run proves something: during each fault window some
    // outbound caller got a fallback, for the fault itself (connection failure, timeout, reset) or for
    // the breaker it opened. (With `consecutiveFailures: 5` the breaker opens within a few requests and
    // its open time doubles while the dependency keeps failing, so later faults mostly meet it open.)
    let outbound = s.envoy.port("outbound");
    for w in &windows {
        let answered = report
            .outcomes
            .iter()
            .filter(|o| o.spec.port == outbound && o.started >= w.start && o.started < w.end)
            .filter(|o| o.result.as_ref().ok().and_then(mark).is_some())
            .count();
        assert!(answered > 0, "no fallback during {:?}: {t:#?}", w.fault);
    }
    assert!(t.fallback_for("circuitBreaker") > 0, "{t:#?}");
    assert!(c.transitions.get("open").is_some_and(|n| *n > 0));
    assert_eq!(s.open_breakers().await, 0);

    // Memory: the filters' shared data lives in Envoy's heap; growth since the warm-up stays within
    // their promised worst case plus the slack.
    let bound = budget_total + SLACK;
    let alloc_growth = alloc1.saturating_sub(alloc0);
    let rss_growth = rss1.saturating_sub(rss0);

    println!("== Faults under load ({seconds} s requested)");
    println!(
        "load: {} requests in {:.1} s ({:.0}/s), {} outbound, {} inbound, {} over h2c; connections opened {:?}",
        t.sent,
        report.elapsed.as_secs_f64(),
        t.sent as f64 / report.elapsed.as_secs_f64(),
        t.outbound,
        t.inbound,
        t.h2,
        report.connections
    );
    println!(
        "faults: {}",
        windows
            .iter()
            .map(|w| format!(
                "{:?} {:.1}-{:.1}s",
                w.fault,
                w.start.as_secs_f64(),
                w.end.as_secs_f64()
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "outbound answers: upstream {} good + {} 5xx, fallback {:?}, cut mid-body {}; slowest answer {:.3} s",
        t.upstream_ok, t.upstream_5xx, t.fallback, t.truncated, t.slowest.as_secs_f64()
    );
    println!(
        "counters: trace-context extracted {} started {} restored {}; breaker {:?}; transitions {:?}; fallback {:?}",
        c.extracted, c.started, c.restored, c.calls, c.transitions, c.served
    );
    println!(
        "breakers closed {:.1} s after the run's end",
        closed_after.as_secs_f64()
    );
    println!(
        "memory budget (shipped configuration): {} = {}",
        mib(budget_total),
        budget
            .iter()
            .map(|(f, b)| format!("{f} {}", mib(*b)))
            .collect::<Vec<_>>()
            .join(" + ")
    );
    println!(
        "Envoy RSS {} -> {} ({}); allocated {} -> {} ({}); heap {} -> {}; bound {}",
        mib(rss0),
        mib(rss1),
        mib_delta(rss1, rss0),
        mib(alloc0),
        mib(alloc1),
        mib_delta(alloc1, alloc0),
        mib(heap0),
        mib(heap1),
        mib(bound)
    );
    assert!(
        alloc_growth <= bound,
        "Envoy's allocated memory grew by {} under load, above the filters' budget {} + slack {}",
        mib(alloc_growth),
        mib(budget_total),
        mib(SLACK)
    );
    assert!(
        rss_growth <= bound,
        "Envoy's RSS grew by {}, above the filters' budget {} + slack {}",
        mib(rss_growth),
        mib(budget_total),
        mib(SLACK)
    );
}
