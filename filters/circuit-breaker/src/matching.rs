//! Which breaker (and which of its keys) a request belongs to. The adapter loads only the request
//! attributes some breaker needs, once per request.

use crate::config::{BreakerConfig, Config, KeyBy};
use crate::slots::{fingerprint, Seed};
pub use filter_common::matching::{Needs, RequestInfo};

/// The attributes a configuration needs: those its matches and keys name.
pub fn needs(config: &Config) -> Needs {
    let mut n = Needs::default();
    for b in &config.breakers {
        n.add_match(&b.matcher);
        match &b.key_by {
            Some(KeyBy::Cluster) => n.cluster = true,
            Some(KeyBy::Route) => n.route = true,
            Some(KeyBy::Authority) => n.authority = true,
            Some(KeyBy::Header(h)) => n.add_header(h),
            None => {}
        }
    }
    n
}

/// The breaker a request belongs to: its index and its key's fingerprint
/// ([`crate::slots::fingerprint`]; an unkeyed breaker has one key, the empty one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selected {
    pub breaker: usize,
    pub key: u64,
}

pub fn select(config: &Config, info: &RequestInfo, seed: &Seed) -> Option<Selected> {
    config
        .breakers
        .iter()
        .position(|b| b.matcher.matches(info))
        .and_then(|i| {
            config.breakers.get(i).map(|b| Selected {
                breaker: i,
                key: fingerprint(seed, key(b, info)),
            })
        })
}

/// The key's value; a missing attribute is the empty key.
fn key<'a>(b: &BreakerConfig, info: &'a RequestInfo) -> &'a [u8] {
    match &b.key_by {
        None => b"",
        Some(KeyBy::Cluster) => info.cluster.as_deref().unwrap_or("").as_bytes(),
        Some(KeyBy::Route) => info.route.as_deref().unwrap_or("").as_bytes(),
        Some(KeyBy::Authority) => info.authority.as_deref().unwrap_or("").as_bytes(),
        Some(KeyBy::Header(h)) => info.header(h).unwrap_or(b""),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use filter_common::config::parse;

    const SEED: Seed = Seed([3, 4]);

    fn config(json: &str) -> Config {
        parse(Some(json.as_bytes())).unwrap()
    }

    fn info() -> RequestInfo {
        RequestInfo {
            cluster: Some("payments".into()),
            route: Some("pay".into()),
            authority: Some("Pay.Svc".into()),
            path: Some("/api/v1/charge".into()),
            method: Some("POST".into()),
            headers: vec![("x-tenant".into(), b"acme".to_vec())],
        }
    }

    #[test]
    fn first_matching_breaker_wins() {
        let c = config(
            r#"{"breakers": [
                {"name": "get", "match": {"method": "GET"}},
                {"name": "api", "match": {"pathPrefix": "/api", "authority": "pay.svc", "cluster": "payments",
                  "header": {"name": "x-tenant", "value": "acme"}}},
                {"name": "all"}]}"#,
        );
        assert_eq!(select(&c, &info(), &SEED).unwrap().breaker, 1);
        let mut other = info();
        other.headers.clear();
        assert_eq!(
            select(&c, &other, &SEED).unwrap().breaker,
            2,
            "header required"
        );
        let c = config(r#"{"breakers": [{"name": "x", "match": {"route": "other"}}]}"#);
        assert_eq!(select(&c, &info(), &SEED), None);
    }

    #[test]
    fn keys_are_fingerprinted_per_breaker_key() {
        let c =
            config(r#"{"breakers": [{"name": "t", "keyBy": "header:x-tenant", "maxKeys": 1000}]}"#);
        let mut a = info();
        let k1 = select(&c, &a, &SEED).unwrap().key;
        assert_eq!(k1, fingerprint(&SEED, b"acme"));
        a.headers = vec![("x-tenant".into(), b"globex".to_vec())];
        assert_ne!(select(&c, &a, &SEED).unwrap().key, k1);
        a.headers.clear();
        assert_eq!(select(&c, &a, &SEED).unwrap().key, fingerprint(&SEED, b""));
        let c = config(r#"{"breakers": [{"name": "one"}]}"#);
        assert_eq!(
            select(&c, &info(), &SEED).unwrap().key,
            fingerprint(&SEED, b"")
        );
    }

    #[test]
    fn needs_lists_only_what_breakers_use() {
        let n = needs(&config("{}"));
        assert_eq!(
            n,
            Needs {
                cluster: true,
                ..Needs::default()
            }
        );
        let n = needs(&config(
            r#"{"breakers": [{"name": "a", "keyBy": "header:x-t", "match": {"pathPrefix": "/"}}]}"#,
        ));
        assert!(n.path && !n.cluster && !n.method);
        assert_eq!(n.headers, vec!["x-t".to_string()]);
    }
}
