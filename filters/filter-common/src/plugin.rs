//! Start-up steps every filter takes the same way.

use crate::config::{parse, FromJson, Validate};
use crate::host::{Host, LogLevel, ProxyHost};

/// The level every filter logs at: configuration errors, transitions and one-off warnings, never a line
/// per request. Envoy's own `wasm` log level filters further; a message below this one costs no host
/// call at all.
pub const LOG_LEVEL: LogLevel = LogLevel::Info;

/// Reads and checks the plugin configuration. On error it logs exactly one line naming the filter, the
/// field and the reason, and returns `None`; the filter then returns `false` from `on_configure`, which
/// makes Envoy reject the configuration instead of running with a guess.
pub fn load_config<T>(filter: &str) -> Option<T>
where
    T: FromJson + Default + Validate,
{
    load_config_from(&ProxyHost, filter)
}

/// [`load_config`] from `host`.
pub fn load_config_from<T>(host: &impl Host, filter: &str) -> Option<T>
where
    T: FromJson + Default + Validate,
{
    let raw = host.plugin_configuration();
    match parse::<T>(raw.as_deref()) {
        Ok(config) => Some(config),
        Err(e) => {
            log::error!("{filter}: {e}");
            None
        }
    }
}
