//! The Markdown report: the header on the setup, the cost tables, the outage section, and where
//! the finished report goes.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e_harness::{wasm_runtime, workspace_root};

use crate::chart;
use crate::cost::{Batch, Variant};
use crate::envoy::Setup;
use crate::load::Proto;
use crate::outage::{self, Run, OUTAGE_CONNECTIONS};
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
    // Throughput against the router-only listener, round by round (the rounds interleave the
    // variants, so a round's ratio compares batches run moments apart).
    let rps_ratio = |i: usize| -> f64 {
        median(
            results[i]
                .iter()
                .zip(&results[0])
                .map(|(a, b)| a.rps() / b.rps())
                .collect(),
        )
    };
    let mut t = String::new();
    let _ = writeln!(t, "## {}, {} connections\n", proto.label(), s.connections);
    t.push_str(
        "| variant | Envoy CPU µs/req | per round | vs none | vs empty | req/s | req/s vs none | p50 ms | p99 ms | Envoy cores | bench cores |",
    );
    if split.is_some() {
        t.push_str(" connections per worker |");
    }
    t.push_str("\n|:--|--:|:--|--:|--:|--:|--:|--:|--:|--:|--:|");
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
            "| {} | {:.1} | {} | {} | {} | {:.0} | {:.2} | {:.3} | {:.3} | {:.2} | {:.2} |",
            v.name,
            med(Batch::cpu_us_per_request),
            rounds.join(" / "),
            vs_none,
            vs_empty,
            med(Batch::rps),
            rps_ratio(i),
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

/// Median of the rounds' values, and how many rounds had one.
fn median_of(xs: &[Option<f64>]) -> (Option<f64>, usize) {
    let some: Vec<f64> = xs
        .iter()
        .flatten()
        .copied()
        .filter(|x| !x.is_nan())
        .collect();
    let n = some.len();
    ((n > 0).then(|| median(some)), n)
}

/// A median of durations in ms, with the rounds that had none said.
fn ms_cell(xs: &[Option<f64>], none: &str) -> String {
    let rounds = xs.len();
    match median_of(xs) {
        (None, _) => none.to_string(),
        (Some(m), n) if n == rounds => ms(Duration::from_secs_f64(m / 1e3)),
        (Some(m), n) => format!(
            "{} ({n} of {rounds} rounds; else {none})",
            ms(Duration::from_secs_f64(m / 1e3))
        ),
    }
}

