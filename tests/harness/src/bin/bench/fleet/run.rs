//! One protection through the whole timeline: a fresh service, dependency sidecar and callers, the
//! users' load on every caller at once, the service switched healthy → slow → failing → healthy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e_harness::{Cluster, Envoy, EnvoyConfig, Listener, Route};
use tokio::task::JoinSet;

use super::protection::{istio_thresholds_yaml, Protection, ISTIO_RETRY_YAML, ISTIO_UNLIMITED};
use super::service::{Phase, PhaseCount, Service};
use super::topology::{Host, Topology};
use super::{Timeline, BUCKET, SIDECAR_WORKERS};
use crate::load::{self, Failures, Load, PacedTally, Proto, Sample, TraceHeader};
use crate::stats::{nanos, percentile};

/// Time allowed, after the timeline, for the last answers; a stuck sidecar fails the run.
const DRAIN: Duration = Duration::from_secs(15);

/// What a user got.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Answer {
    /// The service's 2xx.
    Ok,
    /// The service's failure passed on, or Envoy's for a connection it could not make.
    Failed,
    /// Refused by a sidecar without asking the service (breaker, overflow, concurrency limit, shed).
    Refused,
    /// Anything else, or no answer at all (a bench problem).
    Other,
}

impl Answer {
    pub const SHOWN: [Answer; 3] = [Answer::Ok, Answer::Failed, Answer::Refused];

    pub fn label(self) -> &'static str {
        match self {
            Answer::Ok => "2xx from the service",
            Answer::Failed => "failure passed on",
            Answer::Refused => "refused by a sidecar",
            Answer::Other => "other",
        }
    }
}

pub fn classify(x: &Sample) -> Answer {
    if x.from_dependency {
        return match x.status {
            200..=299 => Answer::Ok,
            500..=599 => Answer::Failed,
            _ => Answer::Other,
        };
    }
    match x.status {
        // Envoy's overflow says "upstream connect error ... reset reason: overflow" too, but with
        // `x-envoy-overloaded`; without it, this is a connection the sidecar could not make.
        503 if x.body_head.starts_with("upstream connect error") && !x.overloaded => Answer::Failed,
        // The breaker's rejection, Envoy's overflow, adaptive_concurrency's "reached concurrency
        // limit", the inbound shed relayed by the caller.
        503 | 429 => Answer::Refused,
        _ => Answer::Other,
    }
}

/// A protection's measured run.
pub struct Measured {
    pub samples: Vec<Sample>,
    pub transport_errors: Failures,
    pub slow: PhaseCount,
    pub failing: PhaseCount,
    /// Requests reaching the service per [`BUCKET`], from the start of the load.
    pub arrivals: Vec<u32>,
}

/// A protection's run, or why there is none.
pub struct FleetRun {
    pub protection: Protection,
    pub result: Outcome,
}

pub enum Outcome {
    Measured(Measured),
    /// This build's module refuses the protection's configuration.
    Unavailable(String),
    /// The run broke (listed with the report's errors).
    Failed(String),
}

