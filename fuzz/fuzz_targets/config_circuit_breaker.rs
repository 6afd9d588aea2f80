//! The circuit_breaker filter's configuration JSON (as Istio's pluginConfig or Envoy's configuration arrive), and
//! what the filter derives from a configuration it accepts.
#![no_main]

use circuit_breaker::config::Config;
use filter_common::config::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = parse::<Config>(Some(data)) {
        let _ = circuit_breaker::memory::budget(&config);
        derived(config);
    }
});

fn derived(config: Config) {
    for b in &config.breakers {
        let _ = circuit_breaker::memory::breaker_bytes(b);
        let _ = circuit_breaker::window::Stripe::new(1, b).encode();
        let _ = circuit_breaker::slots::touch_interval_ns(b);
        let _ = circuit_breaker::slots::idle_after_ns(b);
        for trips in [0, 1, 64, u32::MAX] {
            let _ = circuit_breaker::state::open_duration_ns(b, trips, 0.999);
        }
    }
}
