//! What istiod (and istio-agent) send a sidecar's Envoy for a `WasmPlugin`, rebuilt from the
//! manifest so the real Envoy can be given exactly that through file-based ECDS.
//!
//! Sources (istio/istio): `pilot/pkg/model/extensions.go` (`buildPluginConfig`, `buildVMConfig`,
//! `buildDataSource`, `WasmPluginResourceNamePrefix`), `pilot/pkg/networking/core/extension/
//! wasmplugin.go` (`toEnvoyHTTPFilter`: the HTTP filter is an ECDS reference, blocking warm-up),
//! `pilot/pkg/model/push_context.go` (`WasmPluginsByListenerInfo`: grouped by phase, sorted by
//! priority, highest first, ties in creation order), `pkg/wasm/convert.go` (istio-agent downloads the
//! module, rewrites `code.remote` into `code.local.filename` and strips only the pull-secret variable).
//!
//! What differs from a mesh, on purpose: the ECDS resources come from a file (`path_config_source`)
//! instead of istiod's ADS stream, and the module is a local file from the start (what istio-agent
//! hands Envoy after its download). Istio's own filters (authn, rbac, stats) are not in the chain.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{json, Value};

use crate::config::{workspace_root, HttpFilter};

/// VM environment variable carrying the WasmPlugin's Kubernetes resource version
/// (`pkg/model` `WasmResourceVersionEnv`); istio-agent leaves it in, so Envoy sees it.
pub const RESOURCE_VERSION_ENV: &str = "ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION";
/// VM environment variable carrying `imagePullPolicy` when set (`WasmPolicyEnv`).
pub const PULL_POLICY_ENV: &str = "ISTIO_META_WASM_IMAGE_PULL_POLICY";
/// Prefix of the ECDS resource (and HTTP filter) name (`WasmPluginResourceNamePrefix`).
pub const RESOURCE_NAME_PREFIX: &str = "extensions.istio.io/wasmplugin/";
/// The only runtime istiod asks for (`defaultRuntime`).
pub const RUNTIME: &str = "envoy.wasm.runtime.v8";
pub const WASM_FILTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
/// istiod also accepts an RBAC filter under the same name: istio-agent substitutes an allow-all
/// (FAIL_OPEN) or deny-all one when the module cannot be fetched.
pub const RBAC_FILTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";

/// `phase`: where in the HTTP chain the plugin goes. Declaration order is chain order (the
/// unspecified phase goes last, just before the router).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Authn,
    Authz,
    Stats,
    Unspecified,
}

/// Listener direction, as the sidecar's listeners set `traffic_direction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `SERVER` mode (the sidecar's inbound listener).
    Inbound,
    /// `CLIENT` mode (outbound listeners).
    Outbound,
}

/// The Istio version of the proxy istiod generates for: before 1.25 the failure strategy travels as
/// the deprecated `fail_open` boolean, from 1.25 as `failure_policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyVersion {
    pub major: u32,
    pub minor: u32,
}

impl ProxyVersion {
    pub const CURRENT: ProxyVersion = ProxyVersion {
        major: 1,
        minor: 27,
    };

    fn has_failure_policy(self) -> bool {
        (self.major, self.minor) >= (1, 25)
    }
}

/// One `WasmPlugin` (extensions.istio.io/v1alpha1) as istiod reads it.
#[derive(Debug, Clone)]
pub struct WasmPlugin {
    pub namespace: String,
    pub name: String,
    /// `metadata.resourceVersion` (the API server sets it; a test chooses it).
    pub resource_version: String,
    pub url: String,
    pub sha256: Option<String>,
    pub plugin_name: String,
    pub phase: Phase,
    pub priority: i64,
    /// `FAIL_CLOSE` (the default), `FAIL_OPEN` or `FAIL_RELOAD`.
    pub fail_strategy: String,
    pub image_pull_policy: Option<String>,
    /// `pluginConfig`; `None` or an empty object is "no configuration".
    pub plugin_config: Option<Value>,
    /// `match[].mode`; empty matches every listener.
    pub modes: Vec<String>,
}

