//! What the benchmarks that start servers share: a free port, a server process killed
//! when dropped, waiting for readiness, and a process's resident memory.

use std::net::TcpListener;
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::bail;

pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A server process, stopped when dropped: SIGTERM, so that one with worker processes of
/// its own (mosec) stops them too, then SIGKILL after 10 s.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `GET url` (drsn: `{base}/health/ready`) answers 200, or the server exits, or
/// 120 s pass.
pub async fn wait_ready(client: &reqwest::Client, url: &str, server: &mut Server) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Some(status) = server.0.try_wait()? {
            bail!("server exited early with {status}");
        }
        if let Ok(r) = client.get(url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{url} did not answer 200 within 120 s")
}

/// `VmRSS` (now) and `VmHWM` (peak) of a process, in kB, from `/proc/<pid>/status`.
pub fn resident_kb(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Option<u64> {
        status.lines().find_map(|l| l.strip_prefix(name))?.trim().trim_end_matches("kB").trim().parse().ok()
    };
    match (field("VmRSS:"), field("VmHWM:")) {
        (Some(now), Some(peak)) => Ok((now, peak)),
        _ => bail!("no VmRSS/VmHWM in /proc/{pid}/status"),
    }
}
