//! `make perf-counts`: what one request costs inside each filter, as counts that do not depend on how
//! busy the machine is. One Envoy (one worker) gets a listener per variant (no filter, the empty
//! filter, each filter with its defaults, the three chained); each listener gets `PERF_WARMUP`
//! requests, then `PERF_REQUESTS` measured ones, one at a time on one keep-alive connection.
//!
//! - Host calls by kind and heap allocations per request: the modules in `dist/perf/`, built with the
//!   cargo feature `count-host-calls`, add each stream's counts to `perf.<root id>.*` counters.
//! - Instructions per request (`PERF_CALLGRIND=1`): Envoy runs under `valgrind --tool=callgrind`
//!   (`ENVOY_BIN` is wrapped by `tools/perf/envoy-callgrind`); the counters are zeroed before each
//!   listener's measured requests and dumped after them, per thread; the figure is the worker
//!   thread's. V8's compiled Wasm runs inside Envoy, so it is counted too. This mode loads the release modules (`dist/*.wasm`), so it counts no host calls.
//!
//! `PERF_VARIANTS=a,b,...` keeps only those listeners (and `none`).
//!
//! The Markdown table goes to stdout and `target/perf/counts.md`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use e2e_harness::{
    workspace_root, Cluster, Envoy, EnvoyConfig, Listener, Route, Upstream, WasmFilter,
};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

const PATH: &str = "/api/v1/orders/4711?include=items";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// trace-context without the three things it writes besides the trace headers (filter state,
/// `x-trace-id`, `traceresponse`): what they cost.
const TRACE_LEAN: &str = r#"{"filterStateName": "", "responseHeader": "", "traceResponse": false}"#;

/// (listener, filters as (root id, module file under dist/)).
fn variants() -> Vec<(&'static str, Vec<(&'static str, &'static str)>)> {
    vec![
        ("none", vec![]),
        ("empty", vec![("empty", "bench/empty_filter.wasm")]),
        (
            "empty_trimmed",
            vec![("empty_trimmed", "bench/empty_trimmed.wasm")],
        ),
        (
            "trace_context",
            vec![("trace_context", "perf/trace_context.wasm")],
        ),
        (
            "trace_context_lean",
            vec![("trace_context_lean", "perf/trace_context.wasm")],
        ),
        (
            "trace_context_directed",
            vec![("trace_context_directed", "perf/trace_context.wasm")],
        ),
        (
            "circuit_breaker",
            vec![("circuit_breaker", "perf/circuit_breaker.wasm")],
        ),
        ("fallback", vec![("fallback", "perf/fallback.wasm")]),
        (
            "chain",
            vec![
                ("chain_trace_context", "perf/trace_context.wasm"),
                ("chain_fallback", "perf/fallback.wasm"),
                ("chain_circuit_breaker", "perf/circuit_breaker.wasm"),
            ],
        ),
    ]
}

/// `n` GETs one after the other on one keep-alive connection; every answer must be a 200.
async fn send(port: u16, n: u64, first: u64) {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    for i in first..first + n {
        let tp = format!("00-{:032x}-{:016x}-01", u128::from(i) + 1, i + 1);
        let req = Request::get(PATH)
            .header("host", "shop.example.internal")
            .header("traceparent", tp)
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status();
        resp.into_body().collect().await.unwrap();
        assert_eq!(status, 200, "listener on port {port}");
    }
}

/// The `perf.*` counters (without the `wasmcustom.` prefix Envoy hides in /stats).
async fn perf_stats(envoy: &Envoy) -> BTreeMap<String, u64> {
    envoy
        .stats()
        .await
        .into_iter()
        .filter_map(|(k, v)| {
            let k = k.strip_prefix("wasmcustom.").unwrap_or(&k).to_string();
            k.starts_with("perf.").then_some((k, v))
        })
        .collect()
}

fn callgrind(args: &[&str], pid: u32) {
    let out = Command::new("callgrind_control")
        .args(args)
        .arg(pid.to_string())
        .output()
        .expect("callgrind_control");
    assert!(out.status.success(), "callgrind_control {args:?}: {out:?}");
}

