//! Which network for this data? Several networks trained on the same data, split and
//! recipe over several seeds, each judged on the same test windows clean and under noise.
//! The noise of a (seed, kind, SNR) condition is drawn once and shown to every network, so
//! differences are paired window by window; a two-level bootstrap (seeds, then windows
//! within each) gives an interval for every difference that holds both the seed-to-seed
//! spread and the test set's size, and the report says plainly whether one network is
//! better or the cheaper one will do.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::data::noise::noisy_copy;
use crate::data::{Dataset, NoiseKind, Samples};
use crate::nn::ModelSpec;

use super::evaluate::predict;
use super::pipeline::{run, RunOutcome, RunRequest};
use super::progress::{CancelToken, Progress};
use super::TrainError;

/// Mixed into a seed for the noise of the comparison's test conditions.
const COMPARE_NOISE_SEED: u64 = 0x5EED_0004;
/// Bootstrap resamples per interval.
const RESAMPLES: usize = 2000;

/// A network in the comparison.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub name: String,
    pub spec: ModelSpec,
}

/// What a comparison reports as it goes: the stage it is at, and the training progress of
/// its runs, counted across all of them (run 2 of 9 at epoch 3 of 18 is epoch 21 of 162).
pub enum Watch<'a> {
    Stage(&'a str),
    Run(&'a Progress),
}

/// A test condition: clean, or one kind of noise at one SNR.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Condition {
    /// `None`: clean.
    pub noise: Option<NoiseKind>,
    pub snr_db: f64,
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.noise {
            None => f.write_str("clean"),
            Some(kind) => write!(f, "{kind} {} dB", self.snr_db),
        }
    }
}

/// The conditions for `kinds` at each of `snrs`, after the clean one.
pub fn conditions(kinds: &[NoiseKind], snrs: &[f64]) -> Vec<Condition> {
    let mut all = vec![Condition { noise: None, snr_db: f64::INFINITY }];
    for &kind in kinds {
        all.extend(snrs.iter().map(|&snr_db| Condition { noise: Some(kind), snr_db }));
    }
    all
}

/// One network under one condition: accuracy per seed and their mean and spread.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConditionResult {
    pub condition: String,
    pub accuracy_per_seed: Vec<f64>,
    pub mean: f64,
    /// Sample standard deviation over the seeds.
    pub std: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CandidateReport {
    pub name: String,
    pub parameters: i64,
    /// Eval-mode forward time per window on the clean test windows (batches of 256).
    pub forward_us_per_window: f64,
    /// Training time, mean over the seeds.
    pub train_seconds: f64,
    pub conditions: Vec<ConditionResult>,
}

/// `a - b` under one condition, in accuracy points, with a 95% bootstrap interval
/// (seeds resampled, then the paired test windows of each).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Difference {
    pub a: String,
    pub b: String,
    pub condition: String,
    pub points: f64,
    pub low: f64,
    pub high: f64,
    /// Whether the interval leaves out zero.
    pub resolved: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CompareReport {
    pub seeds: Vec<u64>,
    /// Test windows every figure rests on (per seed).
    pub test_windows: usize,
    /// One test window, in accuracy points: the finest step a figure can move by.
    pub window_points: f64,
    pub candidates: Vec<CandidateReport>,
    pub differences: Vec<Difference>,
    /// In a sentence, for the hardest condition.
    pub recommendation: String,
}

/// A comparison's report and the model it recommends (of that network's seeds, the one
/// most accurate under the hardest condition), ready to publish like any trained model.
pub struct Comparison {
    pub report: CompareReport,
    pub winner: Candidate,
    pub outcome: RunOutcome,
}

