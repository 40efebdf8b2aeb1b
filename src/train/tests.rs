//! The loop, checkpointing and evaluation on a tiny network and synthetic, separable
//! signals (three tones); accuracy claims about real data live in `tests/`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::checkpoint::Snapshot;
use super::*;
use crate::data::{Dataset, NoiseKind, Normalization, Samples};
use crate::nn::{Arch, Dim, Model, ModelSpec, StageSpec, StemSpec};

const LEN: usize = 64;
const CYCLES: [f32; 3] = [3.0, 7.0, 13.0];

fn tiny_spec() -> ModelSpec {
    ModelSpec {
        arch: Arch::DrsnCw,
        dim: Dim::One,
        in_channels: 1,
        input_size: vec![LEN as i64],
        stem: StemSpec { channels: 4, kernel: 3, stride: 1 },
        stages: vec![StageSpec { channels: 8, units: 2, stride: 2 }],
        classes: 3,
        kernel: 3,
        members: 1,
    }
}

/// `per_class` tones of each class with random phase, amplitude and offset, plus a little
/// white noise; `label_shift` relabels class `c` as `(c + shift) % 3`.
fn tones(per_class: usize, seed: u64, label_shift: i64) -> Samples {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut s = Samples { sample_shape: vec![1, LEN], ..Default::default() };
    for _ in 0..per_class {
        for (c, cycles) in CYCLES.iter().enumerate() {
            let phase: f32 = rng.random_range(0.0..6.3);
            let amp: f32 = rng.random_range(0.5..2.0);
            let offset: f32 = rng.random_range(-1.0..1.0);
            for i in 0..LEN {
                let t = i as f32 / LEN as f32;
                let noise: f32 = rng.random_range(-0.1..0.1);
                s.values.push(offset + amp * (2.0 * std::f32::consts::PI * cycles * t + phase).sin() + noise);
            }
            s.labels.push((c as i64 + label_shift) % 3);
        }
    }
    s
}

fn dataset(validation_shift: i64) -> Dataset {
    Dataset {
        classes: vec!["low".into(), "mid".into(), "high".into()],
        sample_rate: None,
        train: tones(40, 1, 0),
        validation: tones(10, 2, validation_shift),
        test: tones(20, 3, 0),
        ..Default::default()
    }
}

fn quick_config() -> TrainConfig {
    TrainConfig { lr: 1e-2, epochs: 8, batch_size: 16, seed: 4, ..TrainConfig::seed_adam() }
}

fn run(model: &mut Model, data: &Dataset, config: &TrainConfig) -> (Result<TrainReport, TrainError>, Vec<Progress>) {
    let mut events = Vec::new();
    let result =
        train(model, data, Normalization::ZScore, config, &mut |p| events.push(p.clone()), &CancelToken::new());
    (result, events)
}

#[test]
fn a_short_adam_run_on_separable_tones_reaches_high_test_accuracy() {
    let data = dataset(0);
    let mut model = init_model(&tiny_spec(), tch::Device::Cpu, 1).unwrap();
    let config = quick_config();
    let (report, events) = run(&mut model, &data, &config);
    let report = report.unwrap();
    let eval = evaluate(&model, &data.test, Normalization::ZScore, &data.classes).unwrap();
    assert!(eval.accuracy >= 0.95, "test accuracy {:.3}\n{}", eval.accuracy, eval.table());
    assert_eq!(eval.confusion.iter().flatten().sum::<usize>(), data.test.len());
    // 120 samples in batches of 16: 7 full batches and one of 8.
    let steps = events.iter().filter(|e| matches!(e, Progress::Step(_))).count();
    assert_eq!(steps, 8 * config.epochs);
    assert_eq!(report.steps, steps);
    assert_eq!(report.history.len(), config.epochs);
    let Some(Progress::Step(last)) = events.iter().rev().find(|e| matches!(e, Progress::Step(_))) else {
        panic!("no step events")
    };
    assert_eq!((last.epoch, last.step, last.steps_per_epoch), (8, 8, 8));
    assert_eq!(last.eta_s, 0.0);
    assert!(report.samples_per_s > 0.0);
}

