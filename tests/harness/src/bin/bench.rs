//! `make bench`: what each filter costs per request, against the same Envoy with no filter and with
//! an empty Rust Wasm filter, measured in one run so the figures are comparable; then what the
//! circuit breaker changes for callers when the upstream fails (the outage scenarios).
//!
//! **Cost table.** One Envoy gets one listener per variant, all routing to the in-process
//! [`Upstream`]. An in-process load generator (hyper, keep-alive, a fixed number of connections) sends
//! the same number of requests to every variant, interleaved over several rounds to cancel drift. The
//! main figure is Envoy's CPU time per request (utime + stime of its pid from `/proc/PID/stat`): the
//! client and the upstream live in this process, so they cannot pollute it.
//!
//! **Outage scenarios.** A second Envoy (same `--concurrency`) gets, per scenario, one listener with
//! the circuit-breaker filter and one without, each on its own cluster. The upstream fails every
//! request: it answers 503 (`x-upstream-status: 503`), or the cluster points to a closed port
//! (connection refused), or it answers after 1 s behind a 250 ms route timeout (504s, the slow
//! outage). Each listener gets the same paced load for a fixed time, one listener after the other; the
//! report shows requests sent, requests that reached the upstream, when the breaker opened, and the
//! latency callers saw.
//!
//! A default run takes about 45 s on 2 CPUs: about 30 s for the cost table (6 variants), about 15 s
//! for the outage scenarios (`--no-outage` skips them).
//!
//! Settings come from the environment, so `make bench` needs no arguments:
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `BENCH_REQUESTS` | 20000 | measured requests per variant and round |
//! | `BENCH_WARMUP` | 1000 | unmeasured requests per variant before the first round |
//! | `BENCH_CONNECTIONS` | 8 x concurrency | keep-alive connections, one request in flight on each |
//! | `BENCH_ROUNDS` | 5 | interleaved rounds; the report shows medians |
//! | `BENCH_CONCURRENCY` | 1 | Envoy `--concurrency` |
//! | `BENCH_VARIANTS` | all | comma-separated cost-table variants to run; `none` and `empty` always run |
//! | `BENCH_HTTP2` | unset | `1` adds an HTTP/2 (h2c) pass; so does the `--http2` argument |
//! | `BENCH_OUTAGE` | `1` | `0` skips the outage scenarios (`--no-outage`), `only` runs nothing else (`--outage-only`) |
//! | `BENCH_OUTAGE_RATE` | 2000 | outage load in requests/s over all connections (8 connections) |
//! | `BENCH_OUTAGE_SECS` | 2 | seconds of load per listener, 503 and connection-refused scenarios |
//! | `BENCH_SLOW_SECS` | 3 | seconds of load per listener, slow outage |
//!
//! The Markdown report goes to stdout and to `target/bench/results.md`; progress goes to stderr.
//! Exit status: 0, or 1 when anything failed: in the cost table any response that was not 200, in the
//! outage scenarios any response other than the scenario's failure or the breaker's rejection, a
//! transport error, or a breaker that never opened.

// Like the library: this is test support, and failing loudly is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fmt::{Display, Write as _};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use e2e_harness::{
    serde_json, try_http1, wasm_runtime, workspace_root, Cluster, Envoy, EnvoyConfig, Listener,
    Route, Upstream, WasmFilter,
};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::{http1 as h1, http2 as h2};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, StatusCode, Uri, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;

const USAGE: &str = "usage: bench [--http2] [--no-outage | --outage-only]   (settings: \
                     BENCH_REQUESTS, BENCH_WARMUP, BENCH_CONNECTIONS, BENCH_ROUNDS, \
                     BENCH_CONCURRENCY, BENCH_VARIANTS, BENCH_HTTP2, BENCH_OUTAGE, \
                     BENCH_OUTAGE_RATE, BENCH_OUTAGE_SECS, BENCH_SLOW_SECS)";

/// Filters that get a listener (default configuration) when their module is in dist/.
const OPTIONAL_FILTERS: &[&str] = &["circuit_breaker", "fallback"];

/// Request target: a typical API path with a query string, which Envoy parses like any other.
const PATH: &str = "/api/v1/orders/4711?include=items";
const AUTHORITY: &str = "shop.example.internal";

/// Pause after opening the connections and before the CPU snapshot, so that Envoy has finished
/// accepting them (and, for h2, the SETTINGS exchange) and that work is not billed to requests.
const SETTLE: Duration = Duration::from_millis(30);

/// Upper bound for one batch; a stuck Envoy fails the run instead of hanging it.
const BATCH_TIMEOUT: Duration = Duration::from_secs(120);

/// Which parts of the bench run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Parts {
    /// The cost table, then the outage scenarios (the default).
    All,
    CostOnly,
    OutageOnly,
}

struct Settings {
    requests: u64,
    warmup: u64,
    connections: usize,
    rounds: usize,
    concurrency: u32,
    /// Cost-table variants besides `none` and `empty`; `None` is all of them.
    variants: Option<Vec<String>>,
    http2: bool,
    parts: Parts,
    /// Outage load: requests per second over all [`OUTAGE_CONNECTIONS`].
    outage_rate: f64,
    /// Load time per listener, 503 and connection-refused scenarios.
    outage_time: Duration,
    /// Load time per listener, slow outage.
    slow_time: Duration,
}

