//! The cost table: one Envoy with a listener per variant, the same closed-loop load on every
//! listener in interleaved rounds, and Envoy's CPU time per request.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e_harness::{
    try_http1, Cluster, Envoy, EnvoyConfig, HttpFilter, Listener, Route, Upstream, WasmFilter,
};
use tokio::task::JoinSet;

use crate::clock::EnvoyClock;
use crate::envoy::{self, Setup};
use crate::load::{self, Failures, Load, Proto, Tally, TraceHeader, PATH};
use crate::report;
use crate::settings::Settings;
use crate::stats::percentile;

/// Filters that get a listener (default configuration) when their module is in dist/.
const OPTIONAL_FILTERS: &[&str] = &["circuit_breaker", "fallback"];

/// The three filters in the order the shipped Istio manifests put them (trace-context priority
/// 1000, fallback 500, circuit-breaker without a phase), each with its defaults and its own VM.
const CHAIN: &[&str] = &["trace_context", "fallback", "circuit_breaker"];

/// What users would write instead of our filters for the same request: a Lua filter that reads one
/// request header and writes one (Envoy's Lua filter calls the request function only).
const LUA_YAML: &str = "name: envoy.filters.http.lua
typed_config:
  \"@type\": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
  default_source_code:
    inline_string: |
      function envoy_on_request(request_handle)
        local headers = request_handle:headers()
        local traceparent = headers:get(\"traceparent\")
        if traceparent ~= nil then
          headers:replace(\"x-lua-trace\", traceparent)
        end
      end";

/// Upper bound for one batch; a stuck Envoy fails the run instead of hanging it.
const BATCH_TIMEOUT: Duration = Duration::from_secs(120);

/// One filter of a variant's listener.
enum Stage {
    /// A module from dist/ with its default configuration (own vm_id per listener and module).
    Wasm(PathBuf),
    /// A native Envoy filter as an `http_filters` entry.
    Native(&'static str),
}

pub struct Variant {
    /// Listener name, plugin name prefix, vm_id prefix and table row.
    pub name: String,
    /// Filters before the router; none is the baseline with the router only.
    stages: Vec<Stage>,
    /// The Wasm stages share one VM per worker (one vm_id, as Istio's plugins of one module do)
    /// instead of a VM each.
    shared_vm: bool,
    trace: TraceHeader,
    pub what: String,
}

impl Variant {
    fn new(name: &str, stages: Vec<Stage>, trace: TraceHeader, what: &str) -> Variant {
        Variant {
            name: name.to_string(),
            stages,
            shared_vm: false,
            trace,
            what: what.to_string(),
        }
    }

    fn shared_vm(mut self) -> Variant {
        self.shared_vm = true;
        self
    }

    /// Whether this listener runs the trace-context filter (checked before measuring).
    fn is_trace_context(&self) -> bool {
        self.name.starts_with("trace_context") || self.name == "chain"
    }
}

/// The cost-table variants; `only` keeps `none`, `empty` and the named ones.
/// `modules`: `BENCH_MODULES`, a variant each.
pub fn variants(
    only: Option<&[String]>,
    modules: &[(String, PathBuf)],
) -> Result<Vec<Variant>, String> {
    let wasm = |file: &str| Stage::Wasm(envoy::module(file));
    let mut all = vec![
        Variant::new(
            "none",
            Vec::new(),
            TraceHeader::TraceParent,
            "router only (traceparent in)",
        ),
        Variant::new(
            "empty",
            vec![wasm("bench/empty_filter.wasm")],
            TraceHeader::TraceParent,
            "Rust filter that does nothing (traceparent in)",
        ),
        Variant::new(
            "empty_trimmed",
            vec![wasm("bench/empty_trimmed.wasm")],
            TraceHeader::TraceParent,
            "the empty filter exporting no body, trailer, log or done callback (make build's \
             wasm-trim): what Envoy's calls into the VM for those cost",
        ),
        Variant::new(
            "empty_x3",
            vec![
                wasm("bench/empty_filter.wasm"),
                wasm("bench/empty_filter.wasm"),
                wasm("bench/empty_filter.wasm"),
            ],
            TraceHeader::TraceParent,
            "three empty filters, a VM each (as three plugins of three modules)",
        ),
        Variant::new(
            "empty_x3_shared_vm",
            vec![
                wasm("bench/empty_filter.wasm"),
                wasm("bench/empty_filter.wasm"),
                wasm("bench/empty_filter.wasm"),
            ],
            TraceHeader::TraceParent,
            "three empty filters sharing one VM per worker (as three plugins of one module)",
        )
        .shared_vm(),
        Variant::new(
            "admission_control",
            vec![Stage::Native(crate::outage::ADMISSION_YAML)],
            TraceHeader::TraceParent,
            "Envoy's native admission_control filter, as in the outage benchmark",
        ),
        Variant::new(
            "lua",
            vec![Stage::Native(LUA_YAML)],
            TraceHeader::TraceParent,
            "Envoy's native Lua filter: one request header read, one written",
        ),
        Variant::new(
            "trace_context",
            vec![wasm("trace_context.wasm")],
            TraceHeader::TraceParent,
            "default config, traceparent in: extract, forward, x-trace-id + traceresponse out",
        ),
        Variant::new(
            "trace_context_convert",
            vec![wasm("trace_context.wasm")],
            TraceHeader::B3,
            "default config, b3 in: converted, traceparent written",
        ),
    ];
    for name in OPTIONAL_FILTERS {
        if envoy::module(&format!("{name}.wasm")).is_file() {
            all.push(Variant::new(
                name,
                vec![wasm(&format!("{name}.wasm"))],
                TraceHeader::TraceParent,
                "default config (traceparent in)",
            ));
        }
    }
    if CHAIN
        .iter()
        .all(|name| envoy::module(&format!("{name}.wasm")).is_file())
    {
        all.push(Variant::new(
            "chain",
            CHAIN
                .iter()
                .map(|name| wasm(&format!("{name}.wasm")))
                .collect(),
            TraceHeader::TraceParent,
            "trace_context, fallback, circuit_breaker chained as the Istio manifests order them, \
             defaults, a VM each (traceparent in)",
        ));
    }
    // Before/after comparisons in one run: a listener per `BENCH_MODULES` module.
    for (label, path) in modules {
        all.push(Variant::new(
            label,
            vec![Stage::Wasm(path.clone())],
            TraceHeader::TraceParent,
            &format!(
                "{} (BENCH_MODULES), default config (traceparent in)",
                path.display()
            ),
        ));
    }
    for v in &all {
        for stage in &v.stages {
            if let Stage::Wasm(m) = stage {
                envoy::require(m, "")?;
            }
        }
    }
    if let Some(only) = only {
        for name in only {
            if !all.iter().any(|v| &v.name == name) {
                let known: Vec<&str> = all.iter().map(|v| v.name.as_str()).collect();
                return Err(format!(
                    "BENCH_VARIANTS: no variant {name:?} (known: {})",
                    known.join(", ")
                ));
            }
        }
        // `none` and `empty` stay first: every other row is a difference against them.
        all.retain(|v| v.name == "none" || v.name == "empty" || only.contains(&v.name));
    }
    Ok(all)
}

fn envoy_config(s: &Settings, variants: &[Variant], upstream_port: u16) -> EnvoyConfig {
    let mut config = envoy::base_config(s).cluster(Cluster::new("upstream", upstream_port));
    for v in variants {
        let mut listener = Listener::new(&v.name).route(Route::to(&v.name, "/", "upstream"));
        for (k, stage) in v.stages.iter().enumerate() {
            listener = match stage {
                // Own vm_id per listener and module: each filter gets its own VM, as separate
                // plugins would.
                Stage::Wasm(module) => {
                    let id = format!("{}_{k}", v.name);
                    let vm_id = if v.shared_vm {
                        v.name.clone()
                    } else {
                        id.clone()
                    };
                    listener.filter(WasmFilter::new(&id, module).vm_id(&vm_id))
                }
                Stage::Native(yaml) => listener.filter(HttpFilter::raw(*yaml)),
            };
        }
        config = config.listener(listener);
    }
    config
}

/// One request through each listener before measuring: a 200, and for the trace-context listeners
/// proof that the filter ran (a converted B3 header, the response header), so no variant silently
/// measures a filter that does nothing.
async fn check(envoy: &Envoy, v: &Variant) -> Result<(), String> {
    let (name, value, trace_id) = v.trace.header(0);
    let r = try_http1(envoy.port(&v.name), "GET", PATH, &[(name, &value)], "")
        .await
        .map_err(|e| format!("check of {}: {e}", v.name))?;
    if r.status != 200 {
        return Err(format!(
            "check of {}: status {}: {}",
            v.name,
            r.status,
            r.text()
        ));
    }
    if v.is_trace_context() {
        let forwarded = r.echo_header("traceparent").unwrap_or_default();
        if !forwarded.contains(&trace_id) || r.header("x-trace-id") != Some(trace_id.as_str()) {
            return Err(format!(
                "check of {}: the filter did not act (upstream traceparent {forwarded:?}, \
                 x-trace-id {:?}, expected trace {trace_id})",
                v.name,
                r.header("x-trace-id")
            ));
        }
    }
    if v.name == "lua"
        && !r
            .echo_header("x-lua-trace")
            .is_some_and(|t| t.contains(&trace_id))
    {
        return Err(format!(
            "check of lua: the Lua filter did not copy traceparent into x-lua-trace (upstream saw {:?})",
            r.echo_header("x-lua-trace")
        ));
    }
    Ok(())
}

/// One measured batch.
#[derive(Clone)]
pub struct Batch {
    requests: u64,
    wall: Duration,
    envoy_cpu: Duration,
    /// CPU time of this process (client and upstream) over the batch.
    bench_cpu: Duration,
    pub p50: Duration,
    pub p99: Duration,
    non_200: Failures,
    /// Connections each Envoy worker accepted for the batch (only with several workers).
    pub per_worker: Vec<u64>,
}

impl Batch {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.wall.as_secs_f64()
    }

    pub fn cpu_us_per_request(&self) -> f64 {
        self.envoy_cpu.as_secs_f64() * 1e6 / self.requests as f64
    }

    /// Envoy's CPU use during the batch, in cores (1.0 = one core busy all the time).
    pub fn cores(&self) -> f64 {
        self.envoy_cpu.as_secs_f64() / self.wall.as_secs_f64()
    }

    /// The same for the bench process (client and upstream).
    pub fn bench_cores(&self) -> f64 {
        self.bench_cpu.as_secs_f64() / self.wall.as_secs_f64()
    }
}

/// `n` requests over `connections` fresh keep-alive connections; Envoy's CPU time is read right
/// before the first request and right after the last response.
async fn batch(
    load: &Arc<Load>,
    n: u64,
    connections: usize,
    clock: &EnvoyClock,
) -> Result<Batch, String> {
    let measured = async {
        let conns = load::open_connections(load, connections).await?;
        let next = Arc::new(AtomicU64::new(0));
        let cpu_before = clock.read()?;
        let bench_before = clock.read_bench()?;
        let start = Instant::now();
        let mut workers = JoinSet::new();
        for conn in conns {
            workers.spawn(load::closed_loop(conn, load.clone(), next.clone(), n));
        }
        let mut tally = Tally::default();
        // An error returns early; dropping the JoinSet aborts the other workers.
        while let Some(joined) = workers.join_next().await {
            tally.merge(joined.map_err(|e| format!("load worker: {e}"))??);
        }
        let wall = start.elapsed();
        let envoy_cpu = clock.read()?.saturating_sub(cpu_before);
        let bench_cpu = clock.read_bench()?.saturating_sub(bench_before);
        tally.latencies_ns.sort_unstable();
        Ok(Batch {
            requests: n,
            wall,
            envoy_cpu,
            bench_cpu,
            p50: percentile(&tally.latencies_ns, 50.0),
            p99: percentile(&tally.latencies_ns, 99.0),
            non_200: tally.non_200,
            per_worker: Vec::new(),
        })
    };
    tokio::time::timeout(BATCH_TIMEOUT, measured)
        .await
        .map_err(|_| format!("a batch of {n} requests took longer than {BATCH_TIMEOUT:?}"))?
}

/// Runs warm-up and the interleaved rounds for one protocol; `results[v][round]`.
async fn measure(
    proto: Proto,
    s: &Settings,
    variants: &[Variant],
    envoy: &Envoy,
    upstream: &Upstream,
    clock: &EnvoyClock,
    errors: &mut Vec<String>,
) -> Result<Vec<Vec<Batch>>, String> {
    let loads = variants
        .iter()
        .map(|v| Load::new(proto, envoy.port(&v.name), v.trace).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    let mut tally = |v: &Variant, when: &str, b: &Batch| {
        if b.non_200.count > 0 {
            errors.push(format!(
                "{} {} {when}: {} of {} responses not 200, first: {}",
                proto.label(),
                v.name,
                b.non_200.count,
                b.requests,
                b.non_200.first()
            ));
        }
    };
    // V8 compiles lazily and tiers up hot code, Envoy fills its upstream pool: not measured.
    if s.warmup > 0 {
        for (v, load) in variants.iter().zip(&loads) {
            let b = batch(load, s.warmup, s.connections, clock).await?;
            tally(v, "warm-up", &b);
            upstream.clear();
        }
    }
    let mut results: Vec<Vec<Batch>> = vec![Vec::new(); variants.len()];
    for round in 0..s.rounds {
        // Rotate the order each round so that no variant always runs first.
        for k in 0..variants.len() {
            let i = (k + round) % variants.len();
            // Outside the batch's CPU window: the admin call costs Envoy some CPU too.
            let cx_before = if s.concurrency > 1 {
                worker_connections(envoy, s.concurrency).await
            } else {
                Vec::new()
            };
            let mut b = batch(&loads[i], s.requests, s.connections, clock).await?;
            if s.concurrency > 1 {
                let cx_after = worker_connections(envoy, s.concurrency).await;
                b.per_worker = cx_after
                    .iter()
                    .zip(cx_before)
                    .map(|(a, b)| a.saturating_sub(b))
                    .collect();
            }
            eprintln!(
                "bench: {} round {}/{} {:<24} {:>8.0} req/s  Envoy {:>6.1} µs/req",
                proto.label(),
                round + 1,
                s.rounds,
                variants[i].name,
                b.rps(),
                b.cpu_us_per_request()
            );
            tally(&variants[i], &format!("round {}", round + 1), &b);
            // The upstream records every request; forget them so memory stays flat.
            upstream.clear();
            results[i].push(b);
        }
    }
    Ok(results)
}

/// Downstream connections each Envoy worker accepted so far, over all listeners (with port-0
/// listeners every listener has the same stat prefix, `listener.127.0.0.1_0.`); the admin listener
/// has no per-worker stats. Batches run one at a time, so the difference around a batch is that
/// batch's.
async fn worker_connections(envoy: &Envoy, workers: u32) -> Vec<u64> {
    let stats = envoy.stats().await;
    (0..workers)
        .map(|w| {
            let suffix = format!(".worker_{w}.downstream_cx_total");
            stats
                .iter()
                .filter(|(name, _)| name.starts_with("listener.") && name.ends_with(&suffix))
                .map(|(_, v)| *v)
                .sum()
        })
        .collect()
}

/// The cost table: one Envoy with a listener per variant. Returns the report section and the
/// Envoy's setup (for the header).
pub async fn run(
    s: &Settings,
    variants: &[Variant],
    upstream: &Upstream,
    errors: &mut Vec<String>,
) -> Result<(String, Setup), String> {
    let (envoy, setup) = envoy::start(envoy_config(s, variants, upstream.port())).await?;
    for v in variants {
        check(&envoy, v).await?;
    }
    upstream.clear();
    let mut section = String::new();
    let protos: &[Proto] = if s.http2 {
        &[Proto::H1, Proto::H2]
    } else {
        &[Proto::H1]
    };
    for &proto in protos {
        let results = measure(proto, s, variants, &envoy, upstream, &setup.clock, errors).await?;
        section.push_str(&report::cost_table(proto, s, variants, &results));
        section.push('\n');
    }
    if errors.is_empty() {
        section.push_str("Every response was a 200.\n");
    }
    Ok((section, setup))
}
