//! What a fallback may need from the request. The request headers are kept as the one host read
//! returned them (moved, not copied) and read only when a fallback fires: a healthy request pays for
//! no copy, no UTF-8 conversion and no `traceparent` parse. Reading them back from the host later is
//! no alternative: the router rewrites `:path` and `:authority` (`prefix_rewrite`, `host_rewrite`) in
//! the map the host would return. The cost is the map's buffer held for the stream's life, bounded by
//! Envoy's `max_request_headers_kb` (60 KiB by default).

use crate::cache;
use crate::config::{Kind, RuleConfig};
use crate::policy::{self, CacheControl};
use crate::trace::well_formed_traceparent;
use filter_common::headers::HeaderMap;
use filter_common::matching::is_grpc_content_type;
use filter_common::w3c::TRACEPARENT;
use std::borrow::Cow;
use std::cell::OnceCell;

pub struct RequestFacts {
    /// The index of the rule that matched.
    pub rule: usize,
    /// A gRPC caller: it gets a gRPC status, never a stale or alternate answer.
    pub grpc: bool,
    /// The request carries one of the rule's private headers: nothing is stored for it or served to it.
    pub private: bool,
    /// A stale rule's GET or HEAD: the caller's own `Cache-Control` (parsed in place, only when sent).
    pub directives: CacheControl,
    /// A stale rule's GET or HEAD: the response's `Vary` selects on `headers`; for any other request
    /// `Vary` hashes every named header as absent.
    stale: bool,
    headers: HeaderMap,
    /// The W3C `traceparent` forwarded upstream (as trace-context wrote it), when well formed: parsed
    /// on first use.
    traceparent: OnceCell<Option<String>>,
}

impl RequestFacts {
    /// The facts `rule` (at `index`) decides on at once, from the request headers read in one host
    /// call; the headers are kept for the rest.
    pub fn read(index: usize, rule: &RuleConfig, headers: HeaderMap) -> RequestFacts {
        let key_names = &rule.response.key_headers;
        let stale = rule.response.kind == Kind::Stale
            && headers.get_first(":method").is_some_and(is_get_or_head);
        RequestFacts {
            rule: index,
            grpc: headers
                .get_first("content-type")
                .is_some_and(is_grpc_content_type),
            // A response to a request with credentials is that caller's own, unless the credentials are
            // part of the key.
            private: stale
                && policy::is_private(&headers, &rule.response.private_headers, key_names),
            directives: if stale {
                CacheControl::parse(headers.get_all("cache-control"))
            } else {
                CacheControl::default()
            },
            stale,
            headers,
            traceparent: OnceCell::new(),
        }
    }

    /// The first value of a request header; empty when absent.
    fn first(&self, name: &str) -> &[u8] {
        self.headers.get_first(name).unwrap_or_default()
    }

    pub fn method(&self) -> &[u8] {
        self.first(":method")
    }

    pub fn path(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(self.first(":path"))
    }

    pub fn authority(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(self.first(":authority"))
    }

    pub fn accept(&self) -> Option<&[u8]> {
        self.headers.get_first("accept")
    }

    pub fn request_id(&self) -> String {
        String::from_utf8_lossy(self.first("x-request-id")).into_owned()
    }

    pub fn traceparent(&self) -> Option<&str> {
        self.traceparent
            .get_or_init(|| {
                self.headers
                    .get_first(TRACEPARENT)
                    .and_then(well_formed_traceparent)
            })
            .as_deref()
    }

    /// The rule's key headers (`names`) with the request's first value of each.
    pub fn key_headers(&self, names: &[String]) -> Vec<(String, Option<Vec<u8>>)> {
        names
            .iter()
            .map(|n| (n.clone(), self.headers.get_first(n).map(<[u8]>::to_vec)))
            .collect()
    }

    /// The request's key in the stale cache: authority, path and the rule's key headers (`names`).
    pub fn cache_key(&self, names: &[String]) -> u128 {
        let values: Vec<Option<&[u8]>> = names.iter().map(|n| self.headers.get_first(n)).collect();
        cache::key(self.first(":authority"), self.first(":path"), &values)
    }

    /// The hash of the request header values a response's `Vary` names (RFC 9111 §4.1); a request a
    /// stale rule does not keep (not its GET or HEAD) hashes them as absent.
    pub fn vary_hash(&self, names: &[String]) -> u128 {
        if self.stale {
            policy::vary_hash(names, &self.headers)
        } else {
            policy::vary_hash(names, &HeaderMap::default())
        }
    }
}

/// The methods a stale rule answers from the cache (it keeps GET responses; HEAD gets their headers).
pub fn is_get_or_head(method: &[u8]) -> bool {
    matches!(method, b"GET" | b"HEAD")
}
