//! One sidecar-shaped Envoy (`--concurrency 2`) with the three shipped WasmPlugins delivered by ECDS
//! as istiod delivers them (see `e2e_harness::istio`), under a steady mixed load, and the accounting
//! that checks every request against the filters' counters.
//!
//! Listeners: `outbound` (trace-context, fallback, circuit-breaker, in istiod's order) routes
//! everything to the `upstream` cluster with a route timeout of [`ROUTE_TIMEOUT`]; `inbound`
//! (trace-context only) answers every request itself (a direct response), so it only feeds
//! trace-context's correlation table and never depends on the upstream.

use std::time::{Duration, Instant};

use e2e_harness::istio::{chain, publish_and_wait, Direction, Ecds, WasmPlugin};
pub use e2e_harness::istio::{module_bytes, Update};
use e2e_harness::load::{Answer, Failure, Load, Outcome, Proto, Report, Spec};
use e2e_harness::*;

pub const NAMESPACE: &str = "shop";
/// Requests per second of the steady load.
pub const RATE: f64 = 200.0;
/// The outbound route's timeout; [`SLOW_MS`] is beyond it.
pub const ROUTE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long the slow upstream takes: past the route timeout, so Envoy times out.
pub const SLOW_MS: u64 = 1_500;
/// How long a test waits for an ECDS update to be accepted or rejected.
pub const UPDATE_WAIT: Duration = Duration::from_secs(15);
/// How long the filters' counters may take to account for the last requests (they count in `on_log`,
/// after the client has its response).
pub const SETTLE: Duration = Duration::from_secs(5);

/// Which load tests run at a time: one Envoy under load per machine, whatever `--test-threads` says.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The test's length from `SOAK_SECONDS` (default 60).
pub fn soak_seconds() -> u64 {
    std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|s| *s >= 30)
        .unwrap_or(60)
}

pub struct Sidecar {
    /// `None` while the upstream is down.
    pub upstream: Option<Upstream>,
    pub upstream_port: u16,
    pub envoy: Envoy,
    pub ecds: Ecds,
    pub plugins: Vec<WasmPlugin>,
}

impl Sidecar {
    pub async fn start() -> Sidecar {
        let plugins = WasmPlugin::base(NAMESPACE);
        let upstream = Upstream::start().await;
        let upstream_port = upstream.port();
        let ecds = Ecds::new();
        for p in &plugins {
            ecds.publish(p, &ecds.module(&module_bytes(p)));
        }
        let mut outbound = Listener::new("outbound")
            .outbound()
            .route(Route::to("main", "/", "upstream").timeout(ROUTE_TIMEOUT));
        for p in chain(&plugins, Direction::Outbound) {
            outbound = outbound.filter(ecds.http_filter(p));
        }
        let mut inbound = Listener::new("inbound").inbound().route(Route::direct(
            "local",
            "/",
            200,
            Some("inbound ok"),
        ));
        for p in chain(&plugins, Direction::Inbound) {
            inbound = inbound.filter(ecds.http_filter(p));
        }
        let config = EnvoyConfig::new()
            .concurrency(2)
            // Production log levels: a debug line per request would be the load's main cost.
            .log_level("warn")
            .component_log_level("wasm:info")
            .extra_yaml(format!(
                "node: {{id: \"sidecar~127.0.0.1~app-0.{NAMESPACE}~{NAMESPACE}.svc.cluster.local\", cluster: \"app.{NAMESPACE}\"}}"
            ))
            .cluster(Cluster::new("upstream", upstream_port))
            .listener(outbound)
            .listener(inbound);
        let envoy = Envoy::start(config).await;
        Sidecar {
            upstream: Some(upstream),
            upstream_port,
            envoy,
            ecds,
            plugins,
        }
    }

    pub fn plugin(&self, name: &str) -> &WasmPlugin {
        self.plugins
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no plugin {name}"))
    }

    /// The upstream stops: its listener closes and every connection drops.
    pub fn kill_upstream(&mut self) {
        self.upstream = None;
    }

