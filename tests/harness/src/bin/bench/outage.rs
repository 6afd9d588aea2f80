//! The outage scenarios: on an Envoy of their own, per scenario a listener with the circuit breaker
//! and one without, the same paced load on each, and what callers saw.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e_harness::{serde_json, Cluster, Envoy, EnvoyConfig, Listener, Route, Upstream, WasmFilter};
use hyper::header::HeaderValue;
use tokio::net::TcpSocket;
use tokio::task::JoinSet;

use crate::clock::EnvoyClock;
use crate::envoy::{self, Setup};
use crate::load::{self, Failures, Load, PacedTally, Proto, Sample, TraceHeader, STATUS_HEADER};
use crate::report;
use crate::settings::Settings;
use crate::stats::nanos;

/// Connections of the outage load, whatever the concurrency: the scenarios are about what callers
/// see, not about throughput.
pub const OUTAGE_CONNECTIONS: usize = 8;
/// Route timeout of the slow outage, whose upstream answers after [`SLOW_UPSTREAM_DELAY_MS`].
const SLOW_ROUTE_TIMEOUT: Duration = Duration::from_millis(250);
const SLOW_UPSTREAM_DELAY_MS: &str = "1000";
/// Breaker name of the outage configuration; its rejections carry `x-circuit-breaker: outage; ...`.
const OUTAGE_BREAKER: &str = "outage";
/// Time allowed, beyond the load time, for the last answers; a stuck Envoy fails the run.
const OUTAGE_DRAIN: Duration = Duration::from_secs(30);

/// The breaker of every outage listener: the defaults, written out. It opens once 20 calls in the
/// last 10 s are in and half of them failed, and stays open 5 s +/- 10 % (jitter): longer than any
/// load below, so no half-open probe falls inside a measurement.
pub fn breaker_config() -> serde_json::Value {
    serde_json::json!({"breakers": [{
        "name": OUTAGE_BREAKER,
        "keyBy": "cluster",
        "window": {"type": "time", "duration": "10s", "buckets": 10},
        "minimumCalls": 20,
        "failureRateThreshold": 50,
        "openDuration": "5s"
    }]})
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// The upstream answers every request with 503 (`x-upstream-status: 503`).
    Status503,
    /// The cluster points to a closed port: every request fails without any header trick.
    Refused,
    /// The upstream answers after 1 s, the route times out after 250 ms: 504s.
    Slow,
}

impl Scenario {
    const ALL: [Scenario; 3] = [Scenario::Status503, Scenario::Refused, Scenario::Slow];

    fn key(self) -> &'static str {
        match self {
            Scenario::Status503 => "status503",
            Scenario::Refused => "refused",
            Scenario::Slow => "slow",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Scenario::Status503 => "upstream answers 503",
            Scenario::Refused => "connection refused",
            Scenario::Slow => "slow: upstream 1 s, route timeout 250 ms",
        }
    }

    /// What a caller gets from a failing call that the breaker let through.
    pub fn failure_status(self) -> u16 {
        match self {
            Scenario::Status503 | Scenario::Refused => 503,
            Scenario::Slow => 504,
        }
    }

    fn request_headers(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Scenario::Status503 => &[("x-upstream-status", "503")],
            Scenario::Refused => &[],
            Scenario::Slow => &[("x-upstream-delay-ms", SLOW_UPSTREAM_DELAY_MS)],
        }
    }

    fn load_time(self, s: &Settings) -> Duration {
        match self {
            Scenario::Slow => s.slow_time,
            _ => s.outage_time,
        }
    }

    /// Listener, cluster, route, plugin and vm_id name: one of each per scenario and side, so every
    /// breaker has its own shared state and every cluster its own stats.
    fn name(self, breaker: bool) -> String {
        format!(
            "{}_{}",
            self.key(),
            if breaker { "breaker" } else { "none" }
        )
    }
}

/// A TCP port that refuses connections for as long as the value lives: bound, never listening
/// (Linux answers a SYN to it with a reset), so no other process can take the port meanwhile.
fn refusing_port() -> Result<(TcpSocket, u16), String> {
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    socket
        .bind(([127, 0, 0, 1], 0).into())
        .map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
    let port = socket
        .local_addr()
        .map_err(|e| format!("local_addr: {e}"))?
        .port();
    Ok((socket, port))
}

