//! Training on real data: a short run on CWRU windows, and the `drsn train` / `drsn
//! evaluate` commands end to end. Kept small (a subset of windows, few epochs, one
//! thread) so that the suite stays fast on two shared cores.

use std::path::PathBuf;
use std::process::Command;

use drsn::data::{load_dataset, shared_data_root, DatasetOptions, DatasetSource, NoiseKind, Normalization};
use drsn::nn::{Arch, Model, ModelSpec};
use drsn::registry::{write_model_folder, CardInfo, ModelCard, WindowInfo, WEIGHTS_FILE};
use drsn::train::{self, evaluate, CancelToken, NoiseAugment, NoiseSetting, Progress, RunRequest, TrainConfig};

fn cwru_manifest() -> PathBuf {
    let path = shared_data_root().join("cwru").join("manifest.csv");
    assert!(
        path.is_file(),
        "real data missing: {} does not exist (set DRSN_SHARED_DATA to the folder holding cwru/ and mnist/)",
        path.display()
    );
    path
}

#[test]
fn a_short_training_run_on_real_cwru_windows_ends_far_above_chance() {
    let options = DatasetOptions {
        sample_rate: Some(12_000),
        filter: vec![("load_hp".into(), vec!["0".into()])],
        max_per_class: Some(60),
        seed: 3,
        ..DatasetOptions::default()
    };
    let data = load_dataset(&DatasetSource::Manifest(cwru_manifest()), &options).unwrap();
    assert_eq!(data.classes.len(), 10);
    let request = RunRequest {
        spec: ModelSpec::preset("paper-1d", Arch::DrsnCw, 10).unwrap(),
        config: TrainConfig {
            lr: 0.01,
            epochs: 6,
            batch_size: 32,
            seed: 3,
            threads: Some(1),
            ..TrainConfig::seed_adam()
        },
        normalization: Normalization::ZScore,
        test_noise: None,
        sweep_kinds: vec![NoiseKind::Gaussian],
        ood: Default::default(),
        device: tch::Device::Cpu,
    };
    let mut epochs = Vec::new();
    let outcome = train::run(
        &data,
        &request,
        &mut |p| {
            if let Progress::Epoch(e) = p {
                epochs.push(e.clone())
            }
        },
        &CancelToken::new(),
    )
    .unwrap();
    let test = outcome.test.as_ref().unwrap();
    // Chance is 10%.
    assert!(test.accuracy >= 0.6, "test accuracy {:.3}\n{}", test.accuracy, test.table());
    assert_eq!(epochs.len(), 6);
    let sweep = outcome.sweep.as_ref().unwrap();
    assert_eq!(sweep.rows[0].accuracy.len(), 11);
    assert!(sweep.rows[0].accuracy[10] > sweep.rows[0].accuracy[0], "{}", sweep.table());

    // The folder written reads back, checks out, and predicts what the trained model did.
    let dir = tempfile::tempdir().unwrap();
    let info = CardInfo {
        name: "cwru-short".into(),
        version: 1,
        classes: data.classes.clone(),
        sample_rate: data.sample_rate,
        window: Some(WindowInfo { length: 2048, train_stride: options.train_stride }),
        normalization: Normalization::ZScore,
        data: data.description.clone().into(),
        metrics: outcome.metrics(&request),
        machine: None,
        ood: outcome.ood.clone(),
    };
    write_model_folder(dir.path(), &outcome.model, info).unwrap();
    let card = ModelCard::read(dir.path()).unwrap();
    let ood = card.ood.as_ref().expect("a run with validation data is calibrated");
    assert!(ood.measured_false_alarm_rate <= ood.false_alarm_rate && ood.gaussian.is_some());
    assert_eq!(card.sample_rate, Some(12_000));
    let stored = card.metrics.test.as_ref().unwrap().accuracy;
    assert!((stored - test.accuracy).abs() < 1e-12, "{stored} vs {}", test.accuracy);
    assert_eq!(card.metrics.best_epoch, Some(outcome.report.best_epoch));
    let loaded = Model::load(&card.spec, &dir.path().join(WEIGHTS_FILE), tch::Device::Cpu).unwrap();
    let again = evaluate(&loaded, &data.test, card.normalization, &card.classes).unwrap();
    assert_eq!(&again, test);
}