impl Settings {
    fn load() -> Result<Settings, String> {
        let mut http2 = std::env::var("BENCH_HTTP2").is_ok_and(|v| v == "1" || v == "true");
        let mut parts = match std::env::var("BENCH_OUTAGE").unwrap_or_default().trim() {
            "" | "1" | "true" => Parts::All,
            "0" | "false" => Parts::CostOnly,
            "only" => Parts::OutageOnly,
            other => return Err(format!("BENCH_OUTAGE={other:?}: expected 1, 0 or only")),
        };
        for arg in std::env::args().skip(1) {
            match arg.as_str() {
                "--http2" => http2 = true,
                "--no-outage" => parts = Parts::CostOnly,
                "--outage-only" => parts = Parts::OutageOnly,
                "-h" | "--help" => {
                    // Nothing has started yet, so exiting here leaves nothing behind.
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            }
        }
        let concurrency: u32 = env_num("BENCH_CONCURRENCY", 1)?;
        // Every worker needs its own share of connections to be kept busy.
        let default_connections = 8 * usize::try_from(concurrency).unwrap_or(1);
        let variants = std::env::var("BENCH_VARIANTS")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|v| {
                v.split(',')
                    .map(|n| n.trim().to_string())
                    .filter(|n| !n.is_empty())
                    .collect()
            });
        let s = Settings {
            requests: env_num("BENCH_REQUESTS", 20_000)?,
            warmup: env_num("BENCH_WARMUP", 1_000)?,
            connections: env_num("BENCH_CONNECTIONS", default_connections)?,
            rounds: env_num("BENCH_ROUNDS", 5)?,
            concurrency,
            variants,
            http2,
            parts,
            outage_rate: env_num("BENCH_OUTAGE_RATE", 2000.0)?,
            outage_time: Duration::from_secs_f64(env_num("BENCH_OUTAGE_SECS", 2.0)?),
            slow_time: Duration::from_secs_f64(env_num("BENCH_SLOW_SECS", 3.0)?),
        };
        if s.requests == 0 || s.connections == 0 || s.rounds == 0 || s.concurrency == 0 {
            return Err(
                "BENCH_REQUESTS, BENCH_CONNECTIONS, BENCH_ROUNDS and BENCH_CONCURRENCY \
                        must be at least 1"
                    .to_string(),
            );
        }
        if s.outage_rate.is_nan()
            || s.outage_rate < 1.0
            || s.outage_time < Duration::from_millis(100)
            || s.slow_time < Duration::from_millis(100)
        {
            return Err(
                "BENCH_OUTAGE_RATE must be at least 1, BENCH_OUTAGE_SECS and \
                        BENCH_SLOW_SECS at least 0.1"
                    .to_string(),
            );
        }
        Ok(s)
    }

    fn cost(&self) -> bool {
        self.parts != Parts::OutageOnly
    }

    fn outage(&self) -> bool {
        self.parts != Parts::CostOnly
    }
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String>
where
    T::Err: Display,
{
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map_err(|e| format!("{name}={v}: {e}")),
        _ => Ok(default),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Proto {
    H1,
    H2,
}

impl Proto {
    fn label(self) -> &'static str {
        match self {
            Proto::H1 => "HTTP/1.1",
            Proto::H2 => "HTTP/2 (h2c)",
        }
    }
}

/// The trace header a variant's requests carry.
#[derive(Clone, Copy)]
enum TraceHeader {
    /// W3C `traceparent`: what a trace-context-aware caller sends; nothing to convert.
    TraceParent,
    /// B3 single header: the filter extracts it and writes `traceparent`.
    B3,
}

impl TraceHeader {
    /// Header for request `i`. Every request gets its own trace, as real traffic does, so no
    /// layer can profit from seeing the same value again.
    fn header(self, i: u64) -> (&'static str, String, String) {
        let trace = format!("{:016x}{:016x}", mix(i), mix(i ^ 0x5bd1_e995));
        let span = format!("{:016x}", mix(!i) | 1);
        match self {
            TraceHeader::TraceParent => ("traceparent", format!("00-{trace}-{span}-01"), trace),
            TraceHeader::B3 => ("b3", format!("{trace}-{span}-1"), trace),
        }
    }
}

/// splitmix64: cheap, well-spread ids from a counter.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

struct Variant {
    /// Listener name, plugin name, vm_id and table row.
    name: String,
    /// Wasm module; `None` is the baseline with the router only.
    module: Option<PathBuf>,
    trace: TraceHeader,
    what: String,
}

impl Variant {
    fn new(name: &str, module: Option<PathBuf>, trace: TraceHeader, what: &str) -> Variant {
        Variant {
            name: name.to_string(),
            module,
            trace,
            what: what.to_string(),
        }
    }

