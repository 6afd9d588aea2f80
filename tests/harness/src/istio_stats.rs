//! The `stats_config` of an Istio sidecar's Envoy bootstrap, as pilot-agent renders it, so tests see
//! the filters' metrics exactly as a mesh exposes them.
//!
//! Read from istio/istio: the template `tools/packaging/common/envoy_bootstrap.json` (`stats_config`:
//! `use_all_default_tags: false`, Istio's own `stats_tags`, one `(TAG=\.=(.*?);\.;)` regex per extra
//! stat tag, and the `stats_matcher` inclusion list) and `pkg/bootstrap/config.go`
//! (`getStatsOptions`): extra stat tags are `meshConfig.defaultConfig.extraStatTags` (or the pod's
//! proxy config) plus the `sidecar.istio.io/extraStatTags` annotation, deduplicated; each inclusion
//! list is the annotation (`sidecar.istio.io/statsInclusionPrefixes`, `...Suffixes`, `...Regexps`) if
//! set, else `proxyStatsMatcher`'s list, and then always the required entries
//! (`requiredEnvoyStatsMatcherInclusionPrefixes` = `cluster_manager,listener_manager,server,
//! cluster.xds-grpc,wasm`; the `wasm` prefix is there since Istio 1.6, istio/istio#22639).
//!
//! Envoy stores a Wasm metric `NAME` as `wasmcustom.NAME` (envoy
//! `source/extensions/common/wasm/stats_handler.h`, `CustomStatNamespace`); the inclusion list is
//! matched against that full name, so the required `wasm` prefix keeps every Wasm metric.

use std::fmt::Write as _;

use crate::config::{stats_tags_yaml, EnvoyConfig};

/// `requiredEnvoyStatsMatcherInclusionPrefixes` (istio/istio `pkg/bootstrap/config.go`).
pub const ISTIO_REQUIRED_PREFIXES: &[&str] = &[
    "cluster_manager",
    "listener_manager",
    "server",
    "cluster.xds-grpc",
    "wasm",
];

/// `rbacEnvoyStatsMatcherInclusionSuffix`, the required suffixes of a sidecar that does not exit on
/// zero active connections.
pub const ISTIO_REQUIRED_SUFFIXES: &[&str] = &[
    "rbac.allowed",
    "rbac.denied",
    "shadow_allowed",
    "shadow_denied",
];

/// `requiredEnvoyStatsMatcherInclusionRegexes`.
pub const ISTIO_REQUIRED_REGEXES: &[&str] = &[r"vhost\.*\.route\.*"];

/// The tags the project's filters put in their metric names: what `extraStatTags` must list.
pub const FILTER_STAT_TAGS: &[&str] = &[
    "format", "breaker", "outcome", "state", "rule", "trigger", "kind",
];

/// Istio's own `stats_tags`, in the template's order, before the extra stat tags.
const ISTIO_TAGS_BEFORE: &[(&str, &str)] = &[
    (
        "cluster_name",
        r"^cluster\.((.+?(\..+?\.svc\.cluster\.local)?)\.)",
    ),
    ("tcp_prefix", r"^tcp\.((.*?)\.)\w+?$"),
    ("response_code", r"_rq(_(\d{3}))$"),
    ("response_code_class", r"_rq(_(\dxx))$"),
    (
        "http_conn_manager_listener_prefix",
        r"^listener(?=\.).*?\.http\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)",
    ),
    (
        "http_conn_manager_prefix",
        r"^http\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)",
    ),
    (
        "listener_address",
        r"^listener\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)",
    ),
    (
        "mongo_prefix",
        r"^mongo\.(.+?)\.(collection|cmd|cx_|op_|delays_|decoding_)(.*?)$",
    ),
];

/// Istio's own `stats_tags` after the extra stat tags.
const ISTIO_TAGS_AFTER: &[(&str, &str)] = &[
    ("cache", r"(cache\.(.+?)\.)"),
    ("component", r"(component\.(.+?)\.)"),
    ("tag", r"(tag\.(.+?);\.)"),
    ("wasm_filter", r"(wasm_filter\.(.+?)\.)"),
    ("authz_enforce_result", r"rbac(\.(allowed|denied))"),
    ("authz_dry_run_action", r"(\.istio_dry_run_(allow|deny)_)"),
    ("authz_dry_run_result", r"(\.shadow_(allowed|denied))"),
];

