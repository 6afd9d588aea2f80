//! The breaker's state machine, shared by every worker through one small shared-data record per breaker
//! key. Each function takes the record as read and returns the record to write (with compare-and-swap),
//! or `None` when nothing changes. The closed state writes only to mark its slot in use, once in a
//! while, so healthy traffic nearly only reads.

use crate::config::BreakerConfig;

/// How often an owner's admitted calls mark its slot in use: a quarter of the window, so that healthy
/// traffic writes the record at most four times a window (per sidecar: the mark is shared).
pub fn touch_interval_ns(cfg: &BreakerConfig) -> u64 {
    (cfg.window.duration.as_nanos_u64() / 4).max(1)
}

/// How long a closed slot must go unused before another key may take it: a full window after the
/// owner's last admitted call (its mark may lag by up to one touch interval). A count window has no
/// duration of its own: `window.duration` is used for it too.
pub fn idle_after_ns(cfg: &BreakerConfig) -> u64 {
    cfg.window
        .duration
        .as_nanos_u64()
        .saturating_add(touch_interval_ns(cfg))
}

/// Outcome of a CAS write loop.
pub enum Cas<T> {
    /// `change` returned this value and its record (if any) was written: (value, before, after).
    Written(T, Record, Option<Record>),
    /// Every attempt lost the race; the value computed from the last record read.
    Exhausted(T),
    /// Shared data failed.
    Failed,
    /// The record does not exist: nothing was read or written.
    Missing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

/// A state has two public spellings, both kept because users depend on them: metric labels use
/// Prometheus' underscore (`circuit_breaker_transitions{state="half_open"}`), the rejection header the
/// prose form (`x-circuit-breaker: <breaker>; state=half-open`). Both are written here only.
impl State {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }

    /// The value of `state=` in the status header.
    pub fn header_label(self) -> &'static str {
        match self {
            State::HalfOpen => "half-open",
            other => other.label(),
        }
    }
}

/// The shared record of one breaker key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub state: State,
    /// Bumped on every transition: calls remember the generation they were admitted in.
    pub gen: u32,
    /// Trips since the last close (drives the exponential open time).
    pub trips: u32,
    /// Open: when probing may start. Half-open: when unfinished probes give up.
    pub until_ns: u64,
    pub probes_admitted: u32,
    pub probes_succeeded: u32,
    /// Fingerprint of the key that owns this slot ([`crate::slots::fingerprint`]); 0: no key.
    pub owner: u64,
    /// When the owner last used the slot: refreshed by an admitted call at most every
    /// [`touch_interval_ns`], and by every transition. Frees an idle closed slot.
    pub used_ns: u64,
}

impl Default for Record {
    fn default() -> Self {
        Record {
            state: State::Closed,
            gen: 1,
            trips: 0,
            until_ns: 0,
            probes_admitted: 0,
            probes_succeeded: 0,
            owner: 0,
            used_ns: 0,
        }
    }
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Forward and record the outcome in the window of generation `gen`.
    Admit { gen: u32 },
    /// Forward as a half-open probe of generation `gen`.
    Probe { gen: u32 },
    /// Answer at once; `retry_at_ns` is when a retry may be admitted.
    Reject { state: State, retry_at_ns: u64 },
}

/// The next step for a request: a decision, and the record to write first (when the decision depends on
/// winning a state change or a probe permit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub decision: Decision,
    pub write: Option<Record>,
}

/// How long the breaker stays open after trip number `trips` (1 for the first): exponential, capped, with
/// `jitter_unit` in [-1, 1] scaled by `openJitter`.
pub fn open_duration_ns(cfg: &BreakerConfig, trips: u32, jitter_unit: f64) -> u64 {
    let base = cfg.open_duration.0.as_secs_f64();
    let exponent = i32::try_from(trips.saturating_sub(1))
        .unwrap_or(i32::MAX)
        .min(64);
    let grown = base * cfg.open_duration_multiplier.powi(exponent);
    let jittered = grown * (1.0 + cfg.open_jitter * jitter_unit.clamp(-1.0, 1.0));
    // Capped after the jitter, so maxOpenDuration is a true maximum.
    (jittered.min(cfg.max_open_duration.0.as_secs_f64()).max(0.0) * 1e9) as u64
}

