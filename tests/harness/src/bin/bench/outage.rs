//! The outage scenarios: what each kind of protection buys callers when a dependency fails.
//!
//! Per scenario and round a fresh Envoy (so no state survives between runs) gets one listener per
//! variant, each routing to its own cluster and its own port of the [`Dependency`]. Every variant gets
//! the same paced load at the same time (4 keep-alive callers), so all of them see the same outage:
//! healthy for a while, failing for a fixed period, then healthy again. The variants' callers are
//! started in a rotated order each round.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e_harness::{Cluster, EnvoyConfig, HttpFilter, Listener, Route, WasmFilter};
use tokio::task::JoinSet;

use crate::dependency::{Dependency, Mode};
use crate::envoy::{self, Setup};
use crate::load::{self, Failures, Load, PacedTally, Proto, Sample, TraceHeader};
use crate::report;
use crate::settings::Settings;

/// Callers per variant: keep-alive connections, paced.
pub const OUTAGE_CONNECTIONS: usize = 4;
/// Route timeout of every variant (the hang scenario runs into it).
pub const ROUTE_TIMEOUT: Duration = Duration::from_millis(250);
/// Error rate of the partial failure, per mille.
pub const PARTIAL_PER_MILLE: u16 = 100;
/// Width of the timeline buckets.
pub const BUCKET: Duration = Duration::from_millis(250);
/// Time allowed, after the timeline, for the last answers; a stuck Envoy fails the run.
const DRAIN: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scenario {
    Errors,
    Hang,
    Refused,
    Flap,
    Partial,
}

impl Scenario {
    pub const ALL: [Scenario; 5] = [
        Scenario::Errors,
        Scenario::Hang,
        Scenario::Refused,
        Scenario::Flap,
        Scenario::Partial,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Scenario::Errors => "errors",
            Scenario::Hang => "hang",
            Scenario::Refused => "refused",
            Scenario::Flap => "flap",
            Scenario::Partial => "partial",
        }
    }

    pub fn label(self, s: &Settings) -> String {
        match self {
            Scenario::Errors => "hard down: every request answered 503".to_string(),
            Scenario::Hang => format!(
                "hang: every request held past the {} ms route timeout (504)",
                ROUTE_TIMEOUT.as_millis()
            ),
            Scenario::Refused => "refused: the dependency's port closed".to_string(),
            Scenario::Flap => format!(
                "flapping: 503 for {:.1} s, healthy for {:.1} s, and again",
                s.flap_period.as_secs_f64(),
                s.flap_period.as_secs_f64()
            ),
            Scenario::Partial => format!(
                "partial: {} % of requests answered 503, at random",
                PARTIAL_PER_MILLE / 10
            ),
        }
    }

    /// How long the dependency misbehaves.
    pub fn failing_time(self, s: &Settings) -> Duration {
        match self {
            Scenario::Partial => s.partial_time,
            _ => s.outage_time,
        }
    }

    /// The dependency's mode at `t` into the failure period.
    fn mode_at(self, s: &Settings, t: Duration) -> Mode {
        match self {
            Scenario::Errors => Mode::Errors,
            Scenario::Hang => Mode::Hang,
            Scenario::Refused => Mode::Refused,
            Scenario::Partial => Mode::Partial(PARTIAL_PER_MILLE),
            Scenario::Flap => {
                let half = (t.as_secs_f64() / s.flap_period.as_secs_f64()) as u64;
                if half.is_multiple_of(2) {
                    Mode::Errors
                } else {
                    Mode::Healthy
                }
            }
        }
    }

    /// The failing stretches, from the start of the load.
    pub fn failing_spans(self, s: &Settings) -> Vec<(Duration, Duration)> {
        let start = s.outage_pre;
        let end = start + self.failing_time(s);
        if self != Scenario::Flap {
            return vec![(start, end)];
        }
        let mut spans = Vec::new();
        let mut t = start;
        while t < end {
            spans.push((t, (t + s.flap_period).min(end)));
            t += s.flap_period * 2;
        }
        spans
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    None,
    Outlier,
    Admission,
    Breaker,
    BreakerFallback,
    /// A breaker configuration considered for the defaults.
    Candidate(&'static str, &'static str),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Variant {
    pub kind: Kind,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self.kind {
            Kind::None => "none",
            Kind::Outlier => "outlier",
            Kind::Admission => "admission",
            Kind::Breaker => "breaker",
            Kind::BreakerFallback => "breaker+fallback",
            Kind::Candidate(name, _) => name,
        }
    }

    /// Listener and cluster name.
    fn id(self) -> String {
        self.name().replace(['+', '-', '.'], "_")
    }

    pub fn what(self) -> String {
        match self.kind {
            Kind::None => "router only".to_string(),
            Kind::Outlier => format!(
                "Envoy outlier detection as Istio renders `outlierDetection: {{consecutive5xxErrors: 5, \
                 interval: 1s, baseEjectionTime: 5s, maxEjectionPercent: 100}}`: {}",
                OUTLIER_YAML.replace('\n', " ")
            ),
            Kind::Admission => format!(
                "Envoy's admission_control filter: {}",
                ADMISSION_SUMMARY
            ),
            Kind::Breaker => "circuit-breaker with no configuration (the defaults)".to_string(),
            Kind::BreakerFallback => format!(
                "fallback (`{}`) then circuit-breaker (defaults)",
                FALLBACK_CONFIG
            ),
            Kind::Candidate(_, config) => format!("circuit-breaker `{config}`"),
        }
    }

    /// Whether this variant's rejections are by our breaker.
    pub fn is_breaker(self) -> bool {
        matches!(
            self.kind,
            Kind::Breaker | Kind::BreakerFallback | Kind::Candidate(..)
        )
    }
}