impl WasmPlugin {
    /// Parses one manifest (a single YAML document).
    pub fn from_yaml(text: &str, namespace: &str, resource_version: &str) -> Result<Self, String> {
        let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| format!("YAML: {e}"))?;
        if doc["kind"] != "WasmPlugin" {
            return Err(format!("not a WasmPlugin: kind {}", doc["kind"]));
        }
        let spec = &doc["spec"];
        let text_of = |v: &Value| v.as_str().map(str::to_string);
        let name = text_of(&doc["metadata"]["name"]).ok_or("metadata.name missing")?;
        let namespace = text_of(&doc["metadata"]["namespace"]).unwrap_or(namespace.to_string());
        let phase = match spec["phase"].as_str() {
            None | Some("UNSPECIFIED_PHASE") => Phase::Unspecified,
            Some("AUTHN") => Phase::Authn,
            Some("AUTHZ") => Phase::Authz,
            Some("STATS") => Phase::Stats,
            Some(other) => return Err(format!("unknown phase {other}")),
        };
        if let Some(t) = spec["type"].as_str() {
            if t != "HTTP" {
                return Err(format!("type {t}: only HTTP plugins are modelled"));
            }
        }
        let modes = spec["match"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| m["mode"].as_str().unwrap_or("UNDEFINED").to_string())
            .collect();
        Ok(WasmPlugin {
            namespace,
            name,
            resource_version: resource_version.to_string(),
            url: text_of(&spec["url"]).ok_or("spec.url missing")?,
            sha256: text_of(&spec["sha256"]),
            plugin_name: text_of(&spec["pluginName"]).unwrap_or_default(),
            phase,
            priority: spec["priority"].as_i64().unwrap_or(0),
            fail_strategy: text_of(&spec["failStrategy"]).unwrap_or("FAIL_CLOSE".to_string()),
            image_pull_policy: text_of(&spec["imagePullPolicy"])
                .filter(|p| p != "UNSPECIFIED_POLICY"),
            plugin_config: spec.get("pluginConfig").cloned().filter(|c| !c.is_null()),
            modes,
        })
    }

    /// The manifests of `istio/base/` in the order `kustomization.yaml` lists them (taken as their
    /// creation order, which breaks priority ties), in `namespace`, resource version "1".
    pub fn base(namespace: &str) -> Vec<WasmPlugin> {
        let dir = workspace_root().join("istio/base");
        let kustomization = fs::read_to_string(dir.join("kustomization.yaml"))
            .unwrap_or_else(|e| panic!("reading istio/base/kustomization.yaml: {e}"));
        let k: Value = serde_yaml_ng::from_str(&kustomization)
            .unwrap_or_else(|e| panic!("istio/base/kustomization.yaml: {e}"));
        k["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|file| {
                let text = fs::read_to_string(dir.join(file))
                    .unwrap_or_else(|e| panic!("reading istio/base/{file}: {e}"));
                WasmPlugin::from_yaml(&text, namespace, "1")
                    .unwrap_or_else(|e| panic!("istio/base/{file}: {e}"))
            })
            .collect()
    }

    /// `<namespace>.<name>`: `PluginConfig.name`, what the filter reads as `plugin_name`.
    pub fn plugin_config_name(&self) -> String {
        format!("{}.{}", self.namespace, self.name)
    }

    /// The ECDS resource name, also the HTTP filter's name in the listener.
    pub fn resource_name(&self) -> String {
        format!("{RESOURCE_NAME_PREFIX}{}", self.plugin_config_name())
    }

    /// Envoy's `failure_policy` for `failStrategy`.
    pub fn failure_policy(&self) -> &'static str {
        match self.fail_strategy.as_str() {
            "FAIL_OPEN" => "FAIL_OPEN",
            "FAIL_RELOAD" => "FAIL_RELOAD",
            _ => "FAIL_CLOSED",
        }
    }

    /// Whether istiod puts this plugin on a listener of `direction` (`matchMode`).
    pub fn applies_to(&self, direction: Direction) -> bool {
        let wanted = match direction {
            Direction::Inbound => "SERVER",
            Direction::Outbound => "CLIENT",
        };
        self.modes.is_empty()
            || self
                .modes
                .iter()
                .any(|m| m == wanted || m == "CLIENT_AND_SERVER" || m == "UNDEFINED")
    }

    /// `configuration`: the JSON of `pluginConfig` in a `StringValue`, or an empty `Any` (`{}`:
    /// present, no type, no bytes) when there is none.
    pub fn configuration(&self) -> Value {
        match &self.plugin_config {
            Some(c) if c.as_object().is_some_and(|o| !o.is_empty()) => json!({
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": struct_json(c),
            }),
            _ => json!({}),
        }
    }

    /// `envoy.extensions.filters.http.wasm.v3.Wasm` after istio-agent's rewrite: the module is the
    /// local file `code`.
    pub fn wasm_filter(&self, code: &Path, proxy: ProxyVersion) -> Value {
        let mut env = serde_json::Map::new();
        if let Some(p) = &self.image_pull_policy {
            env.insert(PULL_POLICY_ENV.to_string(), json!(p));
        }
        env.insert(
            RESOURCE_VERSION_ENV.to_string(),
            json!(self.resource_version),
        );
        let mut config = json!({
            "name": self.plugin_config_name(),
            "root_id": self.plugin_name,
            "configuration": self.configuration(),
            "vm_config": {
                "runtime": RUNTIME,
                "code": {"local": {"filename": code.to_string_lossy()}},
                "environment_variables": {"key_values": env},
            },
        });
        if proxy.has_failure_policy() {
            config["failure_policy"] = json!(self.failure_policy());
        } else {
            config["fail_open"] = json!(self.fail_strategy == "FAIL_OPEN");
        }
        json!({"@type": WASM_FILTER_TYPE, "config": config})
    }

    /// The ECDS resource: a `TypedExtensionConfig` named [`Self::resource_name`].
    pub fn extension_config(&self, code: &Path, proxy: ProxyVersion) -> Value {
        json!({
            "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
            "name": self.resource_name(),
            "typed_config": self.wasm_filter(code, proxy),
        })
    }
}