/// The record's deadline as seen from `now_ns`. A deadline further away than the state can ever set
/// means the wall clock stepped back (NTP): treat it as reached rather than stay open for the step.
fn deadline_passed(rec: &Record, now_ns: u64, cfg: &BreakerConfig) -> bool {
    let longest = match rec.state {
        State::Open => cfg.max_open_duration.as_nanos_u64(),
        State::HalfOpen => cfg.max_half_open_duration.as_nanos_u64(),
        State::Closed => return true,
    };
    now_ns >= rec.until_ns || rec.until_ns - now_ns > longest
}

/// The generation after `gen`. Never 0: generation 0 marks calls that decide nothing.
fn next_gen(gen: u32) -> u32 {
    gen.wrapping_add(1).max(1)
}

fn opened(rec: &Record, now_ns: u64, cfg: &BreakerConfig, jitter_unit: f64) -> Record {
    let trips = rec.trips.saturating_add(1);
    Record {
        state: State::Open,
        gen: next_gen(rec.gen),
        trips,
        until_ns: now_ns.saturating_add(open_duration_ns(cfg, trips, jitter_unit)),
        probes_admitted: 0,
        probes_succeeded: 0,
        used_ns: now_ns,
        ..*rec
    }
}

/// Admission of a new request.
pub fn on_request(rec: &Record, now_ns: u64, cfg: &BreakerConfig, jitter_unit: f64) -> Step {
    match rec.state {
        // Healthy traffic only reads, but for marking the slot in use every so often.
        State::Closed => Step {
            decision: Decision::Admit { gen: rec.gen },
            write: (now_ns.abs_diff(rec.used_ns) >= touch_interval_ns(cfg)).then_some(Record {
                used_ns: now_ns,
                ..*rec
            }),
        },
        State::Open if !deadline_passed(rec, now_ns, cfg) => Step {
            decision: Decision::Reject {
                state: State::Open,
                retry_at_ns: rec.until_ns,
            },
            write: None,
        },
        State::Open => {
            let half_open = Record {
                state: State::HalfOpen,
                gen: next_gen(rec.gen),
                until_ns: now_ns.saturating_add(cfg.max_half_open_duration.as_nanos_u64()),
                probes_admitted: 1,
                probes_succeeded: 0,
                used_ns: now_ns,
                ..*rec
            };
            Step {
                decision: Decision::Probe { gen: half_open.gen },
                write: Some(half_open),
            }
        }
        State::HalfOpen if deadline_passed(rec, now_ns, cfg) => {
            // The probes did not finish in time: back to open, for longer.
            let open = opened(rec, now_ns, cfg, jitter_unit);
            Step {
                decision: Decision::Reject {
                    state: State::Open,
                    retry_at_ns: open.until_ns,
                },
                write: Some(open),
            }
        }
        State::HalfOpen if rec.probes_admitted < cfg.half_open_probes => Step {
            decision: Decision::Probe { gen: rec.gen },
            write: Some(Record {
                probes_admitted: rec.probes_admitted + 1,
                ..*rec
            }),
        },
        State::HalfOpen => Step {
            // Every permit is taken; the probes usually decide within a second.
            decision: Decision::Reject {
                state: State::HalfOpen,
                retry_at_ns: now_ns.saturating_add(1_000_000_000),
            },
            write: None,
        },
    }
}