/// Trains every candidate with every seed (`request`'s recipe and normalisation; its spec
/// is replaced by each candidate's) and judges it under every condition.
pub fn compare(
    dataset: &Dataset,
    candidates: &[Candidate],
    request: &RunRequest,
    seeds: &[u64],
    conditions: &[Condition],
    on_progress: &mut dyn FnMut(Watch<'_>),
    cancel: &CancelToken,
) -> Result<Comparison, TrainError> {
    if candidates.len() < 2 || seeds.is_empty() || conditions.is_empty() || dataset.test.is_empty() {
        return Err(TrainError::Config(
            "a comparison needs two networks or more, a seed, a condition and test windows".into(),
        ));
    }
    let n = dataset.test.len();
    // correct[candidate][condition] = per seed, per window.
    let mut correct = vec![vec![Vec::<Vec<bool>>::new(); conditions.len()]; candidates.len()];
    let mut reports = Vec::new();
    // Every run's outcome, by candidate then seed: the winner's is published.
    let mut outcomes: Vec<Vec<RunOutcome>> = Vec::new();
    for (c, candidate) in candidates.iter().enumerate() {
        let mut mine = Vec::new();
        let mut train_seconds = 0.0;
        let mut forward_us = 0.0;
        let mut parameters = 0;
        for &seed in seeds {
            if cancel.is_cancelled() {
                return Err(TrainError::CancelledEvaluation);
            }
            on_progress(Watch::Stage(&format!("{} seed {seed}: training", candidate.name)));
            let mut config = request.config.clone();
            config.seed = seed;
            let one = RunRequest {
                spec: candidate.spec.clone(),
                config,
                test_noise: None,
                sweep_kinds: Vec::new(),
                ..request.clone()
            };
            let index = c * seeds.len() + mine.len();
            let runs = candidates.len() * seeds.len();
            let outcome =
                run(dataset, &one, &mut |p: &Progress| on_progress(Watch::Run(&p.within(index, runs))), cancel)?;
            train_seconds += outcome.report.elapsed_s / seeds.len() as f64;
            parameters = outcome.model.var_store().trainable_variables().iter().map(|t| t.numel() as i64).sum();
            let started = Instant::now();
            let clean = predict(&outcome.model, &dataset.test, request.normalization)?;
            forward_us += started.elapsed().as_secs_f64() * 1e6 / n as f64 / seeds.len() as f64;
            for (k, condition) in conditions.iter().enumerate() {
                let predictions = match condition.noise {
                    None => clean.clone(),
                    Some(kind) => {
                        let noisy = noisy_copy(&dataset.test, kind, condition.snr_db, noise_seed(seed, k));
                        predict(&outcome.model, &noisy, request.normalization)?
                    }
                };
                correct[c][k].push(right(&predictions, &dataset.test));
            }
            mine.push(outcome);
        }
        outcomes.push(mine);
        let conditions = conditions
            .iter()
            .zip(&correct[c])
            .map(|(condition, per_seed)| {
                let accuracy_per_seed: Vec<f64> = per_seed.iter().map(|w| share(w)).collect();
                let (mean, std) = mean_std(&accuracy_per_seed);
                ConditionResult { condition: condition.to_string(), accuracy_per_seed, mean, std }
            })
            .collect();
        reports.push(CandidateReport {
            name: candidate.name.clone(),
            parameters,
            forward_us_per_window: forward_us,
            train_seconds,
            conditions,
        });
    }
    let mut differences = Vec::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(COMPARE_NOISE_SEED);
    for (k, condition) in conditions.iter().enumerate() {
        for a in 0..candidates.len() {
            for b in a + 1..candidates.len() {
                let paired: Vec<Vec<f64>> = correct[a][k]
                    .iter()
                    .zip(&correct[b][k])
                    .map(|(xs, ys)| {
                        xs.iter().zip(ys).map(|(&x, &y)| f64::from(u8::from(x)) - f64::from(u8::from(y))).collect()
                    })
                    .collect();
                let (points, low, high) = bootstrap(&paired, &mut rng);
                differences.push(Difference {
                    a: candidates[a].name.clone(),
                    b: candidates[b].name.clone(),
                    condition: condition.to_string(),
                    points,
                    low,
                    high,
                    resolved: low > 0.0 || high < 0.0,
                });
            }
        }
    }
    // Chance: always naming the most frequent test class.
    let mut counts = std::collections::BTreeMap::new();
    for &label in &dataset.test.labels {
        *counts.entry(label).or_insert(0usize) += 1;
    }
    let chance = counts.values().max().map_or(0.0, |&m| m as f64 / n as f64);
    let (recommendation, winner, hardest) = recommend(&reports, &differences, chance);
    let report = CompareReport {
        seeds: seeds.to_vec(),
        test_windows: n,
        window_points: 100.0 / n as f64,
        candidates: reports,
        differences,
        recommendation,
    };
    let (c, k) = (winner.min(candidates.len() - 1), hardest.min(conditions.len() - 1));
    let best_seed = correct[c][k]
        .iter()
        .enumerate()
        .max_by(|a, b| share(a.1).total_cmp(&share(b.1)).then(b.0.cmp(&a.0)))
        .map_or(0, |(s, _)| s);
    let outcome = outcomes.swap_remove(c).swap_remove(best_seed);
    let mut outcome = outcome;
    outcome.comparison = Some(report.clone());
    Ok(Comparison { report, winner: candidates[c].clone(), outcome })
}

/// The same noise for every network: it depends on the seed and the condition only.
fn noise_seed(seed: u64, condition: usize) -> u64 {
    seed ^ COMPARE_NOISE_SEED ^ ((condition as u64 + 1) << 32)
}

fn right(predictions: &[i64], samples: &Samples) -> Vec<bool> {
    predictions.iter().zip(&samples.labels).map(|(p, l)| p == l).collect()
}

fn share(right: &[bool]) -> f64 {
    right.iter().filter(|&&r| r).count() as f64 / right.len().max(1) as f64
}

fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

/// Mean of the paired differences (in points) and its 95% percentile-bootstrap interval:
/// each resample draws as many seeds as there are (with replacement), then as many windows
/// of each drawn seed as it has.
fn bootstrap(per_seed: &[Vec<f64>], rng: &mut impl Rng) -> (f64, f64, f64) {
    let (seeds, total) = (per_seed.len(), per_seed.iter().map(Vec::len).sum::<usize>());
    if seeds == 0 || total == 0 {
        return (0.0, 0.0, 0.0);
    }
    let mean = per_seed.iter().flatten().sum::<f64>() / total as f64;
    let mut means: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let (mut sum, mut count) = (0.0, 0usize);
            for _ in 0..seeds {
                let windows = &per_seed[rng.random_range(0..seeds)];
                for _ in 0..windows.len() {
                    sum += windows[rng.random_range(0..windows.len())];
                }
                count += windows.len();
            }
            sum / count.max(1) as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (RESAMPLES - 1) as f64).round() as usize).min(RESAMPLES - 1)];
    (100.0 * mean, 100.0 * at(0.025), 100.0 * at(0.975))
}

