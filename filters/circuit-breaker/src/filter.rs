//! The proxy-wasm shell: loads the configuration, builds the plugin's state and forwards each callback
//! to `stage` over the configuration's host (`ProxyHost`, its counters batched when
//! `metricsFlushInterval` is set). Everything the filter decides lives in `stage`.

use crate::stage::{Plugin, Stream, Worker};
use filter_common::host::{Host, ProxyHost};
use filter_common::metric_batch::MetricBatch;
use filter_common::plugin::load_config_from;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::cell::{OnceCell, RefCell};
use std::rc::Rc;

// The module's entry point: only the Wasm build exports it, so native builds (tests, fuzzing) can link
// several filter crates into one binary.
#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(filter_common::plugin::LOG_LEVEL);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(BreakerRoot::default()) });
}}

thread_local! {
    /// This VM's `Worker`, handed to every root context it runs. Envoy runs a configuration push in
    /// the same VM with a new root context, and the SDK makes root contexts from a plain `fn`, which
    /// can hold nothing: the VM's window, stripe lease and permits outlive a configuration only here.
    static WORKER: OnceCell<Rc<RefCell<Worker>>> = const { OnceCell::new() };
}

fn worker() -> Rc<RefCell<Worker>> {
    WORKER.with(|w| {
        w.get_or_init(|| Rc::new(RefCell::new(Worker::new(ProxyHost.now_nanos()))))
            .clone()
    })
}

/// One configuration: the host its callbacks use and the plugin's state, shared with every stream.
/// Dropped with the root context and its last stream (Envoy deletes both when it retires the plugin),
/// when the host sends the counts it still holds: it is the last field, so it drops last.
struct Configured {
    plugin: Plugin,
    host: MetricBatch<ProxyHost>,
}

#[derive(Default)]
struct BreakerRoot {
    configured: Option<Rc<Configured>>,
}

impl Context for BreakerRoot {}

impl RootContext for BreakerRoot {
    /// The plugin's timer (at the smaller of its renewal period and `metricsFlushInterval`): the
    /// breaker's renewals when due, then the counters (nothing to send when batching is off).
    fn on_tick(&mut self) {
        if let Some(c) = &self.configured {
            c.plugin.on_tick(&c.host);
            c.host.flush();
        }
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(config) = load_config_from(&ProxyHost, crate::memory::load) else {
            return false;
        };
        // A configuration this root context replaces: its streams still running count at once, as
        // the timer now flushes only the new one.
        if let Some(old) = self.configured.take() {
            old.host.finish();
        }
        let host = MetricBatch::new(ProxyHost, config.metrics_flush_interval.0);
        // Sets the timer (through `host`: a refused timer ends batching).
        let plugin = Plugin::configure(&host, config, worker());
        self.configured = Some(Rc::new(Configured { plugin, host }));
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // The SDK requires a context; without a configuration the stream just passes through.
        Some(Box::new(BreakerStream {
            configured: self.configured.clone(),
            stage: Stream::default(),
        }))
    }
}

struct BreakerStream {
    configured: Option<Rc<Configured>>,
    stage: Stream,
}

impl Context for BreakerStream {}

impl HttpContext for BreakerStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match &self.configured {
            Some(c) => self.stage.on_request_headers(&c.host, &c.plugin),
            None => Action::Continue,
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match &self.configured {
            Some(c) => self.stage.on_response_headers(&c.host, &c.plugin),
            None => Action::Continue,
        }
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        match &self.configured {
            Some(c) => self.stage.on_response_trailers(&c.host, &c.plugin),
            None => Action::Continue,
        }
    }

    fn on_log(&mut self) {
        if let Some(c) = &self.configured {
            self.stage.on_log(&c.host, &c.plugin);
        }
        filter_common::host::stream_end();
    }
}

impl Drop for BreakerStream {
    /// A stream that ends without `on_log` (the host skipped it) still gives its permit back.
    fn drop(&mut self) {
        if let Some(c) = &self.configured {
            self.stage.on_drop(&c.host, &c.plugin);
        }
    }
}
