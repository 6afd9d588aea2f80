//! A newcomer's first hour (issue 16, items 8 and 9): what `make run`'s Envoy logs, what `make help`
//! lists, what `make docker-up` says on a machine without Compose, and the demo upstream stopping on
//! SIGTERM as a container's PID 1. `make docker-test` (tools/compose-test.sh) runs the compose file itself.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use e2e_harness::*;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// envoy/envoy.yaml as `make run` starts it, on free ports: listeners and admin on port 0, the demo
/// cluster on `upstream_port`, the modules by absolute path.
fn shipped_config_on_free_ports(upstream_port: u16) -> String {
    let text = std::fs::read_to_string(workspace_root().join("envoy/envoy.yaml")).unwrap();
    for fixed in ["port_value: 9901", "port_value: 10000", "port_value: 10001"] {
        assert!(text.contains(fixed), "envoy/envoy.yaml lacks {fixed}");
    }
    text.replace("port_value: 9901", "port_value: 0")
        .replace("port_value: 10000", "port_value: 0")
        .replace("port_value: 10001", "port_value: 0")
        .replace("port_value: 8081", &format!("port_value: {upstream_port}"))
        .replace(
            "filename: dist/",
            &format!("filename: {}/", workspace_root().join("dist").display()),
        )
}

/// The breaker demo of `make run` trips the breaker; Envoy's line for it names the plugin once
/// (`wasm log circuit-breaker: breaker demo ... closed -> open: ...`), not four times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_config_log_lines_name_the_filter_once() {
    let upstream = Upstream::start().await;
    let opts = EnvoyConfig::new().component_log_level("wasm:info");
    let envoy = Envoy::start_yaml(&shipped_config_on_free_ports(upstream.port()), &opts).await;
    let port = envoy.port("inbound");
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = http1(port, "GET", "/pay", &[("x-upstream-status", "500")], "").await;
        statuses.push(r.status);
    }
    assert_eq!(
        statuses.last(),
        Some(&503),
        "the breaker opened: {statuses:?}"
    );
    envoy
        .wait_log("breaker demo", Duration::from_secs(10))
        .await;
    let log = envoy.log();
    let line = log
        .lines()
        .find(|l| l.contains("breaker demo") && l.contains("closed -> open"))
        .unwrap_or_else(|| panic!("no transition line:\n{log}"));
    assert_eq!(
        line.matches("circuit-breaker").count(),
        1,
        "the filter is named once: {line}"
    );
    assert!(
        line.contains("wasm log circuit-breaker: breaker demo"),
        "Envoy's prefix, then the filter's message: {line}"
    );
}

/// Targets of the Makefile that are steps of others, not commands for a user.
const INTERNAL_TARGETS: [&str; 7] = [
    "wasm-target",        // `make build` installs the Wasm target
    "matrix-run",         // `make matrix` / `matrix-smoke` run it
    "print-oldest-envoy", // .ci/run asks it
    "registry-args",      // `make push` / `pin` check their arguments with it
    "wasm-image",         // `make image` builds the tool
    "fuzz-build",         // `make fuzz` / `fuzz-smoke` build with it
    "demo-upstream",      // `make run` / `docker-test` build the demo upstream with it
];

/// Every `.PHONY` target a user runs appears in `make help` as `make <target>`, and `make help` says
/// how to stop `make run`.
#[test]
fn make_help_lists_every_user_facing_target() {
    let root = workspace_root();
    let makefile = std::fs::read_to_string(root.join("Makefile")).unwrap();
    let phony: BTreeSet<&str> = makefile
        .lines()
        .filter_map(|l| l.strip_prefix(".PHONY:"))
        .flat_map(str::split_whitespace)
        .collect();
    assert!(phony.contains("run") && phony.contains("test"), "{phony:?}");
    let out = Command::new("make")
        .args(["-s", "help"])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8(out.stdout).unwrap();
    let listed: BTreeSet<&str> = help
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "make" || w[0].ends_with("(make"))
        .map(|w| w[1].trim_end_matches([',', ';', ':']))
        .collect();
    let missing: Vec<&&str> = phony
        .iter()
        .filter(|t| !listed.contains(**t) && !INTERNAL_TARGETS.contains(t))
        .collect();
    assert!(missing.is_empty(), "make help lacks {missing:?}:\n{help}");
    for internal in INTERNAL_TARGETS {
        assert!(phony.contains(internal), "{internal} is no longer a target");
    }
    assert!(help.contains("Ctrl-C stops Envoy"), "{help}");
}

/// `make docker-up` on a machine whose `docker` has no Compose plugin (this machine's real Docker CLI
/// when it has none) and no Podman: it stops before building, saying what is missing and how to get it.
#[test]
fn docker_up_says_what_is_missing() {
    let Some(docker) = which("docker") else {
        eprintln!("skipped: no docker CLI on this machine to try without its Compose plugin");
        return;
    };
    let plugin = Command::new(&docker)
        .args(["compose", "version"])
        .output()
        .unwrap();
    if plugin.status.success() {
        eprintln!("skipped: this machine's docker has the Compose plugin");
        return;
    }
    // PATH with docker and what make and the script need, but no podman.
    let bin = tempdir("newcomer-path");
    std::os::unix::fs::symlink(&docker, bin.join("docker")).unwrap();
    for tool in ["make", "bash", "dirname", "env", "mkdir"] {
        std::os::unix::fs::symlink(which(tool).unwrap(), bin.join(tool)).unwrap();
    }
    let out = Command::new(bin.join("make"))
        .args(["-s", "docker-up"])
        .current_dir(workspace_root())
        .env("PATH", &bin)
        .env("COMPOSE_VENV", bin.join("no-venv"))
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&bin);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("`docker` is installed but not its Compose plugin"),
        "{err}"
    );
    assert!(err.contains("docker-compose-plugin"), "{err}");
    assert!(err.contains("no `podman` command"), "{err}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("cargo build"),
        "nothing is built first: {out:?}"
    );
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(tool))
            .find(|p| p.is_file())
    })
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// In a container the demo upstream is PID 1, which the kernel gives no default action for SIGTERM:
/// without its own handler `compose down` waits 10 s and kills it. Run as PID 1 of a new PID namespace
/// (as a container runs it), it must stop within a second of SIGTERM, with status 0.
#[test]
fn demo_upstream_as_pid_1_stops_on_sigterm() {
    if which("unshare").is_none() {
        eprintln!("skipped: no unshare (util-linux)");
        return;
    }
    let mut child = Command::new("unshare")
        .args(["--pid", "--fork", "--"])
        .arg(env!("CARGO_BIN_EXE_demo-upstream"))
        .args(["--port", "0"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    if line.contains("unshare:") {
        let _ = child.wait();
        eprintln!("skipped: this user may not create a PID namespace: {line}");
        return;
    }
    assert!(line.contains("listening on"), "{line}");
    // unshare forks the demo upstream, which is PID 1 inside and this PID outside.
    let inner: u32 = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id()))
        .unwrap()
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("unshare's child");
    let kill = |signal: &str| {
        Command::new("kill")
            .args([signal, &inner.to_string()])
            .status()
            .unwrap()
    };
    assert!(kill("-TERM").success());
    let deadline = Instant::now() + Duration::from_secs(3);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            kill("-KILL");
            let _ = child.wait();
            panic!("the demo upstream as PID 1 ignored SIGTERM for 3 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
    assert!(status.success(), "{status}: {rest}");
    assert!(rest.contains("SIGTERM, stopping"), "{rest}");
}
