//! Issue 20 item 7: a dependency that goes hard down (every answer 503) after healthy traffic, called
//! by 4 keep-alive callers spread over Envoy's two workers, is cut off by the breaker's defaults as
//! fast as Envoy's outlier detection (`consecutive5xxErrors: 5`) could: the fifth failure opens it,
//! whichever workers saw the five, and the next call is rejected.

use std::time::{Duration, Instant};

use e2e_harness::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use crate::support::*;

/// One keep-alive caller sending a request every 20 ms from `start` until `stop`; returns, for each
/// answer after `flip`, (microseconds after `flip`, status, rejected by the breaker).
async fn paced_caller(
    port: u16,
    start: Instant,
    flip: Instant,
    stop: Instant,
) -> Vec<(u128, u16, bool)> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut answers = Vec::new();
    for n in 0u32.. {
        let at = start + Duration::from_millis(20) * n;
        if at > stop {
            break;
        }
        tokio::time::sleep_until(at.into()).await;
        let req = hyper::Request::builder()
            .uri("/")
            .header("host", "dependency")
            .body(Full::new(Bytes::new()))
            .unwrap();
        sender.ready().await.unwrap();
        let r = sender.send_request(req).await.unwrap();
        let status = r.status().as_u16();
        let rejected = r.headers().contains_key(STATUS_HEADER);
        r.into_body().collect().await.unwrap();
        let now = Instant::now();
        if now > flip {
            answers.push((now.duration_since(flip).as_micros(), status, rejected));
        }
    }
    answers
}

/// Three runs alike: 4 callers at 200 requests/s in all, 1.5 s healthy, then every answer 503. The
/// fifth failure in a row opens the breaker (the sixth when one worker recorded its failure after the
/// other had admitted the next call); beyond that run only calls already admitted reach the
/// dependency (Istio's outlier detection let 6 through in the same setup, issue 20).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item7_hard_down_is_cut_off_after_five_failures_on_two_workers() {
    for run in 0..3 {
        let upstream = Upstream::start().await;
        let envoy = Envoy::start(
            EnvoyConfig::simple(INGRESS, upstream.port())
                .concurrency(2)
                .log_level("info")
                .filter_all(cb_filter(None)),
        )
        .await;
        let port = envoy.port(INGRESS);
        let start = Instant::now() + Duration::from_millis(100);
        let flip = start + Duration::from_millis(1500);
        let stop = flip + Duration::from_millis(500);
        let mut callers = tokio::task::JoinSet::new();
        for i in 0..4u64 {
            let first = start + Duration::from_millis(5 * i);
            callers.spawn(paced_caller(port, first, flip, stop));
        }
        tokio::time::sleep_until(flip.into()).await;
        let before = upstream.count();
        upstream.set_behaviour(&[("x-upstream-status", "503")]);
        let mut answers: Vec<(u128, u16, bool)> = Vec::new();
        while let Some(a) = callers.join_next().await {
            answers.extend(a.unwrap());
        }
        answers.sort_unstable();
        let reached = upstream.count() - before;
        let stats = envoy.stats().await;
        let workers: Vec<u64> = (0..2)
            .map(|w| {
                stats
                    .iter()
                    .filter(|(k, _)| {
                        k.contains(&format!("worker_{w}.")) && k.ends_with("downstream_cx_total")
                    })
                    .map(|(_, v)| *v)
                    .sum()
            })
            .collect();
        let trip = envoy
            .log()
            .lines()
            .find(|l| l.contains("closed -> open"))
            .map(str::to_string)
            .unwrap_or_default();
        eprintln!("run {run}: {reached} reached the failing dependency; connections per worker {workers:?}; {trip}");
        // A run of 5 as a rule; 6 when one worker recorded its failure after the other had admitted
        // the next call (a worker busy elsewhere runs `on_log` late).
        assert!(
            trip.contains(": 5 consecutive failures") || trip.contains(": 6 consecutive failures"),
            "run {run}: the fifth failure opens it: {trip:?}"
        );
        // What reaches the dependency is the run that opened the breaker plus calls admitted before it
        // opened and still on their way: at most one per other caller (3). 5 or 6 in all is the rule on
        // an idle machine (`make bench`, docs/benchmarks.md: three rounds 5, 5, 6 against outlier
        // detection's 5, 5, 7); a test must not fail on how the CPU is shared, so it asserts the bound.
        let run_length: usize = if trip.contains(": 5 consecutive") {
            5
        } else {
            6
        };
        assert!(
            (5..=run_length + 3).contains(&reached),
            "run {run}: {reached} calls reached the failing dependency; answers: {answers:?}"
        );
        assert!(
            answers
                .iter()
                .rev()
                .take(10)
                .all(|(_, _, rejected)| *rejected),
            "run {run}: still open at the end: {answers:?}"
        );
    }
}
