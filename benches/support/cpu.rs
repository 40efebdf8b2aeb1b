//! CPU time of a server process and of the whole machine, from /proc (Linux), for the
//! serving benchmark's cost per request.

use anyhow::Context;

/// CPU seconds (user + system) process `pid` has used so far, all its threads together.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // After the command name (which may hold spaces) come fields 3, 4, ...: utime is 14, stime 15.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = fields.get(11..13).with_context(|| format!("short /proc/{pid}/stat"))?;
    let ticks: f64 = ticks.iter().map(|t| t.parse::<f64>()).sum::<Result<f64, _>>()?;
    Ok(ticks / clock_ticks())
}

/// CPU seconds the whole machine has been busy (not idle or waiting for I/O), all cores.
pub fn machine_busy_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let cpu = stat.lines().next().and_then(|l| l.strip_prefix("cpu ")).context("no cpu line in /proc/stat")?;
    let ticks: Vec<f64> = cpu.split_whitespace().map(str::parse).collect::<Result<_, _>>()?;
    let idle = ticks.get(3).copied().unwrap_or_default() + ticks.get(4).copied().unwrap_or_default();
    // guest time is already counted in user time.
    let total: f64 = ticks.iter().take(8).sum();
    Ok((total - idle) / clock_ticks())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}
