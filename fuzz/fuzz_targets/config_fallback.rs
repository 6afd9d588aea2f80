//! The fallback filter's configuration JSON (as Istio's pluginConfig or Envoy's configuration arrive), and
//! what the filter derives from a configuration it accepts.
#![no_main]

use fallback::config::Config;
use fallback::render::Negotiated;
use filter_common::config::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = parse::<Config>(Some(data)) {
        let _ = fallback::memory::budget(&config);
        derived(config);
    }
});

fn derived(config: Config) {
    let _ = config.cache.slots();
    for rule in &config.rules {
        let _ = fallback::config::otherwise(&rule.response);
        let vars = fallback::render::Vars::default();
        for format in [Negotiated::Json, Negotiated::Html, Negotiated::Text] {
            let _ = fallback::render::problem(&rule.response, &vars, format);
        }
        let _ = fallback::render::static_response(&rule.response, &vars);
    }
}
