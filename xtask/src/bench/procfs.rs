//! Memory and CPU time of a process, from Linux's `/proc`.

use std::sync::OnceLock;

use anyhow::Context;

/// Resident memory of a process, in KiB.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss_kib: u64,
    /// `VmHWM`: the most that was ever resident (peak RSS).
    pub hwm_kib: u64,
    /// `RssAnon`: the process's own memory (heap, stacks) of `VmRSS`; the rest is mapped
    /// files, mostly the binary's code (shared page cache).
    pub anon_kib: u64,
}

impl Memory {
    pub fn rss_mb(self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }

    pub fn hwm_mb(self) -> f64 {
        self.hwm_kib as f64 / 1024.0
    }

    pub fn anon_mb(self) -> f64 {
        self.anon_kib as f64 / 1024.0
    }
}

pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {name} in {path}"))
    };
    Ok(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
        anon_kib: field("RssAnon:")?,
    })
}

/// User plus system CPU time of a process (all its threads), in seconds; `None` is this
/// process.
pub fn cpu_seconds(pid: Option<u32>) -> anyhow::Result<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    // The command name (field 2) may contain spaces; fields after it are plain numbers.
    // utime and stime are fields 14 and 15, i.e. 12th and 13th after the `)`.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("malformed {path}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("malformed {path}"))
    };
    Ok((ticks(11)? + ticks(12)?) as f64 / clock_ticks_per_sec())
}

fn clock_ticks_per_sec() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        super::command("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}
