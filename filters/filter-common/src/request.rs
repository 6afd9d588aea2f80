//! Reads from the host the request attributes a configuration needs ([`Needs`]): the host-facing half
//! of `matching`.

use crate::headers::HeaderMap;
use crate::host::{self, MapType};
use crate::matching::{Needs, RequestInfo};

/// One host call per needed attribute.
pub fn load(needs: &Needs) -> RequestInfo {
    needs.load_with(
        |name| host::header(MapType::HttpRequestHeaders, name),
        host::property,
    )
}

/// Like [`load`], with the request headers already read in one call.
pub fn load_from(needs: &Needs, headers: &HeaderMap) -> RequestInfo {
    needs.load_with(
        |name| headers.get_first(name).map(<[u8]>::to_vec),
        host::property,
    )
}
