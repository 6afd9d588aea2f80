//! Request matching shared by the filters: which rule or breaker a request belongs to. Filters load only
//! the request attributes their configuration names, once per request (read by `request`).

use serde::Deserialize;

/// Every field given must match; an empty match matches every request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase", deny_unknown_fields)]
pub struct Match {
    /// Upstream cluster name (exact).
    pub cluster: Option<String>,
    /// Route name (exact).
    pub route: Option<String>,
    /// `:authority`, compared ignoring ASCII case.
    pub authority: Option<String>,
    /// The request path starts with it.
    pub path_prefix: Option<String>,
    /// HTTP method (exact).
    pub method: Option<String>,
    pub header: Option<HeaderMatch>,
}

/// A request header: present (no `value`) or equal to `value`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct HeaderMatch {
    /// Lower-case header name (required).
    pub name: String,
    pub value: Option<String>,
}

crate::from_object_only!(Match, HeaderMatch);

impl Match {
    pub fn matches(&self, info: &RequestInfo) -> bool {
        let exact = |want: &Option<String>, have: &Option<String>| match want {
            None => true,
            Some(w) => have.as_deref() == Some(w.as_str()),
        };
        exact(&self.cluster, &info.cluster)
            && exact(&self.route, &info.route)
            && exact(&self.method, &info.method)
            && self.authority.as_ref().is_none_or(|w| {
                info.authority
                    .as_deref()
                    .is_some_and(|a| a.eq_ignore_ascii_case(w))
            })
            && self.path_prefix.as_ref().is_none_or(|p| {
                info.path
                    .as_deref()
                    .is_some_and(|path| path.starts_with(p.as_str()))
            })
            && self
                .header
                .as_ref()
                .is_none_or(|h| match (info.header(&h.name), &h.value) {
                    (None, _) => false,
                    (Some(_), None) => true,
                    (Some(v), Some(want)) => v == want.as_bytes(),
                })
    }

    /// Checks what reading cannot; `field` is the match's path for the error.
    pub fn validate(&self, field: &str) -> Result<(), crate::config::ConfigError> {
        use crate::limits::{check_len, MAX_HEADER_VALUE_LEN, MAX_MATCH_VALUE_LEN};
        for (name, value) in [
            ("cluster", &self.cluster),
            ("route", &self.route),
            ("authority", &self.authority),
            ("pathPrefix", &self.path_prefix),
            ("method", &self.method),
        ] {
            if let Some(v) = value {
                check_len(v, MAX_MATCH_VALUE_LEN, format!("{field}.{name}"))?;
            }
        }
        if let Some(h) = &self.header {
            crate::config::check(
                is_header_name(&h.name),
                format!("{field}.header.name"),
                HEADER_NAME_RULE,
            )?;
            if let Some(v) = &h.value {
                check_len(v, MAX_HEADER_VALUE_LEN, format!("{field}.header.value"))?;
            }
        }
        Ok(())
    }
}

/// A gRPC request's `content-type`, as Envoy decides it: `application/grpc` alone or followed by `+`
/// or `;` (gRPC-Web's `application/grpc-web` is not gRPC to Envoy, and gets HTTP replies).
pub fn is_grpc_content_type(ct: &[u8]) -> bool {
    match ct.strip_prefix(b"application/grpc") {
        Some(rest) => rest.is_empty() || rest.starts_with(b"+") || rest.starts_with(b";"),
        None => false,
    }
}

/// What `is_header_name` requires, for configuration errors.
pub const HEADER_NAME_RULE: &str = "must be a lower-case header name of at most 256 characters";

/// A lower-case HTTP header name as Envoy stores it, at most `limits::MAX_HEADER_NAME_LEN` long.
pub fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= crate::limits::MAX_HEADER_NAME_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// The request attributes matched on; `None` when not loaded or absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    pub cluster: Option<String>,
    pub route: Option<String>,
    pub authority: Option<String>,
    pub path: Option<String>,
    pub method: Option<String>,
    /// The values of the headers the configuration names (lower-case names).
    pub headers: Vec<(String, Vec<u8>)>,
}

impl RequestInfo {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// The attributes a configuration needs, computed once at load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    pub cluster: bool,
    pub route: bool,
    pub authority: bool,
    pub path: bool,
    pub method: bool,
    pub headers: Vec<String>,
}

impl Needs {
    pub fn add_match(&mut self, m: &Match) {
        self.cluster |= m.cluster.is_some();
        self.route |= m.route.is_some();
        self.authority |= m.authority.is_some();
        self.path |= m.path_prefix.is_some();
        self.method |= m.method.is_some();
        if let Some(h) = &m.header {
            self.add_header(&h.name);
        }
    }

    pub fn add_header(&mut self, name: &str) {
        if !self.headers.iter().any(|x| x == name) {
            self.headers.push(name.to_string());
        }
    }