    /// Whether this listener runs the trace-context filter (checked before measuring).
    fn is_trace_context(&self) -> bool {
        self.name.starts_with("trace_context")
    }
}

/// The cost-table variants; `only` keeps `none`, `empty` and the named ones.
fn variants(only: Option<&[String]>) -> Result<Vec<Variant>, String> {
    let dist = workspace_root().join("dist");
    let trace = dist.join("trace_context.wasm");
    let mut all = vec![
        Variant::new(
            "none",
            None,
            TraceHeader::TraceParent,
            "router only (traceparent in)",
        ),
        Variant::new(
            "empty",
            Some(dist.join("bench/empty_filter.wasm")),
            TraceHeader::TraceParent,
            "Rust filter that does nothing (traceparent in)",
        ),
        Variant::new(
            "trace_context",
            Some(trace.clone()),
            TraceHeader::TraceParent,
            "default config, traceparent in: extract, forward, x-trace-id + traceresponse out",
        ),
        Variant::new(
            "trace_context_convert",
            Some(trace),
            TraceHeader::B3,
            "default config, b3 in: converted, traceparent written",
        ),
    ];
    for m in all.iter().filter_map(|v| v.module.as_ref()) {
        if !m.is_file() {
            return Err(format!("{} not found: run `make build` first", m.display()));
        }
    }
    for name in OPTIONAL_FILTERS {
        let module = dist.join(format!("{name}.wasm"));
        if module.is_file() {
            all.push(Variant::new(
                name,
                Some(module),
                TraceHeader::TraceParent,
                "default config (traceparent in)",
            ));
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
    let mut config = EnvoyConfig::new()
        .concurrency(s.concurrency)
        // Logging is part of the cost being measured; keep it at production levels.
        .log_level("warn")
        .component_log_level("wasm:warn")
        .cluster(Cluster::new("upstream", upstream_port));
    for v in variants {
        let mut listener = Listener::new(&v.name).route(Route::to(&v.name, "/", "upstream"));
        if let Some(module) = &v.module {
            // Own vm_id per listener: each filter gets its own VM, as separate plugins would.
            listener = listener.filter(WasmFilter::new(&v.name, module).vm_id(&v.name));
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
    Ok(())
}

/// What one variant's load looks like on one protocol.
struct Load {
    proto: Proto,
    port: u16,
    trace: TraceHeader,
    uri: Uri,
    /// Headers of every request except the trace header. No `x-request-id`: Envoy generates one,
    /// as it does for real edge traffic, and that is part of its per-request work.
    headers: HeaderMap,
}

impl Load {
    fn new(proto: Proto, port: u16, trace: TraceHeader) -> Result<Load, String> {
        let uri = match proto {
            // h1 sends the origin form and a Host header; h2 takes :authority from the URI.
            Proto::H1 => PATH.to_string(),
            Proto::H2 => format!("http://{AUTHORITY}{PATH}"),
        };
        let uri = uri.parse().map_err(|e| format!("uri {uri}: {e}"))?;
        let mut headers = HeaderMap::new();
        if proto == Proto::H1 {
            headers.insert(header::HOST, HeaderValue::from_static(AUTHORITY));
        }
        for (name, value) in [
            (
                header::USER_AGENT,
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/126.0.0.0 Safari/537.36",
            ),
            (header::ACCEPT, "application/json, text/plain, */*"),
            (header::ACCEPT_ENCODING, "gzip, deflate, br"),
            (header::ACCEPT_LANGUAGE, "en-US,en;q=0.9"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        Ok(Load {
            proto,
            port,
            trace,
            uri,
            headers,
        })
    }

    fn request(&self, i: u64) -> Request<Empty<Bytes>> {
        let mut req = Request::new(Empty::new());
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = match self.proto {
            Proto::H1 => Version::HTTP_11,
            Proto::H2 => Version::HTTP_2,
        };
        *req.headers_mut() = self.headers.clone();
        let (name, value, _) = self.trace.header(i);
        if let Ok(value) = HeaderValue::from_str(&value) {
            req.headers_mut().insert(name, value);
        }
        req
    }
}

/// One client connection; the driver task runs until the sender is dropped.
enum Conn {
    H1(h1::SendRequest<Empty<Bytes>>),
    H2(h2::SendRequest<Empty<Bytes>>),
}

impl Conn {
    async fn open(port: u16, proto: Proto) -> Result<Conn, String> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect 127.0.0.1:{port}: {e}"))?;
        // Like any real client of small requests: without it Nagle delays every other write.
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let io = TokioIo::new(stream);
        match proto {
            Proto::H1 => {
                let (sender, conn) = h1::handshake(io)
                    .await
                    .map_err(|e| format!("h1 handshake: {e}"))?;
                tokio::spawn(conn);
                Ok(Conn::H1(sender))
            }
            Proto::H2 => {
                let (sender, conn) = h2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|e| format!("h2 handshake: {e}"))?;
                tokio::spawn(conn);
                Ok(Conn::H2(sender))
            }
        }
    }

    async fn send(
        &mut self,
        req: Request<Empty<Bytes>>,
    ) -> Result<hyper::Response<Incoming>, String> {
        match self {
            Conn::H1(s) => {
                s.ready()
                    .await
                    .map_err(|e| format!("HTTP/1.1 connection: {e}"))?;
                s.send_request(req)
                    .await
                    .map_err(|e| format!("HTTP/1.1 request: {e}"))
            }
            Conn::H2(s) => {
                s.ready()
                    .await
                    .map_err(|e| format!("HTTP/2 connection: {e}"))?;
                s.send_request(req)
                    .await
                    .map_err(|e| format!("HTTP/2 request: {e}"))
            }
        }
    }
}

/// What a connection's worker saw.
#[derive(Default)]
struct Tally {
    latencies_ns: Vec<u64>,
    non_200: u64,
    first_bad: Option<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies_ns.extend(other.latencies_ns);
        self.non_200 += other.non_200;
        if self.first_bad.is_none() {
            self.first_bad = other.first_bad;
        }
    }
}

/// Sends requests on one connection, one at a time, until the shared counter reaches `n`: the
/// batch is exactly `n` requests however the connections share it.
async fn worker(
    mut conn: Conn,
    load: Arc<Load>,
    next: Arc<AtomicU64>,
    n: u64,
) -> Result<Tally, String> {
    let mut tally = Tally::default();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= n {
            return Ok(tally);
        }
        let req = load.request(i);
        let start = Instant::now();
        let resp = conn.send(req).await?;
        let status = resp.status();
        // The whole body, as a real client reads it; keep-alive needs it consumed anyway.
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading body after {status}: {e}"))?
            .to_bytes();
        tally
            .latencies_ns
            .push(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX));
        if status != StatusCode::OK {
            tally.non_200 += 1;
            if tally.first_bad.is_none() {
                let text = String::from_utf8_lossy(&body);
                let text: String = text.chars().take(200).collect();
                tally.first_bad = Some(format!("{status}: {text}"));
            }
        }
    }
}

/// One measured batch.
#[derive(Clone)]
struct Batch {
    requests: u64,
    wall: Duration,
    envoy_cpu: Duration,
    /// CPU time of this process (client and upstream) over the batch.
    bench_cpu: Duration,
    p50: Duration,
    p99: Duration,
    non_200: u64,
    first_bad: Option<String>,
    /// Connections each Envoy worker accepted for the batch (only with several workers).
    per_worker: Vec<u64>,
}

impl Batch {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.wall.as_secs_f64()
    }

    fn cpu_us_per_request(&self) -> f64 {
        self.envoy_cpu.as_secs_f64() * 1e6 / self.requests as f64
    }

    /// Envoy's CPU use during the batch, in cores (1.0 = one core busy all the time).
    fn cores(&self) -> f64 {
        self.envoy_cpu.as_secs_f64() / self.wall.as_secs_f64()
    }

    /// The same for the bench process (client and upstream).
    fn bench_cores(&self) -> f64 {
        self.bench_cpu.as_secs_f64() / self.wall.as_secs_f64()
    }
}

/// `n` requests over `connections` fresh keep-alive connections; Envoy's CPU time is read right
/// before the first request and right after the last response.
async fn run_batch(
    load: &Arc<Load>,
    n: u64,
    connections: usize,
    clock: &EnvoyClock,
) -> Result<Batch, String> {
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        conns.push(Conn::open(load.port, load.proto).await?);
    }
    tokio::time::sleep(SETTLE).await;
    let next = Arc::new(AtomicU64::new(0));
    let cpu_before = clock.read()?;
    let bench_before = clock.read_bench()?;
    let start = Instant::now();
    let mut workers = JoinSet::new();
    for conn in conns {
        workers.spawn(worker(conn, load.clone(), next.clone(), n));
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
        first_bad: tally.first_bad,
        per_worker: Vec::new(),
    })
}