#[test]
fn the_seeds_one_unit_preset_learns_noisy_mnist() {
    // The seed's set-up: seed-2d (one residual unit), Adam, uniform pixel noise on every
    // training and test image; a subset of the digits, so a higher rate and smaller batches.
    let options = DatasetOptions { max_per_class: Some(150), seed: 5, ..DatasetOptions::default() };
    let data = load_dataset(&DatasetSource::Mnist(shared_data_root().join("mnist")), &options).unwrap();
    assert_eq!((data.classes.len(), data.train.len()), (10, 1500));
    let noise = NoiseAugment { kinds: vec![NoiseKind::UniformPixel], snr_db: [0.0, 0.0], probability: 1.0 };
    let request = RunRequest {
        spec: ModelSpec::preset("seed-2d", Arch::DrsnCw, 10).unwrap(),
        config: TrainConfig {
            lr: 5e-3,
            epochs: 20,
            batch_size: 50,
            seed: 5,
            threads: Some(1),
            augment: Some(noise),
            ..TrainConfig::seed_adam()
        },
        normalization: Normalization::None,
        test_noise: Some(NoiseSetting { kind: NoiseKind::UniformPixel, snr_db: 0.0 }),
        sweep_kinds: vec![],
        ood: Default::default(),
        device: tch::Device::Cpu,
    };
    let outcome = train::run(&data, &request, &mut |_| {}, &CancelToken::new()).unwrap();
    let (noisy, clean) = (outcome.test.as_ref().unwrap(), outcome.clean_test.as_ref().unwrap());
    assert_eq!((noisy.samples, clean.samples), (1500, 1500));
    // Chance is 10% (the full data set and the seed's 5 epochs give 87%, see the README).
    assert!(noisy.accuracy >= 0.5, "noisy test accuracy {:.3}\n{}", noisy.accuracy, noisy.table());
}

