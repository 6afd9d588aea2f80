//! The fleet section of the report, also written with its chart to `bench/results/fleet.md` and
//! `bench/results/fleet.svg`.

use std::fmt::Write as _;
use std::fs;

use e2e_harness::{wasm_runtime, workspace_root};

use super::protection::{ISTIO_RETRY_YAML, PER_CALLER_LIMIT};
use super::run::{Answer, FleetRun, Measured, Outcome};
use super::service::{HEALTHY_TIME, SLOWDOWN, WORKERS};
use super::{chart, Timeline, CALLERS, SIDECAR_WORKERS};

/// One cell per figure; `—` where there is nothing to show.
fn ms_pair(x: Option<(f64, f64)>) -> String {
    x.map_or("—".to_string(), |(a, b)| format!("{} / {}", ms(a), ms(b)))
}

fn ms(x: f64) -> String {
    if x < 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.0}")
    }
}

fn percent(x: f64) -> String {
    if x.is_nan() {
        "—".to_string()
    } else {
        format!("{:.0} %", 100.0 * x)
    }
}

fn row(t: &Timeline, name: &str, m: &Measured) -> String {
    let slow = (t.pre, t.pre + t.slow);
    let failing = (t.pre + t.slow, t.healed());
    let (bad, all) = m.errors();
    let refused = m.count(Answer::Refused);
    let recover = m
        .time_to_recover(t)
        .map_or("not within the run".to_string(), |d| {
            format!("{:.1} s", d.as_secs_f64())
        });
    format!(
        "| {name} | {} / {} | {} | {} | {} | {} | {bad} ({}; {refused} refused at once) | {} | {recover} |",
        m.slow.reached,
        m.failing.reached,
        m.slow.peak,
        ms_pair(m.p50_p99(slow.0, slow.1)),
        ms_pair(m.p50_p99(failing.0, failing.1)),
        percent(m.ok_share(slow.0, slow.1)),
        percent(if all == 0 { f64::NAN } else { bad as f64 / all as f64 }),
        m.refused_in(std::time::Duration::ZERO, t.pre),
    )
}

/// The section; writes `bench/results/fleet.md` and `fleet.svg`.
pub fn section(t: &Timeline, topology: &str, runs: &[FleetRun]) -> Result<String, String> {
    let dir = workspace_root().join("bench/results");
    fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut s = String::from("## A fleet when its dependency slows down, then fails\n\n");
    let _ = writeln!(
        s,
        "- {CALLERS} caller sidecars → one dependency sidecar → a service with {WORKERS} workers; every \
         sidecar a separate Envoy (`--concurrency {SIDECAR_WORKERS}`, Wasm runtime `{}`); {topology}",
        wasm_runtime()
    );
    let _ = writeln!(
        s,
        "- The service: {} ms per request on a worker when healthy ({:.0} requests/s at most), {}× \
         slower when slow ({:.0} requests/s at most, the rest queue first come, first served), 503 \
         at once when failing",
        HEALTHY_TIME.as_millis(),
        WORKERS as f64 / HEALTHY_TIME.as_secs_f64(),
        SLOWDOWN,
        WORKERS as f64 / (HEALTHY_TIME * SLOWDOWN).as_secs_f64(),
    );
    let _ = writeln!(
        s,
        "- Load: {:.0} requests/s over the fleet, from {} users per caller ({} keep-alive HTTP/1.1 \
         connections in all), each at a fixed pace, the next request at once when an answer comes \
         late",
        t.rate,
        t.users,
        t.users * CALLERS
    );
    let _ = writeln!(
        s,
        "- Timeline: healthy {:.0} s, slow {:.0} s, failing {:.0} s, healthy {:.0} s{}; one fresh \
         fleet per protection, one after the other",
        t.pre.as_secs_f64(),
        t.slow.as_secs_f64(),
        t.fail.as_secs_f64(),
        t.post.as_secs_f64(),
        if t.quick { " (`BENCH_QUICK=1`)" } else { "" }
    );
    let _ = writeln!(
        s,
        "- Every sidecar as Istio renders a mesh with no DestinationRule or VirtualService: outbound \
         routes retry twice on 503 and connection failures (`{}`), no route timeout, circuit-breaker \
         thresholds at 2^32-1. Limits: {PER_CALLER_LIMIT} per caller (the service's {WORKERS} workers \
         shared by {CALLERS} callers), {WORKERS} on the dependency sidecar's inbound listener",
        ISTIO_RETRY_YAML
            .lines()
            .find_map(|l| l.trim().strip_prefix("retry_on: "))
            .unwrap_or("?")
    );
    s.push_str("- Protections:\n");
    for r in runs {
        let _ = writeln!(s, "  - `{}`: {}", r.protection.name(), r.protection.what());
    }
    let _ = writeln!(
        s,
        "- reached: requests that arrived at the service while it was slow / failing (retries \
         included); peak held: most requests the service held at once while slow (queued or served; \
         its workers serve {WORKERS}); p50 / p99: latency the users saw for requests sent while the service \
         was slow / failing; 2xx while slow: share of the users' requests sent while it was slow \
         that got the service's answer; errors: every answer that was not the service's 2xx, over \
         the whole run, of which refused at once by a sidecar (breaker, overflow, concurrency \
         limit, shedding); refused before the slowdown: refusals of requests sent while all was well \
         (a limit too tight for the healthy service's jitter); recover: from the service's recovery \
         to the first request after which every answer was its 2xx (one stray refusal later counts)\n"
    );
    s.push_str("![fleet timeline](fleet.svg)\n\n");
    s.push_str(
        "| protection | reached: slow / failing | peak held | p50 / p99 ms while slow | p50 / p99 ms while failing | 2xx while slow | errors seen by users | refused before the slowdown | recovered after |\n",
    );
    s.push_str("|:--|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    let mut notes = String::new();
    for r in runs {
        let name = format!("`{}`", r.protection.name());
        match &r.result {
            Outcome::Measured(m) => s.push_str(&row(t, &name, m)),
            Outcome::Unavailable(why) => {
                let _ = write!(s, "| {name} | not available in this build | | | | | | | |");
                let _ = writeln!(notes, "- `{}`: {why}", r.protection.name());
            }
            Outcome::Failed(e) => {
                let _ = write!(s, "| {name} | run failed | | | | | | | |");
                let _ = writeln!(notes, "- `{}`: {e}", r.protection.name());
            }
        }
        s.push('\n');
    }
    if !notes.is_empty() {
        s.push_str("\nNot measured:\n\n");
        s.push_str(&notes);
    }
    s.push('\n');
    let svg = chart::timeline(t, runs);
    let path = dir.join("fleet.svg");
    fs::write(&path, svg).map_err(|e| format!("writing {}: {e}", path.display()))?;
    let path = dir.join("fleet.md");
    let file = format!("# Fleet benchmark (`make bench`, fleet part)\n\n{s}");
    fs::write(&path, file).map_err(|e| format!("writing {}: {e}", path.display()))?;
    eprintln!("bench: fleet table and chart written to bench/results/fleet.md, fleet.svg");
    Ok(s)
}
