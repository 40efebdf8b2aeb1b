//! JSON window decoding (not a test), side by side in one run: `/diagnose`'s reader (one
//! pass, numbers eight digits at a time, `parse_json`), serde_json with the checking visitor
//! it falls back to (`NestedArray`: shape and finiteness checked as it reads), and serde_json
//! deserializing the same body into plain `Vec<Vec<f32>>`.
//!
//!     cargo bench --bench decode -- [--rounds 7]
//!
//! Bodies as clients send them: `{"model": ..., "signals": [[...2048 numbers...], ...]}` with
//! the numbers written as Python's `json` writes float64 (about 19 characters each), for 1
//! and 64 windows, and as the shortest float32 text (about 10) for 1 window. Prints
//! microseconds per body (best round) and the ratios.

use std::hint::black_box;
use std::time::Instant;

use anyhow::Context;
use drsn::http::diagnose::{parse_json, NestedArray};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Checked {
    signals: NestedArray,
}

#[derive(Deserialize)]
struct Serde {
    signals: Vec<Vec<f32>>,
}

/// `windows` windows of 2048 samples, written as float64 (as Python writes them) or as
/// float32 (the shortest text that reads back to the same `f32`, as Rust and JavaScript
/// typed arrays write them).
fn body(windows: usize, float64: bool) -> Vec<u8> {
    #[derive(Serialize)]
    struct Body<T> {
        model: &'static str,
        signals: Vec<Vec<T>>,
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let signals: Vec<Vec<f32>> =
        (0..windows).map(|_| (0..2048).map(|_| rng.random_range(-3.0f32..3.0)).collect()).collect();
    let written = match float64 {
        true => {
            let signals = signals.iter().map(|w| w.iter().map(|&x| f64::from(x)).collect()).collect();
            serde_json::to_vec(&Body::<f64> { model: "cwru-bearing", signals })
        }
        false => serde_json::to_vec(&Body { model: "cwru-bearing", signals }),
    };
    written.unwrap_or_default()
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
    println!("| windows | text | body kB | /diagnose µs | serde + NestedArray µs | serde Vec<Vec<f32>> µs | serde / /diagnose |");
    println!("|---|---|---|---|---|---|---|");
    for (windows, float64) in [(1, true), (64, true), (1, false)] {
        let body = body(windows, float64);
        let a: Checked = serde_json::from_slice(&body)?;
        let b: Serde = serde_json::from_slice(&body)?;
        let ours = parse_json(&body).ok().and_then(|r| r.signals).context("/diagnose's reader refused the body")?;
        let same = |v: &[f32]| v.iter().zip(b.signals.iter().flatten()).all(|(x, y)| x.to_bits() == y.to_bits());
        anyhow::ensure!(
            same(&a.signals.values) && same(&ours.values) && ours.values.len() == windows * 2048,
            "the readers disagree"
        );
        let one_pass = best(rounds, &body, |b| {
            parse_json(b).ok().and_then(|r| r.signals).map(|s| s.values[0]).unwrap_or_default()
        });
        let checked = best(rounds, &body, |b| {
            serde_json::from_slice::<Checked>(b).map(|s| s.signals.values[0]).unwrap_or_default()
        });
        let serde =
            best(rounds, &body, |b| serde_json::from_slice::<Serde>(b).map(|s| s.signals[0][0]).unwrap_or_default());
        println!(
            "| {windows} | {} | {:.0} | {one_pass:.1} | {checked:.1} | {serde:.1} | {:.2}x |",
            if float64 { "float64" } else { "float32" },
            body.len() as f64 / 1e3,
            serde / one_pass
        );
    }
    Ok(())
}