impl Measured {
    fn sent_in<'a>(
        &'a self,
        from: Duration,
        to: Duration,
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples
            .iter()
            .filter(move |x| x.sent() >= from && x.sent() < to)
    }

    /// Sorted latencies (ns) of the requests sent in `[from, to)`.
    pub fn latencies(&self, from: Duration, to: Duration) -> Vec<u64> {
        let mut v: Vec<u64> = self.sent_in(from, to).map(|x| nanos(x.latency)).collect();
        v.sort_unstable();
        v
    }

    /// p50 and p99 in ms of the requests sent in `[from, to)`; `None` when there were none.
    pub fn p50_p99(&self, from: Duration, to: Duration) -> Option<(f64, f64)> {
        let l = self.latencies(from, to);
        (!l.is_empty()).then(|| {
            (
                percentile(&l, 50.0).as_secs_f64() * 1e3,
                percentile(&l, 99.0).as_secs_f64() * 1e3,
            )
        })
    }

    /// Share of the requests sent in `[from, to)` answered by the service's 2xx.
    pub fn ok_share(&self, from: Duration, to: Duration) -> f64 {
        let (mut n, mut ok) = (0u64, 0u64);
        for x in self.sent_in(from, to) {
            n += 1;
            ok += u64::from(classify(x) == Answer::Ok);
        }
        if n == 0 {
            f64::NAN
        } else {
            ok as f64 / n as f64
        }
    }

    /// Answers that were not the service's 2xx, plus requests with no answer; and all requests.
    pub fn errors(&self) -> (u64, u64) {
        let bad = self
            .samples
            .iter()
            .filter(|x| classify(x) != Answer::Ok)
            .count() as u64;
        let lost = self.transport_errors.count;
        (bad + lost, self.samples.len() as u64 + lost)
    }

    /// Requests sent in `[from, to)` that a sidecar refused.
    pub fn refused_in(&self, from: Duration, to: Duration) -> usize {
        self.sent_in(from, to)
            .filter(|x| classify(x) == Answer::Refused)
            .count()
    }

    /// Answers of each kind.
    pub fn count(&self, kind: Answer) -> usize {
        self.samples.iter().filter(|x| classify(x) == kind).count()
    }

    /// From the service's recovery to the first request after which every answer is its 2xx;
    /// `None` when the run ended before that.
    pub fn time_to_recover(&self, t: &Timeline) -> Option<Duration> {
        let healed = t.healed();
        let mut after: Vec<&Sample> = self.samples.iter().filter(|x| x.sent() >= healed).collect();
        after.sort_by_key(|x| x.sent());
        match after.iter().rposition(|x| classify(x) != Answer::Ok) {
            None => Some(after.first().map_or(Duration::ZERO, |x| x.sent() - healed)),
            Some(i) => after.get(i + 1).map(|x| x.sent() - healed),
        }
    }

    pub fn problems(&self, p: Protection) -> Vec<String> {
        let mut out = Vec::new();
        let other: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|x| classify(x) == Answer::Other)
            .collect();
        if let Some(first) = other.first() {
            out.push(format!(
                "fleet {}: {} unexpected answers, first: status {} body {:?}",
                p.name(),
                other.len(),
                first.status,
                first.body_head
            ));
        }
        if self.transport_errors.count > 0 {
            out.push(format!(
                "fleet {}: {} transport errors, first: {}",
                p.name(),
                self.transport_errors.count,
                self.transport_errors.first()
            ));
        }
        out
    }
}

/// The dependency sidecar: one inbound listener in front of the service.
fn dependency_config(p: Protection, host: &Host, service: &Service) -> EnvoyConfig {
    let mut listener = Listener::new("inbound")
        .inbound()
        // Istio's inbound routes have no retry policy and no timeout.
        .route(Route::to("inbound", "/", "service").timeout(Duration::ZERO));
    for f in p.dependency_filters() {
        listener = listener.filter(f);
    }
    sidecar(host).listener(listener).cluster(
        Cluster::new("service", service.addr.port())
            .address(service.addr.ip().to_string())
            .extra_yaml(istio_thresholds_yaml(ISTIO_UNLIMITED)),
    )
}

/// A caller sidecar: one outbound listener to the dependency sidecar.
fn caller_config(p: Protection, host: &Host, dependency: &Envoy) -> EnvoyConfig {
    let mut listener = Listener::new("outbound").outbound().route(
        Route::to("outbound", "/", "dependency")
            .timeout(Duration::ZERO)
            .action_yaml(ISTIO_RETRY_YAML),
    );
    for f in p.caller_filters() {
        listener = listener.filter(f);
    }
    sidecar(host).listener(listener).cluster(
        Cluster::new("dependency", dependency.port("inbound"))
            .address(dependency.ip().to_string())
            .extra_yaml(istio_thresholds_yaml(p.caller_max_requests())),
    )
}

fn sidecar(host: &Host) -> EnvoyConfig {
    EnvoyConfig::new()
        .concurrency(SIDECAR_WORKERS)
        .log_level("warn")
        .component_log_level("wasm:warn")
        .address(host.ip.to_string())
        .launcher(host.launcher.clone())
}

/// Starts every caller at once (each Envoy takes a second or two to load its Wasm VMs).
async fn start_callers(configs: Vec<EnvoyConfig>) -> Result<Vec<Envoy>, String> {
    let mut set = JoinSet::new();
    for (i, c) in configs.into_iter().enumerate() {
        set.spawn(async move { (i, Envoy::try_start(c).await) });
    }
    let mut out: Vec<Option<Envoy>> = Vec::new();
    out.resize_with(set.len(), || None);
    while let Some(joined) = set.join_next().await {
        let (i, envoy) = joined.map_err(|e| format!("starting a caller: {e}"))?;
        out[i] = Some(envoy.map_err(|e| format!("caller {}: {e}", i + 1))?);
    }
    Ok(out.into_iter().flatten().collect())
}