/// For the hardest condition (lowest mean accuracy of the best network): the best network
/// if it beats every other beyond the interval, else the cheapest of those it does not beat.
/// Returns the sentence, the network chosen and the condition (indices).
fn recommend(reports: &[CandidateReport], differences: &[Difference], chance: f64) -> (String, usize, usize) {
    let nothing = ("nothing to compare".to_string(), 0, 0);
    // A condition where even the best network is near chance tells networks apart by luck;
    // when every one is, the easiest condition is judged and the caveat says why.
    let Some((hardest_index, hardest)) = reports.first().and_then(|r| {
        let named = || r.conditions.iter().map(|c| c.condition.clone()).enumerate();
        let by_best =
            |x: &(usize, String), y: &(usize, String)| best_mean(reports, &x.1).total_cmp(&best_mean(reports, &y.1));
        named()
            .filter(|(_, c)| best_mean(reports, c) >= 2.0 * chance)
            .min_by(by_best)
            .or_else(|| named().max_by(by_best))
    }) else {
        return nothing;
    };
    let near_chance: Vec<String> = reports
        .first()
        .map(|r| {
            r.conditions
                .iter()
                .filter(|c| best_mean(reports, &c.condition) < 2.0 * chance)
                .map(|c| c.condition.clone())
                .collect()
        })
        .unwrap_or_default();
    let caveat = if near_chance.is_empty() {
        String::new()
    } else {
        format!(
            " (under {} every network is within twice chance ({:.0}%): train longer, or with noise augmentation for noisy conditions, to compare them there)",
            near_chance.join(", "),
            100.0 * chance
        )
    };
    let (text, winner, condition) = recommend_at(reports, differences, hardest_index, &hardest);
    (text + &caveat, winner, condition)
}

/// The recommendation at one condition.
fn recommend_at(
    reports: &[CandidateReport],
    differences: &[Difference],
    hardest_index: usize,
    hardest: &str,
) -> (String, usize, usize) {
    let nothing = ("nothing to compare".to_string(), 0, 0);
    let mean = |r: &CandidateReport| r.conditions.iter().find(|c| c.condition == hardest).map_or(0.0, |c| c.mean);
    let Some(best) = reports.iter().max_by(|a, b| mean(a).total_cmp(&mean(b))) else {
        return nothing;
    };
    let index_of = |name: &str| reports.iter().position(|r| r.name == name).unwrap_or(0);
    let against = |other: &str| {
        differences.iter().find(|d| {
            d.condition == hardest && ((d.a == best.name && d.b == other) || (d.b == best.name && d.a == other))
        })
    };
    let ties: Vec<&CandidateReport> =
        reports.iter().filter(|r| r.name == best.name || against(&r.name).is_some_and(|d| !d.resolved)).collect();
    if ties.len() == 1 {
        let margins: Vec<String> = reports
            .iter()
            .filter(|r| r.name != best.name)
            .filter_map(|r| against(&r.name))
            .map(|d| {
                let sign = if d.a == best.name { 1.0 } else { -1.0 };
                let (low, high) = if sign > 0.0 { (d.low, d.high) } else { (-d.high, -d.low) };
                let other = if d.a == best.name { &d.b } else { &d.a };
                format!("{:.1} points over {other} (95% interval {low:.1} to {high:.1})", sign * d.points)
            })
            .collect();
        let text = format!("{} is better at {hardest}: {}", best.name, margins.join("; "));
        (text, index_of(&best.name), hardest_index)
    } else {
        let cheapest = ties.iter().min_by_key(|r| r.parameters).map_or(best.name.as_str(), |r| r.name.as_str());
        let names: Vec<&str> = ties.iter().map(|r| r.name.as_str()).collect();
        let text = format!(
            "no difference beyond seed and test-window noise at {hardest} between {}: choose the cheaper, {cheapest}",
            names.join(", ")
        );
        (text, index_of(cheapest), hardest_index)
    }
}