    /// The needed attributes, read through `header` (a request header's first value) and `property`
    /// (an Envoy attribute); `request::read` gives them a host's.
    pub fn load_with(
        &self,
        header: impl Fn(&str) -> Option<Vec<u8>>,
        property: impl Fn(&[&str]) -> Option<Vec<u8>>,
    ) -> RequestInfo {
        let text = |bytes: Option<Vec<u8>>| bytes.map(|b| String::from_utf8_lossy(&b).into_owned());
        RequestInfo {
            cluster: self
                .cluster
                .then(|| text(property(&["xds", "cluster_name"])))
                .flatten(),
            route: self
                .route
                .then(|| text(property(&["xds", "route_name"])))
                .flatten(),
            authority: self.authority.then(|| text(header(":authority"))).flatten(),
            path: self.path.then(|| text(header(":path"))).flatten(),
            method: self.method.then(|| text(header(":method"))).flatten(),
            headers: self
                .headers
                .iter()
                .filter_map(|h| header(h).map(|v| (h.clone(), v)))
                .collect(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn info() -> RequestInfo {
        RequestInfo {
            cluster: Some("payments".into()),
            route: Some("pay".into()),
            authority: Some("Pay.Svc".into()),
            path: Some("/api/v1/charge".into()),
            method: Some("POST".into()),
            headers: vec![
                ("x-tenant".into(), b"acme".to_vec()),
                ("x-empty".into(), Vec::new()),
            ],
        }
    }

    fn m(json: &str) -> Match {
        crate::config::from_slice(json.as_bytes()).unwrap()
    }

    #[test]
    fn needs_are_the_union_of_the_matches() {
        let mut needs = Needs::default();
        needs.add_match(&Match {
            cluster: Some("c".into()),
            route: Some("r".into()),
            ..Match::default()
        });
        needs.add_match(&Match {
            authority: Some("a".into()),
            method: Some("GET".into()),
            header: Some(HeaderMatch {
                name: "x-tenant".into(),
                value: None,
            }),
            ..Match::default()
        });
        needs.add_match(&Match::default());
        assert_eq!(
            needs,
            Needs {
                cluster: true,
                route: true,
                authority: true,
                path: false,
                method: true,
                headers: vec!["x-tenant".into()],
            }
        );
    }

    #[test]
    fn header_names_are_lower_case_tokens_of_bounded_length() {
        for ok in [
            "x-tenant",
            "a",
            "x_1",
            &"h".repeat(crate::limits::MAX_HEADER_NAME_LEN),
        ] {
            assert!(is_header_name(ok), "{ok}");
        }
        for bad in [
            "",
            "X-Tenant",
            "a b",
            ":path",
            &"h".repeat(crate::limits::MAX_HEADER_NAME_LEN + 1),
        ] {
            assert!(!is_header_name(bad), "{bad}");
        }
    }

    #[test]
    fn only_the_needed_attributes_are_read() {
        let mut needs = Needs {
            cluster: true,
            path: true,
            ..Needs::default()
        };
        needs.add_header("x-tenant");
        needs.add_header("x-tenant");
        needs.add_header("x-absent");
        assert_eq!(needs.headers, ["x-tenant", "x-absent"], "each once");
        let asked = std::cell::RefCell::new(Vec::new());
        let info = needs.load_with(
            |name| {
                asked.borrow_mut().push(name.to_string());
                match name {
                    ":path" => Some(b"/a".to_vec()),
                    "x-tenant" => Some(b"acme".to_vec()),
                    _ => None,
                }
            },
            |path| {
                asked.borrow_mut().push(path.join("."));
                (path == ["xds", "cluster_name"]).then(|| b"payments".to_vec())
            },
        );
        assert_eq!(
            info,
            RequestInfo {
                cluster: Some("payments".into()),
                path: Some("/a".into()),
                headers: vec![("x-tenant".into(), b"acme".to_vec())],
                ..RequestInfo::default()
            }
        );
        assert_eq!(
            asked.into_inner(),
            ["xds.cluster_name", ":path", "x-tenant", "x-absent"],
            "one host call per needed attribute, none for the others"
        );
    }

    #[test]
    fn every_given_field_must_match() {
        assert!(m("{}").matches(&info()));
        assert!(m(
            r#"{"cluster": "payments", "route": "pay", "authority": "pay.svc", "pathPrefix": "/api",
                    "method": "POST", "header": {"name": "x-tenant", "value": "acme"}}"#
        )
        .matches(&info()));
        assert!(!m(r#"{"method": "GET"}"#).matches(&info()));
        assert!(!m(r#"{"pathPrefix": "/web"}"#).matches(&info()));
        assert!(!m(r#"{"header": {"name": "x-tenant", "value": "globex"}}"#).matches(&info()));
        assert!(
            m(r#"{"header": {"name": "x-empty"}}"#).matches(&info()),
            "presence, even empty"
        );
        assert!(!m(r#"{"header": {"name": "x-missing"}}"#).matches(&info()));
        assert!(!m(r#"{"cluster": "payments"}"#).matches(&RequestInfo::default()));
    }

    #[test]
    fn grpc_is_recognised_as_envoy_does() {
        assert!(is_grpc_content_type(b"application/grpc"));
        assert!(is_grpc_content_type(b"application/grpc+proto"));
        assert!(is_grpc_content_type(b"application/grpc;charset=utf-8"));
        assert!(!is_grpc_content_type(b"application/grpc-web"));
        assert!(!is_grpc_content_type(b"application/grpc-web+proto"));
        assert!(!is_grpc_content_type(b"application/json"));
    }

    #[test]
    fn needs_follow_the_matches() {
        let mut n = Needs::default();
        n.add_match(&m(r#"{"pathPrefix": "/", "header": {"name": "x-a"}}"#));
        n.add_header("x-a");
        assert!(n.path && !n.cluster && !n.method);
        assert_eq!(n.headers, vec!["x-a".to_string()]);
        assert!(m(r#"{"header": {"name": "X-A"}}"#)
            .validate("match")
            .is_err());
    }
}
