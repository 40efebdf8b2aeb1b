//! `drsn healthcheck`: asks a running service whether it is ready, for container health
//! checks in images that carry no HTTP client. Exits 0 on a 200 answer, 1 otherwise.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::Context;
use clap::Args;

/// Largest answer read; readiness answers are a few hundred bytes.
const MAX_RESPONSE: u64 = 64 * 1024;

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The address the service listens on (the same variable as `serve`'s); an unspecified
    /// IP (0.0.0.0 or ::) is asked on loopback.
    #[arg(long, env = "DRSN_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// The endpoint to ask.
    #[arg(long, env = "DRSN_HEALTHCHECK_PATH", default_value = "/health/ready")]
    pub path: String,
    /// Seconds allowed for connecting and for the answer.
    #[arg(long, env = "DRSN_HEALTHCHECK_TIMEOUT", default_value_t = 5.0)]
    pub timeout: f64,
}

pub fn run(args: HealthcheckArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.timeout.is_finite() && args.timeout > 0.0,
        "--timeout must be a positive number of seconds, got {}",
        args.timeout
    );
    anyhow::ensure!(args.path.starts_with('/'), "--path must start with '/', got {:?}", args.path);
    let addr = target(args.addr);
    let (status, body) = get(addr, &args.path, Duration::from_secs_f64(args.timeout))?;
    anyhow::ensure!(status == 200, "GET http://{addr}{} answered {status}: {body}", args.path);
    println!("{body}");
    Ok(())
}

/// Where to connect for a service bound to `addr`.
fn target(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port()),
        _ => addr,
    }
}

/// One HTTP/1.1 GET with `Connection: close`; returns the status code and the body.
fn get(addr: SocketAddr, path: &str, timeout: Duration) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_read_timeout(Some(timeout)).context("socket read timeout")?;
    stream.set_write_timeout(Some(timeout)).context("socket write timeout")?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
        .with_context(|| format!("cannot send the request to {addr}"))?;
    let mut raw = Vec::new();
    stream
        .take(MAX_RESPONSE)
        .read_to_end(&mut raw)
        .with_context(|| format!("no complete answer from {addr} within {timeout:?}"))?;
    parse_response(&String::from_utf8_lossy(&raw))
}

fn parse_response(raw: &str) -> anyhow::Result<(u16, String)> {
    let status_line = raw.lines().next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("not an HTTP answer: {status_line:?}"))?;
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, body)| body).trim();
    Ok((status, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_are_asked_on_loopback() {
        assert_eq!(target("0.0.0.0:8080".parse().unwrap()), "127.0.0.1:8080".parse().unwrap());
        assert_eq!(target("[::]:9000".parse().unwrap()), "[::1]:9000".parse().unwrap());
        assert_eq!(target("10.0.0.5:8080".parse().unwrap()), "10.0.0.5:8080".parse().unwrap());
    }

    #[test]
    fn status_and_body_are_read_from_the_answer() {
        let raw = "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\r\n{\"error\":\"x\"}";
        assert_eq!(parse_response(raw).unwrap(), (503, "{\"error\":\"x\"}".to_string()));
        assert_eq!(parse_response("HTTP/1.0 200 OK\r\n\r\n").unwrap(), (200, String::new()));
        let err = parse_response("SSH-2.0-OpenSSH\r\n").unwrap_err().to_string();
        assert!(err.contains("not an HTTP answer"), "{err}");
    }
}
