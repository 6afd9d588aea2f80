//! A good response copied into the stale cache as it streams by: begun on the response headers when
//! the response may be stored, fed each body chunk, stored when the body ends.

use super::facts::RequestFacts;
use super::vm::Vm;
use crate::cache::Entry;
use crate::policy::{self, NotStored};
use crate::store;
use filter_common::host::{Buffer, Host, MapType};

pub struct Capture {
    content_type: String,
    body: Vec<u8>,
    limit: usize,
    initial_age_s: u32,
    lifetime_s: u32,
    serve_for_ns: u64,
    vary: Vec<String>,
    vary_hash: u128,
}

/// What a body chunk did to a capture.
#[derive(Debug, PartialEq, Eq)]
pub enum Fed {
    /// More body to come.
    Going,
    /// The body ended: the capture is complete.
    Complete,
    /// Too large, or the chunk could not be read: nothing is stored.
    Dropped,
}

impl Capture {
    /// The capture of a good response another caller may be served (`policy::storable`) when
    /// `may_store`, reading the response headers in one host call (every `Cache-Control`, `Vary` and
    /// `Age` line counts). A response that forbids reuse removes the key's older entry instead.
    pub fn begin(
        host: &impl Host,
        vm: &Vm,
        facts: &RequestFacts,
        limit: usize,
        may_store: bool,
    ) -> Option<Capture> {
        let response = host.header_map(MapType::HttpResponseHeaders);
        let storable = match policy::storable(&response, limit) {
            Ok(s) if may_store => s,
            Ok(_) | Err(NotStored::Unsuitable) => return None,
            Err(NotStored::ForbidsReuse) => {
                let key = cache_key(vm, facts);
                if let Some(freed) = store::remove(host, &vm.slot_key(key), key) {
                    let freed = i64::try_from(freed).unwrap_or(i64::MAX);
                    vm.metrics.cache_bytes.add_on(host, -freed);
                }
                return None;
            }
        };
        let vary_hash = facts.vary_hash(&storable.vary);
        Some(Capture {
            content_type: storable.content_type,
            body: Vec::new(),
            limit,
            initial_age_s: storable.initial_age_s,
            lifetime_s: storable.lifetime_s,
            serve_for_ns: storable.serve_for_ns,
            vary: storable.vary,
            vary_hash,
        })
    }

    /// Copies one body chunk as it passes (the filter never holds a good response back).
    pub fn feed(&mut self, host: &impl Host, body_size: usize, end_of_stream: bool) -> Fed {
        if self.body.len().saturating_add(body_size) > self.limit {
            return Fed::Dropped;
        }
        if body_size > 0 {
            match host.buffer(Buffer::HttpResponseBody, 0, body_size) {
                Some(chunk) => self.body.extend_from_slice(&chunk),
                None => return Fed::Dropped,
            }
        }
        if end_of_stream {
            Fed::Complete
        } else {
            Fed::Going
        }
    }

    /// Stores the completed capture (stored at `now`), counting stores, evictions and the bytes held
    /// across workers.
    pub fn store(self, host: &impl Host, vm: &Vm, facts: &RequestFacts, now: u64) {
        let key = cache_key(vm, facts);
        let entry = Entry {
            key,
            stored_at_ns: now,
            initial_age_s: self.initial_age_s,
            lifetime_s: self.lifetime_s,
            serve_for_ns: self.serve_for_ns,
            vary: filter_common::text::join(&self.vary, ","),
            vary_hash: self.vary_hash,
            content_type: self.content_type,
            body: self.body,
        };
        if let Some(written) = store::write(host, &vm.slot_key(key), &entry) {
            let metrics = &vm.metrics;
            metrics.cache_stores.add_on(host, 1);
            if written.evicted {
                metrics.cache_evictions.add_on(host, 1);
            }
            metrics.cache_bytes.add_on(host, written.bytes_delta);
        }
    }
}

/// The request's cache key under its rule's key headers.
fn cache_key(vm: &Vm, facts: &RequestFacts) -> u128 {
    let names = vm
        .config
        .rules
        .get(facts.rule)
        .map(|r| r.response.key_headers.as_slice())
        .unwrap_or_default();
    facts.cache_key(names)
}
