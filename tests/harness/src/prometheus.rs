//! A real Prometheus server (Debian's `prometheus` package) scraping test Envoys, and its HTTP query
//! API.
//!
//! Each instance has its own config, its own TSDB directory and a free loopback port, so it never
//! depends on (or disturbs) a system service the package may have started.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::client::try_http1;

/// How long Prometheus gets to answer `/-/ready`.
pub const PROMETHEUS_READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The Prometheus binary: `PROMETHEUS_BIN`, else `/usr/bin/prometheus` (Debian's package).
pub fn prometheus_bin() -> PathBuf {
    match std::env::var_os("PROMETHEUS_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("/usr/bin/prometheus"),
    }
}

/// A running Prometheus; killed (and its TSDB removed) on drop.
pub struct Prometheus {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus scraping `/stats/prometheus` of the Envoy admin ports `targets` every
    /// `interval`, adding `labels` to every series (as a Kubernetes scrape adds `namespace` and
    /// `pod`), and waits until it is ready.
    pub async fn start(targets: &[u16], labels: &[(&str, &str)], interval: Duration) -> Prometheus {
        let bin = prometheus_bin();
        if !bin.exists() {
            panic!(
                "Prometheus binary {} not found: `apt-get install prometheus` (Debian) or set \
                 PROMETHEUS_BIN",
                bin.display()
            );
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("e2e-prometheus-{}-{nanos}", std::process::id()));
        fs::create_dir_all(dir.join("data")).unwrap();
        let ms = interval.as_millis().max(1);
        let list = targets
            .iter()
            .map(|p| format!("'127.0.0.1:{p}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let labels = labels
            .iter()
            .map(|(k, v)| format!("{k}: {}", serde_json::Value::from(*v)))
            .collect::<Vec<_>>()
            .join(", ");
        let config = format!(
            "global:\n  scrape_interval: {ms}ms\n  scrape_timeout: {ms}ms\n  evaluation_interval: {ms}ms\n\
             scrape_configs:\n- job_name: envoy\n  metrics_path: /stats/prometheus\n  \
             static_configs:\n  - targets: [{list}]\n    labels: {{{labels}}}\n"
        );
        fs::write(dir.join("prometheus.yml"), config).unwrap();
        // A port picked by binding :0 can be taken again before Prometheus binds it: retry then.
        for _ in 0..3 {
            let port = crate::upstream::free_port();
            let log = fs::File::create(dir.join("prometheus.log")).unwrap();
            let child = Command::new(&bin)
                .arg(format!(
                    "--config.file={}",
                    dir.join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("spawning {}: {e}", bin.display()));
            let mut prom = Prometheus {
                child,
                port,
                dir: dir.clone(),
            };
            if prom.wait_ready().await {
                return prom;
            }
        }
        panic!(
            "Prometheus did not become ready; log:\n{}",
            fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
        );
    }

    /// True once `/-/ready` answers 200; false if the process exited (a port taken) or after
    /// [`PROMETHEUS_READY_TIMEOUT`].
    async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + PROMETHEUS_READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(r) = try_http1(self.port, "GET", "/-/ready", &[], "").await {
                if r.status == 200 {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// An instant query (`/api/v1/query`): the `result` array, or Prometheus' error.
    pub async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let path = format!("/api/v1/query?query={}", percent_encode(expr));
        let r = try_http1(self.port, "GET", &path, &[], "").await?;
        let json: Value = serde_json::from_slice(&r.body)
            .map_err(|e| format!("HTTP {}: {e}: {}", r.status, r.text()))?;
        if json["status"] != "success" {
            return Err(format!("{}: {}", json["errorType"], json["error"]));
        }
        Ok(json["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Polls [`Self::query`] until `ok` accepts the result, for at most `timeout`; returns that
    /// result, or panics with the last one (or the query's error, at once).
    pub async fn wait_query(
        &self,
        expr: &str,
        timeout: Duration,
        ok: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let result = self
                .query(expr)
                .await
                .unwrap_or_else(|e| panic!("query {expr}: {e}"));
            if ok(&result) {
                return result;
            }
            if Instant::now() >= deadline {
                panic!("query {expr}: condition not met after {timeout:?}; result: {result:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// This instance's log, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- Prometheus log ---\n{}", self.log());
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters, for a query parameter.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