/// What a mesh operator sets that shapes a sidecar's stats: `meshConfig.defaultConfig` (or a pod's
/// `proxy.istio.io/config`) and the `sidecar.istio.io/*` annotations.
#[derive(Debug, Clone, Default)]
pub struct SidecarStats {
    /// `meshConfig.defaultConfig.extraStatTags`.
    pub extra_stat_tags: Vec<String>,
    /// `sidecar.istio.io/extraStatTags` (comma-separated in the annotation); added to the above.
    pub extra_stat_tags_annotation: Vec<String>,
    /// `proxyStatsMatcher.inclusionPrefixes`; replaced by the annotation
    /// `sidecar.istio.io/statsInclusionPrefixes` when that is set.
    pub inclusion_prefixes: Vec<String>,
    pub inclusion_suffixes: Vec<String>,
    pub inclusion_regexps: Vec<String>,
    /// Leaves `wasm` out of the required prefixes: not something Istio lets you do (it always adds
    /// them), but it shows that this very entry is what keeps the filters' metrics.
    pub without_wasm_prefix: bool,
}

impl SidecarStats {
    /// A sidecar with Istio's defaults (no extra stat tags, no inclusion options).
    pub fn defaults() -> Self {
        Self::default()
    }

    /// `extraStatTags` listing [`FILTER_STAT_TAGS`], what `istio/README.md` tells users to set.
    pub fn with_filter_tags() -> Self {
        Self {
            extra_stat_tags: FILTER_STAT_TAGS.iter().map(|t| t.to_string()).collect(),
            ..Self::default()
        }
    }

    /// The extra stat tags as `getStatsOptions` computes them: proxy config first, then the
    /// annotation, empty entries dropped, duplicates removed keeping the first.
    pub fn tags(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for t in self
            .extra_stat_tags
            .iter()
            .chain(&self.extra_stat_tags_annotation)
        {
            if !t.is_empty() && !out.contains(t) {
                out.push(t.clone());
            }
        }
        out
    }

    /// The `stats_config:` block (top level of a bootstrap) the template renders.
    pub fn render(&self) -> String {
        let mut y = String::from("stats_config:\n  use_all_default_tags: false\n  stats_tags:\n");
        let extra: Vec<(String, String)> = self
            .tags()
            .into_iter()
            .map(|t| {
                let regex = format!(r"({t}=\.=(.*?);\.;)");
                (t, regex)
            })
            .collect();
        let tags = ISTIO_TAGS_BEFORE
            .iter()
            .map(|(n, r)| (*n, *r))
            .chain(extra.iter().map(|(n, r)| (n.as_str(), r.as_str())))
            .chain(ISTIO_TAGS_AFTER.iter().map(|(n, r)| (*n, *r)));
        for (name, regex) in tags {
            let _ = writeln!(y, "  - tag_name: {}", q(name));
            let _ = writeln!(y, "    regex: {}", q(regex));
        }
        y.push_str("  stats_matcher:\n    inclusion_list:\n      patterns:\n");
        let prefixes = std::iter::once("reporter=")
            .chain(self.inclusion_prefixes.iter().map(String::as_str))
            .chain(
                ISTIO_REQUIRED_PREFIXES
                    .iter()
                    .copied()
                    .filter(|p| !(self.without_wasm_prefix && *p == "wasm")),
            );
        for p in prefixes {
            let _ = writeln!(y, "      - prefix: {}", q(p));
        }
        let suffixes = self
            .inclusion_suffixes
            .iter()
            .map(String::as_str)
            .chain(ISTIO_REQUIRED_SUFFIXES.iter().copied());
        for s in suffixes {
            let _ = writeln!(y, "      - suffix: {}", q(s));
        }
        let regexps = self
            .inclusion_regexps
            .iter()
            .map(String::as_str)
            .chain(ISTIO_REQUIRED_REGEXES.iter().copied());
        for r in regexps {
            let _ = writeln!(y, "      - safe_regex: {{regex: {}}}", q(r));
        }
        for p in ["component", "istio"] {
            let _ = writeln!(y, "      - prefix: {}", q(p));
        }
        y
    }

    /// `config` rendered with this sidecar's `stats_config` in place of the harness's own one, for
    /// [`crate::Envoy::start_yaml`].
    pub fn bootstrap(&self, config: &EnvoyConfig) -> String {
        let yaml = config.render();
        let ours = stats_tags_yaml();
        assert!(
            yaml.contains(&ours),
            "the harness's stats_config block is not in the rendered bootstrap"
        );
        yaml.replacen(&ours, &self.render(), 1)
    }
}

fn q(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}
