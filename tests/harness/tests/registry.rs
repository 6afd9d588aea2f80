//! Issue 8, images: the modules travel through a real registry (Debian's `docker-registry`, the CNCF
//! distribution registry, started here on loopback with htpasswd authentication) as images Istio's
//! fetcher loads. The push, pull and pin go through `tools/wasm-image` exactly as `make push` / `make pin`
//! run it; what the registry then serves is read back here over its HTTP API, independently of the tool,
//! and held against what istio/istio `pkg/wasm/imagefetcher.go` accepts:
//! - a Docker v2 schema 2 manifest whose (last) layer is `application/vnd.docker.image.rootfs.diff.tar.gzip`;
//! - else one `application/vnd.oci.image.layer.v1.tar+gzip` layer;
//! - in both, a gzip tar with an entry whose base name is `plugin.wasm` (`extractWasmPluginBinary`);
//! - else exactly two layers, one `application/vnd.module.wasm.content.layer.v1+wasm` holding the raw module;
//!
//! and, for `sha256` in a WasmPlugin with an `oci://` URL, the manifest digest (`img.Digest().Hex`,
//! compared in `pkg/wasm/cache.go`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use base64::Engine;
use e2e_harness::*;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The three filters: image and WasmPlugin name, and the built module.
const FILTERS: [(&str, &str); 3] = [
    ("trace-context", "trace_context.wasm"),
    ("fallback", "fallback.wasm"),
    ("circuit-breaker", "circuit_breaker.wasm"),
];
const USER: &str = "ci";
const PASSWORD: &str = "registry-test-password";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("e2e-registry-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The tool, built from this checkout (`make image` builds the same debug binary).
fn tool() -> &'static Path {
    static TOOL: OnceLock<PathBuf> = OnceLock::new();
    TOOL.get_or_init(|| {
        let root = workspace_root();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "wasm-image"])
            .current_dir(&root)
            .status()
            .expect("running cargo build -p wasm-image");
        assert!(status.success(), "cargo build -p wasm-image failed");
        root.join("target/debug/wasm-image")
    })
}