/// Runs `p` through the timeline on `topology`.
pub async fn run(t: &Timeline, topology: &Topology, p: Protection) -> Result<Measured, String> {
    let service = Service::start(topology.local, BUCKET).await?;
    let dependency = Envoy::try_start(dependency_config(p, &topology.dependency, &service))
        .await
        .map_err(|e| format!("dependency sidecar: {e}"))?;
    let callers = start_callers(
        topology
            .callers
            .iter()
            .map(|h| caller_config(p, h, &dependency))
            .collect(),
    )
    .await?;
    let mut conns = Vec::new();
    for c in &callers {
        let load = Arc::new(
            Load::new(Proto::H1, c.port("outbound"), TraceHeader::TraceParent)?.at(c.ip()),
        );
        let open = load::open_connections(&load, t.users).await?;
        conns.push((load, open));
    }
    let total = t.total();
    // Each user sends at its share of the fleet's rate.
    let users = t.users * callers.len();
    let interval = Duration::from_secs_f64(users as f64 / t.rate);
    let start = Instant::now();
    let end = start + total;
    service.begin(start);
    let mut workers = JoinSet::new();
    let fleet = conns.len();
    for (i, (load, open)) in conns.into_iter().enumerate() {
        for (j, conn) in open.into_iter().enumerate() {
            // User j of caller i takes slot j x callers + i of the interval: every caller's requests
            // are evenly spaced (no burst of its own users), and so are the fleet's.
            let slot = (j * fleet + i) as f64 / users as f64;
            let first = start + interval.mul_f64(slot);
            workers.spawn(load::paced(conn, load.clone(), start, first, end, interval));
        }
    }
    for (at, phase) in [
        (t.pre, Phase::Slow),
        (t.pre + t.slow, Phase::Failing),
        (t.healed(), Phase::Healthy),
    ] {
        tokio::time::sleep_until((start + at).into()).await;
        service.set(phase);
    }
    let mut tally = PacedTally::default();
    tokio::time::timeout(total + DRAIN, async {
        while let Some(done) = workers.join_next().await {
            tally.merge(done.map_err(|e| format!("fleet user: {e}"))?);
        }
        Ok::<_, String>(())
    })
    .await
    .map_err(|_| format!("fleet {}: answers still missing", p.name()))??;
    let measured = Measured {
        samples: tally.samples,
        transport_errors: tally.transport_errors,
        slow: service.count(Phase::Slow),
        failing: service.count(Phase::Failing),
        arrivals: service.arrivals(),
    };
    // Sidecars stop before the service, so nothing is left talking to a closed port.
    drop(callers);
    drop(dependency);
    Ok(measured)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(
        sent_ms: u64,
        status: u16,
        from_dependency: bool,
        overloaded: bool,
        body: &str,
    ) -> Sample {
        Sample {
            done: Duration::from_millis(sent_ms + 1),
            latency: Duration::from_millis(1),
            status,
            breaker_header: None,
            fallback_header: None,
            from_dependency,
            overloaded,
            body_head: body.to_string(),
        }
    }

    const CONNECT: &str = "upstream connect error or disconnect/reset before headers. reset";

    #[test]
    fn envoys_overflow_is_a_refusal_and_its_connection_failure_a_failure() {
        assert_eq!(
            classify(&answer(0, 503, false, true, CONNECT)),
            Answer::Refused
        );
        assert_eq!(
            classify(&answer(0, 503, false, false, CONNECT)),
            Answer::Failed
        );
        assert_eq!(classify(&answer(0, 503, true, false, "")), Answer::Failed);
        assert_eq!(classify(&answer(0, 200, true, false, "")), Answer::Ok);
        assert_eq!(classify(&answer(0, 200, false, false, "")), Answer::Other);
    }

    #[test]
    fn recovery_ends_at_the_first_request_after_the_last_bad_answer() {
        let t = Timeline {
            rate: 1.0,
            users: 1,
            pre: Duration::from_secs(1),
            slow: Duration::from_secs(1),
            fail: Duration::from_secs(1),
            post: Duration::from_secs(5),
            quick: false,
        };
        let measured = |samples| Measured {
            samples,
            transport_errors: Failures::default(),
            slow: PhaseCount::default(),
            failing: PhaseCount::default(),
            arrivals: Vec::new(),
        };
        let healed = 3000;
        let m = measured(vec![
            answer(healed + 100, 503, false, false, "breaker"),
            answer(healed + 1500, 200, true, false, ""),
            answer(healed + 1600, 503, false, false, "breaker"),
            answer(healed + 2500, 200, true, false, ""),
            answer(healed + 2600, 200, true, false, ""),
        ]);
        assert_eq!(m.time_to_recover(&t), Some(Duration::from_millis(2500)));
        let never = measured(vec![answer(healed + 100, 503, false, false, "breaker")]);
        assert_eq!(never.time_to_recover(&t), None);
    }
}
