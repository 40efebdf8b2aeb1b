//! Load for the serving benchmarks: single-window JSON requests, closed-loop clients,
//! latency percentiles.

use std::time::{Duration, Instant};

use bytes::Bytes;

/// The `q` quantile of sorted durations, in milliseconds.
pub fn percentile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

pub struct Measured {
    pub requests: usize,
    pub errors: usize,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Request bodies of one media type.
#[derive(Clone)]
pub struct Bodies {
    pub content_type: &'static str,
    pub bodies: Vec<Bytes>,
}

pub async fn one(client: &reqwest::Client, url: &str, content_type: &str, body: &Bytes) -> bool {
    match client.post(url).header("content-type", content_type).body(body.clone()).send().await {
        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
        Err(_) => false,
    }
}

/// `clients` closed-loop clients for `seconds` after a one-second warm-up, spread over
/// `urls` (client `c` sends to `urls[c % urls.len()]`).
pub async fn load(
    client: &reqwest::Client,
    urls: &[String],
    bodies: &Bodies,
    clients: usize,
    seconds: f64,
) -> Measured {
    let warm_until = Instant::now() + Duration::from_secs(1);
    let start = warm_until;
    let end = start + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (client, url, bodies) = (client.clone(), urls[c % urls.len()].clone(), bodies.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0;
                let mut i = c;
                loop {
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    let body = &bodies.bodies[i % bodies.bodies.len()];
                    let ok = one(&client, &url, bodies.content_type, body).await;
                    i += 1;
                    if t0 >= start {
                        latencies.push(t0.elapsed());
                        errors += usize::from(!ok);
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("client task");
        all.extend(l);
        errors += e;
    }
    let seconds = end.elapsed().as_secs_f64() + seconds;
    all.sort();
    Measured { requests: all.len(), errors, seconds, p50_ms: percentile(&all, 0.5), p99_ms: percentile(&all, 0.99) }
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