#[test]
fn drsn_train_writes_a_model_folder_that_drsn_evaluate_reads() {
    let manifest = cwru_manifest();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny");
    let output = Command::new(env!("CARGO_BIN_EXE_drsn"))
        .args(["train", "--data"])
        .arg(&manifest)
        .args(["--filter", "load_hp=0", "--filter", "label=normal,IR007,OR021@6"])
        .args(["--sample-rate", "12000", "--max-per-class", "12", "--epochs", "1"])
        .args(["--batch", "16", "--threads", "1", "--device", "cpu", "--no-sweep"])
        .args(["--name", "tiny", "--version", "4", "--test-noise", "pink:0", "--seed", "3"])
        .args(["--validation-stride", "1024"])
        .args(["--bearing", "cwru-de", "--shaft-rpm-range", "1700:1850", "--sensor-unit", "g", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(output.status.success(), "drsn train failed: {}", String::from_utf8_lossy(&output.stderr));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains("test set with pink:0 noise") && printed.contains("confusion matrix"), "{printed}");
    let card = ModelCard::read(&out).unwrap();
    assert_eq!((card.name.as_str(), card.version), ("tiny", 4));
    assert_eq!(card.classes.len(), 3);
    assert_eq!(card.spec.classes, 3);
    assert_eq!(card.window.as_ref().map(|w| w.length), Some(2048));
    assert_eq!(card.metrics.test_noise.map(|n| n.kind), Some(drsn::data::NoiseKind::Pink));
    assert!(card.metrics.clean_test.as_ref().is_some_and(|t| t.accuracy.is_finite()), "{:?}", card.metrics);
    assert_eq!(card.metrics.history.len(), 1);
    assert!(!card.data.description.classes.is_empty(), "{:?}", card.data);
    let machine = card.machine.as_ref().expect("the machine flags reach the card");
    assert_eq!((machine.bearing.as_deref(), machine.shaft_rpm_range), (Some("cwru-de"), Some([1700.0, 1850.0])));
    assert_eq!(machine.sensor_unit, Some(drsn::physics::SensorUnit::G));
    assert!(card.ood.is_some(), "calibrated");
    // In calibrate and evaluate, what the score makes of the model's own data is printed.
    let output = Command::new(env!("CARGO_BIN_EXE_drsn"))
        .args(["calibrate", "--model"])
        .arg(&out)
        .arg("--data")
        .arg(&manifest)
        .args(["--filter", "load_hp=0", "--filter", "label=normal,IR007,OR021@6", "--max-per-class", "12"])
        .args(["--ood-method", "energy", "--false-alarm-rate", "0.05", "--threads", "1", "--device", "cpu"])
        .output()
        .unwrap();
    assert!(output.status.success(), "drsn calibrate failed: {}", String::from_utf8_lossy(&output.stderr));
    let recalibrated = ModelCard::read(&out).unwrap();
    let ood = recalibrated.ood.as_ref().unwrap();
    assert_eq!((ood.method, ood.false_alarm_rate), (drsn::ood::OodMethod::Energy, 0.05));
    assert!(ood.gaussian.is_none(), "energy needs no fit");
    // Split seed and validation stride come from the card: the same validation windows.
    let trained_on = &card.ood.as_ref().unwrap().calibrated_on;
    assert_eq!(ood.calibrated_on.windows, trained_on.windows, "{trained_on:?}");
    assert_eq!(recalibrated.weights_sha256, card.weights_sha256, "the weights are untouched");

    // Without --seed, evaluate splits as training did (seed 3, from the card): the same
    // test windows, so the same figures as training's clean test.
    let output = Command::new(env!("CARGO_BIN_EXE_drsn"))
        .args(["evaluate", "--model"])
        .arg(&out)
        .arg("--data")
        .arg(&manifest)
        .args(["--filter", "load_hp=0", "--filter", "label=normal,IR007,OR021@6", "--max-per-class", "12"])
        .args(["--no-sweep", "--json", "--threads", "1", "--device", "cpu"])
        .output()
        .unwrap();
    assert!(output.status.success(), "drsn evaluate failed: {}", String::from_utf8_lossy(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let clean = card.metrics.clean_test.as_ref().unwrap();
    assert_eq!(json["test"]["samples"].as_u64(), Some(clean.samples as u64), "{}", json["test"]);
    assert_eq!(json["test"]["accuracy"].as_f64(), Some(clean.accuracy), "{}", json["test"]);

    // Load 1 was never seen: evaluate all of it, with the model's classes mapped by name.
    let output = Command::new(env!("CARGO_BIN_EXE_drsn"))
        .args(["evaluate", "--model"])
        .arg(&out)
        .arg("--data")
        .arg(&manifest)
        .args(["--filter", "load_hp=1", "--filter", "label=IR007,OR021@6"])
        .args(["--split", "all", "--max-per-class", "10", "--no-sweep", "--json"])
        .args(["--threads", "1", "--device", "cpu"])
        .output()
        .unwrap();
    assert!(output.status.success(), "drsn evaluate failed: {}", String::from_utf8_lossy(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["model"], "tiny");
    let test = &json["test"];
    let per_class = test["per_class"].as_array().unwrap();
    assert_eq!(per_class.len(), 3);
    let support = |class: &str| per_class.iter().find(|c| c["class"] == class).unwrap()["support"].as_u64();
    // Up to 10 windows per class and part, three parts; no normal data at load 1.
    assert_eq!(support("normal"), Some(0));
    assert!(support("IR007").unwrap() > 10 && support("OR021@6").unwrap() > 10, "{test}");
    let confusion: u64 = test["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(Some(confusion), test["samples"].as_u64());
    let share = json["out_of_distribution_share"].as_f64().expect("the card is calibrated");
    assert!((0.0..=1.0).contains(&share));
}

#[test]
fn a_comparison_on_real_windows_pairs_every_network_and_condition_and_recommends_one() {
    let options = DatasetOptions {
        sample_rate: Some(12_000),
        filter: vec![("load_hp".into(), vec!["0".into()])],
        max_per_class: Some(30),
        seed: 2,
        ..DatasetOptions::default()
    };
    let data = load_dataset(&DatasetSource::Manifest(cwru_manifest()), &options).unwrap();
    let candidates: Vec<train::Candidate> = [Arch::DrsnCw, Arch::Resnet]
        .into_iter()
        .map(|arch| train::Candidate { name: arch.to_string(), spec: ModelSpec::preset("paper-1d", arch, 10).unwrap() })
        .collect();
    let request = RunRequest {
        spec: candidates[0].spec.clone(),
        config: TrainConfig { lr: 0.01, epochs: 2, batch_size: 32, threads: Some(1), ..TrainConfig::seed_adam() },
        normalization: Normalization::ZScore,
        test_noise: None,
        sweep_kinds: vec![],
        ood: Default::default(),
        device: tch::Device::Cpu,
    };
    let conditions = train::conditions(&[NoiseKind::Gaussian], &[-4.0]);
    let mut steps = Vec::new();
    let mut epochs = Vec::new();
    let report = train::compare(
        &data,
        &candidates,
        &request,
        &[0, 1],
        &conditions,
        &mut |watch| match watch {
            train::Watch::Stage(s) => steps.push(s.to_string()),
            train::Watch::Run(Progress::Epoch(m)) => epochs.push((m.epoch, m.epochs)),
            train::Watch::Run(Progress::Step(_)) => {}
        },
        &CancelToken::new(),
    )
    .unwrap();
    // Four runs of two epochs, counted as one span of eight.
    assert_eq!(epochs, (1..=8).map(|e| (e, 8)).collect::<Vec<_>>());
    let comparison = report;
    let report = &comparison.report;
    assert!(report.recommendation.contains(&comparison.winner.name));
    assert_eq!(comparison.outcome.comparison.as_ref(), Some(report), "the winner carries the comparison");
    assert_eq!(comparison.outcome.model.spec(), &comparison.winner.spec);
    eprint!("{}", report.table());
    assert_eq!(steps.len(), 4, "two networks x two seeds: {steps:?}");
    assert_eq!(report.test_windows, data.test.len());
    assert!((report.window_points - 100.0 / data.test.len() as f64).abs() < 1e-12);
    for c in &report.candidates {
        assert!(c.parameters > 1000 && c.forward_us_per_window > 0.0 && c.train_seconds > 0.0, "{c:?}");
        let names: Vec<&str> = c.conditions.iter().map(|r| r.condition.as_str()).collect();
        assert_eq!(names, ["clean", "gaussian -4 dB"]);
        for r in &c.conditions {
            assert_eq!(r.accuracy_per_seed.len(), 2);
            let mean = (r.accuracy_per_seed[0] + r.accuracy_per_seed[1]) / 2.0;
            assert!((r.mean - mean).abs() < 1e-12);
        }
    }
    // DRSN-CW has more parameters than ResNet (the shrinkage branches).
    assert!(report.candidates[0].parameters > report.candidates[1].parameters);
    assert_eq!(report.differences.len(), 2, "one pair under two conditions");
    for d in &report.differences {
        assert!(d.low <= d.points && d.points <= d.high, "{d:?}");
        assert_eq!(d.resolved, d.low > 0.0 || d.high < 0.0);
    }
    assert!(
        report.recommendation.contains("drsn-cw") || report.recommendation.contains("resnet"),
        "{}",
        report.recommendation
    );
}
