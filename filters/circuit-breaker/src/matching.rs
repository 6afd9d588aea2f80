//! Which breaker (and which of its keys) a request belongs to. The adapter loads only the request
//! attributes some breaker needs, once per request.

use crate::config::{BreakerConfig, Config, KeyBy, Match};

/// The request attributes breakers match on; `None` when not loaded or absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    pub cluster: Option<String>,
    pub route: Option<String>,
    pub authority: Option<String>,
    pub path: Option<String>,
    pub method: Option<String>,
    /// The values of the headers some breaker names (lower-case names).
    pub headers: Vec<(String, Vec<u8>)>,
}

impl RequestInfo {
    fn header(&self, name: &str) -> Option<&[u8]> {
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
    pub fn of(config: &Config) -> Needs {
        let mut n = Needs::default();
        for b in &config.breakers {
            let m = &b.matcher;
            n.cluster |= m.cluster.is_some() || b.key_by == Some(KeyBy::Cluster);
            n.route |= m.route.is_some() || b.key_by == Some(KeyBy::Route);
            n.authority |= m.authority.is_some() || b.key_by == Some(KeyBy::Authority);
            n.path |= m.path_prefix.is_some();
            n.method |= m.method.is_some();
            let mut want = |h: &str| {
                if !n.headers.iter().any(|x| x == h) {
                    n.headers.push(h.to_string());
                }
            };
            if let Some(h) = &m.header {
                want(&h.name);
            }
            if let Some(KeyBy::Header(h)) = &b.key_by {
                want(h);
            }
        }
        n
    }
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
        .position(|b| matches(&b.matcher, info))
        .and_then(|i| {
            config.breakers.get(i).map(|b| Selected {
                breaker: i,
                slot: slot(b, info),
            })
        })
}

fn matches(m: &Match, info: &RequestInfo) -> bool {
    let exact = |want: &Option<String>, have: &Option<String>| match want {
        None => true,
        Some(w) => have.as_deref() == Some(w.as_str()),
    };
    exact(&m.cluster, &info.cluster)
        && exact(&m.route, &info.route)
        && exact(&m.method, &info.method)
        && m.authority.as_ref().is_none_or(|w| {
            info.authority
                .as_deref()
                .is_some_and(|a| a.eq_ignore_ascii_case(w))
        })
        && m.path_prefix.as_ref().is_none_or(|p| {
            info.path
                .as_deref()
                .is_some_and(|path| path.starts_with(p.as_str()))
        })
        && m.header
            .as_ref()
            .is_none_or(|h| match (info.header(&h.name), &h.value) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(v), Some(want)) => v == want.as_bytes(),
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
        let n = Needs::of(&config("{}"));
        assert_eq!(
            n,
            Needs {
                cluster: true,
                ..Needs::default()
            }
        );
        let n = Needs::of(&config(
            r#"{"breakers": [{"name": "a", "keyBy": "header:x-t", "match": {"pathPrefix": "/"}}]}"#,
        ));
        assert!(n.path && !n.cluster && !n.method);
        assert_eq!(n.headers, vec!["x-t".to_string()]);
    }
}