#[test]
fn sgd_follows_the_step_schedule_and_learns() {
    let data = dataset(0);
    let mut model = init_model(&tiny_spec(), tch::Device::Cpu, 2).unwrap();
    let config = TrainConfig { epochs: 10, batch_size: 16, seed: 5, ..TrainConfig::paper_sgd() };
    let (report, _) = run(&mut model, &data, &config);
    let report = report.unwrap();
    let lrs: Vec<f64> = report.history.iter().map(|m| m.lr).collect();
    let want = [0.1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01, 0.001, 0.001];
    assert!(lrs.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12), "{lrs:?}");
    let acc = evaluate(&model, &data.test, Normalization::ZScore, &data.classes).unwrap().accuracy;
    assert!(acc >= 0.9, "test accuracy {acc:.3}");
}

#[test]
fn cancelling_stops_the_run_before_the_next_step() {
    let data = dataset(0);
    let mut model = init_model(&tiny_spec(), tch::Device::Cpu, 1).unwrap();
    let cancel = CancelToken::new();
    let mut steps = 0;
    let handle = cancel.clone();
    let result = train(
        &mut model,
        &data,
        Normalization::ZScore,
        &quick_config(),
        &mut |p| {
            if let Progress::Step(s) = p {
                steps += 1;
                if (s.epoch, s.step) == (2, 3) {
                    handle.cancel();
                }
            }
        },
        &cancel,
    );
    assert!(result.as_ref().is_err_and(TrainError::is_cancelled));
    match result {
        Err(TrainError::Cancelled { epoch: 2, step: 4 }) => {}
        other => panic!("expected Cancelled at epoch 2 step 4, got {other:?}"),
    }
    assert_eq!(steps, 8 + 3, "no step may run after the cancel");
}

#[test]
fn the_best_validation_epoch_is_restored_at_the_end() {
    // Validation labels are the training labels shifted by one class: the better the
    // model learns the training data, the worse it does on validation, so the best
    // epoch is an early one (a slow learning rate keeps the first epochs near chance)
    // and the final weights are not it.
    let data = dataset(1);
    let mut model = init_model(&tiny_spec(), tch::Device::Cpu, 1).unwrap();
    let (report, _) = run(&mut model, &data, &TrainConfig { lr: 1e-3, ..quick_config() });
    let report = report.unwrap();
    let best = report.best_val_accuracy.unwrap();
    let vals: Vec<f64> = report.history.iter().map(|m| m.val_accuracy.unwrap()).collect();
    assert_eq!(vals.iter().cloned().fold(f64::MIN, f64::max), best);
    assert_eq!(vals[report.best_epoch - 1], best);
    let last = *vals.last().unwrap();
    assert!(last < best, "the last epoch must be worse than the best for this test to mean anything: {vals:?}");
    let now = super::evaluate::accuracy(&model, &data.validation, Normalization::ZScore).unwrap();
    assert_eq!(now, best, "the model holds the best epoch's weights ({vals:?})");
    assert!(report.history[report.best_epoch - 1].best);
}

#[test]
fn a_snapshot_restores_every_variable_including_batch_norm_statistics() {
    let model = Model::new(&tiny_spec(), tch::Device::Cpu).unwrap();
    let before = Snapshot::take(model.var_store());
    let originals: Vec<(String, tch::Tensor)> =
        model.var_store().variables().into_iter().map(|(n, t)| (n, t.copy())).collect();
    tch::no_grad(|| {
        for (_, mut t) in model.var_store().variables() {
            let _ = t.fill_(0.5);
        }
    });
    before.restore(model.var_store());
    let live = model.var_store().variables();
    assert!(originals.iter().any(|(n, _)| n.ends_with("running_var")));
    for (name, t) in originals {
        assert!(live[&name].equal(&t), "{name} not restored");
    }
}

#[test]
fn samples_that_do_not_fit_the_model_are_refused_with_the_shapes() {
    let mut data = dataset(0);
    data.train.sample_shape = vec![2, LEN / 2];
    let mut model = Model::new(&tiny_spec(), tch::Device::Cpu).unwrap();
    let err = run(&mut model, &data, &quick_config()).0.unwrap_err().to_string();
    assert!(err.contains("[2, 32]") && err.contains("[1, 64]"), "{err}");
    let mut data = dataset(0);
    data.train.labels[5] = 3;
    let err = run(&mut model, &data, &quick_config()).0.unwrap_err().to_string();
    assert!(err.contains("label 3"), "{err}");
    let mut data = dataset(0);
    data.train.values[LEN * 7 + 3] = f32::NAN;
    let err = run(&mut model, &data, &quick_config()).0.unwrap_err().to_string();
    assert!(err.contains("sample 7"), "{err}");
}

