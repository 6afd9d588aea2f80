//! `make bench`: what each filter costs per request, against the same Envoy with no filter and with
//! an empty Rust Wasm filter, measured in one run so the figures are comparable.
//!
//! One Envoy gets one listener per variant, all routing to the in-process [`Upstream`]. An
//! in-process load generator (hyper, keep-alive, a fixed number of connections) sends the same number
//! of requests to every variant, interleaved over several rounds to cancel drift. The main figure is
//! Envoy's CPU time per request (utime + stime of its pid from `/proc/PID/stat`): the client and the
//! upstream live in this process, so they cannot pollute it.
//!
//! Settings come from the environment, so `make bench` needs no arguments:
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `BENCH_REQUESTS` | 20000 | measured requests per variant and round |
//! | `BENCH_WARMUP` | 1000 | unmeasured requests per variant before the first round |
//! | `BENCH_CONNECTIONS` | 8 | keep-alive connections, one request in flight on each |
//! | `BENCH_ROUNDS` | 5 | interleaved rounds; the report shows medians |
//! | `BENCH_CONCURRENCY` | 1 | Envoy `--concurrency` |
//! | `BENCH_HTTP2` | unset | `1` adds an HTTP/2 (h2c) pass; so does the `--http2` argument |
//!
//! The Markdown report goes to stdout and to `target/bench/results.md`; progress goes to stderr.
//! Exit status: 0, or 1 when anything failed, including any response that was not 200.

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
    try_http1, wasm_runtime, workspace_root, Cluster, Envoy, EnvoyConfig, Listener, Route,
    Upstream, WasmFilter,
};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::{http1 as h1, http2 as h2};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, StatusCode, Uri, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

const USAGE: &str = "usage: bench [--http2]   (settings: BENCH_REQUESTS, BENCH_WARMUP, \
                     BENCH_CONNECTIONS, BENCH_ROUNDS, BENCH_CONCURRENCY, BENCH_HTTP2)";

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

struct Settings {
    requests: u64,
    warmup: u64,
    connections: usize,
    rounds: usize,
    concurrency: u32,
    http2: bool,
}

impl Settings {
    fn load() -> Result<Settings, String> {
        let mut http2 = std::env::var("BENCH_HTTP2").is_ok_and(|v| v == "1" || v == "true");
        for arg in std::env::args().skip(1) {
            match arg.as_str() {
                "--http2" => http2 = true,
                "-h" | "--help" => {
                    // Nothing has started yet, so exiting here leaves nothing behind.
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            }
        }
        let s = Settings {
            requests: env_num("BENCH_REQUESTS", 20_000)?,
            warmup: env_num("BENCH_WARMUP", 1_000)?,
            connections: env_num("BENCH_CONNECTIONS", 8)?,
            rounds: env_num("BENCH_ROUNDS", 5)?,
            concurrency: env_num("BENCH_CONCURRENCY", 1)?,
            http2,
        };
        if s.requests == 0 || s.connections == 0 || s.rounds == 0 || s.concurrency == 0 {
            return Err(
                "BENCH_REQUESTS, BENCH_CONNECTIONS, BENCH_ROUNDS and BENCH_CONCURRENCY \
                        must be at least 1"
                    .to_string(),
            );
        }
        Ok(s)
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

fn variants() -> Result<Vec<Variant>, String> {
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
    p50: Duration,
    p99: Duration,
    non_200: u64,
    first_bad: Option<String>,
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
    tally.latencies_ns.sort_unstable();
    Ok(Batch {
        requests: n,
        wall,
        envoy_cpu,
        p50: percentile(&tally.latencies_ns, 50.0),
        p99: percentile(&tally.latencies_ns, 99.0),
        non_200: tally.non_200,
        first_bad: tally.first_bad,
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
        let path = format!("/proc/{}/stat", self.pid);
        let stat = fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
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
            let b = batch(&loads[i], s.requests, s.connections, clock).await?;
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
fn table(proto: Proto, s: &Settings, variants: &[Variant], results: &[Vec<Batch>]) -> String {
    let cpu = |i: usize| -> Vec<f64> { results[i].iter().map(Batch::cpu_us_per_request).collect() };
    let diff = |i: usize, base: usize| -> f64 {
        median(cpu(i).iter().zip(cpu(base)).map(|(a, b)| a - b).collect())
    };
    let mut t = String::new();
    let _ = writeln!(t, "## {}, {} connections\n", proto.label(), s.connections);
    t.push_str(
        "| variant | Envoy CPU µs/req | per round | vs none | vs empty | req/s | p50 ms | p99 ms | Envoy cores |\n",
    );
    t.push_str("|:--|--:|:--|--:|--:|--:|--:|--:|--:|\n");
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
        let _ = writeln!(
            t,
            "| {} | {:.1} | {} | {} | {} | {:.0} | {:.3} | {:.3} | {:.2} |",
            v.name,
            med(Batch::cpu_us_per_request),
            rounds.join(" / "),
            vs_none,
            vs_empty,
            med(Batch::rps),
            med(|b| b.p50.as_secs_f64() * 1e3),
            med(|b| b.p99.as_secs_f64() * 1e3),
            med(Batch::cores),
        );
    }
    let _ = writeln!(
        t,
        "\nWasm overhead (empty − none): {:+.1} µs/request.",
        diff(1, 0)
    );
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

fn header(s: &Settings, envoy_version: &str, clock: &EnvoyClock, variants: &[Variant]) -> String {
    let mut h = String::from("# Filter cost per request\n\n");
    let _ = writeln!(
        h,
        "- Envoy `{envoy_version}`, Wasm runtime `{}`, `--concurrency {}`",
        wasm_runtime(),
        s.concurrency
    );
    let _ = writeln!(
        h,
        "- Load: {} requests per variant and round after {} warm-up requests, {} rounds \
         interleaved (medians shown), {} keep-alive connections with one request in flight each; \
         client and upstream run in the bench process",
        s.requests, s.warmup, s.rounds, s.connections
    );
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
    h.push_str("\n- Variants:\n");
    for v in variants {
        let _ = writeln!(h, "  - `{}`: {}", v.name, v.what);
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

/// The whole run; returns whether every response was a 200.
async fn run(started: Instant) -> Result<bool, String> {
    let s = Settings::load()?;
    let variants = variants()?;
    let upstream = Upstream::start().await;
    let envoy = Envoy::start(envoy_config(&s, &variants, upstream.port())).await;
    let clock = EnvoyClock::new(envoy.pid());
    clock.read()?;
    let version = envoy
        .admin("GET", "/server_info")
        .await
        .json()
        .get("version")
        .and_then(|v| v.as_str())
        .unwrap_or("unknown")
        .to_string();
    for v in &variants {
        check(&envoy, v).await?;
    }
    upstream.clear();

    let mut report = header(&s, &version, &clock, &variants);
    let mut errors = Vec::new();
    let protos: &[Proto] = if s.http2 {
        &[Proto::H1, Proto::H2]
    } else {
        &[Proto::H1]
    };
    for &proto in protos {
        let results = measure(proto, &s, &variants, &envoy, &upstream, &clock, &mut errors).await?;
        report.push_str(&table(proto, &s, &variants, &results));
        report.push('\n');
    }
    if errors.is_empty() {
        report.push_str("Every response was a 200.\n");
    } else {
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
            eprintln!("bench: some responses were not 200 (see the report)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}
