//! The Markdown report: the header on the setup, the cost tables, the outage section, and where
//! the finished report goes.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e_harness::{wasm_runtime, workspace_root};

use crate::cost::{Batch, Variant};
use crate::envoy::Setup;
use crate::load::Proto;
use crate::outage::{self, Phase, OUTAGE_CONNECTIONS};
use crate::settings::Settings;
use crate::stats::{median, percentile};

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

/// p50 and p99 of sorted latencies, in [`ms`].
fn p50_p99(sorted_ns: &[u64]) -> (String, String) {
    (
        ms(percentile(sorted_ns, 50.0)),
        ms(percentile(sorted_ns, 99.0)),
    )
}

/// `n: p50 / p99` of sorted latencies, or a dash when there are none.
fn spread(sorted_ns: &[u64]) -> String {
    if sorted_ns.is_empty() {
        return "—".to_string();
    }
    let (p50, p99) = p50_p99(sorted_ns);
    format!("{}: {p50} / {p99}", sorted_ns.len())
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

/// The Markdown table of one protocol pass. Differences are medians of per-round differences
/// (each round's variant minus the same round's baseline), which cancels drift between rounds.
/// With several workers, a column shows how each variant's connections spread over them.
pub fn cost_table(
    proto: Proto,
    s: &Settings,
    variants: &[Variant],
    results: &[Vec<Batch>],
) -> String {
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
        cpus()
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

/// The outage section: how the load ran, a row per listener, a line per scenario.
pub fn outage_section(s: &Settings, phases: &[Phase]) -> String {
    let fine = phases.iter().all(|p| p.problems().is_empty());
    let mut t = String::from("## Circuit breaker in an outage\n\n");
    let _ = writeln!(
        t,
        "- Per scenario two listeners, each on its own cluster, in the same Envoy (`--concurrency {}`): \
         `none` (router only) and `breaker` (circuit-breaker filter, own VM and shared state) with \
         `{}`: the defaults written out; open 5 s +/- 10 %, longer than the load, so no half-open \
         probe falls in a measurement",
        s.concurrency,
        outage::breaker_config()
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
        let failed = p.latencies(|x| p.is_failure(x));
        let rejected = p.latencies(|x| p.is_rejection(x));
        let (all_p50, all_p99) = p50_p99(&p.latencies(|_| true));
        let opened = match (p.breaker, p.opened_after()) {
            (false, _) => "—".to_string(),
            (true, Some(d)) => format!("{} ms", ms(d)),
            (true, None) => "never".to_string(),
        };
        let _ = writeln!(
            t,
            "| {} | {} | {} | {:.0} | {} | {} / {} | {} | {} | {} | {all_p50} / {all_p99} | {} |",
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
            p.cpu(),
        );
    }
    t.push('\n');
    for pair in phases.chunks(2) {
        let [none, with] = pair else { continue };
        let (failed_p50, failed_p99) = p50_p99(&none.latencies(|x| none.is_failure(x)));
        let (rejected_p50, rejected_p99) = p50_p99(&with.latencies(|x| with.is_rejection(x)));
        let _ = writeln!(
            t,
            "- {}: {} of {} requests reached the upstream with the breaker ({:.1} %), {} of {} \
             without; after it opened callers got their 503 in {rejected_p50} ms (p50, p99 \
             {rejected_p99} ms) instead of a {} in {failed_p50} ms (p50, p99 {failed_p99} ms).",
            none.scenario.label(),
            with.reached,
            with.sent(),
            100.0 * with.reached as f64 / with.sent().max(1) as f64,
            none.reached,
            none.sent(),
            none.scenario.failure_status(),
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
                out.push((relative(&path), size));
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
    format!("{} CPUs, {model}", cpus())
}

/// The report's title and the setup; `variants` is `None` when the cost table does not run.
fn header(s: &Settings, setup: &Setup, variants: Option<&[Variant]>) -> String {
    let mut h = String::from(if variants.is_some() {
        "# Filter cost per request\n\n"
    } else {
        "# Circuit breaker in an outage\n\n"
    });
    let _ = writeln!(
        h,
        "- Envoy `{}`, Wasm runtime `{}`, `--concurrency {}`",
        setup.version,
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
        setup.clock.ticks_per_sec, setup.clock.source
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

/// The whole report: the header, the sections in order, the errors if any, the run time.
pub fn document(
    s: &Settings,
    setup: &Setup,
    variants: Option<&[Variant]>,
    sections: &[String],
    errors: &[String],
    run_time: Duration,
) -> String {
    let mut report = header(s, setup, variants);
    report.push_str(&sections.join("\n"));
    if !errors.is_empty() {
        report.push_str("**Errors:**\n\n");
        for e in errors {
            let _ = writeln!(report, "- {e}");
        }
    }
    let _ = writeln!(report, "\nRun time: {:.0} s.", run_time.as_secs_f64());
    report
}

/// Prints the report to stdout and writes it to `target/bench/results.md`.
pub fn publish(report: &str) -> Result<(), String> {
    print!("{report}");
    let path = write(report)?;
    eprintln!("bench: report written to {}", relative(&path));
    Ok(())
}

fn write(report: &str) -> Result<PathBuf, String> {
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
