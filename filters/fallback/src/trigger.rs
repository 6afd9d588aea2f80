//! What fires a rule, checked on the response: the upstream's status or gRPC status, Envoy's own failure,
//! or a circuit-breaker rejection.

use filter_common::failure::{grpc_codes, reason_from_label, UpstreamFailure};
use filter_common::status::StatusSet;
use serde::Deserialize;

/// Envoy's own failures a rule can name: the upstream failures every filter reads from the response
/// flags, and any other reply Envoy made itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum EnvoyReason {
    Upstream(UpstreamFailure),
    /// Any other 5xx reply that did not come from the upstream.
    LocalReply,
}

impl EnvoyReason {
    pub const ALL: [EnvoyReason; 6] = [
        EnvoyReason::Upstream(UpstreamFailure::ConnectionFailure),
        EnvoyReason::Upstream(UpstreamFailure::Timeout),
        EnvoyReason::Upstream(UpstreamFailure::Reset),
        EnvoyReason::Upstream(UpstreamFailure::NoHealthyUpstream),
        EnvoyReason::Upstream(UpstreamFailure::Overflow),
        EnvoyReason::LocalReply,
    ];

    pub fn label(self) -> &'static str {
        match self {
            EnvoyReason::Upstream(failure) => failure.label(),
            EnvoyReason::LocalReply => "localReply",
        }
    }

    fn matches(self, r: &Observed) -> bool {
        match self {
            EnvoyReason::Upstream(failure) => failure.in_flags(r.response_flags),
            // Envoy answers gRPC callers HTTP 200 with a gRPC status: a non-OK one is its failure.
            EnvoyReason::LocalReply => {
                !r.from_upstream && (r.status >= 500 || r.grpc_status.is_some_and(|g| g != 0))
            }
        }
    }
}

impl TryFrom<String> for EnvoyReason {
    type Error = String;

    fn try_from(label: String) -> Result<Self, String> {
        reason_from_label(
            &label,
            EnvoyReason::Upstream,
            &[("localReply", EnvoyReason::LocalReply)],
        )
    }
}

/// The triggers of a rule; any of them fires it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(
    remote = "Self",
    default,
    rename_all = "camelCase",
    deny_unknown_fields
)]
pub struct Triggers {
    /// Upstream status codes and ranges.
    pub status: Option<StatusSet>,
    /// gRPC codes (0 to 16), for gRPC requests.
    #[serde(deserialize_with = "grpc_codes")]
    pub grpc_status: Vec<u32>,
    /// Envoy's own failures.
    pub envoy: Vec<EnvoyReason>,
    /// Circuit-breaker rejections.
    pub circuit_breaker: bool,
}

filter_common::from_object_only!(Triggers);

impl Triggers {
    pub fn is_empty(&self) -> bool {
        self.status.is_none()
            && self.grpc_status.is_empty()
            && self.envoy.is_empty()
            && !self.circuit_breaker
    }
}

/// What the response says, as the filter sees it on the response headers (or trailers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Observed {
    pub status: u16,
    /// Only for gRPC requests.
    pub grpc_status: Option<u32>,
    pub response_flags: u64,
    /// The response came from the upstream (`response.code_details` is `via_upstream`).
    pub from_upstream: bool,
    /// A rejection by the circuit-breaker filter.
    pub circuit_breaker: bool,
}

/// Why a rule fired (a metric tag and the `{{reason}}` placeholder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    CircuitBreaker,
    Envoy(EnvoyReason),
    GrpcStatus,
    Status,
}

impl Reason {
    pub fn label(self) -> &'static str {
        match self {
            Reason::CircuitBreaker => "circuitBreaker",
            Reason::Envoy(e) => e.label(),
            Reason::GrpcStatus => "grpcStatus",
            Reason::Status => "status",
        }
    }
}