/// What Istio's `applyOutlierDetection` (pilot/pkg/networking/core/cluster_traffic_policy.go) makes of
/// `consecutive5xxErrors: 5` with the interval and ejection time above: success-rate ejection off,
/// consecutive 5xx enforced at 100 %, and the panic threshold set from `minHealthPercent` (default 0):
/// with the only host ejected, Envoy answers 503 "no healthy upstream" at once.
const OUTLIER_YAML: &str = "outlier_detection:
  consecutive_5xx: 5
  enforcing_consecutive_5xx: 100
  enforcing_success_rate: 0
  interval: 1s
  base_ejection_time: 5s
  max_ejection_percent: 100
common_lb_config:
  healthy_panic_threshold: {value: 0}";

const ADMISSION_SUMMARY: &str = "10 s sampling window (as the breaker's), success = status below 500, \
     success-rate threshold 95 %, aggression 1, from 5 requests/s, rejection probability at most 95 %";

pub const ADMISSION_YAML: &str = "name: envoy.filters.http.admission_control
typed_config:
  \"@type\": type.googleapis.com/envoy.extensions.filters.http.admission_control.v3.AdmissionControl
  enabled: {default_value: true, runtime_key: admission_control.enabled}
  sampling_window: 10s
  aggression: {default_value: 1.0, runtime_key: admission_control.aggression}
  sr_threshold: {default_value: {value: 95.0}, runtime_key: admission_control.sr_threshold}
  rps_threshold: {default_value: 5, runtime_key: admission_control.rps_threshold}
  max_rejection_probability: {default_value: {value: 95.0}, runtime_key: admission_control.max_rejection_probability}
  success_criteria:
    http_criteria:
      http_success_status: [{start: 100, end: 500}]";

/// The fallback of the `breaker+fallback` variant: the last good answer for any failure or rejection.
const FALLBACK_CONFIG: &str = r#"{"rules":[{"name":"orders","triggers":{"status":"500-599","envoy":["connectionFailure","timeout","reset","noHealthyUpstream","localReply"],"circuitBreaker":true},"response":{"kind":"stale","ttl":"60s"}}]}"#;

/// The breaker configurations measured for the choice of defaults (README, "Why these defaults").
pub const CANDIDATES: [(&str, &str); 4] = [
    (
        "old defaults",
        r#"{"breakers":[{"name":"default","keyBy":"cluster","minimumCalls":20,"failureRateThreshold":50,"consecutiveFailures":0}]}"#,
    ),
    (
        "minimumCalls 5",
        r#"{"breakers":[{"name":"default","keyBy":"cluster","minimumCalls":5,"failureRateThreshold":50,"consecutiveFailures":0}]}"#,
    ),
    (
        "consecutive 5",
        r#"{"breakers":[{"name":"default","keyBy":"cluster","minimumCalls":20,"failureRateThreshold":50,"consecutiveFailures":5}]}"#,
    ),
    (
        "consecutive 8",
        r#"{"breakers":[{"name":"default","keyBy":"cluster","minimumCalls":20,"failureRateThreshold":50,"consecutiveFailures":8}]}"#,
    ),
];