#[test]
fn noise_augmentation_trains_and_the_snr_sweep_is_reproducible() {
    let data = dataset(0);
    let mut model = init_model(&tiny_spec(), tch::Device::Cpu, 1).unwrap();
    let config = TrainConfig {
        augment: Some(NoiseAugment { kinds: NoiseKind::SNR_KINDS.to_vec(), snr_db: [0.0, 10.0], probability: 0.5 }),
        ..quick_config()
    };
    run(&mut model, &data, &config).0.unwrap();
    let snrs = paper_snrs();
    let a =
        snr_sweep(&[&model], &data.test, Normalization::ZScore, &NoiseKind::SNR_KINDS, &snrs, 9, &CancelToken::new())
            .unwrap();
    let b =
        snr_sweep(&[&model], &data.test, Normalization::ZScore, &NoiseKind::SNR_KINDS, &snrs, 9, &CancelToken::new())
            .unwrap();
    assert_eq!(a, b);
    assert_eq!(a.rows.len(), 3);
    for row in &a.rows {
        assert_eq!(row.accuracy.len(), 11);
        // Noise only hurts: +5 dB must do at least as well as -5 dB, and well above chance.
        assert!(row.accuracy[10] >= row.accuracy[0], "{}", a.table());
        assert!(row.accuracy[10] >= 0.8, "{}", a.table());
    }
    let cancelled = CancelToken::new();
    cancelled.cancel();
    let err = snr_sweep(&[&model], &data.test, Normalization::ZScore, &NoiseKind::SNR_KINDS, &snrs, 9, &cancelled)
        .unwrap_err();
    assert!(matches!(err, TrainError::CancelledEvaluation) && err.is_cancelled(), "{err:?}");
}

/// The tiny network trained twice on `data` with the quick recipe from the same initial
/// weights (copied, not re-drawn: other tests draw from libtorch's global generator at the
/// same time), without and with a weight average.
fn train_without_and_with_average(data: &Dataset) -> [(Model, TrainReport); 2] {
    let start = Snapshot::take(init_model(&tiny_spec(), tch::Device::Cpu, 1).unwrap().var_store());
    [None, Some(0.9)].map(|ema_decay| {
        let mut model = Model::new(&tiny_spec(), tch::Device::Cpu).unwrap();
        start.restore(model.var_store());
        let (report, _) = run(&mut model, data, &TrainConfig { ema_decay, ..quick_config() });
        (model, report.unwrap())
    })
}

fn losses(report: &TrainReport) -> Vec<f64> {
    report.history.iter().map(|m| m.loss).collect()
}

#[test]
fn a_weight_average_changes_what_is_kept_not_how_the_run_goes() {
    let data = Dataset { validation: Samples::default(), ..dataset(0) };
    let [(plain, plain_report), (averaged, averaged_report)] = train_without_and_with_average(&data);
    assert_eq!(losses(&plain_report), losses(&averaged_report), "the live weights took the same path");
    let (a, b) = (plain.var_store().variables(), averaged.var_store().variables());
    let most = a.iter().map(|(name, t)| (t - &b[name]).abs().max().double_value(&[])).fold(0.0, f64::max);
    assert!(most > 1e-4, "without validation the run ends holding the average, not the last weights");
    let acc = evaluate(&averaged, &data.test, Normalization::ZScore, &data.classes).unwrap().accuracy;
    assert!(acc >= 0.95, "the averaged weights classify: test accuracy {acc:.3}");
}

#[test]
fn with_validation_the_weight_average_is_what_is_validated_and_kept() {
    let data = dataset(0);
    let [(_, plain), (averaged, report)] = train_without_and_with_average(&data);
    assert_eq!(losses(&plain), losses(&report), "validating the average leaves the live weights alone");
    let now = super::evaluate::accuracy(&averaged, &data.validation, Normalization::ZScore).unwrap();
    assert_eq!(Some(now), report.best_val_accuracy, "the model holds the best epoch's average");
}