/// Nearest-rank percentile of sorted nanoseconds.
fn percentile(sorted_ns: &[u64], p: f64) -> Duration {
    if sorted_ns.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted_ns.len() as f64).ceil() as usize;
    let idx = rank.clamp(1, sorted_ns.len()) - 1;
    Duration::from_nanos(sorted_ns[idx])
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => xs[n / 2],
        _ => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

/// Envoy's process CPU time (all threads, user + system) from `/proc/PID/stat`.
struct EnvoyClock {
    pid: u32,
    ticks_per_sec: u64,
    /// How `ticks_per_sec` was found, for the report.
    source: &'static str,
}

impl EnvoyClock {
    fn new(pid: u32) -> EnvoyClock {
        // /proc counts in USER_HZ clock ticks; getconf asks libc rather than assuming the usual 100.
        let from_getconf = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|&t| t > 0);
        match from_getconf {
            Some(t) => EnvoyClock {
                pid,
                ticks_per_sec: t,
                source: "getconf CLK_TCK",
            },
            None => EnvoyClock {
                pid,
                ticks_per_sec: 100,
                source: "assumed: getconf failed",
            },
        }
    }

    fn read(&self) -> Result<Duration, String> {
        self.read_path(&format!("/proc/{}/stat", self.pid))
    }

    /// The same for this process (client and upstream), to see whether they, not Envoy, are what
    /// the machine runs out of.
    fn read_bench(&self) -> Result<Duration, String> {
        self.read_path("/proc/self/stat")
    }

    fn read_path(&self, path: &str) -> Result<Duration, String> {
        let stat = fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        // Field 2 (comm) is in parentheses and may contain spaces: count fields after the last ')'.
        // What follows starts at field 3, so utime (14) and stime (15) are at 11 and 12.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        match (tick(11), tick(12)) {
            (Some(utime), Some(stime)) => Ok(Duration::from_nanos(
                (utime + stime) * 1_000_000_000 / self.ticks_per_sec,
            )),
            _ => Err(format!("{path}: no utime/stime in {stat:?}")),
        }
    }
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
        if b.non_200 > 0 {
            errors.push(format!(
                "{} {} {when}: {} of {} responses not 200, first: {}",
                proto.label(),
                v.name,
                b.non_200,
                b.requests,
                b.first_bad.as_deref().unwrap_or("?")
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

async fn batch(
    load: &Arc<Load>,
    n: u64,
    connections: usize,
    clock: &EnvoyClock,
) -> Result<Batch, String> {
    tokio::time::timeout(BATCH_TIMEOUT, run_batch(load, n, connections, clock))
        .await
        .map_err(|_| format!("a batch of {n} requests took longer than {BATCH_TIMEOUT:?}"))?
}

/// The Markdown table of one protocol pass. Differences are medians of per-round differences
/// (each round's variant minus the same round's baseline), which cancels drift between rounds.
/// With several workers, a column shows how each variant's connections spread over them.
fn table(proto: Proto, s: &Settings, variants: &[Variant], results: &[Vec<Batch>]) -> String {
    let split: Option<Vec<String>> = (s.concurrency > 1).then(|| {
        results
            .iter()
            .map(|r| {
                let mut sum = vec![0u64; usize::try_from(s.concurrency).unwrap_or(1)];
                for b in r {
                    for (acc, n) in sum.iter_mut().zip(&b.per_worker) {
                        *acc += n;
                    }
                }
                sum.iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(" / ")
            })
            .collect()
    });
    let cpu = |i: usize| -> Vec<f64> { results[i].iter().map(Batch::cpu_us_per_request).collect() };
    let diff = |i: usize, base: usize| -> f64 {
        median(cpu(i).iter().zip(cpu(base)).map(|(a, b)| a - b).collect())
    };
    let mut t = String::new();
    let _ = writeln!(t, "## {}, {} connections\n", proto.label(), s.connections);
    t.push_str(
        "| variant | Envoy CPU µs/req | per round | vs none | vs empty | req/s | p50 ms | p99 ms | Envoy cores | bench cores |",
    );
    if split.is_some() {
        t.push_str(" connections per worker |");
    }
    t.push_str("\n|:--|--:|:--|--:|--:|--:|--:|--:|--:|--:|");
    if split.is_some() {
        t.push_str("--:|");
    }
    t.push('\n');
    for (i, v) in variants.iter().enumerate() {
        let r = &results[i];
        let med = |f: fn(&Batch) -> f64| median(r.iter().map(f).collect());
        let rounds: Vec<String> = cpu(i).iter().map(|c| format!("{c:.1}")).collect();
        let vs_none = if i == 0 {
            "—".to_string()
        } else {
            format!("{:+.1}", diff(i, 0))
        };
        let vs_empty = if i <= 1 {
            "—".to_string()
        } else {
            format!("{:+.1}", diff(i, 1))
        };
        let _ = write!(
            t,
            "| {} | {:.1} | {} | {} | {} | {:.0} | {:.3} | {:.3} | {:.2} | {:.2} |",
            v.name,
            med(Batch::cpu_us_per_request),
            rounds.join(" / "),
            vs_none,
            vs_empty,
            med(Batch::rps),
            med(|b| b.p50.as_secs_f64() * 1e3),
            med(|b| b.p99.as_secs_f64() * 1e3),
            med(Batch::cores),
            med(Batch::bench_cores),
        );
        if let Some(split) = &split {
            let _ = write!(t, " {} |", split.get(i).map_or("?", String::as_str));
        }
        t.push('\n');
    }
    let _ = writeln!(
        t,
        "\nWasm overhead (empty − none): {:+.1} µs/request.",
        diff(1, 0)
    );
    let _ = writeln!(
        t,
        "Bench cores: CPU time of the bench process (client and upstream) / wall time; Envoy \
         cores + bench cores close to the machine's {} CPUs means the machine, not Envoy, is the \
         limit.",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if split.is_some() {
        t.push_str(
            "Connections per worker: downstream connections each Envoy worker accepted for the \
             variant over all rounds (`listener.<address>.worker_<n>.downstream_cx_total`); the \
             kernel spreads them (SO_REUSEPORT), so the split is rarely exact.\n",
        );
    }
    t
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

// ---------------------------------------------------------------------------------------------------
// Outage scenarios
// ---------------------------------------------------------------------------------------------------

/// Connections of the outage load, whatever the concurrency: the scenarios are about what callers
/// see, not about throughput.
const OUTAGE_CONNECTIONS: usize = 8;
/// Route timeout of the slow outage, whose upstream answers after [`SLOW_UPSTREAM_DELAY_MS`].
const SLOW_ROUTE_TIMEOUT: Duration = Duration::from_millis(250);
const SLOW_UPSTREAM_DELAY_MS: &str = "1000";
/// Breaker name of the outage configuration; its rejections carry `x-circuit-breaker: outage; ...`.
const OUTAGE_BREAKER: &str = "outage";
const STATUS_HEADER: &str = "x-circuit-breaker";
/// Time allowed, beyond the load time, for the last answers; a stuck Envoy fails the run.
const OUTAGE_DRAIN: Duration = Duration::from_secs(30);

/// The breaker of every outage listener: the defaults, written out. It opens once 20 calls in the
/// last 10 s are in and half of them failed, and stays open 5 s +/- 10 % (jitter): longer than any
/// load below, so no half-open probe falls inside a measurement.
fn outage_breaker_config() -> serde_json::Value {
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
enum Scenario {
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

    fn label(self) -> &'static str {
        match self {
            Scenario::Status503 => "upstream answers 503",
            Scenario::Refused => "connection refused",
            Scenario::Slow => "slow: upstream 1 s, route timeout 250 ms",
        }
    }

    /// What a caller gets from a failing call that the breaker let through.
    fn failure_status(self) -> u16 {
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

fn outage_envoy_config(s: &Settings, upstream_port: u16, refused_port: u16) -> EnvoyConfig {
    let module = workspace_root().join("dist/circuit_breaker.wasm");
    let breaker = outage_breaker_config().to_string();
    let mut config = EnvoyConfig::new()
        .concurrency(s.concurrency)
        .log_level("warn")
        .component_log_level("wasm:warn");
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
                    WasmFilter::new(&name, &module)
                        .vm_id(&name)
                        .configuration(breaker.clone()),
                );
            }
            config = config.listener(listener);
        }
    }
    config
}

/// One answered request of the outage load.
struct Sample {
    /// When the whole response was in, from the start of the load.
    done: Duration,
    latency: Duration,
    status: u16,
    /// The `x-circuit-breaker` response header.
    breaker_header: Option<String>,
}

#[derive(Default)]
struct OutageTally {
    samples: Vec<Sample>,
    transport_errors: u64,
    first_error: Option<String>,
}

impl OutageTally {
    fn error(&mut self, e: String) {
        self.transport_errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e);
        }
    }
}

/// Paced load on one connection until `end`: a request at every `interval` from `first`, or as soon
/// as the previous answer is in when that is later (a caller held up by slow answers sends less, as a
/// real one would). A transport error is counted and the connection reopened.
async fn outage_worker(
    conn: Conn,
    load: Arc<Load>,
    start: Instant,
    first: Instant,
    end: Instant,
    interval: Duration,
) -> OutageTally {
    let mut tally = OutageTally::default();
    let mut conn = Some(conn);
    let mut next = first;
    let mut i = 0u64;
    loop {
        if next >= end {
            return tally;
        }
        if next > Instant::now() {
            tokio::time::sleep_until(next.into()).await;
        }
        let sent = Instant::now();
        if sent >= end {
            return tally;
        }
        // On schedule: keep the slots. Behind: no burst to catch up.
        next = (next + interval).max(sent);
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Conn::open(load.port, load.proto).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    tally.error(e);
                    continue;
                }
            },
        };
        i += 1;
        let answer = async {
            let resp = c.send(load.request(i)).await?;
            let status = resp.status().as_u16();
            let breaker_header = resp
                .headers()
                .get(STATUS_HEADER)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            resp.into_body()
                .collect()
                .await
                .map_err(|e| format!("reading body after {status}: {e}"))?;
            Ok::<_, String>((status, breaker_header))
        };
        match answer.await {
            Ok((status, breaker_header)) => {
                let now = Instant::now();
                tally.samples.push(Sample {
                    done: now - start,
                    latency: now - sent,
                    status,
                    breaker_header,
                });
            }
            Err(e) => {
                tally.error(e);
                conn = None;
            }
        }
    }
}