pub fn variants() -> Vec<Variant> {
    let mut v: Vec<Variant> = [
        Kind::None,
        Kind::Outlier,
        Kind::Admission,
        Kind::Breaker,
        Kind::BreakerFallback,
    ]
    .into_iter()
    .map(|kind| Variant { kind })
    .collect();
    v.extend(CANDIDATES.iter().map(|(n, c)| Variant {
        kind: Kind::Candidate(n, c),
    }));
    v
}

fn envoy_config(s: &Settings, dep: &Dependency, variants: &[Variant]) -> EnvoyConfig {
    let breaker = envoy::module("circuit_breaker.wasm");
    let fallback = envoy::module("fallback.wasm");
    let mut config = envoy::base_config(s);
    for (i, v) in variants.iter().enumerate() {
        let id = v.id();
        let mut cluster = Cluster::new(&id, dep.port(i)).connect_timeout(Duration::from_secs(1));
        if v.kind == Kind::Outlier {
            cluster = cluster.extra_yaml(OUTLIER_YAML);
        }
        config = config.cluster(cluster);
        let mut listener =
            Listener::new(&id).route(Route::to(&id, "/", &id).timeout(ROUTE_TIMEOUT));
        let wasm = |name: &str, module: &Path| {
            // One vm_id for every plugin of a module: the VM is shared, the breakers are keyed by
            // cluster, so each variant still has its own state.
            WasmFilter::new(format!("{id}_{name}"), module).vm_id(name)
        };
        listener = match v.kind {
            Kind::None | Kind::Outlier => listener,
            Kind::Admission => listener.filter(HttpFilter::raw(ADMISSION_YAML)),
            Kind::Breaker => listener.filter(wasm("breaker", &breaker)),
            Kind::BreakerFallback => listener
                .filter(wasm("fallback", &fallback).configuration(FALLBACK_CONFIG))
                .filter(wasm("breaker", &breaker)),
            Kind::Candidate(_, c) => listener.filter(wasm("breaker", &breaker).configuration(c)),
        };
        config = config.listener(listener);
    }
    config
}

/// What an answer was, from the caller's side.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Outcome {
    /// A 2xx from the dependency.
    Ok,
    /// A fallback answer (2xx: the stale copy).
    Fallback,
    /// The dependency's failure passed on: its 503, Envoy's 504 for the timeout, Envoy's 503 for the
    /// refused connection.
    Failed,
    /// Refused by the protection without asking the dependency: the breaker's rejection, Envoy's
    /// "no healthy upstream", admission control's 503, or a fallback standing in for one of those.
    Rejected,
    /// Anything else (a bench problem).
    Other,
}

impl Outcome {
    pub const SHOWN: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::Fallback,
        Outcome::Failed,
        Outcome::Rejected,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "2xx from the dependency",
            Outcome::Fallback => "fallback (stale 200)",
            Outcome::Failed => "failure passed on",
            Outcome::Rejected => "rejected at once",
            Outcome::Other => "other",
        }
    }
}

pub fn classify(x: &Sample) -> Outcome {
    if x.fallback_header.is_some() {
        return if (200..300).contains(&x.status) {
            Outcome::Fallback
        } else {
            Outcome::Rejected
        };
    }
    if x.from_dependency {
        return match x.status {
            200..=299 => Outcome::Ok,
            500..=599 => Outcome::Failed,
            _ => Outcome::Other,
        };
    }
    match x.status {
        504 => Outcome::Failed,
        503 if x.breaker_header.is_some() => Outcome::Rejected,
        503 if x.body_head.starts_with("upstream connect error") => Outcome::Failed,
        // "no healthy upstream" (outlier ejection) and admission control's empty 503.
        503 => Outcome::Rejected,
        _ => Outcome::Other,
    }
}

/// Whether a fallback answer stood in for a protection's rejection (not for a failure).
fn fallback_of_rejection(x: &Sample) -> bool {
    x.fallback_header
        .as_deref()
        .is_some_and(|h| h.contains("reason=circuitBreaker") || h.contains("noHealthyUpstream"))
}

/// One variant's run through one scenario.
pub struct Run {
    pub scenario: Scenario,
    pub variant: Variant,
    pub samples: Vec<Sample>,
    pub transport_errors: Failures,
    /// Requests that reached the dependency while it was failing, plus Envoy's failed connection
    /// attempts to it (`upstream_cx_connect_fail`, the refused scenario).
    pub reached: u64,
}