/// A `google.protobuf.Struct` as Go's protojson writes it (what istiod's `protomarshal.ToJSON`
/// gives): keys sorted, every number a double printed in its shortest form without a fraction when
/// integral (`1.0` arrives as `1`), exponent form below 1e-6 and from 1e21.
pub fn struct_json(v: &Value) -> String {
    let mut out = String::new();
    write_struct_json(&mut out, v);
    out
}

fn write_struct_json(out: &mut String, v: &Value) {
    match v {
        Value::Null | Value::Bool(_) | Value::String(_) => out.push_str(&v.to_string()),
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            let a = f.abs();
            if a != 0.0 && !(1e-6..1e21).contains(&a) {
                // Go: 1e+21, 1e-07.
                let s = format!("{f:e}");
                let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
                let (sign, digits) = e.strip_prefix('-').map_or(("+", e), |d| ("-", d));
                let _ = write!(out, "{m}e{sign}{digits:0>2}");
            } else {
                let _ = write!(out, "{f}");
            }
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_struct_json(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(k.as_str()).to_string());
                out.push(':');
                write_struct_json(out, &map[k]);
            }
            out.push('}');
        }
    }
}

/// The plugins istiod puts on a listener of `direction`, in chain order: by phase (AUTHN, AUTHZ,
/// STATS, then none, just before the router), within a phase by priority, highest first, ties in
/// the given (creation) order.
pub fn chain(plugins: &[WasmPlugin], direction: Direction) -> Vec<&WasmPlugin> {
    let mut out: Vec<&WasmPlugin> = plugins.iter().filter(|p| p.applies_to(direction)).collect();
    out.sort_by_key(|p| (p.phase, std::cmp::Reverse(p.priority)));
    out
}

/// A directory of ECDS files, one per resource, that Envoy watches (`path_config_source`), plus the
/// modules they point at. Removed on drop unless the thread is panicking.
pub struct Ecds {
    dir: PathBuf,
    proxy: ProxyVersion,
    seq: AtomicU32,
}