/// The instructions of dump number `n` in the thread that executed the most of them: the worker
/// that served the batch (callgrind writes `callgrind.out.<pid>.<n>-<thread>` per thread in `dir`),
/// so the main thread's timers are not counted. `None` until the dump is written.
fn last_dump_total(dir: &Path, pid: u32, n: usize) -> Option<u64> {
    let prefix = format!("callgrind.out.{pid}.{n}-");
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.path()).ok()?;
            text.lines()
                .find_map(|l| {
                    l.strip_prefix("totals: ")
                        .or_else(|| l.strip_prefix("summary: "))
                })
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .max()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let warmup = env_num("PERF_WARMUP", 300);
    let requests = env_num("PERF_REQUESTS", 1000);
    // More workers only to measure memory: each worker holds one VM per filter.
    let concurrency = u32::try_from(env_num("PERF_CONCURRENCY", 1)).unwrap_or(1);
    let cg = std::env::var("PERF_CALLGRIND").is_ok_and(|v| v == "1");
    // PERF_DIST: another set of modules laid out like dist/ (to count a previous build).
    let dist = std::env::var_os("PERF_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("dist"));
    let upstream = Upstream::start().await;
    let mut config = EnvoyConfig::new()
        .concurrency(concurrency)
        .log_level("warn")
        .component_log_level("wasm:warn")
        .cluster(Cluster::new("upstream", upstream.port()));
    // PERF_VARIANTS=a,b,...: only those listeners (under callgrind, V8 cannot reserve the address
    // space of more than about four VMs).
    let only = std::env::var("PERF_VARIANTS").ok();
    let variants: Vec<_> = variants()
        .into_iter()
        .filter(|(name, _)| {
            only.as_deref()
                .is_none_or(|o| *name == "none" || o.split(',').any(|x| x.trim() == *name))
        })
        .collect();
    for (name, filters) in &variants {
        let mut l = Listener::new(*name).route(Route::to(*name, "/", "upstream"));
        for (root, module) in filters {
            // Instructions are counted on the release modules: the counting ones flush a dozen
            // counters at the end of every stream.
            let module = if cg {
                module.trim_start_matches("perf/")
            } else {
                module
            };
            let path = dist.join(module);
            assert!(
                path.is_file(),
                "{} missing: run `make perf-counts`",
                path.display()
            );
            // Each filter in its own VM, as separate WasmPlugins are.
            let mut f = WasmFilter::new(*root, path).vm_id(*root);
            if root.ends_with("_lean") {
                f = f.configuration(TRACE_LEAN);
            }
            if root.ends_with("_directed") {
                // The listener's side configured, as with one WasmPlugin per traffic mode: no
                // `xds.listener_direction` read per request.
                f = f.configuration(r#"{"direction": "inbound"}"#);
            }
            l = l.filter(f);
        }
        config = config.listener(l);
    }
    let envoy = Envoy::start(config).await;
    // A plugin whose VM could not be created fails open here, so its listener would count as no
    // filter: under callgrind V8 cannot reserve the address space of more than about four VMs.
    let log = envoy.log();
    assert!(
        !log.contains("Failed to create new Wasm instance"),
        "Envoy could not create every Wasm VM (fewer listeners with PERF_VARIANTS=...):\n{log}"
    );
    // Where tools/perf/envoy-callgrind writes the dumps (CALLGRIND_DIR, as `make perf-counts` sets it).
    let cg_dir = std::env::var_os("CALLGRIND_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/perf/callgrind"));
    let mut rows = Vec::new();
    let mut base_ir = None;
    for (i, (name, filters)) in variants.iter().enumerate() {
        let port = envoy.port(name);
        send(port, warmup, 0).await;
        // Let the access-log callbacks of the last requests run before the snapshot.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = perf_stats(&envoy).await;
        if cg {
            callgrind(&["-z"], envoy.pid());
        }
        send(port, requests, warmup).await;
        let ir = if cg {
            callgrind(&["-d"], envoy.pid());
            // Callgrind acts on the request only while Envoy runs: wake it until the dump appears.
            let mut total = None;
            for _ in 0..600 {
                let _ = envoy.admin("GET", "/ready").await;
                total = last_dump_total(&cg_dir, envoy.pid(), i + 1);
                if total.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Some(total.expect("a callgrind dump") as f64 / requests as f64)
        } else {
            None
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let after = perf_stats(&envoy).await;
        let per = |suffix: &str| -> f64 {
            filters
                .iter()
                .map(|(root, _)| {
                    let k = format!("perf.{root}.{suffix}");
                    after.get(&k).copied().unwrap_or(0) - before.get(&k).copied().unwrap_or(0)
                })
                .sum::<u64>() as f64
                / requests as f64
        };
        let mut kinds: Vec<(String, f64)> = after
            .keys()
            .filter(|k| {
                filters
                    .iter()
                    .any(|(r, _)| k.starts_with(&format!("perf.{r}.host.")))
            })
            .filter_map(|k| k.rsplit_once(".host.").map(|(_, kind)| kind.to_string()))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|kind| {
                let v = per(&format!("host.{kind}"));
                (kind, v)
            })
            .filter(|(_, v)| *v > 0.0)
            .collect();
        kinds.sort_by(|a, b| b.1.total_cmp(&a.1));
        let host_calls: f64 = kinds.iter().map(|(_, v)| v).sum();
        if i == 0 {
            base_ir = ir;
        }
        eprintln!("perf-counts: {name} done");
        rows.push(format!(
            "| {name} | {} | {:.1} | {:.1} | {:.0} | {} |",
            if !cg && filters.iter().any(|(_, m)| m.starts_with("perf/")) {
                format!("{host_calls:.1}")
            } else {
                "0".to_string()
            },
            per("allocs"),
            per("alloc_bytes"),
            ir.map(|v| v - base_ir.unwrap_or(0.0)).unwrap_or(f64::NAN),
            kinds
                .iter()
                .map(|(k, v)| format!("{k} {v:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let mut out = format!(
        "Per request, {requests} requests per listener after {warmup} warm-up, one worker, HTTP/1.1 keep-alive, \
         traceparent in.\n\n| variant | host calls | allocations | bytes allocated | instructions over no filter{} | host calls by kind |\n|---|---|---|---|---|---|\n",
        if cg { "" } else { " (PERF_CALLGRIND=1)" }
    );
    for r in rows {
        out.push_str(&r);
        out.push('\n');
    }
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", envoy.pid())).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap_or("VmRSS: ?");
    out.push_str(&format!(
        "\nEnvoy --concurrency {concurrency}, {} Wasm filters per worker: {rss} (compare two \
         PERF_CONCURRENCY values for the memory per worker).\n",
        variants.iter().map(|(_, f)| f.len()).sum::<usize>()
    ));
    print!("{out}");
    let dir = workspace_root().join("target/perf");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("counts.md"), out).unwrap();
}