/// The outage section (also written to `bench/results/outage.md`, with a timeline chart per
/// scenario as `bench/results/outage-<scenario>.svg`). `rounds` holds one entry per scenario and
/// round, in order, each with a run per variant.
pub fn outage_section(
    s: &Settings,
    variants: &[outage::Variant],
    rounds: &[Vec<Run>],
) -> Result<String, String> {
    let dir = workspace_root().join("bench/results");
    fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut t = String::from("## What the protections buy in an outage\n\n");
    let _ = writeln!(
        t,
        "- One Envoy per scenario and round (`--concurrency {}`), a listener per variant, each with \
         its own cluster and its own port of the dependency; route timeout {} ms everywhere",
        s.concurrency,
        outage::ROUTE_TIMEOUT.as_millis()
    );
    let _ = writeln!(
        t,
        "- Load: {OUTAGE_CONNECTIONS} keep-alive HTTP/1.1 callers per variant, {:.0} requests/s per \
         variant, all variants at once (they see the same outage; the callers' start order rotates \
         each round); a caller still waiting sends its next request when the answer is in",
        s.outage_rate
    );
    let _ = writeln!(
        t,
        "- Timeline: healthy {:.1} s, failing {:.1} s (the partial failure {:.1} s), healthy {:.1} s; \
         {} round(s), medians shown{}",
        s.outage_pre.as_secs_f64(),
        s.outage_time.as_secs_f64(),
        s.partial_time.as_secs_f64(),
        s.outage_post.as_secs_f64(),
        s.outage_rounds,
        if s.quick { " (`BENCH_QUICK=1`)" } else { "" }
    );
    t.push_str("- Variants:\n");
    for v in variants {
        let _ = writeln!(t, "  - `{}`: {}", v.name(), v.what());
    }
    t.push_str(
        "- reached: requests that arrived at the dependency while it was failing, plus Envoy's failed \
         connection attempts (`upstream_cx_connect_fail`); p50 / p99 and useful: the answers to the \
         requests sent during the outage; useful: a 2xx (the dependency's, or the fallback's stale \
         copy); trip: from the start of the outage to the first request refused without asking the \
         dependency (breaker rejection, \"no healthy upstream\", admission control's 503, or a \
         fallback standing in for one); recover: from the dependency's recovery to the first request \
         after which every answer is the dependency's own 2xx\n\n",
    );
    let scenarios = outage::Scenario::ALL;
    let none_idx = variants.iter().position(|v| v.name() == "none");
    for sc in scenarios {
        let these: Vec<&Vec<Run>> = rounds
            .iter()
            .filter(|r| r.first().is_some_and(|x| x.scenario == sc))
            .collect();
        let Some(first) = these.first() else { continue };
        let svg_name = format!("outage-{}.svg", sc.key());
        let title = format!(
            "{} (round 1; healthy {}, failing {}, healthy {})",
            sc.label(s),
            chart::secs(s.outage_pre),
            chart::secs(sc.failing_time(s)),
            chart::secs(s.outage_post)
        );
        let svg = chart::timeline(s, &title, first);
        let path = dir.join(&svg_name);
        fs::write(&path, svg).map_err(|e| format!("writing {}: {e}", path.display()))?;
        let _ = writeln!(t, "### {}\n\n![timeline]({svg_name})\n", sc.label(s));
        t.push_str(
            "| variant | sent while failing | reached | vs none | p50 / p99 ms | useful | trip after ms | recovered after ms | refused answers |\n",
        );
        t.push_str("|:--|--:|--:|--:|--:|--:|--:|--:|--:|\n");
        let col = |i: usize, f: &dyn Fn(&Run) -> Option<f64>| -> Vec<Option<f64>> {
            these.iter().map(|r| r.get(i).and_then(f)).collect()
        };
        let none_reached = none_idx.map(|n| median_of(&col(n, &|r| Some(r.reached as f64))).0);
        for (i, v) in variants.iter().enumerate() {
            let sent = median_of(&col(i, &|r| Some(r.sent_while_failing(s) as f64))).0;
            let reached = median_of(&col(i, &|r| Some(r.reached as f64))).0;
            let p50 = col(i, &|r| {
                let l = r.outage_latencies(s);
                (!l.is_empty()).then(|| percentile(&l, 50.0).as_secs_f64() * 1e3)
            });
            let p99 = col(i, &|r| {
                let l = r.outage_latencies(s);
                (!l.is_empty()).then(|| percentile(&l, 99.0).as_secs_f64() * 1e3)
            });
            let useful = median_of(&col(i, &|r| Some(r.useful(s)))).0;
            let trip = col(i, &|r| r.time_to_trip(s).map(|d| d.as_secs_f64() * 1e3));
            let recover = col(i, &|r| r.time_to_recover(s).map(|d| d.as_secs_f64() * 1e3));
            let refused = median_of(&col(i, &|r| Some(r.rejections() as f64))).0;
            let ratio = match (reached, none_reached.flatten()) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.3}", a / b),
                _ => "—".to_string(),
            };
            let _ = writeln!(
                t,
                "| `{}` | {:.0} | {:.0} | {ratio} | {} / {} | {} | {} | {} | {:.0} |",
                v.name(),
                sent.unwrap_or(0.0),
                reached.unwrap_or(0.0),
                ms_cell(&p50, "—"),
                ms_cell(&p99, "—"),
                useful.map_or("—".to_string(), |u| format!("{:.1} %", 100.0 * u)),
                ms_cell(&trip, "never"),
                ms_cell(&recover, "not within the run"),
                refused.unwrap_or(0.0),
            );
        }
        t.push('\n');
    }
    t.push_str(&defaults_table(s, variants, rounds));
    let path = dir.join("outage.md");
    let mut file = String::from("# Outage benchmark (`make bench`, outage part)\n\n");
    let _ = writeln!(file, "- Machine: {}\n", cpu_model());
    file.push_str(&t);
    fs::write(&path, file).map_err(|e| format!("writing {}: {e}", path.display()))?;
    eprintln!(
        "bench: outage tables and charts written to {}",
        relative(&dir)
    );
    Ok(t)
}

