//! Where the fleet's sidecars live: each in its own network namespace on one bridge (real separate
//! hosts as far as TCP is concerned: own addresses, own loopback, own ports), or, when namespaces
//! cannot be made (not root, no `ip`), on distinct loopback addresses of this host.
//!
//! Namespace layout, with `S` a /24 of 10.213.0.0/16 no interface here uses:
//! a bridge `fl<pid>br` in this namespace holds S.1 (the bench process: load generator and service);
//! the dependency sidecar's namespace `fl<pid>-dep` holds S.2, caller i's `fl<pid>-c<i>` holds S.(10+i),
//! each on a veth pair whose host end is enslaved to the bridge. Nothing else is reachable from them.

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};

/// One sidecar's place: the address it binds and the command that runs it there.
pub struct Host {
    pub ip: IpAddr,
    /// Prefix for Envoy's command line ([`e2e_harness::EnvoyConfig::launcher`]).
    pub launcher: Vec<String>,
}

pub struct Topology {
    /// The bench process's address, as the sidecars reach it (the struggling service listens here).
    pub local: IpAddr,
    pub dependency: Host,
    pub callers: Vec<Host>,
    /// How the sidecars are separated, for the report.
    pub description: String,
    /// What to delete on drop: the namespaces and the bridge (the veth pairs go with them).
    namespaces: Vec<String>,
    bridge: Option<String>,
}

/// The prefix of every name this bench gives a namespace or link: `fl<pid>`.
fn prefix(pid: u32) -> String {
    format!("fl{pid}")
}

impl Topology {
    /// Namespaces when `netns` and they can be made, else loopback addresses (the reason is in the
    /// description).
    pub fn create(callers: usize, netns: bool) -> Topology {
        if !netns {
            return Topology::loopback(
                callers,
                "distinct loopback addresses (BENCH_FLEET_NETNS=0)",
            );
        }
        remove_stale();
        match Topology::namespaces(callers) {
            Ok(t) => t,
            Err(e) => {
                eprintln!(
                    "bench: fleet: network namespaces failed ({e}); using loopback addresses"
                );
                Topology::loopback(
                    callers,
                    &format!("distinct loopback addresses (network namespaces failed: {e})"),
                )
            }
        }
    }

    fn loopback(callers: usize, why: &str) -> Topology {
        let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
        let host = |ip| Host {
            ip,
            launcher: Vec::new(),
        };
        Topology {
            local: v4(127, 0, 0, 1),
            dependency: host(v4(127, 0, 2, 1)),
            callers: (1..=callers)
                .map(|i| host(v4(127, 0, 1, u8::try_from(i).unwrap_or(u8::MAX))))
                .collect(),
            description: format!(
                "{why}: the bench process 127.0.0.1, the dependency sidecar 127.0.2.1, callers \
                 127.0.1.1–127.0.1.{callers}"
            ),
            namespaces: Vec::new(),
            bridge: None,
        }
    }