/// The most specific trigger that fires, if any. A gRPC OK never fires a status trigger: gRPC answers
/// HTTP 200 whatever happened, and its status says the rest.
pub fn fire(t: &Triggers, r: &Observed) -> Option<Reason> {
    if r.circuit_breaker {
        return t.circuit_breaker.then_some(Reason::CircuitBreaker);
    }
    if let Some(e) = t.envoy.iter().find(|e| e.matches(r)) {
        return Some(Reason::Envoy(*e));
    }
    if r.grpc_status.is_some_and(|g| t.grpc_status.contains(&g)) {
        return Some(Reason::GrpcStatus);
    }
    if r.from_upstream
        && r.grpc_status != Some(0)
        && t.status.as_ref().is_some_and(|s| s.contains(r.status))
    {
        return Some(Reason::Status);
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use filter_common::response_flags::{TIMEOUT, UPSTREAM_CONNECTION_FAILURE};

    fn t(json: &str) -> Triggers {
        filter_common::config::from_slice(json.as_bytes()).unwrap()
    }

    fn upstream(status: u16) -> Observed {
        Observed {
            status,
            from_upstream: true,
            ..Observed::default()
        }
    }

    #[test]
    fn reasons_are_labelled_as_the_configuration_names_them() {
        // The label is the metric tag and the `{{reason}}` placeholder: the name a rule's `envoy` list
        // uses, read back to the same reason.
        for reason in EnvoyReason::ALL {
            assert_eq!(
                EnvoyReason::try_from(reason.label().to_string()),
                Ok(reason),
                "{}",
                reason.label()
            );
            assert_eq!(Reason::Envoy(reason).label(), reason.label());
        }
        assert_eq!(EnvoyReason::LocalReply.label(), "localReply");
        assert_eq!(
            EnvoyReason::Upstream(UpstreamFailure::Timeout).label(),
            "timeout"
        );
        assert_eq!(Reason::CircuitBreaker.label(), "circuitBreaker");
        assert_eq!(Reason::GrpcStatus.label(), "grpcStatus");
        assert_eq!(Reason::Status.label(), "status");
    }

    #[test]
    fn any_one_trigger_makes_a_rule_fire_on_something() {
        assert!(t("{}").is_empty());
        for one in [
            r#"{"status": "500-599"}"#,
            r#"{"grpcStatus": [14]}"#,
            r#"{"envoy": ["timeout"]}"#,
            r#"{"circuitBreaker": true}"#,
        ] {
            assert!(!t(one).is_empty(), "{one}");
        }
        assert!(t(r#"{"circuitBreaker": false, "grpcStatus": [], "envoy": []}"#).is_empty());
    }

    #[test]
    fn status_triggers_fire_only_on_upstream_answers() {
        let tr = t(r#"{"status": "500-599"}"#);
        assert_eq!(fire(&tr, &upstream(503)), Some(Reason::Status));
        assert_eq!(fire(&tr, &upstream(404)), None);
        let local = Observed {
            status: 503,
            ..Observed::default()
        };
        assert_eq!(
            fire(&tr, &local),
            None,
            "Envoy's own 503 is an envoy trigger"
        );
    }

    #[test]
    fn envoy_reasons_read_the_flags() {
        let tr = t(r#"{"envoy": ["connectionFailure", "timeout", "localReply"]}"#);
        let refused = Observed {
            status: 503,
            response_flags: UPSTREAM_CONNECTION_FAILURE,
            ..Observed::default()
        };
        assert_eq!(
            fire(&tr, &refused),
            Some(Reason::Envoy(EnvoyReason::Upstream(
                UpstreamFailure::ConnectionFailure
            )))
        );
        let timeout = Observed {
            status: 504,
            response_flags: TIMEOUT,
            ..Observed::default()
        };
        assert_eq!(
            fire(&tr, &timeout),
            Some(Reason::Envoy(EnvoyReason::Upstream(
                UpstreamFailure::Timeout
            )))
        );
        let other = Observed {
            status: 500,
            ..Observed::default()
        };
        assert_eq!(
            fire(&tr, &other),
            Some(Reason::Envoy(EnvoyReason::LocalReply))
        );
        assert_eq!(
            fire(
                &tr,
                &Observed {
                    status: 404,
                    ..Observed::default()
                }
            ),
            None
        );
        assert_eq!(
            fire(&tr, &upstream(500)),
            None,
            "an upstream 500 is not Envoy's"
        );
    }

    #[test]
    fn circuit_breaker_rejections_fire_only_their_trigger() {
        let cb = Observed {
            status: 503,
            circuit_breaker: true,
            ..Observed::default()
        };
        assert_eq!(
            fire(&t(r#"{"circuitBreaker": true}"#), &cb),
            Some(Reason::CircuitBreaker)
        );
        assert_eq!(fire(&t(r#"{"envoy": ["localReply"]}"#), &cb), None);
    }

    #[test]
    fn envoy_local_replies_to_grpc_callers_fire_local_reply() {
        let tr = t(r#"{"envoy": ["localReply"]}"#);
        let local = Observed {
            status: 200,
            grpc_status: Some(14),
            ..Observed::default()
        };
        assert_eq!(
            fire(&tr, &local),
            Some(Reason::Envoy(EnvoyReason::LocalReply))
        );
        let ok = Observed {
            status: 200,
            grpc_status: Some(0),
            ..Observed::default()
        };
        assert_eq!(fire(&tr, &ok), None);
    }

    #[test]
    fn grpc_status_fires_for_grpc_only() {
        let tr = t(r#"{"grpcStatus": [14], "status": "500-599"}"#);
        let unavailable = Observed {
            status: 200,
            grpc_status: Some(14),
            from_upstream: true,
            ..Observed::default()
        };
        assert_eq!(fire(&tr, &unavailable), Some(Reason::GrpcStatus));
        let ok = Observed {
            grpc_status: Some(0),
            ..unavailable
        };
        assert_eq!(fire(&tr, &ok), None);
        assert!(filter_common::config::from_slice::<Triggers>(br#"{"grpcStatus": [20]}"#).is_err());
    }

    /// Regression (fuzz/corpus/trigger): a status set that covers 200 fired on a gRPC OK, which gRPC
    /// answers with HTTP 200 whatever happened; a plain HTTP 200 still fires it.
    #[test]
    fn a_grpc_ok_never_fires_a_status_trigger() {
        let tr = t(r#"{"status": "200-599"}"#);
        let grpc_ok = Observed {
            status: 200,
            grpc_status: Some(0),
            from_upstream: true,
            ..Observed::default()
        };
        assert_eq!(fire(&tr, &grpc_ok), None);
        let http_ok = Observed {
            grpc_status: None,
            ..grpc_ok
        };
        assert_eq!(fire(&tr, &http_ok), Some(Reason::Status));
    }
}
