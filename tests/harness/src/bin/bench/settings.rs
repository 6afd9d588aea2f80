//! What a run does and how hard: the `BENCH_*` environment variables and the command line.

use std::fmt::Display;
use std::time::Duration;

const USAGE: &str = "usage: bench [--http2] [--no-outage | --outage-only]   (settings: \
                     BENCH_REQUESTS, BENCH_WARMUP, BENCH_CONNECTIONS, BENCH_ROUNDS, \
                     BENCH_CONCURRENCY, BENCH_VARIANTS, BENCH_HTTP2, BENCH_OUTAGE, \
                     BENCH_OUTAGE_RATE, BENCH_OUTAGE_SECS, BENCH_SLOW_SECS)";

/// Which parts of the bench run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Parts {
    /// The cost table, then the outage scenarios (the default).
    All,
    CostOnly,
    OutageOnly,
}

pub struct Settings {
    pub requests: u64,
    pub warmup: u64,
    pub connections: usize,
    pub rounds: usize,
    pub concurrency: u32,
    /// Cost-table variants besides `none` and `empty`; `None` is all of them.
    pub variants: Option<Vec<String>>,
    pub http2: bool,
    parts: Parts,
    /// Outage load: requests per second over all [`crate::outage::OUTAGE_CONNECTIONS`].
    pub outage_rate: f64,
    /// Load time per listener, 503 and connection-refused scenarios.
    pub outage_time: Duration,
    /// Load time per listener, slow outage.
    pub slow_time: Duration,
}

impl Settings {
    pub fn load() -> Result<Settings, String> {
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

    pub fn cost(&self) -> bool {
        self.parts != Parts::OutageOnly
    }

    pub fn outage(&self) -> bool {
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
