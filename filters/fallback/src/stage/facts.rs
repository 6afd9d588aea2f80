//! What a fallback may need from the request, copied when the request headers pass: they cannot be
//! read once the request went upstream, and a fallback is decided on the response.

use crate::cache;
use crate::config::{Kind, RuleConfig};
use crate::policy::{self, CacheControl};
use crate::trace::well_formed_traceparent;
use filter_common::headers::HeaderMap;
use filter_common::matching::is_grpc_content_type;
use filter_common::w3c::TRACEPARENT;

pub struct RequestFacts {
    /// The index of the rule that matched.
    pub rule: usize,
    pub method: String,
    pub path: String,
    pub authority: String,
    /// A gRPC caller: it gets a gRPC status, never a stale or alternate answer.
    pub grpc: bool,
    pub accept: Option<Vec<u8>>,
    /// The W3C `traceparent` forwarded upstream (as trace-context wrote it), when well formed.
    pub traceparent: Option<String>,
    pub request_id: String,
    pub key_headers: Vec<(String, Option<Vec<u8>>)>,
    /// The request carries one of the rule's private headers: nothing is stored for it or served to it.
    pub private: bool,
    /// A stale rule's GET or HEAD: the caller's own `Cache-Control` (parsed in place, only when sent).
    pub directives: CacheControl,
    /// A stale rule's GET or HEAD: the request headers, kept (not copied: the buffer of the one host
    /// read) so that the response's `Vary` can select on them later.
    pub vary_source: Option<HeaderMap>,
}

impl RequestFacts {
    /// The facts `rule` (at `index`) may need, from the request headers read in one host call.
    pub fn read(index: usize, rule: &RuleConfig, headers: HeaderMap) -> RequestFacts {
        let req = |name: &str| headers.get_first(name);
        let text = |name: &str| {
            req(name)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        let key_names = &rule.response.key_headers;
        let method = text(":method");
        let stale = rule.response.kind == Kind::Stale && is_get_or_head(&method);
        let mut facts = RequestFacts {
            rule: index,
            path: text(":path"),
            authority: text(":authority"),
            grpc: req("content-type").is_some_and(is_grpc_content_type),
            accept: req("accept").map(<[u8]>::to_vec),
            traceparent: req(TRACEPARENT).and_then(well_formed_traceparent),
            request_id: text("x-request-id"),
            key_headers: key_names
                .iter()
                .map(|n| (n.clone(), req(n).map(<[u8]>::to_vec)))
                .collect(),
            // A response to a request with credentials is that caller's own, unless the credentials are
            // part of the key.
            private: stale
                && policy::is_private(&headers, &rule.response.private_headers, key_names),
            directives: if stale {
                CacheControl::parse(headers.get_all("cache-control"))
            } else {
                CacheControl::default()
            },
            method,
            vary_source: None,
        };
        if stale {
            facts.vary_source = Some(headers);
        }
        facts
    }

    /// The request's key in the stale cache: authority, path and the rule's key headers.
    pub fn cache_key(&self) -> u128 {
        let values: Vec<Option<&[u8]>> =
            self.key_headers.iter().map(|(_, v)| v.as_deref()).collect();
        cache::key(self.authority.as_bytes(), self.path.as_bytes(), &values)
    }

    /// The hash of the request header values a response's `Vary` names (RFC 9111 §4.1); no headers
    /// kept (not a stale rule's GET or HEAD) hash as absent.
    pub fn vary_hash(&self, names: &[String]) -> u128 {
        match &self.vary_source {
            Some(headers) => policy::vary_hash(names, headers),
            None => policy::vary_hash(names, &HeaderMap::default()),
        }
    }
}

/// The methods a stale rule answers from the cache (it keeps GET responses; HEAD gets their headers).
pub fn is_get_or_head(method: &str) -> bool {
    matches!(method, "GET" | "HEAD")
}