impl Ecds {
    pub fn new() -> Ecds {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "e2e-ecds-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        Ecds {
            dir,
            proxy: ProxyVersion::CURRENT,
            seq: AtomicU32::new(0),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file holding `plugin`'s resource.
    pub fn path(&self, plugin: &WasmPlugin) -> PathBuf {
        self.dir
            .join(format!("{}.yaml", plugin.plugin_config_name()))
    }

    /// Stores `module` as istio-agent's cache does, under its SHA-256, and returns the file.
    pub fn module(&self, module: &[u8]) -> PathBuf {
        let path = self.dir.join(format!("{}.wasm", sha256_hex(module)));
        fs::write(&path, module).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    /// Serves `plugin` with `code`. Envoy's filesystem subscription watches the file for a rename
    /// onto it (`MovedTo`, source/extensions/config_subscription/filesystem/
    /// filesystem_subscription_impl.cc), so the file is written beside it and renamed into place:
    /// one atomic update, never a half-written file.
    pub fn publish(&self, plugin: &WasmPlugin, code: &Path) {
        let response = json!({
            "version_info": plugin.resource_version,
            "resources": [plugin.extension_config(code, self.proxy)],
        });
        self.publish_raw(plugin, &response.to_string());
    }

    /// Writes `text` (a `DiscoveryResponse`) as `plugin`'s file, atomically.
    pub fn publish_raw(&self, plugin: &WasmPlugin, text: &str) {
        let path = self.path(plugin);
        let tmp = self
            .dir
            .join(format!(".{}.tmp", self.seq.fetch_add(1, Ordering::Relaxed)));
        fs::write(&tmp, text).unwrap_or_else(|e| panic!("writing {}: {e}", tmp.display()));
        fs::rename(&tmp, &path).unwrap_or_else(|e| panic!("renaming to {}: {e}", path.display()));
    }

    /// The HTTP filter istiod puts in the listener for `plugin`: a reference to its ECDS resource,
    /// here read from [`Self::path`]. No default config and no initial fetch timeout (istiod blocks
    /// the listener's warm-up until the plugin arrives).
    pub fn http_filter(&self, plugin: &WasmPlugin) -> HttpFilter {
        HttpFilter::raw(format!(
            "name: {name}\nconfig_discovery:\n  config_source:\n    path_config_source: {{path: {path}}}\n    resource_api_version: V3\n    initial_fetch_timeout: 0s\n  type_urls: [{WASM_FILTER_TYPE}, {RBAC_FILTER_TYPE}]\n",
            name = Value::from(plugin.resource_name()),
            path = Value::from(self.path(plugin).to_string_lossy().as_ref()),
        ))
    }
}

impl Default for Ecds {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Ecds {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// (`update_success`, `update_rejected`) of `plugin`'s ECDS subscription in `envoy`. (`config_reload`
/// counts attempts: it moves for a rejected update too.)
pub async fn ecds_counters(envoy: &crate::envoy::Envoy, plugin: &WasmPlugin) -> (u64, u64) {
    let stats = envoy.stats().await;
    let sum = |suffix: &str| {
        stats
            .iter()
            .filter(|(k, _)| {
                k.starts_with("extension_config_discovery.")
                    && k.contains(&plugin.resource_name())
                    && k.ends_with(suffix)
            })
            .map(|(_, v)| *v)
            .sum::<u64>()
    };
    (sum(".update_success"), sum(".update_rejected"))
}

/// The built module of a plugin, by its `pluginName` (`circuit-breaker` -> dist/circuit_breaker.wasm).
pub fn module_bytes(plugin: &WasmPlugin) -> Vec<u8> {
    let path = crate::config::dist(&format!("{}.wasm", plugin.plugin_name.replace('-', "_")));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What Envoy did with a published resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    Accepted,
    Rejected,
}

/// Publishes `plugin` with `module` through `ecds` and waits (at most `wait`) until Envoy accepted or
/// rejected it: the ECDS counters of its resource move.
pub async fn publish_and_wait(
    envoy: &crate::envoy::Envoy,
    ecds: &Ecds,
    plugin: &WasmPlugin,
    module: &[u8],
    wait: std::time::Duration,
) -> Update {
    let before = ecds_counters(envoy, plugin).await;
    let code = ecds.module(module);
    ecds.publish(plugin, &code);
    let deadline = std::time::Instant::now() + wait;
    loop {
        let now = ecds_counters(envoy, plugin).await;
        if now.0 > before.0 {
            return Update::Accepted;
        }
        if now.1 > before.1 {
            return Update::Rejected;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Envoy did not pick up {} version {} within {wait:?}",
            plugin.resource_name(),
            plugin.resource_version
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A module with the same code and a custom section `name` holding `label` appended: different bytes
/// (a new SHA-256, a new VM key), the same behaviour.
pub fn with_custom_section(module: &[u8], name: &[u8], label: &str) -> Vec<u8> {
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(label.as_bytes());
    let mut out = module.to_vec();
    out.push(0); // custom section id
    let mut n = payload.len();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(&payload);
    out
}

/// SHA-256 as lower hex (the `sha256` field's form).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: demo}
spec:
  url: oci://registry.example.com/demo:1
  pluginName: demo-root
  phase: AUTHZ
  priority: 7
  failStrategy: FAIL_RELOAD
  imagePullPolicy: Always
  match: [{mode: SERVER}]
  pluginConfig: {"b": 1.0, "a": [0.5, 200, 1e21, 0.0000001], "s": "x<y"}
"#;

    #[test]
    fn manifest_becomes_istiods_plugin_config() {
        let p = WasmPlugin::from_yaml(MANIFEST, "shop", "42").unwrap();
        let f = p.wasm_filter(Path::new("/cache/abc.wasm"), ProxyVersion::CURRENT);
        let c = &f["config"];
        assert_eq!(
            p.resource_name(),
            "extensions.istio.io/wasmplugin/shop.demo"
        );
        assert_eq!(c["name"], "shop.demo");
        assert_eq!(c["root_id"], "demo-root");
        assert_eq!(
            c["configuration"]["value"],
            r#"{"a":[0.5,200,1e+21,1e-07],"b":1,"s":"x<y"}"#
        );
        assert_eq!(c["vm_config"]["runtime"], RUNTIME);
        assert!(c["vm_config"].get("vm_id").is_none(), "{c}");
        assert_eq!(
            c["vm_config"]["code"]["local"]["filename"],
            "/cache/abc.wasm"
        );
        let env = &c["vm_config"]["environment_variables"]["key_values"];
        assert_eq!(env[RESOURCE_VERSION_ENV], "42");
        assert_eq!(env[PULL_POLICY_ENV], "Always");
        assert_eq!(c["failure_policy"], "FAIL_RELOAD");
        assert!(c.get("fail_open").is_none());
        assert!(p.applies_to(Direction::Inbound));
        assert!(!p.applies_to(Direction::Outbound));
    }

    #[test]
    fn empty_plugin_config_is_an_empty_any_and_old_proxies_get_fail_open() {
        let text = MANIFEST.replace(
            r#"pluginConfig: {"b": 1.0, "a": [0.5, 200, 1e21, 0.0000001], "s": "x<y"}"#,
            "pluginConfig: {}",
        );
        let mut p = WasmPlugin::from_yaml(&text, "shop", "1").unwrap();
        assert_eq!(p.configuration(), json!({}));
        p.plugin_config = None;
        assert_eq!(p.configuration(), json!({}));
        p.fail_strategy = "FAIL_OPEN".into();
        let old = ProxyVersion {
            major: 1,
            minor: 24,
        };
        let c = &p.wasm_filter(Path::new("m.wasm"), old)["config"];
        assert_eq!(c["fail_open"], true);
        assert!(c.get("failure_policy").is_none());
    }

    #[test]
    fn chain_orders_by_phase_then_priority() {
        let plugin = |name: &str, phase, priority| WasmPlugin {
            namespace: "ns".into(),
            name: name.into(),
            resource_version: "1".into(),
            url: "oci://x".into(),
            sha256: None,
            plugin_name: name.into(),
            phase,
            priority,
            fail_strategy: "FAIL_CLOSE".into(),
            image_pull_policy: None,
            plugin_config: None,
            modes: vec!["CLIENT".into()],
        };
        let all = vec![
            plugin("last", Phase::Unspecified, 99),
            plugin("authz", Phase::Authz, 0),
            plugin("authn-low", Phase::Authn, 1),
            plugin("stats", Phase::Stats, 0),
            plugin("authn-high", Phase::Authn, 5),
            plugin("authn-low-2", Phase::Authn, 1),
        ];
        let names: Vec<&str> = chain(&all, Direction::Outbound)
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "authn-high",
                "authn-low",
                "authn-low-2",
                "authz",
                "stats",
                "last"
            ]
        );
        assert!(chain(&all, Direction::Inbound).is_empty());
    }

    #[test]
    fn shipped_manifests_give_the_documented_chain() {
        let base = WasmPlugin::base("default");
        let outbound: Vec<&str> = chain(&base, Direction::Outbound)
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(outbound, ["trace-context", "fallback", "circuit-breaker"]);
        let inbound: Vec<&str> = chain(&base, Direction::Inbound)
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(inbound, ["trace-context"]);
    }
}