/// One listener's outage measurement.
struct Phase {
    scenario: Scenario,
    breaker: bool,
    load_time: Duration,
    samples: Vec<Sample>,
    transport_errors: u64,
    first_error: Option<String>,
    /// Requests the upstream recorded (503, slow) or connection attempts (refused).
    reached: u64,
    upstream_rq: u64,
    upstream_cx: u64,
    envoy_cpu: Duration,
    /// From the start of the load to the last answer: the time `envoy_cpu` was measured over.
    wall: Duration,
}

impl Phase {
    fn sent(&self) -> u64 {
        self.samples.len() as u64 + self.transport_errors
    }

    fn is_rejection(&self, x: &Sample) -> bool {
        x.status == 503
            && x.breaker_header
                .as_deref()
                .is_some_and(|h| h.starts_with(&format!("{OUTAGE_BREAKER}; state=open")))
    }

    fn is_failure(&self, x: &Sample) -> bool {
        x.status == self.scenario.failure_status() && x.breaker_header.is_none()
    }

    fn latencies(&self, keep: impl Fn(&Sample) -> bool) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .samples
            .iter()
            .filter(|x| keep(x))
            .map(|x| u64::try_from(x.latency.as_nanos()).unwrap_or(u64::MAX))
            .collect();
        v.sort_unstable();
        v
    }

    /// When the first rejection was in, from the start of the load.
    fn opened_after(&self) -> Option<Duration> {
        self.samples
            .iter()
            .filter(|x| self.is_rejection(x))
            .map(|x| x.done)
            .min()
    }

    /// Envoy's CPU over the load: share of one core, and per request when there are enough.
    fn cpu(&self) -> String {
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
    fn problems(&self) -> Vec<String> {
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
        if self.transport_errors > 0 {
            out.push(format!(
                "{what}: {} transport errors, first: {}",
                self.transport_errors,
                self.first_error.as_deref().unwrap_or("?")
            ));
        }
        if self.breaker && self.opened_after().is_none() {
            out.push(format!("{what}: the breaker never opened"));
        }
        out
    }
}