impl Run {
    fn failing(&self, s: &Settings, t: Duration) -> bool {
        self.scenario
            .failing_spans(s)
            .iter()
            .any(|(a, b)| t >= *a && t < *b)
    }

    fn in_outage(&self, s: &Settings, t: Duration) -> bool {
        t >= s.outage_pre && t < s.outage_pre + self.scenario.failing_time(s)
    }

    /// Answers to requests sent during the outage.
    pub fn during<'a>(&'a self, s: &'a Settings) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples
            .iter()
            .filter(move |x| self.in_outage(s, x.sent()))
    }

    /// Share of the requests sent during the outage that got a 2xx (the dependency's or a stale copy).
    pub fn useful(&self, s: &Settings) -> f64 {
        let (mut n, mut good) = (0u64, 0u64);
        for x in self.during(s) {
            n += 1;
            good += u64::from((200..300).contains(&x.status));
        }
        if n == 0 {
            f64::NAN
        } else {
            good as f64 / n as f64
        }
    }

    /// Rejections among the answers (any time).
    pub fn rejections(&self) -> usize {
        self.samples.iter().filter(|x| is_trip_answer(x)).count()
    }

    /// From the start of the outage to the first request answered by a rejection.
    pub fn time_to_trip(&self, s: &Settings) -> Option<Duration> {
        self.samples
            .iter()
            .filter(|x| is_trip_answer(x) && x.sent() >= s.outage_pre)
            .map(|x| x.sent() - s.outage_pre)
            .min()
    }

    /// From the dependency's recovery to the first request after which every answer is the
    /// dependency's own 2xx; `None` when the run ended before that.
    pub fn time_to_recover(&self, s: &Settings) -> Option<Duration> {
        let healed = s.outage_pre + self.scenario.failing_time(s);
        let mut after: Vec<&Sample> = self.samples.iter().filter(|x| x.sent() >= healed).collect();
        after.sort_by_key(|x| x.sent());
        let last_bad = after.iter().rposition(|x| classify(x) != Outcome::Ok);
        match last_bad {
            None => Some(after.first().map_or(Duration::ZERO, |x| x.sent() - healed)),
            Some(i) => after.get(i + 1).map(|x| x.sent() - healed),
        }
    }

    /// Sorted latencies (ns) of the answers to requests sent during the outage.
    pub fn outage_latencies(&self, s: &Settings) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .during(s)
            .map(|x| crate::stats::nanos(x.latency))
            .collect();
        v.sort_unstable();
        v
    }

    /// Requests sent while the dependency was failing (the flapping one: in its failing halves).
    pub fn sent_while_failing(&self, s: &Settings) -> usize {
        self.samples
            .iter()
            .filter(|x| self.failing(s, x.sent()))
            .count()
    }

    pub fn problems(&self) -> Vec<String> {
        let what = format!("outage {} {}", self.scenario.key(), self.variant.name());
        let mut out = Vec::new();
        let other: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|x| classify(x) == Outcome::Other)
            .collect();
        if let Some(first) = other.first() {
            out.push(format!(
                "{what}: {} unexpected answers, first: status {} body {:?}",
                other.len(),
                first.status,
                first.body_head
            ));
        }
        if self.transport_errors.count > 0 {
            out.push(format!(
                "{what}: {} transport errors, first: {}",
                self.transport_errors.count,
                self.transport_errors.first()
            ));
        }
        out
    }
}

/// An answer that says the protection was refusing calls (open breaker, ejected host, shed load).
pub fn is_trip_answer(x: &Sample) -> bool {
    match classify(x) {
        Outcome::Rejected => true,
        Outcome::Fallback => fallback_of_rejection(x),
        _ => false,
    }
}

