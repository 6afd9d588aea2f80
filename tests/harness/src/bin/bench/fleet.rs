//! The fleet benchmark: what each protection does for a fleet of callers when the service they all
//! depend on slows down tenfold, then fails (issue 20).
//!
//! [`CALLERS`] caller sidecars (separate Envoy processes, each in its own network namespace, see
//! [`topology`]) → one dependency sidecar (Envoy) → the struggling [`service`], which has a fixed
//! number of workers: slowed down, it serves a tenth of the requests per second and the rest queue
//! up. Users (keep-alive connections from the bench process, a fixed share of the fleet's rate each,
//! the next request as soon as the answer is in when they fall behind) call every caller sidecar at
//! once. Each protection gets a fresh fleet, one after the other, on the same timeline: healthy,
//! slow, failing, healthy. The report shows per protection the requests that reached the struggling
//! service, the users' latency, the errors they saw and the time to recover, with a timeline chart
//! (`bench/results/fleet.md`, `bench/results/fleet.svg`).
//!
//! A protection whose breaker configuration this build's module refuses (a field it does not know
//! yet) is reported as not available instead of failing the run.

mod chart;
mod protection;
mod report;
mod run;
mod service;
mod topology;

use std::time::Duration;

use crate::envoy::{self, Setup};
use crate::settings::Settings;

use protection::Protection;
use run::{FleetRun, Outcome};
use topology::Topology;

/// Caller sidecars.
pub const CALLERS: usize = 8;
/// Workers of every sidecar: more than one, so that limits are shown to hold across workers.
pub const SIDECAR_WORKERS: u32 = 2;
/// Width of the timeline buckets of the chart.
pub const BUCKET: Duration = Duration::from_millis(500);

/// The fleet's load and the service's timeline, from the settings.
pub struct Timeline {
    pub rate: f64,
    pub users: usize,
    pub pre: Duration,
    pub slow: Duration,
    pub fail: Duration,
    pub post: Duration,
    pub quick: bool,
}

impl Timeline {
    fn new(s: &Settings) -> Timeline {
        let f = &s.fleet;
        Timeline {
            rate: f.rate,
            users: f.users,
            pre: f.pre,
            slow: f.slow,
            fail: f.fail,
            post: f.post,
            quick: s.quick,
        }
    }

    /// When the service is healthy again, from the start of the load.
    pub fn healed(&self) -> Duration {
        self.pre + self.slow + self.fail
    }

    pub fn total(&self) -> Duration {
        self.healed() + self.post
    }
}

/// Every protection, one after the other; returns the report section and a sidecar's setup.
pub async fn run(s: &Settings, errors: &mut Vec<String>) -> Result<(String, Setup), String> {
    envoy::require(
        &envoy::module("circuit_breaker.wasm"),
        " (or BENCH_FLEET=0)",
    )?;
    let t = Timeline::new(s);
    let protections = selected(s.fleet.protections.as_deref())?;
    let topology = Topology::create(CALLERS, s.fleet.netns);
    eprintln!("bench: fleet: {}", topology.description);
    let mut runs = Vec::new();
    for p in protections {
        let result = match p.availability() {
            Err(why) => {
                eprintln!(
                    "bench: fleet {:<32} not available in this build: {why}",
                    p.name()
                );
                Outcome::Unavailable(why)
            }
            Ok(()) => match run::run(&t, &topology, p).await {
                Ok(m) => {
                    errors.extend(m.problems(p));
                    let (bad, all) = m.errors();
                    eprintln!(
                        "bench: fleet {:<32} {:>6} sent {:>5} reached while slow {:>5} while failing, \
                         peak {:>3} held, {bad} errors of {all}",
                        p.name(),
                        m.samples.len(),
                        m.slow.reached,
                        m.failing.reached,
                        m.slow.peak
                    );
                    Outcome::Measured(m)
                }
                Err(e) => {
                    eprintln!("bench: fleet {}: {e}", p.name());
                    errors.push(format!("fleet {}: {e}", p.name()));
                    Outcome::Failed(e)
                }
            },
        };
        runs.push(FleetRun {
            protection: p,
            result,
        });
    }
    let setup = version_setup().await?;
    let section = report::section(&t, &topology.description, &runs)?;
    drop(topology);
    Ok((section, setup))
}

/// The protections `BENCH_FLEET_PROTECTIONS` names, in the usual order; all when unset.
fn selected(keys: Option<&[String]>) -> Result<Vec<Protection>, String> {
    let Some(keys) = keys else {
        return Ok(Protection::ALL.to_vec());
    };
    if let Some(unknown) = keys
        .iter()
        .find(|k| !Protection::ALL.iter().any(|p| p.key() == k.as_str()))
    {
        let known: Vec<&str> = Protection::ALL.iter().map(|p| p.key()).collect();
        return Err(format!(
            "BENCH_FLEET_PROTECTIONS: unknown {unknown:?}; known: {}",
            known.join(", ")
        ));
    }
    Ok(Protection::ALL
        .into_iter()
        .filter(|p| keys.iter().any(|k| k == p.key()))
        .collect())
}

/// The Envoy version and CPU clock for the report's header, from a bare Envoy on loopback (the
/// fleet's own are gone by now).
async fn version_setup() -> Result<Setup, String> {
    let (envoy, setup) = envoy::start(e2e_harness::EnvoyConfig::new().concurrency(1)).await?;
    drop(envoy);
    Ok(setup)
}
