//! Outcome of a finished call: the first rule whose condition matches decides; none matching is a
//! success. Every signal a sidecar has is available: HTTP status, gRPC status (headers or trailers) and
//! Envoy's response flags.

pub use crate::config::{Condition, EnvoyReason, Outcome, Rule, StatusRange, StatusSet};
use crate::state::ProbeOutcome;
use filter_common::response_flags::DOWNSTREAM_CANCEL;

impl EnvoyReason {
    fn matches(self, call: &Call) -> bool {
        match self {
            EnvoyReason::Upstream(failure) => failure.in_flags(call.response_flags),
            EnvoyReason::NoResponse => call.status.is_none() && !call.downstream_cancel(),
            EnvoyReason::DownstreamCancel => call.downstream_cancel(),
        }
    }
}

/// What is known about a finished call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Call {
    /// HTTP status sent downstream; `None` when the stream ended without a response.
    pub status: Option<u16>,
    /// gRPC status, only for gRPC requests (Envoy also maps HTTP statuses for others).
    pub grpc_status: Option<u32>,
    /// Envoy's response flags bitmask.
    pub response_flags: u64,
    /// The response was made by Envoy or a filter, not by the upstream.
    pub local_reply: bool,
}

impl Call {
    /// The caller went away before any response. Once a response has started, its status decides
    /// (an upstream 503 the caller stopped reading is still a 503).
    pub fn downstream_cancel(&self) -> bool {
        self.status.is_none() && self.response_flags & DOWNSTREAM_CANCEL != 0
    }
}

/// How a finished call counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// What the window records; `Ignore` records nothing.
    pub outcome: Outcome,
    /// Slower than `slowCallDuration` (never for an ignored call).
    pub slow: bool,
    /// The caller gave up and no rule made that a failure or success: counted as `cancelled`.
    pub cancelled: bool,
}

impl Verdict {
    /// What the call says as a half-open probe. A slow probe fails too: a breaker that watches latency
    /// must not close on slow calls.
    pub fn probe(&self) -> ProbeOutcome {
        match self.outcome {
            Outcome::Success if !self.slow => ProbeOutcome::Success,
            Outcome::Ignore => ProbeOutcome::Ignored,
            _ => ProbeOutcome::Failure,
        }
    }
}

impl Verdict {
    /// Whether the call goes into the window of generation `gen` (0: admitted while no closed window
    /// counted, as a key without a slot). Ignored calls count nowhere.
    pub fn counts_in_window(&self, gen: u32) -> bool {
        self.outcome != Outcome::Ignore && gen != 0
    }
}

/// A call that took `elapsed_ns` (to its response headers, or to its end when it had none) is slow
/// when the breaker watches latency and it exceeded `slowCallDuration`.
pub fn is_slow(b: &crate::config::BreakerConfig, elapsed_ns: u64) -> bool {
    b.slow_call_duration
        .is_some_and(|limit| elapsed_ns > limit.as_nanos_u64())
}

/// Classifies a finished call; `slow`: it took longer than `slowCallDuration` (to its response
/// headers, or to its end when it had none).
pub fn judge(rules: &[Rule], call: &Call, slow: bool) -> Verdict {
    let outcome = classify(rules, call);
    let cancelled = outcome == Outcome::Ignore && call.downstream_cancel();
    // A caller that gave up on a call already slower than slowCallDuration has seen a slow dependency:
    // that much counts (as a slow call, not a failure). A quicker cancel counts for nothing.
    let outcome = if cancelled && slow {
        Outcome::Success
    } else {
        outcome
    };
    Verdict {
        outcome,
        slow: slow && outcome != Outcome::Ignore,
        cancelled,
    }
}

