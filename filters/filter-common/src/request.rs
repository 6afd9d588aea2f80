//! Reads from the host the request attributes a configuration needs ([`Needs`]): the host-facing half
//! of `matching`.

use crate::headers::HeaderMap;
use crate::host::{Host, MapType, ProxyHost};
use crate::matching::{Needs, RequestInfo};

/// One host call per needed attribute.
pub fn read(host: &impl Host, needs: &Needs) -> RequestInfo {
    needs.load_with(
        |name| host.header(MapType::HttpRequestHeaders, name),
        |path| host.property(path),
    )
}

/// Like [`read`], with the request headers already read in one call: only properties cost host calls.
pub fn read_from(host: &impl Host, needs: &Needs, headers: &HeaderMap) -> RequestInfo {
    needs.load_with(
        |name| headers.get_first(name).map(<[u8]>::to_vec),
        |path| host.property(path),
    )
}

/// [`read`] from the proxy (until each filter's request path takes a `Host`).
pub fn load(needs: &Needs) -> RequestInfo {
    read(&ProxyHost, needs)
}

/// [`read_from`] the proxy (until each filter's request path takes a `Host`).
pub fn load_from(needs: &Needs, headers: &HeaderMap) -> RequestInfo {
    read_from(&ProxyHost, needs, headers)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::fake_host::{FakeHost, Op};

    fn needs() -> Needs {
        Needs {
            route: true,
            path: true,
            headers: vec!["x-a".to_string()],
            ..Needs::default()
        }
    }

    #[test]
    fn reads_only_what_is_needed() {
        let host = FakeHost::new();
        host.script_headers(
            MapType::HttpRequestHeaders,
            &[(":path", "/p"), (":method", "GET"), ("x-a", "1")],
        );
        host.script_property(&["xds", "route_name"], b"r");
        let info = read(&host, &needs());
        assert_eq!(info.path.as_deref(), Some("/p"));
        assert_eq!(info.route.as_deref(), Some("r"));
        assert_eq!(info.method, None, "not needed, not read");
        assert_eq!(info.headers, vec![("x-a".to_string(), b"1".to_vec())]);
        assert_eq!(host.count(Op::Header), 2);
        assert_eq!(host.count(Op::Property), 1);

        // With the map already read, only the property costs a call.
        host.clear_calls();
        let map = host.header_map(MapType::HttpRequestHeaders);
        let again = read_from(&host, &needs(), &map);
        assert_eq!(again, info);
        assert_eq!(host.call_count(), 2);
    }
}