/// One scenario, one round: a fresh Envoy and dependency, every variant loaded at once.
async fn run_once(
    s: &Settings,
    scenario: Scenario,
    round: usize,
    variants: &[Variant],
) -> Result<(Vec<Run>, Setup), String> {
    let dep = Dependency::start(variants.len()).await?;
    let (envoy, setup) = envoy::start(envoy_config(s, &dep, variants)).await?;
    let total = s.outage_pre + scenario.failing_time(s) + s.outage_post;
    let interval = Duration::from_secs_f64(OUTAGE_CONNECTIONS as f64 / s.outage_rate);
    let mut conns = Vec::new();
    for v in variants {
        let load = Arc::new(Load::new(
            Proto::H1,
            envoy.port(&v.id()),
            TraceHeader::TraceParent,
        )?);
        let c = load::open_connections(&load, OUTAGE_CONNECTIONS).await?;
        conns.push(Some((load, c)));
    }
    let start = Instant::now();
    let end = start + total;
    let mut workers = JoinSet::new();
    // Rotated each round, so no variant always sends first in a slot.
    let n = variants.len();
    for k in 0..n {
        let i = (k + round) % n;
        let (load, cs) = conns[i].take().ok_or("connections taken twice")?;
        for (j, conn) in cs.into_iter().enumerate() {
            let offset = (j * n + k) as f64 / (OUTAGE_CONNECTIONS * n) as f64;
            let first = start + interval.mul_f64(offset);
            let load = load.clone();
            workers.spawn(async move {
                (
                    i,
                    load::paced(conn, load, start, first, end, interval).await,
                )
            });
        }
    }
    // The dependency's timeline; Envoy's connection failures are read when the outage starts and ends.
    let cx_fail = |stats: &std::collections::HashMap<String, u64>, v: &Variant| {
        stats
            .get(&format!("cluster.{}.upstream_cx_connect_fail", v.id()))
            .copied()
            .unwrap_or(0)
    };
    let outage_start = start + s.outage_pre;
    let outage_end = outage_start + scenario.failing_time(s);
    tokio::time::sleep_until(outage_start.into()).await;
    let before = envoy.stats().await;
    let step = Duration::from_millis(10);
    loop {
        let now = Instant::now();
        if now >= outage_end {
            break;
        }
        dep.set(scenario.mode_at(s, now - outage_start))?;
        tokio::time::sleep(step.min(outage_end - now)).await;
    }
    dep.set(Mode::Healthy)?;
    let after = envoy.stats().await;
    let mut tallies: Vec<PacedTally> = (0..n).map(|_| PacedTally::default()).collect();
    let joined = tokio::time::timeout(total + DRAIN, async {
        while let Some(t) = workers.join_next().await {
            let (i, tally) = t.map_err(|e| format!("outage worker: {e}"))?;
            tallies[i].merge(tally);
        }
        Ok::<_, String>(())
    })
    .await;
    joined.map_err(|_| format!("outage {}: answers still missing", scenario.key()))??;
    let runs = variants
        .iter()
        .zip(tallies)
        .enumerate()
        .map(|(i, (v, t))| Run {
            scenario,
            variant: *v,
            samples: t.samples,
            transport_errors: t.transport_errors,
            reached: dep.reached_failing(i)
                + cx_fail(&after, v).saturating_sub(cx_fail(&before, v)),
        })
        .collect();
    drop(envoy);
    Ok((runs, setup))
}

/// Every scenario, `outage_rounds` times; returns the report section and the last Envoy's setup.
pub async fn run(s: &Settings, errors: &mut Vec<String>) -> Result<(String, Setup), String> {
    for m in ["circuit_breaker.wasm", "fallback.wasm"] {
        envoy::require(&envoy::module(m), " (or BENCH_OUTAGE=0)")?;
    }
    let variants = variants();
    let mut all: Vec<Vec<Run>> = Vec::new();
    let mut setup = None;
    for sc in Scenario::ALL {
        for round in 0..s.outage_rounds {
            let (runs, st) = run_once(s, sc, round, &variants).await?;
            for r in &runs {
                errors.extend(r.problems());
                eprintln!(
                    "bench: outage {:<8} round {} {:<18} {:>5} sent {:>5} reached  trip {:>8}  recover {:>8}",
                    sc.key(),
                    round + 1,
                    r.variant.name(),
                    r.samples.len(),
                    r.reached,
                    r.time_to_trip(s)
                        .map_or("—".to_string(), |d| format!("{:.0} ms", d.as_secs_f64() * 1e3)),
                    r.time_to_recover(s)
                        .map_or("—".to_string(), |d| format!("{:.0} ms", d.as_secs_f64() * 1e3)),
                );
            }
            all.push(runs);
            setup = Some(st);
        }
    }
    let setup = setup.ok_or("no outage run")?;
    let section = report::outage_section(s, &variants, &all)?;
    Ok((section, setup))
}
