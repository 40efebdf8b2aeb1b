//! JSON window decoding (not a test): `/diagnose`'s reader of number arrays (`NestedArray`,
//! a serde visitor that checks shape and finiteness as it reads) against serde_json
//! deserializing the same body into plain `Vec<Vec<f32>>`, side by side in one run: what
//! the checks cost over serde's own number parsing.
//!
//!     cargo bench --bench decode -- [--rounds 7]
//!
//! Bodies as clients send them: `{"model": ..., "signals": [[...2048 numbers...], ...]}` with
//! the numbers written as Python's `json` writes float64 (about 19 characters each), for 1
//! and 64 windows. Prints microseconds per body (best round) and the ratio.

use std::hint::black_box;
use std::time::Instant;

use anyhow::Context;
use drsn::http::diagnose::NestedArray;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

#[derive(Deserialize)]
struct Checked {
    signals: NestedArray,
}

#[derive(Deserialize)]
struct Serde {
    signals: Vec<Vec<f32>>,
}

fn body(windows: usize) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let signals: Vec<Vec<f64>> =
        (0..windows).map(|_| (0..2048).map(|_| f64::from(rng.random_range(-3.0f32..3.0))).collect()).collect();
    serde_json::to_vec(&serde_json::json!({"model": "cwru-bearing", "signals": signals})).unwrap_or_default()
}

/// Microseconds per call of `decode` on `body`, best of `rounds`.
fn best(rounds: usize, body: &[u8], decode: impl Fn(&[u8]) -> f32) -> f64 {
    let calls = (2_000_000 / body.len()).max(5);
    (0..rounds)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..calls {
                black_box(decode(black_box(body)));
            }
            started.elapsed().as_secs_f64() * 1e6 / calls as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() -> anyhow::Result<()> {
    let mut rounds = 7;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => rounds = args.next().context("--rounds N")?.parse()?,
            "--bench" => {}
            other => anyhow::bail!("unknown argument {other}; see benches/decode.rs"),
        }
    }
    println!("| windows | body kB | NestedArray µs | serde Vec<Vec<f32>> µs | serde / NestedArray |");
    println!("|---|---|---|---|---|");
    for windows in [1, 64] {
        let body = body(windows);
        let a: Checked = serde_json::from_slice(&body)?;
        let b: Serde = serde_json::from_slice(&body)?;
        let same = a.signals.values.iter().zip(b.signals.iter().flatten()).all(|(x, y)| x.to_bits() == y.to_bits());
        anyhow::ensure!(same && a.signals.values.len() == windows * 2048, "the two readers disagree");
        let checked = best(rounds, &body, |b| {
            serde_json::from_slice::<Checked>(b).map(|s| s.signals.values[0]).unwrap_or_default()
        });
        let serde =
            best(rounds, &body, |b| serde_json::from_slice::<Serde>(b).map(|s| s.signals[0][0]).unwrap_or_default());
        println!(
            "| {windows} | {:.0} | {checked:.1} | {serde:.1} | {:.2}x |",
            body.len() as f64 / 1e3,
            serde / checked
        );
    }
    Ok(())
}
