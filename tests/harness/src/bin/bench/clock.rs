//! CPU time of Envoy and of the bench process, read from `/proc`.

use std::fs;
use std::process::Command;
use std::time::Duration;

/// Envoy's process CPU time (all threads, user + system) from `/proc/PID/stat`.
pub struct EnvoyClock {
    pid: u32,
    pub ticks_per_sec: u64,
    /// How `ticks_per_sec` was found, for the report.
    pub source: &'static str,
}

impl EnvoyClock {
    pub fn new(pid: u32) -> EnvoyClock {
        // /proc counts in USER_HZ clock ticks; getconf asks libc rather than assuming the usual 100.
        let from_getconf = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|&t| t > 0);
        match from_getconf {
            Some(t) => EnvoyClock {
                pid,
                ticks_per_sec: t,
                source: "getconf CLK_TCK",
            },
            None => EnvoyClock {
                pid,
                ticks_per_sec: 100,
                source: "assumed: getconf failed",
            },
        }
    }

    pub fn read(&self) -> Result<Duration, String> {
        self.read_path(&format!("/proc/{}/stat", self.pid))
    }

    /// The same for this process (client and upstream), to see whether they, not Envoy, are what
    /// the machine runs out of.
    pub fn read_bench(&self) -> Result<Duration, String> {
        self.read_path("/proc/self/stat")
    }

    fn read_path(&self, path: &str) -> Result<Duration, String> {
        let stat = fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        // Field 2 (comm) is in parentheses and may contain spaces: count fields after the last ')'.
        // What follows starts at field 3, so utime (14) and stime (15) are at 11 and 12.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        match (tick(11), tick(12)) {
            (Some(utime), Some(stime)) => Ok(Duration::from_nanos(
                (utime + stime) * 1_000_000_000 / self.ticks_per_sec,
            )),
            _ => Err(format!("{path}: no utime/stime in {stat:?}")),
        }
    }
}
