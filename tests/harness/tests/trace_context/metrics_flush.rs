//! `metricsFlushInterval`: counters summed in the VM reach Envoy whole within the interval, and the
//! default sends each at once.

use std::time::{Duration, Instant};

use e2e_harness::*;

use crate::support::*;

/// Requests per listener.
const N: u64 = 5;

/// A Jaeger `uber-trace-id` (its own format, so its series is this listener's alone).
const UBER: &str = "80f198ee56343ba864fe8b2a57d3eff7:e457b5a2e4d86bd1:0:1";

/// The sum of `trace_context_extracted{format}` now (0 while Envoy renders no such series).
async fn extracted(envoy: &Envoy, format: &str) -> u64 {
    let text = envoy.prometheus().await;
    prom_sum(&text, "trace_context_extracted", &[("format", format)]).unwrap_or(0)
}

/// Three listeners, one worker, each counting its own format: the default (`b3`), a 1 s interval
/// (`tracecontext`) and a 60 s one (`jaeger`, which no flush reaches during the test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_counters_arrive_whole_within_the_interval_and_default_ones_at_once() {
    let upstream = Upstream::start().await;
    let listener = |name: &str, config: Option<&str>| {
        Listener::new(name)
            .filter(trace_filter(config))
            .route(Route::to("default", "/", "upstream"))
    };
    let envoy = Envoy::start(
        EnvoyConfig::new()
            .concurrency(1)
            .listener(listener("exact", None))
            .listener(listener(
                "batched",
                Some(r#"{"metricsFlushInterval": "1s"}"#),
            ))
            .listener(listener("held", Some(r#"{"metricsFlushInterval": "60s"}"#)))
            .cluster(Cluster::new("upstream", upstream.port())),
    )
    .await;
    let configured = Instant::now();
    for _ in 0..N {
        for (listener, header) in [
            ("exact", ("b3", B3_SINGLE)),
            ("batched", ("traceparent", TRACEPARENT)),
            ("held", ("uber-trace-id", UBER)),
        ] {
            let r = http1(envoy.port(listener), "GET", "/", &[header], "").await;
            assert_eq!(r.status, 200, "{listener}: {}", r.describe());
        }
    }

    // Default: counted in the request's own callback, so exact as soon as the responses are in.
    assert_eq!(extracted(&envoy, "b3").await, N);

    // 1 s: exactly N within a few intervals (polled), and still N an interval later (sent once).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut batched = extracted(&envoy, "tracecontext").await;
    while batched != N && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        batched = extracted(&envoy, "tracecontext").await;
    }
    assert_eq!(batched, N, "the 1 s listener's counts within 5 s");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(extracted(&envoy, "tracecontext").await, N);

    // 60 s: held in the VM, none sent yet (the timer's first tick is a minute after configuration).
    let held = extracted(&envoy, "jaeger").await;
    assert!(
        configured.elapsed() < Duration::from_secs(50),
        "too slow to tell"
    );
    assert_eq!(held, 0, "the 60 s listener's counts are still in the VM");
}