/// Runs the paced load against one outage listener.
async fn outage_phase(
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
    let mut conns = Vec::with_capacity(OUTAGE_CONNECTIONS);
    for _ in 0..OUTAGE_CONNECTIONS {
        conns.push(Conn::open(load.port, load.proto).await?);
    }
    tokio::time::sleep(SETTLE).await;
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
        workers.spawn(outage_worker(
            conn,
            load.clone(),
            start,
            first,
            end,
            interval,
        ));
    }
    let mut tally = OutageTally::default();
    let joined = tokio::time::timeout(load_time + OUTAGE_DRAIN, async {
        while let Some(t) = workers.join_next().await {
            let t = t.map_err(|e| format!("outage worker: {e}"))?;
            tally.samples.extend(t.samples);
            tally.transport_errors += t.transport_errors;
            if tally.first_error.is_none() {
                tally.first_error = t.first_error;
            }
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
        first_error: tally.first_error,
        reached,
        upstream_rq,
        upstream_cx,
        envoy_cpu,
        wall,
    })
}

/// Every scenario, the listener without the breaker first, then the one with it.
async fn outages(
    s: &Settings,
    envoy: &Envoy,
    upstream: &Upstream,
    clock: &EnvoyClock,
) -> Result<Vec<Phase>, String> {
    let mut phases = Vec::new();
    for sc in Scenario::ALL {
        for breaker in [false, true] {
            let p = outage_phase(s, sc, breaker, envoy, upstream, clock).await?;
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

/// Milliseconds with a precision that suits the size.
fn ms(d: Duration) -> String {
    let x = d.as_secs_f64() * 1e3;
    if x < 10.0 {
        format!("{x:.3}")
    } else if x < 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.0}")
    }
}

/// `n: p50 / p99` of sorted latencies, or a dash when there are none.
fn spread(sorted_ns: &[u64]) -> String {
    if sorted_ns.is_empty() {
        return "—".to_string();
    }
    format!(
        "{}: {} / {}",
        sorted_ns.len(),
        ms(percentile(sorted_ns, 50.0)),
        ms(percentile(sorted_ns, 99.0))
    )
}

fn outage_report(s: &Settings, phases: &[Phase]) -> String {
    let fine = phases.iter().all(|p| p.problems().is_empty());
    let mut t = String::from("## Circuit breaker in an outage\n\n");
    let _ = writeln!(
        t,
        "- Per scenario two listeners, each on its own cluster, in the same Envoy (`--concurrency {}`): \
         `none` (router only) and `breaker` (circuit-breaker filter, own VM and shared state) with \
         `{}`: the defaults written out; open 5 s +/- 10 %, longer than the load, so no half-open \
         probe falls in a measurement",
        s.concurrency,
        outage_breaker_config()
    );
    let _ = writeln!(
        t,
        "- Load: {OUTAGE_CONNECTIONS} keep-alive HTTP/1.1 connections paced at {:.0} requests/s in \
         total; a connection sends at its next slot, or as soon as its previous answer is in when \
         that is later (callers held up by slow answers send less). {:.1} s per listener ({:.1} s \
         for the slow outage), one listener after the other, `none` first",
        s.outage_rate,
        s.outage_time.as_secs_f64(),
        s.slow_time.as_secs_f64()
    );
    t.push_str(
        "- reached upstream: requests the upstream recorded; for connection refused, connection \
         attempts (`cluster.<name>.upstream_cx_total`, Envoy never gets to send a request there, so \
         `upstream_rq_total` stays 0). Envoy rq / cx: the cluster's `upstream_rq_total` / \
         `upstream_cx_total` increase\n",
    );
    t.push_str(
        "- opened after: from the start of the load to the first answer carrying \
         `x-circuit-breaker`. failed: the outage's own failure (503 from the upstream, Envoy's 503 \
         for the refused connection, Envoy's 504 for the route timeout), as count: p50 / p99 ms; \
         rejected: the breaker's 503; all: every answer\n",
    );
    t.push_str(
        "- Envoy CPU: Envoy's CPU time over the listener's load, as a share of one core and per \
         request sent (10 ms ticks; per request only from 1000 requests on, and at this light load \
         it includes Envoy's idle work and wake-ups, so it is higher than in the cost table)\n\n",
    );
    t.push_str(
        "| scenario | listener | sent | req/s | reached upstream | Envoy rq / cx | opened after | failed | rejected | all p50 / p99 ms | Envoy CPU |\n",
    );
    t.push_str("|:--|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    for p in phases {
        let all = p.latencies(|_| true);
        let failed = p.latencies(|x| p.is_failure(x));
        let rejected = p.latencies(|x| p.is_rejection(x));
        let opened = match (p.breaker, p.opened_after()) {
            (false, _) => "—".to_string(),
            (true, Some(d)) => format!("{} ms", ms(d)),
            (true, None) => "never".to_string(),
        };
        let _ = writeln!(
            t,
            "| {} | {} | {} | {:.0} | {} | {} / {} | {} | {} | {} | {} / {} | {} |",
            p.scenario.label(),
            if p.breaker { "breaker" } else { "none" },
            p.sent(),
            p.sent() as f64 / p.load_time.as_secs_f64(),
            p.reached,
            p.upstream_rq,
            p.upstream_cx,
            opened,
            spread(&failed),
            if p.breaker {
                spread(&rejected)
            } else {
                "—".to_string()
            },
            ms(percentile(&all, 50.0)),
            ms(percentile(&all, 99.0)),
            p.cpu(),
        );
    }
    t.push('\n');
    for pair in phases.chunks(2) {
        let [none, with] = pair else { continue };
        let failed = none.latencies(|x| none.is_failure(x));
        let rejected = with.latencies(|x| with.is_rejection(x));
        let _ = writeln!(
            t,
            "- {}: {} of {} requests reached the upstream with the breaker ({:.1} %), {} of {} \
             without; after it opened callers got their 503 in {} ms (p50, p99 {} ms) instead of \
             a {} in {} ms (p50, p99 {} ms).",
            none.scenario.label(),
            with.reached,
            with.sent(),
            100.0 * with.reached as f64 / with.sent().max(1) as f64,
            none.reached,
            none.sent(),
            ms(percentile(&rejected, 50.0)),
            ms(percentile(&rejected, 99.0)),
            none.scenario.failure_status(),
            ms(percentile(&failed, 50.0)),
            ms(percentile(&failed, 99.0)),
        );
    }
    if fine {
        t.push_str(
            "\nEvery answer was the outage's failure or, with the breaker, its rejection; every \
             breaker opened.\n",
        );
    }
    t
}

/// Sizes of the built modules, dist/*.wasm and dist/bench/*.wasm.
fn module_sizes() -> Vec<(String, u64)> {
    let root = workspace_root();
    let mut out = Vec::new();
    for dir in [root.join("dist"), root.join("dist/bench")] {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "wasm") {
                let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                let rel = path.strip_prefix(&root).unwrap_or(&path);
                out.push((rel.display().to_string(), size));
            }
        }
    }
    out.sort();
    out
}