    /// A new upstream on the same port (retried while the old socket is still being released).
    pub async fn restart_upstream(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.upstream_port));
            match Upstream::bind(addr, false).await {
                Ok(u) => {
                    self.upstream = Some(u);
                    return;
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("restarting the upstream on {}: {e}", self.upstream_port),
            }
        }
    }

    pub fn set_upstream(&self, behaviour: &[(&str, &str)]) {
        if let Some(u) = &self.upstream {
            u.set_behaviour(behaviour);
        }
    }

    /// Publishes `plugin` with `module`; waits until Envoy accepted or rejected it.
    pub async fn publish(&mut self, plugin: WasmPlugin, module: &[u8]) -> Update {
        let update = publish_and_wait(&self.envoy, &self.ecds, &plugin, module, UPDATE_WAIT).await;
        if update == Update::Accepted {
            if let Some(p) = self.plugins.iter_mut().find(|p| p.name == plugin.name) {
                *p = plugin;
            }
        }
        update
    }

    /// Keys of the breaker that are open or half-open (`circuit_breaker_open`).
    pub async fn open_breakers(&self) -> u64 {
        prom_sum(
            &self.envoy.prometheus().await,
            "circuit_breaker_open",
            &[("breaker", "per-cluster")],
        )
        .unwrap_or(0)
    }

    /// Envoy's resident set (`VmRSS` of `/proc/<pid>/status`), in bytes.
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.envoy.pid()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// Envoy's `/memory`: (`allocated`, `heap_size`) in bytes, as its allocator reports them.
    pub async fn memory(&self) -> (u64, u64) {
        let m = self.envoy.admin("GET", "/memory").await.json();
        let field = |name: &str| {
            m[name]
                .as_str()
                .and_then(|s| s.parse().ok())
                .or_else(|| m[name].as_u64())
                .unwrap_or(0)
        };
        (field("allocated"), field("heap_size"))
    }
}

/// The steady load: [`RATE`] requests per second, a quarter over h2c. Of every five: an inbound
/// request with a new trace and request id (correlation stores it), an outbound call with the same
/// request id and no trace (correlation may restore it), an outbound call with its own trace, and two
/// outbound calls with neither (trace-context starts a trace).
pub fn start_load(s: &Sidecar) -> Load {
    let (inbound, outbound) = (s.envoy.port("inbound"), s.envoy.port("outbound"));
    Load::start(RATE, move |seq| {
        let proto = if seq % 4 == 3 { Proto::H2 } else { Proto::H1 };
        let traceparent = |n: u64| format!("00-{:032x}-{:016x}-01", n + 1, n + 1);
        match seq % 5 {
            0 => Spec::get(inbound, format!("/in/{seq}"), proto)
                .header("traceparent", traceparent(seq))
                .header("x-request-id", format!("soak-{seq}")),
            1 => Spec::get(outbound, format!("/out/{seq}"), proto)
                .header("x-request-id", format!("soak-{}", seq - 1)),
            2 => Spec::get(outbound, format!("/out/{seq}"), proto)
                .header("traceparent", traceparent(seq)),
            _ => Spec::get(outbound, format!("/out/{seq}"), proto),
        }
    })
}

/// The fallback's `x-fallback` mark as (kind, rule, reason).
pub fn mark(a: &Answer) -> Option<(String, String, String)> {
    let v = a.header("x-fallback")?;
    let mut parts = v.split(';').map(str::trim);
    let kind = parts.next().unwrap_or("").to_string();
    let (mut rule, mut reason) = (String::new(), String::new());
    for p in parts {
        if let Some(x) = p.strip_prefix("rule=") {
            rule = x.to_string();
        } else if let Some(x) = p.strip_prefix("reason=") {
            reason = x.to_string();
        }
    }
    Some((kind, rule, reason))
}

/// What the client got, by kind; the counts every check is made from.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub sent: u64,
    pub inbound: u64,
    pub outbound: u64,
    pub h2: u64,
    pub with_traceparent: u64,
    /// Outbound: complete answers of the upstream, by status class.
    pub upstream_ok: u64,
    pub upstream_5xx: u64,
    /// Outbound: fallback answers, by trigger (`reason=`).
    pub fallback: std::collections::BTreeMap<String, u64>,
    /// Outbound: headers arrived, then the stream was cut (an upstream that aborted mid-body).
    pub truncated: u64,
    /// Anything else: transport errors, timeouts, answers that are neither the upstream's nor the
    /// fallback's. Each is a failure of the test.
    pub unexplained: Vec<String>,
    /// The longest time to a complete answer.
    pub slowest: Duration,
}

impl Tally {
    pub fn fallback_total(&self) -> u64 {
        self.fallback.values().sum()
    }

    pub fn fallback_for(&self, reason: &str) -> u64 {
        self.fallback.get(reason).copied().unwrap_or(0)
    }