/// The choice of defaults: each breaker configuration against a hard-down dependency and a 10 %
/// partial failure, with the expected time between false trips computed for steady 10 % errors.
fn defaults_table(s: &Settings, variants: &[outage::Variant], rounds: &[Vec<Run>]) -> String {
    use outage::Scenario;
    let mut t = String::from("### Choosing the breaker's defaults\n\n");
    t.push_str(
        "Hard down: the 503 scenario (requests that reached the dependency while it failed, median). \
         10 % errors: the partial scenario (rounds in which the breaker refused any request, refused \
         answers in total). Expected time between false trips at steady 10 % errors for a rule of k \
         failures in a row: a run starts at a call with probability 0.9 × 0.1^k, so at R requests/s \
         one comes every 1 / (R × 0.9 × 0.1^k) s, with k the run the breaker asks for at a 10 % \
         background error rate (`required_run` in filters/circuit-breaker/src/window.rs, at least \
         `consecutiveFailures`); a fixed k of 5, as before, would trip every 3 h / 19 min / 111 s.\n\n",
    );
    t.push_str(
        "| breaker | hard down: reached | trip after ms | 10 % errors: rounds tripped | refused | false trip every (10 / 100 / 1000 req/s) |\n",
    );
    t.push_str("|:--|--:|--:|--:|--:|--:|\n");
    let runs_of = |sc: Scenario, i: usize| -> Vec<&Run> {
        rounds
            .iter()
            .filter(|r| r.first().is_some_and(|x| x.scenario == sc))
            .filter_map(|r| r.get(i))
            .collect()
    };
    for (i, v) in variants.iter().enumerate() {
        if !v.is_breaker() || v.name() == "breaker+fallback" {
            continue;
        }
        let down = runs_of(Scenario::Errors, i);
        let partial = runs_of(Scenario::Partial, i);
        let reached = median_of(
            &down
                .iter()
                .map(|r| Some(r.reached as f64))
                .collect::<Vec<_>>(),
        )
        .0;
        let trip: Vec<Option<f64>> = down
            .iter()
            .map(|r| r.time_to_trip(s).map(|d| d.as_secs_f64() * 1e3))
            .collect();
        let tripped = partial.iter().filter(|r| r.rejections() > 0).count();
        let refused: usize = partial.iter().map(|r| r.rejections()).sum();
        let k = run_at_ten_percent(v);
        let every = match k {
            Some(k) if k > 0 => [10.0, 100.0, 1000.0]
                .iter()
                .map(|r| human_secs(1.0 / (r * 0.9 * 0.1f64.powi(k as i32))))
                .collect::<Vec<_>>()
                .join(" / "),
            _ => "no run rule: the rate rule needs 50 % of the window".to_string(),
        };
        let _ = writeln!(
            t,
            "| `{}` | {:.0} | {} | {tripped} of {} | {refused} | {every} |",
            v.name(),
            reached.unwrap_or(0.0),
            ms_cell(&trip, "never"),
            partial.len(),
        );
    }
    t.push('\n');
    t
}

/// The run of failures that opens a breaker variant at steady 10 % errors, by the filter's own
/// configuration defaults and rule (`window::required_run`): a full window in which a tenth of the
/// calls before the run failed. `Some(0)` when the run rule is off; `None` for other variants.
fn run_at_ten_percent(v: &outage::Variant) -> Option<u32> {
    use circuit_breaker::config::Config;
    use circuit_breaker::window::{required_run, Totals};
    let config = match v.kind {
        outage::Kind::Candidate(_, config) => config,
        outage::Kind::Breaker => "",
        _ => return None,
    };
    let parsed: Config = filter_common::config::parse(Some(config.as_bytes())).ok()?;
    let b = parsed.breakers.first()?;
    let k = b.consecutive_failures;
    if k == 0 {
        return Some(0);
    }
    let window = Totals {
        calls: 1000 + k,
        failures: 100 + k,
        slow: 0,
        consecutive_failures: k,
    };
    Some(required_run(&window, b))
}

fn human_secs(x: f64) -> String {
    if x < 120.0 {
        format!("{x:.0} s")
    } else if x < 7200.0 {
        format!("{:.0} min", x / 60.0)
    } else if x < 3.0 * 86400.0 {
        format!("{:.0} h", x / 3600.0)
    } else if x < 730.0 * 86400.0 {
        format!("{:.0} days", x / 86400.0)
    } else {
        format!("{:.0} years", x / (365.0 * 86400.0))
    }
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
    let mut h = String::from(match (variants.is_some(), s.outage(), s.fleet()) {
        (true, _, _) => "# Filter cost per request\n\n",
        (false, true, false) => "# Circuit breaker in an outage\n\n",
        (false, false, _) => "# A fleet when its dependency slows down, then fails\n\n",
        (false, true, true) => "# Circuit breaker in an outage, and a fleet under overload\n\n",
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

/// Writes the cost part of a run to `bench/results/cost.md` (the outage part writes its own files).
pub fn publish_cost(report: &str) -> Result<(), String> {
    let dir = workspace_root().join("bench/results");
    fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let path = dir.join("cost.md");
    fs::write(&path, report).map_err(|e| format!("writing {}: {e}", path.display()))?;
    eprintln!("bench: cost table written to {}", relative(&path));
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
