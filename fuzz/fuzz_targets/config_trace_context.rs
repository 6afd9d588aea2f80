//! The trace_context filter's configuration JSON (as Istio's pluginConfig or Envoy's configuration arrive), and
//! what the filter derives from a configuration it accepts.
#![no_main]

use filter_common::config::parse;
use libfuzzer_sys::fuzz_target;
use trace_context::config::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = parse::<Config>(Some(data)) {
        let _ = trace_context::memory::budget(&config);
        derived(config);
    }
});

fn derived(config: Config) {
    let _ = config.baggage.limits();
    let _ = trace_context::propagation::Propagator::new(config);
}