/// Runs the tool with `DOCKER_CONFIG=docker_config`; stdout on success, stderr on failure.
fn run_tool(docker_config: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(tool())
        .args(args)
        .env("DOCKER_CONFIG", docker_config)
        .output()
        .expect("running wasm-image");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn tool_ok(docker_config: &Path, args: &[&str]) -> String {
    run_tool(docker_config, args).unwrap_or_else(|e| panic!("wasm-image {args:?} failed:\n{e}"))
}

/// `wasm-image COMMAND --registry REGISTRY --tag TAG OPTIONS... NAMES...` (what `make push` / `make pin`
/// run); stdout on success, stderr on failure.
fn registry_command(
    docker_config: &Path,
    command: &str,
    registry: &str,
    tag: &str,
    options: &[&str],
    names: &[&str],
) -> Result<String, String> {
    let mut args = vec![command, "--registry", registry, "--tag", tag];
    args.extend(options);
    args.extend(names);
    run_tool(docker_config, &args)
}

fn all_filters() -> [&'static str; 3] {
    FILTERS.map(|(n, _)| n)
}

/// A registry on 127.0.0.1 with htpasswd authentication and its storage in a temp dir; killed on drop.
struct Registry {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Registry {
    async fn start(tag: &str) -> Registry {
        assert!(
            Path::new(REGISTRY_BIN).is_file(),
            "{REGISTRY_BIN} is missing: `apt-get install -y docker-registry` (.ci/run installs it)"
        );
        let dir = temp_dir(tag);
        let hash = bcrypt::hash(PASSWORD, 4).unwrap();
        std::fs::write(dir.join("htpasswd"), format!("{USER}:{hash}\n")).unwrap();
        let port = free_port();
        let config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {root}\n\
             http:\n  addr: 127.0.0.1:{port}\n\
             auth:\n  htpasswd:\n    realm: e2e\n    path: {htpasswd}\n",
            root = dir.join("data").display(),
            htpasswd = dir.join("htpasswd").display(),
        );
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting docker-registry");
        let registry = Registry { child, port, dir };
        // Ready when /v2/ answers (401 without credentials).
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = try_http1(port, "GET", "/v2/", &[], "").await {
                assert_eq!(r.status, 401, "/v2/ without credentials");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer on 127.0.0.1:{port}:\n{}",
                std::fs::read_to_string(registry.dir.join("registry.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        registry
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A Docker config dir whose `auths` holds this registry's credentials, as `docker login` writes it.
    fn docker_config(&self) -> PathBuf {
        let dir = self.dir.join("docker");
        std::fs::create_dir_all(&dir).unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
        let config = serde_json::json!({"auths": {self.host(): {"auth": auth}}});
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        dir
    }

    /// GET on the registry API with the credentials.
    async fn get(&self, path: &str, accept: &str) -> Response {
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
        );
        let resp = http1(
            self.port,
            "GET",
            path,
            &[("authorization", &auth), ("accept", accept)],
            "",
        )
        .await;
        assert_eq!(
            resp.status,
            200,
            "GET {path}: {}",
            String::from_utf8_lossy(&resp.body)
        );
        resp
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `make image`'s command for the three modules, into `out`; the printed `NAME sha256:...` lines.
fn build_images(format: &str, out: &Path, docker_config: &Path) -> Vec<(String, String)> {
    let mut args = vec![
        "build".to_string(),
        "--format".into(),
        format.into(),
        "--out".into(),
        out.display().to_string(),
    ];
    for (name, file) in FILTERS {
        args.push(format!("{name}={}", dist(file).display()));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    name_digest_lines(&tool_ok(docker_config, &args))
}

fn name_digest_lines(out: &str) -> Vec<(String, String)> {
    out.lines()
        .map(|l| {
            let (a, b) = l.split_once(' ').unwrap_or_else(|| panic!("line `{l}`"));
            (a.to_string(), b.to_string())
        })
        .collect()
}

/// The layer's `plugin.wasm`, read as `extractWasmPluginBinary` reads it, after checking the tar holds
/// just that one regular file with no time or owner in it.
fn plugin_from_layer(gz: &[u8]) -> Vec<u8> {
    assert_eq!(&gz[..2], &[0x1f, 0x8b], "the layer is gzip");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(gz));
    let mut found = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let h = entry.header().clone();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        assert_eq!(path, "plugin.wasm");
        assert_eq!(h.entry_type(), tar::EntryType::Regular);
        assert_eq!(
            (h.mtime().unwrap(), h.uid().unwrap(), h.gid().unwrap()),
            (0, 0, 0)
        );
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        found.push(data);
    }
    assert_eq!(found.len(), 1, "one file in the layer");
    found.pop().unwrap()
}

/// What the registry serves for `name:tag`, checked against Istio's fetcher for `format`; returns the
/// manifest digest (`sha256:...`).
async fn check_served(
    reg: &Registry,
    repo: &str,
    tag: &str,
    format: &str,
    module: &[u8],
) -> String {
    // Istio's fetcher (go-containerregistry) accepts both manifest types.
    let resp = reg
        .get(
            &format!("/v2/{repo}/manifests/{tag}"),
            &format!("{OCI_MANIFEST}, {DOCKER_MANIFEST}"),
        )
        .await;
    let digest = format!("sha256:{}", sha256_hex(&resp.body));
    assert_eq!(
        resp.header("docker-content-digest"),
        Some(digest.as_str()),
        "{repo}: the registry's digest is the manifest bytes' digest"
    );
    let manifest: Value = serde_json::from_slice(&resp.body).unwrap();
    let content_type = resp.header("content-type").unwrap_or("");
    let layers = manifest["layers"].as_array().unwrap().clone();
    let media = |v: &Value| v["mediaType"].as_str().unwrap_or("").to_string();
    let layer_types: Vec<String> = layers.iter().map(media).collect();
    let config_type = media(&manifest["config"]);
    let mut blobs = Vec::new();
    for desc in layers.iter().chain(std::iter::once(&manifest["config"])) {
        let d = desc["digest"].as_str().unwrap();
        let blob = reg.get(&format!("/v2/{repo}/blobs/{d}"), "*/*").await.body;
        assert_eq!(
            format!("sha256:{}", sha256_hex(&blob)),
            d,
            "{repo}: blob digest"
        );
        assert_eq!(
            blob.len() as u64,
            desc["size"].as_u64().unwrap(),
            "{repo}: blob size"
        );
        blobs.push(blob);
    }
    match format {
        "compat" => {
            assert_eq!(content_type, DOCKER_MANIFEST);
            assert_eq!(media(&manifest), DOCKER_MANIFEST);
            assert_eq!(
                config_type,
                "application/vnd.docker.container.image.v1+json"
            );
            assert_eq!(
                layer_types,
                ["application/vnd.docker.image.rootfs.diff.tar.gzip"]
            );
            assert_eq!(plugin_from_layer(&blobs[0]), module, "{repo}: plugin.wasm");
            // The config names the uncompressed layer, as Docker requires to run or re-push it.
            let config: Value = serde_json::from_slice(&blobs[1]).unwrap();
            let mut tar = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&blobs[0][..]), &mut tar)
                .unwrap();
            assert_eq!(
                config["rootfs"]["diff_ids"][0],
                format!("sha256:{}", sha256_hex(&tar))
            );
        }
        "compat-oci" => {
            assert_eq!(content_type, OCI_MANIFEST);
            assert_eq!(media(&manifest), OCI_MANIFEST);
            assert_eq!(config_type, "application/vnd.oci.image.config.v1+json");
            assert_eq!(layer_types, ["application/vnd.oci.image.layer.v1.tar+gzip"]);
            assert_eq!(
                manifest["annotations"]["module.wasm.image/variant"],
                "compat"
            );
            assert_eq!(plugin_from_layer(&blobs[0]), module, "{repo}: plugin.wasm");
        }
        "oci" => {
            assert_eq!(content_type, OCI_MANIFEST);
            assert_eq!(config_type, "application/vnd.module.wasm.config.v1+json");
            assert_eq!(
                layer_types,
                [
                    "application/vnd.module.wasm.config.v1+json",
                    "application/vnd.module.wasm.content.layer.v1+wasm"
                ]
            );
            assert_eq!(
                &blobs[1][..],
                module,
                "{repo}: the wasm layer is the module"
            );
            let runtime: Value = serde_json::from_slice(&blobs[0]).unwrap();
            assert_eq!(runtime["type"], "envoy_proxy");
        }
        other => panic!("format {other}"),
    }
    digest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_image_in_every_format_round_trips_through_a_real_registry() {
    let reg = Registry::start("roundtrip").await;
    let docker = reg.docker_config();
    let work = temp_dir("roundtrip-work");
    for format in ["compat", "compat-oci", "oci"] {
        // Two builds of the same modules: the same digests (the image is reproducible).
        let first = build_images(format, &work.join(format), &docker);
        let again = build_images(format, &work.join(format!("{format}-again")), &docker);
        assert_eq!(
            first, again,
            "{format}: two builds of the same modules gave different images"
        );
        let names: Vec<&str> = first.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, all_filters(), "{format}: one image per filter");

        let registry = format!("{}/mesh-{format}", reg.host());
        let layouts = work.join(format).display().to_string();
        let pushed = registry_command(
            &docker,
            "push",
            &registry,
            "0.1.0",
            &["--layouts", &layouts],
            &all_filters(),
        )
        .unwrap_or_else(|e| panic!("push: {e}"));
        let pushed = name_digest_lines(&pushed);

        for (i, (name, file)) in FILTERS.iter().enumerate() {
            let module = std::fs::read(dist(file)).unwrap();
            let reference = format!("{registry}/{name}:0.1.0");
            assert_eq!(
                pushed[i],
                (reference.clone(), first[i].1.clone()),
                "{format}"
            );
            let served = check_served(
                &reg,
                &format!("mesh-{format}/{name}"),
                "0.1.0",
                format,
                &module,
            )
            .await;
            assert_eq!(
                served, first[i].1,
                "{format} {name}: the registry holds the built image"
            );

            // The tool's pull (Istio's decision tree) gives the module back, with the same digest.
            let out = work.join(format!("{format}-{name}.wasm"));
            let pulled = tool_ok(
                &docker,
                &["pull", "--out", &out.display().to_string(), &reference],
            );
            assert_eq!(pulled.trim(), served);
            assert_eq!(
                std::fs::read(&out).unwrap(),
                module,
                "{format} {name}: pulled module"
            );
        }
    }
    std::fs::remove_dir_all(&work).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushing_uses_the_docker_config_credentials() {
    let reg = Registry::start("auth").await;
    let work = temp_dir("auth-work");
    let docker = reg.docker_config();
    build_images("compat", &work.join("images"), &docker);
    let layouts = work.join("images").display().to_string();
    let registry = reg.host();
    let push = |docker_config: &Path| {
        registry_command(
            docker_config,
            "push",
            &registry,
            "1",
            &["--layouts", &layouts],
            &["fallback"],
        )
    };

    // No credentials for this registry: refused (an empty DOCKER_CONFIG directory).
    let empty = work.join("no-docker-config");
    std::fs::create_dir_all(&empty).unwrap();
    let refused = push(&empty).expect_err("a push without credentials");
    assert!(
        refused.contains("401") || refused.to_lowercase().contains("unauthorized"),
        "{refused}"
    );
    // The same push with the `auths` entry `docker login` would write.
    push(&docker).unwrap_or_else(|e| panic!("push with credentials: {e}"));
    std::fs::remove_dir_all(&work).unwrap();
}

/// `name`, `url`, `sha256` of each patch in an overlay the tool wrote (its fixed layout).
fn overlay_sources(text: &str) -> Vec<(String, String, String)> {
    let value = |line: &str, key: &str| line.trim().strip_prefix(key).map(|v| v.trim().to_string());
    let mut out: Vec<(String, String, String)> = Vec::new();
    let mut name = None;
    for line in text.lines() {
        if let Some(v) = value(line, "name:") {
            name = Some(v);
        } else if let Some(v) = value(line, "url:") {
            // `sha256` is optional: empty until a `sha256:` line follows.
            out.push((name.take().unwrap(), v, String::new()));
        } else if let Some(v) = value(line, "sha256:") {
            out.last_mut().unwrap().2 = v;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_writes_the_digest_istio_checks_for_what_was_pushed() {
    let reg = Registry::start("pin").await;
    let work = temp_dir("pin-work");
    let docker = reg.docker_config();
    let built = build_images("compat", &work.join("images"), &docker);
    let layouts = work.join("images").display().to_string();
    let registry = format!("{}/mesh-filters", reg.host());
    registry_command(
        &docker,
        "push",
        &registry,
        "0.2.0",
        &["--layouts", &layouts],
        &all_filters(),
    )
    .unwrap_or_else(|e| panic!("push: {e}"));

    let overlay = work.join("release/kustomization.yaml");
    let overlay_arg = overlay.display().to_string();
    registry_command(
        &docker,
        "pin",
        &registry,
        "0.2.0",
        &["--overlay", &overlay_arg],
        &all_filters(),
    )
    .unwrap_or_else(|e| panic!("pin: {e}"));
    let text = std::fs::read_to_string(&overlay).unwrap();
    assert!(text.contains("resources:\n  - ../../base\n"), "{text}");
    let sources = overlay_sources(&text);
    assert_eq!(sources.len(), 3, "{text}");
    for ((name, url, sha), (built_name, built_digest)) in sources.iter().zip(&built) {
        assert_eq!(name, built_name);
        assert_eq!(url, &format!("oci://{registry}/{name}:0.2.0"));
        // What Istio compares `sha256` with: the digest of the manifest the registry serves.
        let manifest = reg
            .get(
                &format!("/v2/mesh-filters/{name}/manifests/0.2.0"),
                &format!("{OCI_MANIFEST}, {DOCKER_MANIFEST}"),
            )
            .await;
        assert_eq!(sha, &sha256_hex(&manifest.body), "{name}");
        assert_eq!(format!("sha256:{sha}"), *built_digest, "{name}");
        // Not the module's own hash, which is what an http(s) URL would be checked against.
        let module =
            std::fs::read(dist(FILTERS.iter().find(|(n, _)| n == name).unwrap().1)).unwrap();
        assert_ne!(sha, &sha256_hex(&module));
    }

    // --layouts pins the same digests before any push: the build is reproducible.
    let offline = work.join("offline.yaml").display().to_string();
    let options = ["--layouts", layouts.as_str(), "--overlay", offline.as_str()];
    registry_command(&docker, "pin", &registry, "0.2.0", &options, &all_filters())
        .unwrap_or_else(|e| panic!("pin --layouts: {e}"));
    let offline_sources = overlay_sources(&std::fs::read_to_string(&offline).unwrap());
    assert_eq!(offline_sources, sources);
    std::fs::remove_dir_all(&work).unwrap();
}

#[test]
fn the_release_overlay_names_every_base_plugin() {
    let root = workspace_root();
    let text = std::fs::read_to_string(root.join("istio/overlays/release/kustomization.yaml"))
        .expect("istio/overlays/release/kustomization.yaml (written by `make pin`)");
    assert!(text.contains("resources:\n  - ../../base\n"), "{text}");
    let sources = overlay_sources(&text);
    let mut names: Vec<&str> = sources.iter().map(|(n, _, _)| n.as_str()).collect();
    names.sort();
    let mut want = all_filters();
    want.sort();
    assert_eq!(names, want);
    for (name, url, sha) in &sources {
        assert!(
            url.starts_with("oci://") && url.contains(&format!("/{name}:")),
            "{url}"
        );
        // Committed as placeholders, without a digest; `make pin` adds one.
        assert!(
            sha.is_empty()
                || (sha.len() == 64
                    && sha
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))),
            "{name}: sha256 `{sha}`"
        );
        let base = std::fs::read_to_string(root.join(format!("istio/base/{name}.yaml"))).unwrap();
        assert!(
            base.contains(&format!("name: {name}\n")),
            "istio/base/{name}.yaml"
        );
    }
}