fn envoy_config(s: &Settings, module: &Path, upstream_port: u16, refused_port: u16) -> EnvoyConfig {
    let breaker = breaker_config().to_string();
    let mut config = envoy::base_config(s);
    for sc in Scenario::ALL {
        for with_breaker in [false, true] {
            let name = sc.name(with_breaker);
            let port = match sc {
                Scenario::Refused => refused_port,
                _ => upstream_port,
            };
            config = config.cluster(Cluster::new(&name, port));
            let mut route = Route::to(&name, "/", &name);
            if sc == Scenario::Slow {
                route = route.timeout(SLOW_ROUTE_TIMEOUT);
            }
            let mut listener = Listener::new(&name).route(route);
            if with_breaker {
                listener = listener.filter(
                    WasmFilter::new(&name, module)
                        .vm_id(&name)
                        .configuration(breaker.clone()),
                );
            }
            config = config.listener(listener);
        }
    }
    config
}

/// One listener's outage measurement.
pub struct Phase {
    pub scenario: Scenario,
    pub breaker: bool,
    pub load_time: Duration,
    samples: Vec<Sample>,
    transport_errors: Failures,
    /// Requests the upstream recorded (503, slow) or connection attempts (refused).
    pub reached: u64,
    pub upstream_rq: u64,
    pub upstream_cx: u64,
    envoy_cpu: Duration,
    /// From the start of the load to the last answer: the time `envoy_cpu` was measured over.
    wall: Duration,
}

impl Phase {
    pub fn sent(&self) -> u64 {
        self.samples.len() as u64 + self.transport_errors.count
    }

    pub fn is_rejection(&self, x: &Sample) -> bool {
        x.status == 503
            && x.breaker_header
                .as_deref()
                .is_some_and(|h| h.starts_with(&format!("{OUTAGE_BREAKER}; state=open")))
    }

    pub fn is_failure(&self, x: &Sample) -> bool {
        x.status == self.scenario.failure_status() && x.breaker_header.is_none()
    }

    /// Sorted latencies in nanoseconds of the answers `keep` selects.
    pub fn latencies(&self, keep: impl Fn(&Sample) -> bool) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .samples
            .iter()
            .filter(|x| keep(x))
            .map(|x| nanos(x.latency))
            .collect();
        v.sort_unstable();
        v
    }

    /// When the first rejection was in, from the start of the load.
    pub fn opened_after(&self) -> Option<Duration> {
        self.samples
            .iter()
            .filter(|x| self.is_rejection(x))
            .map(|x| x.done)
            .min()
    }

    /// Envoy's CPU over the load: share of one core, and per request when there are enough.
    pub fn cpu(&self) -> String {
        let core = 100.0 * self.envoy_cpu.as_secs_f64() / self.wall.as_secs_f64();
        if self.sent() >= 1000 {
            let per_request = self.envoy_cpu.as_secs_f64() * 1e6 / self.sent() as f64;
            format!("{core:.0} % core, {per_request:.0} µs/req")
        } else {
            format!("{core:.0} % core")
        }
    }

    /// What went wrong, if anything: answers that are neither the outage's failure nor a rejection,
    /// transport errors, a breaker that never opened.
    pub fn problems(&self) -> Vec<String> {
        let what = format!("outage {}", self.scenario.name(self.breaker));
        let mut out = Vec::new();
        let unexpected: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|x| !(self.is_failure(x) || (self.breaker && self.is_rejection(x))))
            .collect();
        if let Some(first) = unexpected.first() {
            out.push(format!(
                "{what}: {} of {} answers neither a {} nor a rejection, first: status {} {}: {:?}",
                unexpected.len(),
                self.samples.len(),
                self.scenario.failure_status(),
                first.status,
                STATUS_HEADER,
                first.breaker_header
            ));
        }
        if self.transport_errors.count > 0 {
            out.push(format!(
                "{what}: {} transport errors, first: {}",
                self.transport_errors.count,
                self.transport_errors.first()
            ));
        }
        if self.breaker && self.opened_after().is_none() {
            out.push(format!("{what}: the breaker never opened"));
        }
        out
    }
}