pub fn classify(rules: &[Rule], call: &Call) -> Outcome {
    // A reply made in this proxy without any upstream failure (a later filter's rejection, a rate limit,
    // a missing route) says nothing about the dependency: it must neither trip nor close a breaker.
    if call.local_reply
        && call.status.is_some()
        && call.response_flags & filter_common::response_flags::UPSTREAM_FAILURES == 0
    {
        return Outcome::Ignore;
    }
    rules
        .iter()
        .find(|rule| match &rule.condition {
            Condition::Status(set) => call.status.is_some_and(|s| set.contains(s)),
            Condition::GrpcStatus(codes) => call.grpc_status.is_some_and(|g| codes.contains(&g)),
            Condition::Envoy(reasons) => reasons.iter().any(|r| r.matches(call)),
        })
        .map_or_else(
            // No rule names it: a caller giving up is no evidence either way.
            || {
                if call.downstream_cancel() {
                    Outcome::Ignore
                } else {
                    Outcome::Success
                }
            },
            |rule| rule.outcome,
        )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::default_rules;
    use filter_common::response_flags::{
        DOWNSTREAM_CONNECTION_TERMINATION, DOWNSTREAM_REMOTE_RESET, UPSTREAM_CONNECTION_FAILURE,
        UPSTREAM_OVERFLOW,
    };

    fn http(status: u16) -> Call {
        Call {
            status: Some(status),
            ..Call::default()
        }
    }

    #[test]
    fn default_rules_follow_the_documented_table() {
        let rules = default_rules();
        assert_eq!(classify(&rules, &http(200)), Outcome::Success);
        assert_eq!(classify(&rules, &http(404)), Outcome::Success);
        assert_eq!(classify(&rules, &http(500)), Outcome::Failure);
        assert_eq!(classify(&rules, &http(501)), Outcome::Success);
        assert_eq!(classify(&rules, &http(503)), Outcome::Failure);
        let grpc = |g| Call {
            status: Some(200),
            grpc_status: Some(g),
            response_flags: 0,
            local_reply: false,
        };
        assert_eq!(classify(&rules, &grpc(14)), Outcome::Failure);
        assert_eq!(classify(&rules, &grpc(4)), Outcome::Failure);
        assert_eq!(classify(&rules, &grpc(5)), Outcome::Success);
        let flags = |f| Call {
            status: Some(503),
            grpc_status: None,
            response_flags: f,
            local_reply: true,
        };
        assert_eq!(classify(&rules, &flags(UPSTREAM_OVERFLOW)), Outcome::Ignore);
        assert_eq!(
            classify(&rules, &flags(UPSTREAM_CONNECTION_FAILURE)),
            Outcome::Failure
        );
        assert_eq!(
            classify(&rules, &Call::default()),
            Outcome::Failure,
            "no response"
        );
    }

    #[test]
    fn local_replies_without_upstream_failure_are_ignored() {
        let rules = default_rules();
        let rejected = Call {
            status: Some(503),
            local_reply: true,
            ..Call::default()
        };
        assert_eq!(classify(&rules, &rejected), Outcome::Ignore);
        let forbidden = Call {
            status: Some(403),
            local_reply: true,
            ..Call::default()
        };
        assert_eq!(
            classify(&rules, &forbidden),
            Outcome::Ignore,
            "a denied probe must not close a breaker"
        );
        let refused = Call {
            status: Some(503),
            local_reply: true,
            response_flags: UPSTREAM_CONNECTION_FAILURE,
            ..Call::default()
        };
        assert_eq!(
            classify(&rules, &refused),
            Outcome::Failure,
            "Envoy's own upstream failure counts"
        );
        let abandoned = Call {
            status: None,
            local_reply: true,
            ..Call::default()
        };
        assert_eq!(
            classify(&rules, &abandoned),
            Outcome::Failure,
            "no response at all still counts"
        );
    }

    fn cancelled(flags: u64) -> Call {
        Call {
            status: None,
            response_flags: flags,
            ..Call::default()
        }
    }

    #[test]
    fn a_caller_giving_up_is_ignored_by_default() {
        let rules = default_rules();
        for flags in [DOWNSTREAM_CONNECTION_TERMINATION, DOWNSTREAM_REMOTE_RESET] {
            let call = cancelled(flags);
            assert_eq!(classify(&rules, &call), Outcome::Ignore, "{flags:#x}");
            assert_eq!(
                judge(&rules, &call, false),
                Verdict {
                    outcome: Outcome::Ignore,
                    slow: false,
                    cancelled: true
                }
            );
            assert_eq!(judge(&rules, &call, false).probe(), ProbeOutcome::Ignored);
        }
        // Slower than slowCallDuration when the caller gave up: a slow call, not a failure.
        let slow = judge(&rules, &cancelled(DOWNSTREAM_CONNECTION_TERMINATION), true);
        assert_eq!(
            slow,
            Verdict {
                outcome: Outcome::Success,
                slow: true,
                cancelled: true
            }
        );
        assert_eq!(slow.probe(), ProbeOutcome::Failure, "a slow probe fails");
        // Envoy's own upstream failure seen before the caller left still counts.
        let refused = cancelled(DOWNSTREAM_CONNECTION_TERMINATION | UPSTREAM_CONNECTION_FAILURE);
        assert_eq!(classify(&rules, &refused), Outcome::Failure);
        assert!(!judge(&rules, &refused, false).cancelled);
        // Once a response started, its status decides.
        let answered = Call {
            status: Some(503),
            response_flags: DOWNSTREAM_CONNECTION_TERMINATION,
            ..Call::default()
        };
        assert!(!answered.downstream_cancel());
        assert_eq!(classify(&rules, &answered), Outcome::Failure);
        // A stream that ends without a response and without a cancel is still noResponse.
        assert_eq!(classify(&rules, &cancelled(0)), Outcome::Failure);
    }

    #[test]
    fn rules_can_name_downstream_cancels() {
        let rules: Vec<Rule> = filter_common::config::from_slice(
            br#"[{"envoy": ["downstreamCancel"], "outcome": "failure"},
                {"envoy": ["noResponse"], "outcome": "success"}]"#,
        )
        .unwrap();
        let call = cancelled(DOWNSTREAM_REMOTE_RESET);
        assert_eq!(classify(&rules, &call), Outcome::Failure);
        assert_eq!(
            judge(&rules, &call, false),
            Verdict {
                outcome: Outcome::Failure,
                slow: false,
                cancelled: false
            }
        );
        assert_eq!(classify(&rules, &cancelled(0)), Outcome::Success);
        // Rules that do not name it (written before it existed) ignore a cancel, not count a success.
        let rules: Vec<Rule> = filter_common::config::from_slice(
            br#"[{"envoy": ["noResponse"], "outcome": "failure"}]"#,
        )
        .unwrap();
        assert_eq!(classify(&rules, &call), Outcome::Ignore);
        assert_eq!(classify(&rules, &cancelled(0)), Outcome::Failure);
    }

    #[test]
    fn first_matching_rule_wins() {
        let rules: Vec<Rule> = filter_common::config::from_slice(
            br#"[{"status": "503", "outcome": "ignore"}, {"status": ["500-599"], "outcome": "failure"},
                {"envoy": ["timeout"], "outcome": "failure"}]"#,
        )
        .unwrap();
        assert_eq!(classify(&rules, &http(503)), Outcome::Ignore);
        assert_eq!(classify(&rules, &http(502)), Outcome::Failure);
        let timeout = Call {
            status: Some(504),
            grpc_status: None,
            response_flags: filter_common::response_flags::UPSTREAM_REQUEST_TIMEOUT,
            local_reply: true,
        };
        assert_eq!(classify(&rules, &timeout), Outcome::Failure);
        assert_eq!(classify(&rules, &http(200)), Outcome::Success);
    }

    fn breaker(json: &str) -> crate::config::BreakerConfig {
        let c: crate::config::Config =
            filter_common::config::parse(Some(format!(r#"{{"breakers": [{json}]}}"#).as_bytes()))
                .unwrap();
        c.breakers.into_iter().next().unwrap()
    }

    #[test]
    fn slow_means_strictly_longer_than_slow_call_duration() {
        // Resilience4j: a call is slow when its duration is greater than the threshold.
        let b = breaker(r#"{"slowCallDuration": "200ms"}"#);
        let ms = 1_000_000;
        assert!(!is_slow(&b, 0));
        assert!(!is_slow(&b, 199 * ms));
        assert!(!is_slow(&b, 200 * ms), "exactly the threshold is not slow");
        assert!(is_slow(&b, 200 * ms + 1));
        assert!(is_slow(&b, 10_000 * ms));
        // Without slowCallDuration latency is not watched: nothing is slow.
        let unwatched = breaker("{}");
        assert!(!is_slow(&unwatched, 0));
        assert!(!is_slow(&unwatched, u64::MAX));
    }

    #[test]
    fn probes_succeed_only_when_quick_and_successful() {
        let verdict = |outcome, slow| Verdict {
            outcome,
            slow,
            cancelled: false,
        };
        assert_eq!(
            verdict(Outcome::Success, false).probe(),
            ProbeOutcome::Success
        );
        assert_eq!(
            verdict(Outcome::Success, true).probe(),
            ProbeOutcome::Failure
        );
        assert_eq!(
            verdict(Outcome::Failure, false).probe(),
            ProbeOutcome::Failure
        );
        assert_eq!(
            verdict(Outcome::Ignore, false).probe(),
            ProbeOutcome::Ignored
        );
    }

    #[test]
    fn only_counted_outcomes_of_a_window_generation_go_into_the_window() {
        let verdict = |outcome| Verdict {
            outcome,
            slow: false,
            cancelled: false,
        };
        for outcome in [Outcome::Success, Outcome::Failure] {
            assert!(verdict(outcome).counts_in_window(1), "{outcome:?}");
            assert!(verdict(outcome).counts_in_window(7), "{outcome:?}");
            // Generation 0: admitted while no closed window counted.
            assert!(!verdict(outcome).counts_in_window(0), "{outcome:?}");
        }
        assert!(!verdict(Outcome::Ignore).counts_in_window(1));
        assert!(!verdict(Outcome::Ignore).counts_in_window(0));
    }

    #[test]
    fn rules_need_exactly_one_valid_condition() {
        for bad in [
            r#"{"outcome": "failure"}"#,
            r#"{"status": "500", "grpcStatus": [14], "outcome": "failure"}"#,
            r#"{"status": "600", "outcome": "failure"}"#,
            r#"{"status": "599-500", "outcome": "failure"}"#,
            r#"{"status": [], "outcome": "failure"}"#,
            r#"{"grpcStatus": [17], "outcome": "failure"}"#,
            r#"{"envoy": [], "outcome": "failure"}"#,
            r#"{"status": "500", "outcome": "maybe"}"#,
        ] {
            assert!(
                filter_common::config::from_slice::<Rule>(bad.as_bytes()).is_err(),
                "{bad}"
            );
        }
    }
}