fn best_mean(reports: &[CandidateReport], condition: &str) -> f64 {
    reports
        .iter()
        .filter_map(|r| r.conditions.iter().find(|c| c.condition == condition).map(|c| c.mean))
        .fold(f64::NEG_INFINITY, f64::max)
}

impl CompareReport {
    /// A plain-text table: accuracy per network and condition, cost, then the verdict.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = format!(
            "{} seeds, {} test windows each (one window = {:.2} points)\n",
            self.seeds.len(),
            self.test_windows,
            self.window_points
        );
        let names: Vec<&str> = self.candidates.iter().map(|c| c.name.as_str()).collect();
        let _ = write!(out, "{:<18}", "condition");
        for n in &names {
            let _ = write!(out, "  {n:>16}");
        }
        out.push('\n');
        let rows = self.candidates.first().map_or(0, |c| c.conditions.len());
        for i in 0..rows {
            let label = self.candidates.first().and_then(|c| c.conditions.get(i)).map_or("", |c| c.condition.as_str());
            let _ = write!(out, "{label:<18}");
            for c in &self.candidates {
                if let Some(r) = c.conditions.get(i) {
                    let _ = write!(out, "  {:>9.2} +- {:<4.2}", 100.0 * r.mean, 100.0 * r.std);
                }
            }
            out.push('\n');
        }
        for c in &self.candidates {
            let _ = writeln!(
                out,
                "{}: {} parameters, {:.1} us per window, {:.1} s of training",
                c.name, c.parameters, c.forward_us_per_window, c.train_seconds
            );
        }
        for d in self.differences.iter().filter(|d| d.resolved) {
            let _ = writeln!(
                out,
                "{} - {} at {}: {:+.2} points ({:+.2} to {:+.2})",
                d.a, d.b, d.condition, d.points, d.low, d.high
            );
        }
        let _ = writeln!(out, "recommendation: {}", self.recommendation);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bootstrap_interval_holds_zero_for_equal_networks_and_not_for_a_clear_gap() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        // Equal: as many windows one gets right and the other wrong as the other way.
        let even: Vec<f64> = (0..400).map(|i| [1.0, -1.0, 0.0, 0.0][i % 4]).collect();
        let (points, low, high) = bootstrap(&[even.clone(), even], &mut rng);
        assert!(points.abs() < 1e-9 && low < 0.0 && high > 0.0);
        // A gets 10% more windows right, with every seed.
        let gap: Vec<f64> = (0..400).map(|i| if i % 10 == 0 { 1.0 } else { 0.0 }).collect();
        let (points, low, _) = bootstrap(&[gap.clone(), gap.clone(), gap], &mut rng);
        assert!((points - 10.0).abs() < 1e-9 && low > 5.0, "{points} {low}");
        // The same mean gap from one lucky seed only: the seeds' spread widens the interval.
        let none = vec![0.0; 400];
        let lucky: Vec<f64> = (0..400).map(|i| if i % 10 < 3 { 1.0 } else { 0.0 }).collect();
        let (points, low, _) = bootstrap(&[lucky, none.clone(), none], &mut rng);
        assert!((points - 10.0).abs() < 1e-9 && low <= 0.0, "{points} {low}");
    }

    #[test]
    fn conditions_start_clean_and_name_their_noise() {
        let all = conditions(&[NoiseKind::Gaussian], &[-4.0, -8.0]);
        let names: Vec<String> = all.iter().map(Condition::to_string).collect();
        assert_eq!(names, ["clean", "gaussian -4 dB", "gaussian -8 dB"]);
    }
}
