//! What a run does and how hard: the `BENCH_*` environment variables and the command line.

use std::fmt::Display;
use std::path::PathBuf;
use std::time::Duration;

const USAGE: &str = "usage: bench [--http2] [--no-outage | --outage-only]   (settings: \
                     BENCH_REQUESTS, BENCH_WARMUP, BENCH_CONNECTIONS, BENCH_ROUNDS, \
                     BENCH_CONCURRENCY, BENCH_VARIANTS, BENCH_HTTP2, BENCH_OUTAGE, \
                     BENCH_QUICK, BENCH_OUTAGE_RATE, BENCH_OUTAGE_ROUNDS, BENCH_OUTAGE_PRE, \
                     BENCH_OUTAGE_SECS, BENCH_OUTAGE_POST, BENCH_PARTIAL_SECS, BENCH_FLAP_SECS, BENCH_MODULES)";

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
    /// `BENCH_MODULES=label=path,...`: more cost-table variants, a module each with its defaults.
    pub modules: Vec<(String, PathBuf)>,
    pub http2: bool,
    parts: Parts,
    /// `BENCH_QUICK=1`: shorter outage timelines and one round (`make bench` in a hurry).
    pub quick: bool,
    /// Outage load: requests per second per variant, over its [`crate::outage::OUTAGE_CONNECTIONS`].
    pub outage_rate: f64,
    /// Rounds of every outage scenario; the tables show medians.
    pub outage_rounds: usize,
    /// Healthy time before the outage (it fills the breakers' windows with successes).
    pub outage_pre: Duration,
    /// How long the dependency fails.
    pub outage_time: Duration,
    /// Healthy time after the outage, to see who recovers and when.
    pub outage_post: Duration,
    /// How long the partial failure (10 % errors) lasts.
    pub partial_time: Duration,
    /// Half period of the flapping dependency: failing this long, then healthy this long.
    pub flap_period: Duration,
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
        let modules = std::env::var("BENCH_MODULES")
            .unwrap_or_default()
            .split(',')
            .filter(|item| !item.trim().is_empty())
            .map(|item| {
                item.split_once('=')
                    .map(|(label, path)| (label.trim().to_string(), PathBuf::from(path.trim())))
                    .ok_or_else(|| format!("BENCH_MODULES: {item:?} is not label=path"))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1" || v == "true");
        let secs = |name: &str, full: f64, fast: f64| -> Result<Duration, String> {
            Ok(Duration::from_secs_f64(env_num(
                name,
                if quick { fast } else { full },
            )?))
        };
        let s = Settings {
            requests: env_num("BENCH_REQUESTS", 20_000)?,
            warmup: env_num("BENCH_WARMUP", 1_000)?,
            connections: env_num("BENCH_CONNECTIONS", default_connections)?,
            rounds: env_num("BENCH_ROUNDS", 5)?,
            concurrency,
            variants,
            modules,
            http2,
            parts,
            quick,
            outage_rate: env_num("BENCH_OUTAGE_RATE", 200.0)?,
            outage_rounds: env_num("BENCH_OUTAGE_ROUNDS", if quick { 1 } else { 3 })?,
            outage_pre: secs("BENCH_OUTAGE_PRE", 10.0, 3.0)?,
            outage_time: secs("BENCH_OUTAGE_SECS", 4.0, 2.0)?,
            outage_post: secs("BENCH_OUTAGE_POST", 8.0, 7.0)?,
            partial_time: secs("BENCH_PARTIAL_SECS", 20.0, 5.0)?,
            flap_period: secs("BENCH_FLAP_SECS", 1.0, 0.5)?,
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
            || s.outage_rounds == 0
            || s.outage_time < Duration::from_millis(100)
            || s.partial_time < Duration::from_millis(100)
            || s.flap_period < Duration::from_millis(100)
        {
            return Err(
                "BENCH_OUTAGE_RATE and BENCH_OUTAGE_ROUNDS must be at least 1, BENCH_OUTAGE_SECS, \
                        BENCH_PARTIAL_SECS and BENCH_FLAP_SECS at least 0.1"
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
