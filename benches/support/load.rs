//! Load for the serving benchmarks: single-window JSON requests, closed-loop clients,
//! latency percentiles.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The `q` quantile of sorted durations, in milliseconds.
pub fn percentile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

pub struct Measured {
    /// Requests timed (after the warm-up).
    pub requests: usize,
    pub errors: usize,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Every request sent, warm-up included, and the seconds from the first to the last
    /// answer: what CPU time read around the whole run divides by (in the serving
    /// benchmark; the replicas benchmark, which shares this file, reads no CPU times).
    #[allow(dead_code)]
    pub sent: usize,
    #[allow(dead_code)]
    pub wall: f64,
}

/// Request bodies of one media type.
#[derive(Clone)]
pub struct Bodies {
    pub content_type: &'static str,
    pub bodies: Vec<Bytes>,
}

impl Bodies {
    /// Every body as a whole HTTP/1.1 request to `url` (`http://host:port/path`), head
    /// included, and the address to send them to.
    pub fn requests(&self, url: &str) -> (String, Vec<Bytes>) {
        let rest = url.strip_prefix("http://").expect("an http:// URL");
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let requests = self
            .bodies
            .iter()
            .map(|body| {
                let head = format!(
                    "POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: {}\r\ncontent-length: {}\r\n\r\n",
                    self.content_type,
                    body.len()
                );
                Bytes::from([head.as_bytes(), body].concat())
            })
            .collect();
        (host.to_string(), requests)
    }
}

/// A kept-alive HTTP/1.1 connection that writes prepared requests and reads each answer
/// whole: the load generator shares the server's cores, and reqwest cost it about 27 µs of
/// them a request (the server under test, at 10,000 requests a second, lost a quarter of a
/// core to it).
pub struct Connection {
    address: String,
    stream: Option<TcpStream>,
    buffer: Vec<u8>,
}

impl Connection {
    pub fn new(address: &str) -> Self {
        Connection { address: address.to_string(), stream: None, buffer: Vec::with_capacity(16 * 1024) }
    }

    /// Sends one prepared request; whether the answer was a 2xx read whole. A failed
    /// exchange drops the connection (the next one opens another); one that failed before
    /// any answer came, on a kept-alive connection the server may have closed meanwhile, is
    /// tried once more on a new one, as HTTP clients do.
    pub async fn send(&mut self, request: &[u8]) -> bool {
        let reused = self.stream.is_some();
        let mut answer = self.exchange(request).await;
        if answer.is_err() && reused && self.buffer.is_empty() {
            self.stream = None;
            answer = self.exchange(request).await;
        }
        if answer.is_err() {
            self.stream = None;
        }
        answer.unwrap_or(false)
    }

    async fn exchange(&mut self, request: &[u8]) -> std::io::Result<bool> {
        self.buffer.clear();
        let stream = match &mut self.stream {
            Some(stream) => stream,
            None => {
                let stream = TcpStream::connect(&self.address).await?;
                stream.set_nodelay(true)?;
                self.stream.insert(stream)
            }
        };
        stream.write_all(request).await?;
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head) = response.parse(&self.buffer).map_err(std::io::Error::other)? {
                let length = response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse::<usize>().ok())
                    .ok_or_else(|| std::io::Error::other("an answer without a content-length"))?;
                let success = response.code.is_some_and(|c| (200..300).contains(&c));
                let close = response.headers.iter().any(|h| {
                    h.name.eq_ignore_ascii_case("connection")
                        && h.value.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
                });
                while self.buffer.len() < head + length {
                    if read_more(stream, &mut self.buffer).await? == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                }
                if close {
                    self.stream = None;
                }
                return Ok(success);
            }
            if read_more(stream, &mut self.buffer).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> std::io::Result<usize> {
    buffer.reserve(16 * 1024);
    stream.read_buf(buffer).await
}

/// `clients` closed-loop clients for `seconds` after a one-second warm-up, spread over
/// `urls` (client `c` sends to `urls[c % urls.len()]`), each on its own connection.
pub async fn load(urls: &[String], bodies: &Bodies, clients: usize, seconds: f64) -> Measured {
    let began = Instant::now();
    let warm_until = began + Duration::from_secs(1);
    let start = warm_until;
    let end = start + Duration::from_secs_f64(seconds);
    let prepared: Vec<_> = urls.iter().map(|url| bodies.requests(url)).collect();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (address, requests) = prepared[c % prepared.len()].clone();
            tokio::spawn(async move {
                let mut connection = Connection::new(&address);
                let mut latencies = Vec::new();
                let mut errors = 0;
                let mut sent = 0;
                let mut i = c;
                loop {
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    let ok = connection.send(&requests[i % requests.len()]).await;
                    i += 1;
                    sent += 1;
                    if t0 >= start {
                        latencies.push(t0.elapsed());
                        errors += usize::from(!ok);
                    }
                }
                (latencies, errors, sent)
            })
        })
        .collect();
    let (mut all, mut errors, mut sent) = (Vec::new(), 0, 0);
    for t in tasks {
        let (l, e, s) = t.await.expect("client task");
        all.extend(l);
        errors += e;
        sent += s;
    }
    let seconds = end.elapsed().as_secs_f64() + seconds;
    all.sort();
    Measured {
        requests: all.len(),
        errors,
        seconds,
        p50_ms: percentile(&all, 0.5),
        p99_ms: percentile(&all, 0.99),
        sent,
        wall: began.elapsed().as_secs_f64(),
    }
}

/// 64 distinct 2048-sample windows (tones with a little deterministic noise).
pub fn signals() -> Vec<Vec<f32>> {
    (0..64u32)
        .map(|k| {
            (0..2048)
                .map(|i| {
                    let t = i as f32 / 12_000.0;
                    (2.0 * std::f32::consts::PI * (90.0 + 7.0 * k as f32) * t).sin()
                        + 0.1 * ((i * 7919 + k as usize * 104_729) % 1000) as f32 / 1000.0
                })
                .collect()
        })
        .collect()
}

/// The windows as `/diagnose` JSON bodies for `cwru-bearing`, probabilities only
/// (`"diagnostics": "none"`).
pub fn windows() -> Bodies {
    let bodies = signals()
        .into_iter()
        .map(|signal| {
            let body = serde_json::json!({"model": "cwru-bearing", "signal": signal, "diagnostics": "none"});
            Bytes::from(serde_json::to_vec(&body).expect("JSON"))
        })
        .collect();
    Bodies { content_type: "application/json", bodies }
}