fn cpu_model() -> String {
    let info = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".to_string());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpus} CPUs, {model}")
}

/// The report's title and the setup; `variants` is `None` when the cost table does not run.
fn header(
    s: &Settings,
    envoy_version: &str,
    clock: &EnvoyClock,
    variants: Option<&[Variant]>,
) -> String {
    let mut h = String::from(if variants.is_some() {
        "# Filter cost per request\n\n"
    } else {
        "# Circuit breaker in an outage\n\n"
    });
    let _ = writeln!(
        h,
        "- Envoy `{envoy_version}`, Wasm runtime `{}`, `--concurrency {}`",
        wasm_runtime(),
        s.concurrency
    );
    if variants.is_some() {
        let _ = writeln!(
            h,
            "- Load: {} requests per variant and round after {} warm-up requests, {} rounds \
             interleaved (medians shown), {} keep-alive connections with one request in flight \
             each; client and upstream run in the bench process",
            s.requests, s.warmup, s.rounds, s.connections
        );
    }
    let _ = writeln!(
        h,
        "- Envoy CPU: utime + stime of its pid from `/proc/PID/stat`, {} ticks/s ({}); \
         \"vs\" columns are medians of per-round differences; Envoy cores = CPU time / wall time \
         (about 1 per worker when Envoy, not the client, is the bottleneck)",
        clock.ticks_per_sec, clock.source
    );
    let _ = writeln!(h, "- Machine: {}", cpu_model());
    h.push_str("- Modules:");
    for (path, size) in module_sizes() {
        let _ = write!(h, " `{path}` {size} B;");
    }
    h.push('\n');
    if let Some(variants) = variants {
        h.push_str("- Variants:\n");
        for v in variants {
            let _ = writeln!(h, "  - `{}`: {}", v.name, v.what);
        }
    }
    h.push('\n');
    h
}