    fn namespaces(callers: usize) -> Result<Topology, String> {
        let p = prefix(std::process::id());
        let subnet = free_subnet()?;
        let v4 =
            |d: usize| IpAddr::V4(Ipv4Addr::new(10, 213, subnet, u8::try_from(d).unwrap_or(0)));
        let bridge = format!("{p}br");
        // Built as it goes, so that Drop removes whatever exists when a step fails.
        let mut t = Topology {
            local: v4(1),
            dependency: Host {
                ip: v4(2),
                launcher: Vec::new(),
            },
            callers: Vec::new(),
            description: String::new(),
            namespaces: Vec::new(),
            bridge: None,
        };
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        t.bridge = Some(bridge.clone());
        ip(&["addr", "add", &format!("{}/24", t.local), "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;
        t.dependency.launcher = add_namespace(&mut t, &bridge, &format!("{p}-dep"), 0, v4(2))?;
        for i in 1..=callers {
            let addr = v4(10 + i);
            let launcher = add_namespace(&mut t, &bridge, &format!("{p}-c{i}"), i, addr)?;
            t.callers.push(Host { ip: addr, launcher });
        }
        t.description = format!(
            "one network namespace per sidecar (`ip netns`, veth pairs on a bridge, 10.213.{subnet}.0/24): \
             the bench process {}, the dependency sidecar {}, callers {}–{}",
            t.local,
            t.dependency.ip,
            v4(11),
            v4(10 + callers)
        );
        Ok(t)
    }
}

/// Makes namespace `name` with address `addr` on a veth pair whose other end joins `bridge`; returns
/// the launcher that runs a command inside it.
fn add_namespace(
    t: &mut Topology,
    bridge: &str,
    name: &str,
    index: usize,
    addr: IpAddr,
) -> Result<Vec<String>, String> {
    let p = prefix(std::process::id());
    let (outside, inside) = (format!("{p}h{index}"), format!("{p}n{index}"));
    ip(&["netns", "add", name])?;
    t.namespaces.push(name.to_string());
    ip(&[
        "link", "add", &outside, "type", "veth", "peer", "name", &inside,
    ])?;
    ip(&["link", "set", &inside, "netns", name])?;
    ip(&["link", "set", &outside, "master", bridge])?;
    ip(&["link", "set", &outside, "up"])?;
    let inner = |args: &[&str]| {
        let mut all = vec!["netns", "exec", name, "ip"];
        all.extend_from_slice(args);
        ip(&all)
    };
    inner(&["addr", "add", &format!("{addr}/24"), "dev", &inside])?;
    inner(&["link", "set", &inside, "up"])?;
    inner(&["link", "set", "lo", "up"])?;
    Ok(["ip", "netns", "exec", name]
        .iter()
        .map(|s| s.to_string())
        .collect())
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Deleting a namespace removes its veth end, and with it the peer on the bridge.
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
        if let Some(bridge) = &self.bridge {
            let _ = ip(&["link", "del", bridge]);
        }
    }
}

/// Runs `ip ARGS`; the error carries ip's own message.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip_output(args: &[&str]) -> String {
    Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// A third octet for 10.213.x.0/24 that no address of this host is in.
fn free_subnet() -> Result<u8, String> {
    let addrs = ip_output(&["-4", "-o", "addr", "show"]);
    let start = u8::try_from(std::process::id() % 200).unwrap_or(0);
    (0..=255u8)
        .map(|k| start.wrapping_add(k))
        .find(|x| !addrs.contains(&format!("10.213.{x}.")))
        .ok_or_else(|| "no free /24 in 10.213.0.0/16".to_string())
}

/// Deletes the namespaces and bridges an earlier bench left behind when it was killed: names with
/// this bench's prefix whose process no longer runs. Anyone else's names are left alone.
fn remove_stale() {
    let owner = |name: &str| -> Option<u32> {
        let digits: String = name
            .strip_prefix("fl")?
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    let dead = |pid: u32| !std::path::Path::new(&format!("/proc/{pid}")).exists();
    // Exactly the names `Topology::namespaces` gives: fl<pid>-dep and fl<pid>-c<n>.
    let ours = |name: &str, pid: u32| {
        let p = prefix(pid);
        name == format!("{p}-dep")
            || name
                .strip_prefix(&format!("{p}-c"))
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    };
    for line in ip_output(&["netns", "list"]).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if let Some(pid) = owner(name) {
            if dead(pid) && ours(name, pid) {
                let _ = ip(&["netns", "del", name]);
            }
        }
    }
    for line in ip_output(&["-o", "link", "show", "type", "bridge"]).lines() {
        // "12: fl1234br: <BROADCAST,...": the name is the second field, before the colon.
        let name = line
            .split(':')
            .nth(1)
            .map(str::trim)
            .unwrap_or("")
            .to_string();
        if let Some(pid) = owner(&name) {
            if dead(pid) && name == format!("{}br", prefix(pid)) {
                let _ = ip(&["link", "del", &name]);
            }
        }
    }
}
