//! What the measured processes spent: CPU ticks from `/proc`, of a process
//! alone or with everything below it, and the tmux server's pid.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;

use anyhow::Context;

use super::super::console::ticks_per_second;

/// CPU milliseconds per MiB of output, for each counter read before and after.
pub(super) fn ms_per_mib<const N: usize>(
    before: [u64; N],
    after: [u64; N],
    bytes: f64,
) -> [f64; N] {
    std::array::from_fn(|i| {
        let secs = after[i].saturating_sub(before[i]) as f64 / ticks_per_second();
        secs * 1000.0 / (bytes / (1 << 20) as f64)
    })
}

/// The pid of the tmux server listening on `socket`.
pub(super) fn tmux_server_pid(socket: &Path) -> anyhow::Result<u32> {
    let out = std::process::Command::new("tmux")
        .arg("-S")
        .arg(socket)
        .args(["display-message", "-p", "#{pid}"])
        .stdin(Stdio::null())
        .output()
        .context("asking tmux for its server's pid")?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .with_context(|| {
            format!(
                "no tmux server pid from {}: {}",
                socket.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })
}

/// What `/proc/{pid}/stat` says of a process's CPU.
struct ProcStat {
    ppid: u32,
    /// Ticks of the process itself (user + system).
    own: u64,
    /// Ticks of its children that have exited and been waited for.
    reaped: u64,
}

fn proc_stat(pid: u32) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (in parentheses) may hold spaces: fields follow the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i)?.parse::<u64>().ok();
    Some(ProcStat {
        ppid: f.get(1)?.parse().ok()?,
        own: field(11)? + field(12)?,
        reaped: field(13)? + field(14)?,
    })
}

/// CPU ticks of `pid` alone (0 once it has gone).
pub(super) fn process_cpu(pid: u32) -> u64 {
    proc_stat(pid).map_or(0, |s| s.own)
}

/// CPU ticks of `root` and every process below it, including the children
/// that ran briefly and have been waited for (a relay's short helper
/// commands count too).
pub(super) fn descendants_cpu(root: u32) -> u64 {
    let mut parent: HashMap<u32, u32> = HashMap::new();
    let mut ticks: HashMap<u32, u64> = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Some(s) = proc_stat(pid) else {
                continue;
            };
            parent.insert(pid, s.ppid);
            ticks.insert(pid, s.own + s.reaped);
        }
    }
    let is_below = |mut p: u32| {
        while p > 1 {
            if p == root {
                return true;
            }
            p = *parent.get(&p).unwrap_or(&0);
        }
        false
    };
    ticks
        .iter()
        .filter(|(p, _)| is_below(**p))
        .map(|(_, t)| t)
        .sum()
}
