//! Which breaker (and which of its keys) a request belongs to. The adapter loads only the request
//! attributes some breaker needs, once per request.

use crate::config::{BreakerConfig, Config, KeyBy};
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

/// The breaker a request belongs to: its index and key slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selected {
    pub breaker: usize,
    pub slot: u32,
}

pub fn select(config: &Config, info: &RequestInfo) -> Option<Selected> {
    config
        .breakers
        .iter()
        .position(|b| b.matcher.matches(info))
        .and_then(|i| {
            config.breakers.get(i).map(|b| Selected {
                breaker: i,
                slot: slot(b, info),
            })
        })
}

/// Keys hash into `maxKeys` slots, which bounds memory whatever the key values are.
fn slot(b: &BreakerConfig, info: &RequestInfo) -> u32 {
    let key: &[u8] = match &b.key_by {
        None => return 0,
        Some(KeyBy::Cluster) => info.cluster.as_deref().unwrap_or("").as_bytes(),
        Some(KeyBy::Route) => info.route.as_deref().unwrap_or("").as_bytes(),
        Some(KeyBy::Authority) => info.authority.as_deref().unwrap_or("").as_bytes(),
        Some(KeyBy::Header(h)) => info.header(h).unwrap_or(b""),
    };
    let hash = key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash % u64::from(b.max_keys.max(1))) as u32
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use filter_common::config::parse;

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
        assert_eq!(select(&c, &info()).unwrap().breaker, 1);
        let mut other = info();
        other.headers.clear();
        assert_eq!(select(&c, &other).unwrap().breaker, 2, "header required");
        let c = config(r#"{"breakers": [{"name": "x", "match": {"route": "other"}}]}"#);
        assert_eq!(select(&c, &info()), None);
    }

    #[test]
    fn keys_split_a_breaker_within_bounds() {
        let c =
            config(r#"{"breakers": [{"name": "t", "keyBy": "header:x-tenant", "maxKeys": 1000}]}"#);
        let mut a = info();
        let s1 = select(&c, &a).unwrap().slot;
        a.headers = vec![("x-tenant".into(), b"globex".to_vec())];
        let s2 = select(&c, &a).unwrap().slot;
        assert_ne!(s1, s2);
        let c =
            config(r#"{"breakers": [{"name": "t", "keyBy": "header:x-tenant", "maxKeys": 4}]}"#);
        for i in 0..100 {
            let mut r = info();
            r.headers = vec![("x-tenant".into(), format!("t{i}").into_bytes())];
            assert!(select(&c, &r).unwrap().slot < 4);
        }
        let c = config(r#"{"breakers": [{"name": "one"}]}"#);
        assert_eq!(select(&c, &info()).unwrap().slot, 0);
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
