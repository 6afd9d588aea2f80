//! What a run does and how hard: the `BENCH_*` environment variables and the command line.

use std::fmt::Display;
use std::path::PathBuf;
use std::time::Duration;

const USAGE: &str = "usage: bench [--http2] [--no-outage | --outage-only] [--no-fleet | --fleet-only]   \
                     (settings: BENCH_REQUESTS, BENCH_WARMUP, BENCH_CONNECTIONS, BENCH_ROUNDS, \
                     BENCH_CONCURRENCY, BENCH_VARIANTS, BENCH_HTTP2, BENCH_OUTAGE, \
                     BENCH_QUICK, BENCH_OUTAGE_RATE, BENCH_OUTAGE_ROUNDS, BENCH_OUTAGE_PRE, \
                     BENCH_OUTAGE_SECS, BENCH_OUTAGE_POST, BENCH_PARTIAL_SECS, BENCH_FLAP_SECS, BENCH_MODULES, \
                     BENCH_FLEET, BENCH_FLEET_RATE, BENCH_FLEET_USERS, BENCH_FLEET_PRE, BENCH_FLEET_SLOW, \
                     BENCH_FLEET_FAIL, BENCH_FLEET_POST, BENCH_FLEET_NETNS, BENCH_FLEET_PROTECTIONS)";

/// Whether one part of the bench runs: with the others (the default), not at all, or alone.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    On,
    Off,
    Only,
}

impl Part {
    fn from_env(name: &str) -> Result<Part, String> {
        match std::env::var(name).unwrap_or_default().trim() {
            "" | "1" | "true" => Ok(Part::On),
            "0" | "false" | "skip" => Ok(Part::Off),
            "only" => Ok(Part::Only),
            other => Err(format!("{name}={other:?}: expected 1, 0 (or skip) or only")),
        }
    }
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
    outage_part: Part,
    fleet_part: Part,
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
    /// The fleet benchmark's load and timeline ([`crate::fleet`]).
    pub fleet: FleetSettings,
}

/// `BENCH_FLEET_*`: the fleet benchmark's load and timeline.
pub struct FleetSettings {
    /// Requests per second over the whole fleet (all callers together).
    pub rate: f64,
    /// Users per caller: keep-alive connections, each sending at its share of the rate.
    pub users: usize,
    /// Healthy time before the slowdown.
    pub pre: Duration,
    /// How long the service is ten times slower.
    pub slow: Duration,
    /// How long it then fails (503).
    pub fail: Duration,
    /// Healthy time after the failure, to see who recovers and when.
    pub post: Duration,
    /// Each sidecar in its own network namespace (`ip netns`); false: distinct loopback addresses.
    pub netns: bool,
    /// `BENCH_FLEET_PROTECTIONS`: the protections to run, by key; `None` is all of them.
    pub protections: Option<Vec<String>>,
}

impl Settings {
    pub fn load() -> Result<Settings, String> {
        let mut http2 = std::env::var("BENCH_HTTP2").is_ok_and(|v| v == "1" || v == "true");
        let mut outage_part = Part::from_env("BENCH_OUTAGE")?;
        let mut fleet_part = Part::from_env("BENCH_FLEET")?;
        for arg in std::env::args().skip(1) {
            match arg.as_str() {
                "--http2" => http2 = true,
                "--no-outage" => outage_part = Part::Off,
                "--outage-only" => outage_part = Part::Only,
                "--no-fleet" => fleet_part = Part::Off,
                "--fleet-only" => fleet_part = Part::Only,
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
        let variants = list("BENCH_VARIANTS");
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
            outage_part,
            fleet_part,
            quick,
            outage_rate: env_num("BENCH_OUTAGE_RATE", 200.0)?,
            outage_rounds: env_num("BENCH_OUTAGE_ROUNDS", if quick { 1 } else { 3 })?,
            outage_pre: secs("BENCH_OUTAGE_PRE", 10.0, 3.0)?,
            outage_time: secs("BENCH_OUTAGE_SECS", 4.0, 2.0)?,
            outage_post: secs("BENCH_OUTAGE_POST", 8.0, 7.0)?,
            partial_time: secs("BENCH_PARTIAL_SECS", 20.0, 5.0)?,
            flap_period: secs("BENCH_FLAP_SECS", 1.0, 0.5)?,
            fleet: FleetSettings {
                rate: env_num("BENCH_FLEET_RATE", 200.0)?,
                users: env_num("BENCH_FLEET_USERS", 16)?,
                pre: secs("BENCH_FLEET_PRE", 5.0, 3.0)?,
                slow: secs("BENCH_FLEET_SLOW", 10.0, 5.0)?,
                fail: secs("BENCH_FLEET_FAIL", 5.0, 3.0)?,
                post: secs("BENCH_FLEET_POST", 12.0, 8.0)?,
                netns: std::env::var("BENCH_FLEET_NETNS").map_or(true, |v| v.trim() != "0"),
                protections: list("BENCH_FLEET_PROTECTIONS"),
            },
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
        let f = &s.fleet;
        if f.rate.is_nan()
            || f.rate < 1.0
            || f.users == 0
            || f.slow < Duration::from_millis(100)
            || f.fail < Duration::from_millis(100)
        {
            return Err(
                "BENCH_FLEET_RATE and BENCH_FLEET_USERS must be at least 1, BENCH_FLEET_SLOW and \
                        BENCH_FLEET_FAIL at least 0.1"
                    .to_string(),
            );
        }
        Ok(s)
    }

    /// Whether some part runs alone (`only`): then only the parts set to `only` run.
    fn any_only(&self) -> bool {
        self.outage_part == Part::Only || self.fleet_part == Part::Only
    }

    pub fn cost(&self) -> bool {
        !self.any_only()
    }

    pub fn outage(&self) -> bool {
        self.runs(self.outage_part)
    }

    pub fn fleet(&self) -> bool {
        self.runs(self.fleet_part)
    }

    fn runs(&self, part: Part) -> bool {
        match part {
            Part::Only => true,
            Part::On => !self.any_only(),
            Part::Off => false,
        }
    }
}

/// A comma-separated list; `None` when unset or empty.
fn list(name: &str) -> Option<Vec<String>> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| {
            v.split(',')
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .collect()
        })
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