/// A probe of generation `gen` finished. Stale probes (the breaker moved on) change nothing.
pub fn on_probe_result(
    rec: &Record,
    gen: u32,
    outcome: ProbeOutcome,
    now_ns: u64,
    cfg: &BreakerConfig,
    jitter_unit: f64,
) -> Option<Record> {
    if rec.state != State::HalfOpen || rec.gen != gen {
        return None;
    }
    // Saturating: the count comes from shared data, where any value may be found (found by fuzzing).
    let succeeded = rec.probes_succeeded.saturating_add(1);
    Some(match outcome {
        ProbeOutcome::Failure => opened(rec, now_ns, cfg, jitter_unit),
        ProbeOutcome::Success if succeeded >= cfg.half_open_probes => Record {
            state: State::Closed,
            gen: next_gen(rec.gen),
            trips: 0,
            until_ns: 0,
            probes_admitted: 0,
            probes_succeeded: 0,
            used_ns: now_ns,
            ..*rec
        },
        ProbeOutcome::Success => Record {
            probes_succeeded: succeeded,
            ..*rec
        },
        // An ignored outcome says nothing about the dependency: give the permit back.
        ProbeOutcome::Ignored => Record {
            probes_admitted: rec.probes_admitted.saturating_sub(1),
            ..*rec
        },
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    Success,
    Failure,
    Ignored,
}

/// The window of generation `gen` says trip. Only a closed breaker of that generation opens.
pub fn on_trip(
    rec: &Record,
    gen: u32,
    now_ns: u64,
    cfg: &BreakerConfig,
    jitter_unit: f64,
) -> Option<Record> {
    (rec.state == State::Closed && rec.gen == gen).then(|| opened(rec, now_ns, cfg, jitter_unit))
}

/// The slot is free for another key: no key owns it, or its owner's breaker is closed and was not
/// used for a full window (so its window is empty too).
pub fn is_free(rec: &Record, now_ns: u64, cfg: &BreakerConfig) -> bool {
    rec.owner == 0
        || (rec.state == State::Closed && now_ns.saturating_sub(rec.used_ns) >= idle_after_ns(cfg))
}

/// `rec`'s slot taken by the key `owner`: a new closed breaker, in a new generation, so every window
/// stripe of the slot starts empty and calls of the previous owner still in flight count nowhere.
pub fn claimed(rec: &Record, owner: u64, now_ns: u64) -> Record {
    Record {
        state: State::Closed,
        gen: next_gen(rec.gen),
        trips: 0,
        until_ns: 0,
        probes_admitted: 0,
        probes_succeeded: 0,
        owner,
        used_ns: now_ns,
    }
}

/// Records written before slots had owners (no owner, no use time): read as free slots.
const LEGACY_RECORD_LEN: usize = 25;
/// Bytes of one record in shared data.
pub const RECORD_LEN: usize = LEGACY_RECORD_LEN + 16;

impl Record {
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut out = [0u8; RECORD_LEN];
        let state = match self.state {
            State::Closed => 0u8,
            State::Open => 1,
            State::HalfOpen => 2,
        };
        let parts: [&[u8]; 8] = [
            &[state],
            &self.gen.to_le_bytes(),
            &self.trips.to_le_bytes(),
            &self.until_ns.to_le_bytes(),
            &self.probes_admitted.to_le_bytes(),
            &self.probes_succeeded.to_le_bytes(),
            &self.owner.to_le_bytes(),
            &self.used_ns.to_le_bytes(),
        ];
        for (dst, src) in out.iter_mut().zip(parts.iter().flat_map(|p| p.iter())) {
            *dst = *src;
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Record> {
        if bytes.len() != RECORD_LEN && bytes.len() != LEGACY_RECORD_LEN {
            return None;
        }
        let (state, rest) = bytes.split_first()?;
        let (gen, rest) = rest.split_first_chunk::<4>()?;
        let (trips, rest) = rest.split_first_chunk::<4>()?;
        let (until, rest) = rest.split_first_chunk::<8>()?;
        let (admitted, rest) = rest.split_first_chunk::<4>()?;
        let (succeeded, rest) = rest.split_first_chunk::<4>()?;
        // A legacy record has neither: no owner, so its slot is free.
        let (owner, rest) = rest.split_first_chunk::<8>().unwrap_or((&[0; 8], rest));
        let (used, _) = rest.split_first_chunk::<8>().unwrap_or((&[0; 8], rest));
        Some(Record {
            state: match state {
                0 => State::Closed,
                1 => State::Open,
                2 => State::HalfOpen,
                _ => return None,
            },
            gen: u32::from_le_bytes(*gen),
            trips: u32::from_le_bytes(*trips),
            until_ns: u64::from_le_bytes(*until),
            probes_admitted: u32::from_le_bytes(*admitted),
            probes_succeeded: u32::from_le_bytes(*succeeded),
            owner: u64::from_le_bytes(*owner),
            used_ns: u64::from_le_bytes(*used),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use filter_common::config::parse;

    const MS: u64 = 1_000_000;
    const SEC: u64 = 1_000 * MS;

    fn cfg(json: &str) -> BreakerConfig {
        let c: crate::config::Config =
            parse(Some(format!(r#"{{"breakers": [{json}]}}"#).as_bytes())).unwrap();
        c.breakers[0].clone()
    }

    #[test]
    fn states_have_a_metric_label_and_a_header_spelling() {
        // Prometheus labels use underscores; the `x-circuit-breaker` header the prose form.
        assert_eq!(State::Closed.label(), "closed");
        assert_eq!(State::Open.label(), "open");
        assert_eq!(State::HalfOpen.label(), "half_open");
        assert_eq!(State::Closed.header_label(), "closed");
        assert_eq!(State::Open.header_label(), "open");
        assert_eq!(State::HalfOpen.header_label(), "half-open");
    }

    #[test]
    fn closed_admits_without_writing() {
        let c = cfg("{}");
        let step = on_request(&Record::default(), 0, &c, 0.0);
        assert_eq!(
            step,
            Step {
                decision: Decision::Admit { gen: 1 },
                write: None
            }
        );
    }

    #[test]
    fn full_cycle_closed_open_half_open_closed() {
        let c = cfg(r#"{"openDuration": "5s", "openJitter": 0, "halfOpenProbes": 2}"#);
        let closed = Record::default();
        let open = on_trip(&closed, 1, 100 * SEC, &c, 0.0).unwrap();
        assert_eq!(
            (open.state, open.gen, open.trips, open.until_ns),
            (State::Open, 2, 1, 105 * SEC)
        );
        assert_eq!(
            on_trip(&open, 1, 100 * SEC, &c, 0.0),
            None,
            "a stale trip changes nothing"
        );

        let step = on_request(&open, 104 * SEC, &c, 0.0);
        assert_eq!(
            step.decision,
            Decision::Reject {
                state: State::Open,
                retry_at_ns: 105 * SEC
            }
        );
        assert_eq!(step.write, None);

        let step = on_request(&open, 105 * SEC, &c, 0.0);
        let half = step.write.unwrap();
        assert_eq!(step.decision, Decision::Probe { gen: 3 });
        assert_eq!((half.state, half.probes_admitted), (State::HalfOpen, 1));

        let step = on_request(&half, 105 * SEC, &c, 0.0);
        assert_eq!(step.decision, Decision::Probe { gen: 3 });
        let half = step.write.unwrap();
        let step = on_request(&half, 105 * SEC, &c, 0.0);
        assert!(
            matches!(
                step.decision,
                Decision::Reject {
                    state: State::HalfOpen,
                    ..
                }
            ),
            "only 2 probes"
        );

        let half = on_probe_result(&half, 3, ProbeOutcome::Success, 106 * SEC, &c, 0.0).unwrap();
        assert_eq!(half.state, State::HalfOpen);
        let closed = on_probe_result(&half, 3, ProbeOutcome::Success, 106 * SEC, &c, 0.0).unwrap();
        assert_eq!(
            (closed.state, closed.gen, closed.trips),
            (State::Closed, 4, 0)
        );
    }

    /// A half-open record as found in shared data, with every field set.
    fn half_open(gen: u32, admitted: u32, succeeded: u32) -> Record {
        Record {
            state: State::HalfOpen,
            gen,
            trips: 3,
            until_ns: 130 * SEC,
            probes_admitted: admitted,
            probes_succeeded: succeeded,
            owner: 42,
            used_ns: 90 * SEC,
        }
    }

    #[test]
    fn every_transition_writes_the_whole_record() {
        let c = cfg(
            r#"{"openDuration": "5s", "openDurationMultiplier": 2, "maxOpenDuration": "60s",
                "openJitter": 0, "halfOpenProbes": 3, "maxHalfOpenDuration": "30s"}"#,
        );
        let now = 100 * SEC;
        // The last probe's success closes: a new generation, and the trip count (the next open time),
        // the deadline and both probe counts start again from nothing; the slot stays the key's.
        assert_eq!(
            on_probe_result(&half_open(5, 3, 2), 5, ProbeOutcome::Success, now, &c, 0.0),
            Some(Record {
                state: State::Closed,
                gen: 6,
                trips: 0,
                until_ns: 0,
                probes_admitted: 0,
                probes_succeeded: 0,
                owner: 42,
                used_ns: now,
            })
        );
        // An earlier probe's success only counts.
        assert_eq!(
            on_probe_result(&half_open(5, 3, 0), 5, ProbeOutcome::Success, now, &c, 0.0),
            Some(half_open(5, 3, 1))
        );
        // An ignored probe gives its permit back and changes nothing else.
        assert_eq!(
            on_probe_result(&half_open(5, 3, 1), 5, ProbeOutcome::Ignored, now, &c, 0.0),
            Some(half_open(5, 2, 1))
        );
        // A failed probe opens for the fourth time (5s * 2^3) with no probe left over.
        assert_eq!(
            on_probe_result(&half_open(5, 3, 2), 5, ProbeOutcome::Failure, now, &c, 0.0),
            Some(Record {
                state: State::Open,
                gen: 6,
                trips: 4,
                until_ns: now + 40 * SEC,
                probes_admitted: 0,
                probes_succeeded: 0,
                owner: 42,
                used_ns: now,
            })
        );
        // Half-open after the open time, whatever counts the open record held: this request is the
        // first probe, and the probes have maxHalfOpenDuration to finish.
        let open = Record {
            state: State::Open,
            until_ns: now,
            probes_admitted: 7,
            probes_succeeded: 7,
            ..half_open(6, 0, 0)
        };
        assert_eq!(
            on_request(&open, now, &c, 0.0),
            Step {
                decision: Decision::Probe { gen: 7 },
                write: Some(Record {
                    state: State::HalfOpen,
                    gen: 7,
                    trips: 3,
                    until_ns: now + 30 * SEC,
                    probes_admitted: 1,
                    probes_succeeded: 0,
                    owner: 42,
                    used_ns: now,
                })
            }
        );
    }

    #[test]
    fn half_open_admits_exactly_the_configured_probes() {
        let c = cfg(r#"{"halfOpenProbes": 3, "maxHalfOpenDuration": "30s"}"#);
        let now = 110 * SEC;
        for admitted in 0..3 {
            assert_eq!(
                on_request(&half_open(5, admitted, 0), now, &c, 0.0),
                Step {
                    decision: Decision::Probe { gen: 5 },
                    write: Some(half_open(5, admitted + 1, 0))
                },
                "{admitted} admitted"
            );
        }
        // Every permit taken: rejected for a second, nothing written.
        assert_eq!(
            on_request(&half_open(5, 3, 0), now, &c, 0.0),
            Step {
                decision: Decision::Reject {
                    state: State::HalfOpen,
                    retry_at_ns: now + SEC
                },
                write: None
            }
        );
    }

    #[test]
    fn only_a_closed_breaker_of_the_window_s_generation_trips() {
        let c = cfg(r#"{"openDuration": "5s", "openJitter": 0}"#);
        let now = 100 * SEC;
        let closed = Record {
            gen: 4,
            owner: 42,
            used_ns: 90 * SEC,
            ..Record::default()
        };
        assert_eq!(
            on_trip(&closed, 4, now, &c, 0.0),
            Some(Record {
                state: State::Open,
                gen: 5,
                trips: 1,
                until_ns: now + 5 * SEC,
                probes_admitted: 0,
                probes_succeeded: 0,
                owner: 42,
                used_ns: now,
            })
        );
        // A window of an earlier (or later) generation: the breaker already moved on.
        assert_eq!(on_trip(&closed, 3, now, &c, 0.0), None);
        assert_eq!(on_trip(&closed, 5, now, &c, 0.0), None);
        // Open and half-open breakers of that generation are not closed ones: no second trip.
        for state in [State::Open, State::HalfOpen] {
            let rec = Record { state, ..closed };
            assert_eq!(on_trip(&rec, 4, now, &c, 0.0), None, "{state:?}");
        }
        // Stale probe results change nothing either.
        assert_eq!(
            on_probe_result(&half_open(5, 1, 0), 4, ProbeOutcome::Failure, now, &c, 0.0),
            None
        );
        assert_eq!(
            on_probe_result(&closed, 4, ProbeOutcome::Failure, now, &c, 0.0),
            None
        );
    }

    #[test]
    fn deadlines_are_reached_at_their_instant() {
        let c = cfg(
            r#"{"openDuration": "10s", "maxOpenDuration": "10s", "openJitter": 0,
                "maxHalfOpenDuration": "30s", "halfOpenProbes": 1}"#,
        );
        let open = on_trip(&Record::default(), 1, 100 * SEC, &c, 0.0).unwrap();
        assert_eq!(open.until_ns, 110 * SEC);
        // Just opened, deadline exactly maxOpenDuration away: that is no clock step, it holds.
        assert!(matches!(
            on_request(&open, 100 * SEC, &c, 0.0).decision,
            Decision::Reject { .. }
        ));
        assert!(matches!(
            on_request(&open, 110 * SEC - 1, &c, 0.0).decision,
            Decision::Reject { .. }
        ));
        assert!(matches!(
            on_request(&open, 110 * SEC, &c, 0.0).decision,
            Decision::Probe { .. }
        ));
        // A deadline further than maxOpenDuration: the clock stepped back.
        assert!(matches!(
            on_request(&open, 100 * SEC - 1, &c, 0.0).decision,
            Decision::Probe { .. }
        ));
        // Half-open until its deadline (the one permit is taken), open again at it.
        let half = on_request(&open, 110 * SEC, &c, 0.0).write.unwrap();
        assert_eq!(half.until_ns, 140 * SEC);
        assert!(matches!(
            on_request(&half, 140 * SEC - 1, &c, 0.0).decision,
            Decision::Reject {
                state: State::HalfOpen,
                ..
            }
        ));
        let step = on_request(&half, 140 * SEC, &c, 0.0);
        let reopened = step.write.unwrap();
        assert_eq!((reopened.state, reopened.trips), (State::Open, 2));
        assert_eq!(
            step.decision,
            Decision::Reject {
                state: State::Open,
                retry_at_ns: reopened.until_ns
            }
        );
    }

    #[test]
    fn a_failed_probe_reopens_for_longer() {
        let c = cfg(
            r#"{"openDuration": "1s", "openDurationMultiplier": 2, "maxOpenDuration": "3s", "openJitter": 0}"#,
        );
        let open = on_trip(&Record::default(), 1, 0, &c, 0.0).unwrap();
        let half = on_request(&open, SEC, &c, 0.0).write.unwrap();
        let reopened =
            on_probe_result(&half, half.gen, ProbeOutcome::Failure, 2 * SEC, &c, 0.0).unwrap();
        assert_eq!(
            (reopened.state, reopened.trips, reopened.until_ns),
            (State::Open, 2, 4 * SEC)
        );
        let half = on_request(&reopened, 4 * SEC, &c, 0.0).write.unwrap();
        let reopened =
            on_probe_result(&half, half.gen, ProbeOutcome::Failure, 4 * SEC, &c, 0.0).unwrap();
        assert_eq!(reopened.until_ns, 7 * SEC, "4s capped to 3s");
    }

    #[test]
    fn stuck_half_open_reopens_after_the_maximum_time() {
        let c = cfg(r#"{"halfOpenProbes": 1, "maxHalfOpenDuration": "2s", "openJitter": 0}"#);
        let open = on_trip(&Record::default(), 1, 0, &c, 0.0).unwrap();
        let half = on_request(&open, open.until_ns, &c, 0.0).write.unwrap();
        let step = on_request(&half, open.until_ns + SEC, &c, 0.0);
        assert!(matches!(
            step.decision,
            Decision::Reject {
                state: State::HalfOpen,
                ..
            }
        ));
        let step = on_request(&half, open.until_ns + 2 * SEC, &c, 0.0);
        assert_eq!(step.write.unwrap().state, State::Open);
        assert_eq!(step.write.unwrap().trips, 2);
    }

    #[test]
    fn ignored_probes_return_their_permit_and_stale_probes_do_nothing() {
        let c = cfg(r#"{"halfOpenProbes": 1}"#);
        let open = on_trip(&Record::default(), 1, 0, &c, 0.0).unwrap();
        let half = on_request(&open, open.until_ns, &c, 0.0).write.unwrap();
        let back = on_probe_result(&half, half.gen, ProbeOutcome::Ignored, 0, &c, 0.0).unwrap();
        assert_eq!(back.probes_admitted, 0);
        assert_eq!(
            on_probe_result(&half, half.gen - 1, ProbeOutcome::Failure, 0, &c, 0.0),
            None
        );
    }

    /// Regression (fuzz/corpus/breaker_state): a half-open record read back with a probe count at its
    /// maximum overflowed on the next success instead of closing the breaker.
    #[test]
    fn a_success_closes_a_record_whose_probe_count_is_at_its_maximum() {
        let c = cfg(r#"{"halfOpenProbes": 2}"#);
        let half = Record {
            state: State::HalfOpen,
            gen: 3,
            until_ns: 10 * SEC,
            probes_admitted: 2,
            probes_succeeded: u32::MAX,
            ..Record::default()
        };
        let rec = Record::decode(&half.encode()).unwrap();
        let closed = on_probe_result(&rec, 3, ProbeOutcome::Success, SEC, &c, 0.0).unwrap();
        assert_eq!((closed.state, closed.gen), (State::Closed, 4));
    }

    #[test]
    fn closed_traffic_marks_the_slot_in_use_every_so_often() {
        // Window 8 s: touched at most every 2 s, free 10 s after the last touch.
        let c = cfg(r#"{"window": {"duration": "8s"}}"#);
        let rec = claimed(&Record::default(), 7, 100 * SEC);
        assert_eq!(
            (rec.state, rec.gen, rec.owner, rec.used_ns),
            (State::Closed, 2, 7, 100 * SEC)
        );
        assert_eq!(on_request(&rec, 101 * SEC, &c, 0.0).write, None);
        let touched = on_request(&rec, 102 * SEC, &c, 0.0).write.unwrap();
        assert_eq!(
            touched,
            Record {
                used_ns: 102 * SEC,
                ..rec
            }
        );
        assert!(!is_free(&touched, 111 * SEC, &c));
        assert!(is_free(&touched, 112 * SEC, &c));
        // A clock stepping back re-marks the slot rather than freezing the mark in the future.
        assert!(on_request(&touched, 50 * SEC, &c, 0.0).write.is_some());
    }

    #[test]
    fn only_closed_idle_or_unowned_slots_are_free_and_claims_start_afresh() {
        let c = cfg(r#"{"window": {"duration": "4s"}, "openDuration": "1s", "openJitter": 0}"#);
        assert!(is_free(&Record::default(), 0, &c), "never owned");
        let rec = claimed(&Record::default(), 9, 0);
        assert!(
            !is_free(&rec, 4 * SEC, &c),
            "used within the window and a quarter"
        );
        assert!(is_free(&rec, 5 * SEC, &c));
        let open = on_trip(&rec, rec.gen, 0, &c, 0.0).unwrap();
        assert_eq!(
            (open.owner, open.used_ns),
            (9, 0),
            "transitions keep the owner"
        );
        assert!(
            !is_free(&open, 3_600 * SEC, &c),
            "an open key keeps its slot"
        );
        let taken = claimed(&open, 11, 3_600 * SEC);
        assert_eq!(
            taken,
            Record {
                state: State::Closed,
                gen: open.gen + 1,
                trips: 0,
                until_ns: 0,
                probes_admitted: 0,
                probes_succeeded: 0,
                owner: 11,
                used_ns: 3_600 * SEC
            }
        );
        // Generations skip 0, which marks calls that decide nothing.
        let wrapped = claimed(
            &Record {
                gen: u32::MAX,
                ..rec
            },
            1,
            0,
        );
        assert_eq!(wrapped.gen, 1);
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let c = cfg(r#"{"openDuration": "10s", "openJitter": 0.2}"#);
        assert_eq!(open_duration_ns(&c, 1, -1.0), 8 * SEC);
        assert_eq!(open_duration_ns(&c, 1, 1.0), 12 * SEC);
        assert_eq!(open_duration_ns(&c, 1, 5.0), 12 * SEC, "clamped");
        assert_eq!(
            open_duration_ns(&c, 100, 0.0),
            60 * SEC,
            "capped at maxOpenDuration"
        );
        assert_eq!(
            open_duration_ns(&c, 100, 1.0),
            60 * SEC,
            "the cap holds with jitter too"
        );
    }

    #[test]
    fn a_clock_stepping_back_does_not_keep_the_breaker_open() {
        let c = cfg(r#"{"openDuration": "5s", "maxOpenDuration": "60s", "openJitter": 0}"#);
        let open = on_trip(&Record::default(), 1, 3_600 * SEC, &c, 0.0).unwrap();
        // The clock steps back one hour: the deadline is 1h5s away, beyond any open time.
        let step = on_request(&open, 5 * SEC, &c, 0.0);
        assert!(matches!(step.decision, Decision::Probe { .. }), "{step:?}");
        // A deadline within the possible open time still holds.
        let step = on_request(&open, 3_601 * SEC, &c, 0.0);
        assert!(matches!(step.decision, Decision::Reject { .. }));
    }

    #[test]
    fn record_encoding_round_trips() {
        let r = Record {
            state: State::HalfOpen,
            gen: 7,
            trips: 2,
            until_ns: 99,
            probes_admitted: 3,
            probes_succeeded: 1,
            owner: 0xfeed_beef_0000_0001,
            used_ns: 12,
        };
        assert_eq!(Record::decode(&r.encode()), Some(r));
        assert_eq!(Record::decode(&[0; 24]), None);
        assert_eq!(Record::decode(&[0; 26]), None);
        assert_eq!(Record::decode(&[0; 40]), None);
        assert_eq!(Record::decode(&[0; 42]), None);
        // The layout other modules on the sidecar (older and newer) read: the fields little-endian in
        // order, nothing after them.
        let mut bytes = vec![2u8];
        bytes.extend_from_slice(&7u32.to_le_bytes());
        bytes.extend_from_slice(&2u32.to_le_bytes());
        bytes.extend_from_slice(&99u64.to_le_bytes());
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&0xfeed_beef_0000_0001u64.to_le_bytes());
        bytes.extend_from_slice(&12u64.to_le_bytes());
        assert_eq!(r.encode().as_slice(), bytes.as_slice());
        assert_eq!(Record::decode(&bytes), Some(r));
        // A record of an earlier version (25 bytes): its state, no owner, so a free slot.
        let legacy = &r.encode()[..25];
        let read = Record::decode(legacy).unwrap();
        assert_eq!(
            read,
            Record {
                owner: 0,
                used_ns: 0,
                ..r
            }
        );
        assert!(is_free(&read, 0, &cfg("{}")));
        let mut bad = r.encode();
        bad[0] = 9;
        assert_eq!(Record::decode(&bad), None);
    }
}