fn write_report(report: &str) -> Result<PathBuf, String> {
    let dir = workspace_root().join("target/bench");
    fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let path = dir.join("results.md");
    fs::write(&path, report).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(path)
}

fn relative(path: &Path) -> String {
    let root = workspace_root();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}

async fn envoy_version(envoy: &Envoy) -> String {
    envoy
        .admin("GET", "/server_info")
        .await
        .json()
        .get("version")
        .and_then(|v| v.as_str())
        .unwrap_or("unknown")
        .to_string()
}

/// The cost table: one Envoy with a listener per variant. Returns the report section, the Envoy
/// version and the clock (for the header).
async fn cost(
    s: &Settings,
    variants: &[Variant],
    upstream: &Upstream,
    errors: &mut Vec<String>,
) -> Result<(String, String, EnvoyClock), String> {
    let envoy = Envoy::start(envoy_config(s, variants, upstream.port())).await;
    let clock = EnvoyClock::new(envoy.pid());
    clock.read()?;
    let version = envoy_version(&envoy).await;
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
        let results = measure(proto, s, variants, &envoy, upstream, &clock, errors).await?;
        section.push_str(&table(proto, s, variants, &results));
        section.push('\n');
    }
    if errors.is_empty() {
        section.push_str("Every response was a 200.\n");
    }
    Ok((section, version, clock))
}

/// The outage scenarios, on an Envoy of their own. Returns the report section, the Envoy version
/// and the clock.
async fn outage(
    s: &Settings,
    upstream: &Upstream,
    errors: &mut Vec<String>,
) -> Result<(String, String, EnvoyClock), String> {
    let module = workspace_root().join("dist/circuit_breaker.wasm");
    if !module.is_file() {
        return Err(format!(
            "{} not found: run `make build` first (or BENCH_OUTAGE=0)",
            module.display()
        ));
    }
    let (_refusing, refused_port) = refusing_port()?;
    let envoy = Envoy::start(outage_envoy_config(s, upstream.port(), refused_port)).await;
    let clock = EnvoyClock::new(envoy.pid());
    clock.read()?;
    let version = envoy_version(&envoy).await;
    let phases = outages(s, &envoy, upstream, &clock).await?;
    for p in &phases {
        errors.extend(p.problems());
    }
    Ok((outage_report(s, &phases), version, clock))
}

/// The whole run; returns whether every response was what it should be.
async fn run(started: Instant) -> Result<bool, String> {
    let s = Settings::load()?;
    let variants = if s.cost() {
        Some(variants(s.variants.as_deref())?)
    } else {
        None
    };
    let upstream = Upstream::start().await;
    let mut errors = Vec::new();
    let mut sections = String::new();
    let mut setup = None;
    if let Some(variants) = &variants {
        let (section, version, clock) = cost(&s, variants, &upstream, &mut errors).await?;
        sections.push_str(&section);
        setup = Some((version, clock));
    }
    if s.outage() {
        let (section, version, clock) = outage(&s, &upstream, &mut errors).await?;
        if !sections.is_empty() {
            sections.push('\n');
        }
        sections.push_str(&section);
        setup.get_or_insert((version, clock));
    }
    let (version, clock) = setup.ok_or("nothing to run")?;
    let mut report = header(&s, &version, &clock, variants.as_deref());
    report.push_str(&sections);
    if !errors.is_empty() {
        report.push_str("**Errors:**\n\n");
        for e in &errors {
            let _ = writeln!(report, "- {e}");
        }
    }
    let _ = writeln!(
        report,
        "\nRun time: {:.0} s.",
        started.elapsed().as_secs_f64()
    );
    print!("{report}");
    let path = write_report(&report)?;
    eprintln!("bench: report written to {}", relative(&path));
    Ok(errors.is_empty())
}

// Two runtime threads for the client and the upstream: at the defaults they need about 0.6 of a core
// to saturate Envoy's one worker, and a second thread keeps them ahead when Envoy has more workers.
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let started = Instant::now();
    match run(started).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("bench: some responses were not what they should be (see the report)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}