    /// Every request was answered by the upstream or the fallback (or cut where that is explained).
    pub fn assert_all_answered(&self) {
        assert!(
            self.unexplained.is_empty(),
            "{} of {} requests were not answered by the upstream or the fallback; first ones:\n{}",
            self.unexplained.len(),
            self.sent,
            self.unexplained
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// Classifies every outcome. `truncation_allowed(o)` says whether a cut stream is explained for this
/// request (the upstream aborted mid-body, or was killed while it was in flight).
pub fn tally(report: &Report, s: &Sidecar, truncation_allowed: impl Fn(&Outcome) -> bool) -> Tally {
    let outbound_port = s.envoy.port("outbound");
    let mut t = Tally::default();
    for o in &report.outcomes {
        t.sent += 1;
        if o.spec.proto == Proto::H2 {
            t.h2 += 1;
        }
        if o.spec.headers.iter().any(|(n, _)| n == "traceparent") {
            t.with_traceparent += 1;
        }
        let outbound = o.spec.port == outbound_port;
        if outbound {
            t.outbound += 1;
        } else {
            t.inbound += 1;
        }
        let what = format!(
            "#{} {:?} {} at {:.3}s..{:.3}s",
            o.seq,
            o.spec.proto,
            o.spec.path,
            o.started.as_secs_f64(),
            o.finished.as_secs_f64()
        );
        match &o.result {
            Ok(a) => {
                t.slowest = t.slowest.max(o.finished.saturating_sub(o.started));
                if !outbound {
                    if a.status != 200 || a.body.as_ref() != b"inbound ok" {
                        t.unexplained
                            .push(format!("{what}: inbound answered {}", a.status));
                    }
                } else if let Some((kind, _, reason)) = mark(a) {
                    if kind == "problem" {
                        *t.fallback.entry(reason).or_insert(0) += 1;
                    } else {
                        t.unexplained
                            .push(format!("{what}: fallback kind {kind} ({reason})"));
                    }
                } else if a.upstream_echo && a.status < 500 {
                    t.upstream_ok += 1;
                } else if a.upstream_echo {
                    t.upstream_5xx += 1;
                } else {
                    t.unexplained.push(format!(
                        "{what}: status {} without the fallback's mark: {:?} {:?}",
                        a.status,
                        a.headers,
                        String::from_utf8_lossy(&a.body)
                    ));
                }
            }
            Err(Failure::Truncated { status, error }) if outbound && truncation_allowed(o) => {
                let _ = (status, error);
                t.truncated += 1;
            }
            Err(f) => t.unexplained.push(format!("{what}: {f:?}")),
        }
    }
    t
}

/// The filters' counters read back from Envoy.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counters {
    pub extracted: u64,
    pub started: u64,
    pub restored: u64,
    pub calls: std::collections::BTreeMap<String, u64>,
    pub served: std::collections::BTreeMap<String, u64>,
    pub transitions: std::collections::BTreeMap<String, u64>,
}

impl Counters {
    pub async fn read(s: &Sidecar) -> Counters {
        let text = s.envoy.prometheus().await;
        let sum =
            |metric: &str, labels: &[(&str, &str)]| prom_sum(&text, metric, labels).unwrap_or(0);
        let mut c = Counters {
            extracted: sum("trace_context_extracted", &[]),
            started: sum("trace_context_started", &[]),
            restored: sum("trace_context_restored", &[]),
            ..Counters::default()
        };
        for outcome in [
            "success",
            "failure",
            "ignored",
            "cancelled",
            "rejected",
            "slow",
            "probe",
            "would_reject",
        ] {
            c.calls.insert(
                outcome.to_string(),
                sum("circuit_breaker_calls", &[("outcome", outcome)]),
            );
        }
        for state in ["open", "half_open", "closed"] {
            c.transitions.insert(
                state.to_string(),
                sum("circuit_breaker_transitions", &[("state", state)]),
            );
        }
        for reason in [
            "connectionFailure",
            "timeout",
            "reset",
            "noHealthyUpstream",
            "overflow",
            "localReply",
            "circuitBreaker",
        ] {
            let n = sum("fallback_served", &[("trigger", reason)]);
            if n > 0 {
                c.served.insert(reason.to_string(), n);
            }
        }
        c
    }

    pub fn call(&self, outcome: &str) -> u64 {
        self.calls.get(outcome).copied().unwrap_or(0)
    }

    /// Calls the breaker admitted and then recorded, by any outcome.
    pub fn recorded(&self) -> u64 {
        ["success", "failure", "ignored", "cancelled"]
            .iter()
            .map(|o| self.call(o))
            .sum()
    }

    pub fn served_total(&self) -> u64 {
        self.served.values().sum()
    }

    /// `self - before`, counter by counter.
    pub fn since(&self, before: &Counters) -> Counters {
        let diff = |a: &std::collections::BTreeMap<String, u64>,
                    b: &std::collections::BTreeMap<String, u64>| {
            a.iter()
                .map(|(k, v)| (k.clone(), v - b.get(k).copied().unwrap_or(0)))
                .filter(|(_, v)| *v > 0)
                .collect()
        };
        Counters {
            extracted: self.extracted - before.extracted,
            started: self.started - before.started,
            restored: self.restored - before.restored,
            calls: diff(&self.calls, &before.calls),
            served: diff(&self.served, &before.served),
            transitions: diff(&self.transitions, &before.transitions),
        }
    }
}

/// What must add up, as (description, counted by the filters, counted by the client), given the
/// client's tally `t` and the counters' growth `c` over the same requests:
/// - trace-context runs first on both listeners and decides for every request: `extracted` = the
///   requests sent with a `traceparent`; `started + restored` = those sent without.
/// - every outbound request reaches the breaker (the fallback before it never answers on the request
///   path): `rejected` + recorded outcomes (`success`, `failure`, `ignored`, `cancelled`) = outbound.
/// - each rejection is answered by the fallback: `rejected` = fallback answers for `circuitBreaker`.
/// - the fallback counts what it serves: `fallback_served` = answers carrying `x-fallback`, trigger by
///   trigger.
pub fn balance(t: &Tally, c: &Counters) -> Vec<(String, u64, u64)> {
    let mut rows = vec![
        (
            "trace_context_extracted = requests with traceparent".to_string(),
            c.extracted,
            t.with_traceparent,
        ),
        (
            "trace_context_started + restored = requests without".to_string(),
            c.started + c.restored,
            t.sent - t.with_traceparent,
        ),
        (
            "circuit_breaker_calls (rejected + recorded outcomes) = outbound requests".to_string(),
            c.call("rejected") + c.recorded(),
            t.outbound,
        ),
        (
            "circuit_breaker_calls{rejected} = fallback answers for circuitBreaker".to_string(),
            c.call("rejected"),
            t.fallback_for("circuitBreaker"),
        ),
        (
            "fallback_served = answers with x-fallback".to_string(),
            c.served_total(),
            t.fallback_total(),
        ),
    ];
    for (reason, n) in &t.fallback {
        rows.push((
            format!("fallback_served{{trigger={reason}}} = answers with reason={reason}"),
            c.served.get(reason).copied().unwrap_or(0),
            *n,
        ));
    }
    rows
}

/// Polls the counters until they balance with the tally (the last requests are counted in `on_log`,
/// a moment after their answers), then asserts it, and the bounds of the breaker's outcomes: the
/// upstream's good answers are successes, its 5xx and the fallback's other answers failures, and a
/// cut stream may count either way.
pub async fn assert_balanced(s: &Sidecar, before: &Counters, t: &Tally) -> Counters {
    let deadline = Instant::now() + SETTLE;
    let c = loop {
        let c = Counters::read(s).await.since(before);
        if balance(t, &c).iter().all(|(_, a, b)| a == b) || Instant::now() >= deadline {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let rows = balance(t, &c);
    let off: Vec<_> = rows.iter().filter(|(_, a, b)| a != b).collect();
    assert!(
        off.is_empty(),
        "counters do not add up (description, filters, client): {off:#?}\ncounters {c:#?}\ntally {t:#?}"
    );
    let failed_visibly = t.upstream_5xx + t.fallback_total() - t.fallback_for("circuitBreaker");
    let (success, failure) = (c.call("success"), c.call("failure"));
    assert!(
        (t.upstream_ok..=t.upstream_ok + t.truncated).contains(&success),
        "successes {success}: upstream answered {} good, {} cut\n{c:#?}",
        t.upstream_ok,
        t.truncated
    );
    assert!(
        (failed_visibly..=failed_visibly + t.truncated).contains(&failure),
        "failures {failure}: {failed_visibly} failed visibly, {} cut\n{c:#?}",
        t.truncated
    );
    c
}

/// Keeps the load running until no breaker key is open or half-open; panics after `limit`. Returns
/// how long that took.
pub async fn wait_breakers_closed(s: &Sidecar, limit: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        if s.open_breakers().await == 0 {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < limit,
            "a breaker is still open or half-open {limit:?} after the upstream recovered:\n{}",
            prom_lines(&s.envoy.prometheus().await, "circuit_breaker")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

/// Signed difference in MiB.
pub fn mib_delta(after: u64, before: u64) -> String {
    let d = after as f64 - before as f64;
    format!("{:+.1} MiB", d / (1 << 20) as f64)
}