/// Runs the paced load against one outage listener.
async fn phase(
    s: &Settings,
    scenario: Scenario,
    breaker: bool,
    envoy: &Envoy,
    upstream: &Upstream,
    clock: &EnvoyClock,
) -> Result<Phase, String> {
    let name = scenario.name(breaker);
    let mut load = Load::new(Proto::H1, envoy.port(&name), TraceHeader::TraceParent)?;
    for (n, v) in scenario.request_headers() {
        load.headers.insert(*n, HeaderValue::from_static(v));
    }
    let load = Arc::new(load);
    let conns = load::open_connections(&load, OUTAGE_CONNECTIONS).await?;
    upstream.clear();
    let before = envoy.stats().await;
    let load_time = scenario.load_time(s);
    let interval = Duration::from_secs_f64(OUTAGE_CONNECTIONS as f64 / s.outage_rate);
    let cpu_before = clock.read()?;
    let start = Instant::now();
    let end = start + load_time;
    let mut workers = JoinSet::new();
    for (j, conn) in conns.into_iter().enumerate() {
        // Staggered, so that the load is even rather than 8 requests at once.
        let first = start + interval.mul_f64(j as f64 / OUTAGE_CONNECTIONS as f64);
        workers.spawn(load::paced(conn, load.clone(), start, first, end, interval));
    }
    let mut tally = PacedTally::default();
    let joined = tokio::time::timeout(load_time + OUTAGE_DRAIN, async {
        while let Some(t) = workers.join_next().await {
            tally.merge(t.map_err(|e| format!("outage worker: {e}"))?);
        }
        Ok::<_, String>(())
    })
    .await;
    joined.map_err(|_| {
        format!("outage {name}: answers still missing {OUTAGE_DRAIN:?} after the load")
    })??;
    let envoy_cpu = clock.read()?.saturating_sub(cpu_before);
    let wall = start.elapsed();
    let after = envoy.stats().await;
    let delta = |stat: &str| {
        let key = format!("cluster.{name}.{stat}");
        after
            .get(&key)
            .copied()
            .unwrap_or(0)
            .saturating_sub(before.get(&key).copied().unwrap_or(0))
    };
    let upstream_rq = delta("upstream_rq_total");
    let upstream_cx = delta("upstream_cx_total");
    let reached = match scenario {
        Scenario::Refused => upstream_cx,
        _ => upstream.count() as u64,
    };
    upstream.clear();
    Ok(Phase {
        scenario,
        breaker,
        load_time,
        samples: tally.samples,
        transport_errors: tally.transport_errors,
        reached,
        upstream_rq,
        upstream_cx,
        envoy_cpu,
        wall,
    })
}

/// Every scenario, the listener without the breaker first, then the one with it.
async fn phases(
    s: &Settings,
    envoy: &Envoy,
    upstream: &Upstream,
    clock: &EnvoyClock,
) -> Result<Vec<Phase>, String> {
    let mut phases = Vec::new();
    for sc in Scenario::ALL {
        for breaker in [false, true] {
            let p = phase(s, sc, breaker, envoy, upstream, clock).await?;
            eprintln!(
                "bench: outage {:<16} {:>6} sent  {:>6} reached upstream  opened after {}",
                sc.name(breaker),
                p.sent(),
                p.reached,
                p.opened_after().map_or_else(
                    || "—".to_string(),
                    |d| format!("{:.0} ms", d.as_secs_f64() * 1e3)
                )
            );
            phases.push(p);
        }
    }
    Ok(phases)
}

/// The outage scenarios, on an Envoy of their own. Returns the report section and the Envoy's
/// setup.
pub async fn run(
    s: &Settings,
    upstream: &Upstream,
    errors: &mut Vec<String>,
) -> Result<(String, Setup), String> {
    let module = envoy::module("circuit_breaker.wasm");
    envoy::require(&module, " (or BENCH_OUTAGE=0)")?;
    let (_refusing, refused_port) = refusing_port()?;
    let config = envoy_config(s, &module, upstream.port(), refused_port);
    let (envoy, setup) = envoy::start(config).await?;
    let phases = phases(s, &envoy, upstream, &setup.clock).await?;
    for p in &phases {
        errors.extend(p.problems());
    }
    Ok((report::outage_section(s, &phases), setup))
}
