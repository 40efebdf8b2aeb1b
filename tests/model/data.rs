//! The data layer on real files: the CWRU recordings and MNIST from the shared data, and
//! WAV/CSV/.npy/PNG files written here; splits checked for leakage through provenance.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use drsn::data::{
    decode_wav, load_dataset, read_idx_images, read_idx_labels, read_recording, resample, shared_data_root, windows,
    DataError, Dataset, DatasetOptions, DatasetSource, Limits, Origin, ReadOptions, Split, TestSelection,
};

fn shared(sub: &str) -> PathBuf {
    let path = shared_data_root().join(sub);
    assert!(
        path.is_dir(),
        "real data missing: {} does not exist (set DRSN_SHARED_DATA to the folder holding cwru/ and mnist/)",
        path.display()
    );
    path
}

fn rms(x: &[f32]) -> f32 {
    (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt()
}

/// Options of the paper on CWRU: 2048-sample windows at 12 kHz, training windows 256 apart.
fn paper_options() -> DatasetOptions {
    DatasetOptions { sample_rate: Some(12_000), ..DatasetOptions::default() }
}

/// The full CWRU manifest with the paper's options, loaded once for the tests that share it.
fn cwru_dataset() -> &'static (Dataset, Duration) {
    static DATA: OnceLock<(Dataset, Duration)> = OnceLock::new();
    DATA.get_or_init(|| {
        let manifest = shared("cwru").join("manifest.csv");
        let start = Instant::now();
        let data = load_dataset(&DatasetSource::Manifest(manifest), &paper_options()).expect("CWRU loads");
        (data, start.elapsed())
    })
}

/// Pairs of samples, one from each list, that share signal.
fn overlapping(a: &[Origin], b: &[Origin]) -> Vec<(Origin, Origin)> {
    let mut by_source: HashMap<usize, Vec<Origin>> = HashMap::new();
    for o in b {
        by_source.entry(o.source).or_default().push(*o);
    }
    let mut found = Vec::new();
    for x in a {
        for y in by_source.get(&x.source).into_iter().flatten() {
            if x.overlaps(y) {
                found.push((*x, *y));
            }
        }
    }
    found
}

#[test]
fn a_cwru_fault_file_gives_its_drive_end_signal_in_g() {
    let path = shared("cwru").join("12k_Drive_End_B007_0_118.mat");
    let rec = read_recording(&path, &ReadOptions::default()).unwrap();
    assert_eq!(rec.channels.len(), 1);
    assert_eq!(rec.channels[0].len(), 122_571);
    let x = &rec.channels[0];
    let peak = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    // A bearing with a ball fault: a few tenths of a g RMS, peaks of a few g.
    assert!((0.05..1.0).contains(&rms(x)) && (0.5..10.0).contains(&peak), "rms {} peak {peak}", rms(x));
    let mean = x.iter().sum::<f32>() / x.len() as f32;
    assert!(mean.abs() < 0.1, "mean {mean}");
}

#[test]
fn the_48_khz_normal_baseline_reads_and_other_variables_can_be_picked() {
    let path = shared("cwru").join("normal_0_97.mat");
    let de = read_recording(&path, &ReadOptions::default()).unwrap();
    assert_eq!(de.channels[0].len(), 243_938);
    assert!((0.02..0.5).contains(&rms(&de.channels[0])), "rms {}", rms(&de.channels[0]));
    let fe =
        read_recording(&path, &ReadOptions { variable: Some("X097_FE_time".into()), ..Default::default() }).unwrap();
    assert_eq!(fe.channels[0].len(), 243_938);
    assert_ne!(fe.channels[0][..100], de.channels[0][..100]);
}

#[test]
fn a_missing_variable_names_the_file_and_lists_the_variables_present() {
    let path = shared("cwru").join("normal_0_97.mat");
    let err = read_recording(&path, &ReadOptions { variable: Some("*_BA_time".into()), ..Default::default() })
        .unwrap_err()
        .to_string();
    assert!(err.contains("normal_0_97.mat") && err.contains("no variable matches `*_BA_time`"), "{err}");
    assert!(err.contains("X097_DE_time (243938x1 double)") && err.contains("X097RPM (1x1 double)"), "{err}");
}

fn write_wav(path: &Path, spec: hound::WavSpec, frames: &[Vec<f64>]) {
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for frame in frames {
        for &v in frame {
            match spec.sample_format {
                hound::SampleFormat::Float => w.write_sample(v as f32).unwrap(),
                hound::SampleFormat::Int => {
                    let full = (1i64 << (spec.bits_per_sample - 1)) as f64;
                    w.write_sample((v * full) as i32).unwrap()
                }
            }
        }
    }
    w.finalize().unwrap();
}

#[test]
fn wav_of_every_depth_and_layout_reads_back_scaled_to_one() {
    let dir = tempfile::tempdir().unwrap();
    let frames: Vec<Vec<f64>> = (0..100).map(|i| vec![(i as f64 / 50.0) - 1.0, 0.5 - i as f64 / 200.0]).collect();
    let cases = [
        (8, hound::SampleFormat::Int, 1, 1.0 / 128.0),
        (16, hound::SampleFormat::Int, 1, 1.0 / 32768.0),
        (24, hound::SampleFormat::Int, 2, 1.0 / 8_388_608.0),
        (32, hound::SampleFormat::Int, 2, 1e-6),
        (32, hound::SampleFormat::Float, 2, 1e-7),
    ];
    for (bits, format, channels, tolerance) in cases {
        let spec = hound::WavSpec { channels, sample_rate: 12_000, bits_per_sample: bits, sample_format: format };
        let path = dir.path().join(format!("{bits}-{format:?}-{channels}.wav"));
        let used: Vec<Vec<f64>> = frames.iter().map(|f| f[..channels as usize].to_vec()).collect();
        write_wav(&path, spec, &used);
        let rec = read_recording(&path, &ReadOptions::default()).unwrap();
        assert_eq!((rec.sample_rate, rec.channels.len()), (Some(12_000), channels as usize), "{bits} bit");
        for (c, channel) in rec.channels.iter().enumerate() {
            assert_eq!(channel.len(), 100);
            for (i, v) in channel.iter().enumerate() {
                assert!(
                    (*v as f64 - used[i][c]).abs() <= tolerance * 1.01,
                    "{bits} bit {format:?}: {v} vs {}",
                    used[i][c]
                );
            }
        }
        // The same bytes decode in memory, as the service receives them.
        assert_eq!(decode_wav(&std::fs::read(&path).unwrap(), &Limits::DEFAULT).unwrap(), rec);
    }
    let stereo = dir.path().join("24-Int-2.wav");
    let right = read_recording(&stereo, &ReadOptions { channels: Some(vec![1]), ..Default::default() }).unwrap();
    assert_eq!(right.channels.len(), 1);
    assert!((right.channels[0][0] - 0.5).abs() < 1e-6);
}

#[test]
fn csv_with_a_header_reads_a_named_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.csv");
    std::fs::write(&path, "time,accel_g\n0.0,0.125\n0.1,-0.5\n0.2,0.75\n").unwrap();
    let rec = read_recording(&path, &ReadOptions { column: Some("accel_g".into()), ..Default::default() }).unwrap();
    assert_eq!(rec.channels, vec![vec![0.125, -0.5, 0.75]]);
    let both = read_recording(&path, &ReadOptions::default()).unwrap();
    assert_eq!(both.channels.len(), 2);
}

#[test]
fn a_hand_written_npy_reads_as_float32_and_float64() {
    let dir = tempfile::tempdir().unwrap();
    for (descr, bytes) in [
        ("<f4", [0.5f32, -1.0, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()),
        ("<f8", [0.5f64, -1.0, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()),
    ] {
        let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (3,), }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut file = b"\x93NUMPY\x01\x00".to_vec();
        file.extend((header.len() as u16).to_le_bytes());
        file.extend(header.as_bytes());
        file.extend(bytes);
        let path = dir.path().join(format!("x{}.npy", &descr[1..]));
        std::fs::write(&path, file).unwrap();
        assert_eq!(read_recording(&path, &ReadOptions::default()).unwrap().channels, vec![vec![0.5, -1.0, 2.0]]);
    }
}

#[test]
fn mnist_gz_files_hold_60000_and_10000_digits_and_the_first_is_a_five() {
    let dir = shared("mnist");
    let (pixels, n, rows, cols) = read_idx_images(&dir.join("train-images-idx3-ubyte.gz"), &Limits::FILES).unwrap();
    assert_eq!((n, rows, cols, pixels.len()), (60_000, 28, 28, 60_000 * 784));
    let labels = read_idx_labels(&dir.join("train-labels-idx1-ubyte.gz"), &Limits::FILES).unwrap();
    assert_eq!((labels.len(), labels[0]), (60_000, 5));
    let (_, n, _, _) = read_idx_images(&dir.join("t10k-images-idx3-ubyte.gz"), &Limits::FILES).unwrap();
    let labels = read_idx_labels(&dir.join("t10k-labels-idx1-ubyte.gz"), &Limits::FILES).unwrap();
    assert_eq!((n, labels.len(), labels[0]), (10_000, 10_000, 7));
}

/// Frequency from the count of upward zero crossings.
fn frequency(x: &[f32], rate: u32) -> f64 {
    let ups = x.windows(2).filter(|w| w[0] < 0.0 && w[1] >= 0.0).count();
    ups as f64 * rate as f64 / x.len() as f64
}

#[test]
fn resampling_48k_to_12k_keeps_a_sines_frequency_and_kills_an_alias() {
    let tone = |f: f64| -> Vec<f32> {
        (0..96_000).map(|i| (2.0 * std::f64::consts::PI * f * i as f64 / 48_000.0 + 0.3).sin() as f32).collect()
    };
    let y = resample(&tone(1234.0), 48_000, 12_000, &Limits::DEFAULT).unwrap();
    assert_eq!(y.len(), 24_000);
    assert!((frequency(&y, 12_000) - 1234.0).abs() < 1.0, "{} Hz", frequency(&y, 12_000));
    assert!((rms(&y[1000..23_000]) - 0.5f32.sqrt()).abs() < 1e-3);
    // 6.5 kHz is above the new Nyquist (6 kHz): without filtering it would fold to 5.5 kHz.
    let alias = resample(&tone(6500.0), 48_000, 12_000, &Limits::DEFAULT).unwrap();
    let db = 20.0 * (rms(&alias[1000..23_000]) / 0.5f32.sqrt()).log10();
    eprintln!("6.5 kHz tone after 48 -> 12 kHz: {db:.1} dB");
    assert!(db < -40.0, "alias at {db:.1} dB");
}

#[test]
fn the_cwru_manifest_loads_fast_with_ten_classes_in_every_part() {
    let (data, took) = cwru_dataset();
    eprintln!("CWRU manifest, paper settings: {took:?}; counts {:?}", data.description.counts);
    assert!(*took < Duration::from_secs(20), "took {took:?}");
    assert_eq!(data.classes.len(), 10);
    assert_eq!(data.sample_rate, Some(12_000));
    for split in Split::ALL {
        let part = data.part(split);
        assert_eq!(part.sample_shape, vec![1, 2048]);
        assert_eq!(part.values.len(), part.len() * 2048);
        assert_eq!(data.provenance.part(split).len(), part.len());
        for label in 0..10 {
            assert!(
                part.labels.contains(&label),
                "class {} missing from {}",
                data.classes[label as usize],
                split.name()
            );
        }
    }
    // 27 fault files of ~85k training samples with stride 256 give ~320 windows each.
    assert!((8_000..10_000).contains(&(data.train.len() - data.train.labels.iter().filter(|&&l| l == 9).count())));
    let conversions = &data.description.rate_conversions;
    assert_eq!(conversions.len(), 1);
    assert!(conversions[0].file.ends_with("normal_0_97.mat"));
    assert_eq!((conversions[0].from, conversions[0].to), (48_000, 12_000));
    assert_eq!(data.description.classes.len(), 10);
    assert_eq!(data.description.counts["test"]["normal"], data.test.labels.iter().filter(|&&l| l == 9).count());
}

#[test]
fn no_test_or_validation_window_shares_signal_with_a_training_window() {
    let (data, _) = cwru_dataset();
    let p = &data.provenance;
    assert!(overlapping(&p.test, &p.train).is_empty(), "{:?}", &overlapping(&p.test, &p.train)[..1]);
    assert!(overlapping(&p.validation, &p.train).is_empty());
    assert!(overlapping(&p.validation, &p.test).is_empty());
    // Every source feeds all three parts, from different stretches.
    assert!(p.test.iter().any(|t| p.train.iter().any(|r| r.source == t.source)));
    // Training windows overlap each other (stride 256); evaluation windows do not.
    assert!(p.train[0].overlaps(&p.train[1]) && p.train[1].start - p.train[0].start == 256);
    for (i, a) in p.test.iter().enumerate() {
        assert!(p.test[i + 1..].iter().all(|b| !a.overlaps(b)));
    }
}

/// The CWRU recordings of load 1 read with `options`, the paper's otherwise.
fn load_one(options: DatasetOptions) -> Result<Dataset, DataError> {
    let options = DatasetOptions { filter: vec![("load_hp".into(), vec!["1".into()])], ..options };
    load_dataset(&DatasetSource::Manifest(shared("cwru").join("manifest.csv")), &options)
}

#[test]
fn overlapping_held_out_windows_multiply_the_validation_and_test_parts_and_still_share_nothing_with_training() {
    let dense =
        load_one(DatasetOptions { test_stride: Some(512), validation_stride: Some(1024), ..paper_options() }).unwrap();
    let plain = load_one(paper_options()).unwrap();
    let ratio = |a: usize, b: usize| a as f64 / b as f64;
    let test = ratio(dense.test.len(), plain.test.len());
    assert!((3.5..=4.0).contains(&test), "{} vs {} test windows", dense.test.len(), plain.test.len());
    let validation = ratio(dense.validation.len(), plain.validation.len());
    assert!(
        (1.7..=2.0).contains(&validation),
        "{} vs {} validation windows",
        dense.validation.len(),
        plain.validation.len()
    );
    assert_eq!(dense.train.len(), plain.train.len());
    let p = &dense.provenance;
    assert!(overlapping(&p.test, &p.train).is_empty() && overlapping(&p.test, &p.validation).is_empty());
    assert!(overlapping(&p.validation, &p.train).is_empty());
    assert_eq!((dense.description.eval_stride, dense.description.validation_stride), (Some(512), Some(1024)));
}

#[test]
fn a_validation_stride_of_one_sample_is_refused_by_the_window_bound_with_what_to_change() {
    let started = Instant::now();
    let err = load_one(DatasetOptions { validation_stride: Some(1), max_windows: Some(5000), ..paper_options() })
        .unwrap_err();
    assert!(matches!(err, DataError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("more than 5000 windows"), "{err}");
    // One recording's validation stretch alone is over the bound: refused before it is cut.
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[test]
fn a_window_holds_the_samples_its_origin_names() {
    let (data, _) = cwru_dataset();
    let i = data.test.len() / 2;
    let origin = data.provenance.test[i];
    let file = &data.provenance.sources[origin.source];
    assert!(file.contains("12k_Drive_End"), "pick a 12 kHz file; got {file}");
    let rec = read_recording(Path::new(file), &ReadOptions::default()).unwrap();
    assert_eq!(data.test.sample(i), &rec.channels[0][origin.start..origin.start + origin.len]);
}

#[test]
fn a_load_never_seen_in_training_can_be_the_test_set() {
    let manifest = shared("cwru").join("manifest.csv");
    let options = DatasetOptions {
        filter: vec![("load_hp".into(), vec!["0".into(), "1".into()])],
        test: Some(TestSelection { source: None, filter: vec![("load_hp".into(), vec!["2".into()])] }),
        max_per_class: Some(50),
        ..paper_options()
    };
    let data = load_dataset(&DatasetSource::Manifest(manifest), &options).unwrap();
    assert_eq!(data.classes.len(), 10);
    let p = &data.provenance;
    let sources_of =
        |o: &[Origin]| o.iter().map(|o| p.sources[o.source].clone()).collect::<std::collections::BTreeSet<_>>();
    assert!(sources_of(&p.test).iter().all(|f| f.contains("_2_")), "{:?}", sources_of(&p.test));
    assert!(sources_of(&p.train).iter().all(|f| !f.contains("_2_")));
    assert!(sources_of(&p.train).is_disjoint(&sources_of(&p.test)));
    // The normal baseline exists only at load 0: reported, not an error.
    assert_eq!(data.description.classes_without_test_data, vec!["normal"]);
    assert_eq!(data.description.split.as_ref().unwrap().fractions["test"], 0.0);
    assert!(data.train.len() <= 500 && data.test.len() <= 450 && data.test.len() >= 9 * 40);
}

fn class_folders(root: &Path, files: &[(&str, &str, &str)]) {
    for (class, name, content) in files {
        std::fs::create_dir_all(root.join(class)).unwrap();
        std::fs::write(root.join(class).join(name), content).unwrap();
    }
}

fn numbers(n: usize) -> String {
    (0..n).map(|i| format!("{}\n", (i as f32 * 0.1).sin())).collect()
}

fn load_err(root: &Path, options: &DatasetOptions) -> String {
    match load_dataset(&DatasetSource::RecordingFolders(root.into()), options) {
        Ok(_) => panic!("loading {} should fail", root.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn class_folders_of_csv_load_and_bad_data_is_named() {
    let options = DatasetOptions { window: 64, train_stride: 16, ..DatasetOptions::default() };
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    class_folders(&good, &[("a", "1.csv", &numbers(1000)), ("b", "1.csv", &numbers(800)), ("b", "notes.txt", "x")]);
    let data = load_dataset(&DatasetSource::detect(&good).unwrap(), &options).unwrap();
    assert_eq!(data.classes, vec!["a", "b"]);
    assert_eq!(data.train.sample_shape, vec![1, 64]);
    assert!(overlapping(&data.provenance.test, &data.provenance.train).is_empty());

    let nan = dir.path().join("nan");
    class_folders(&nan, &[("a", "1.csv", &numbers(1000)), ("b", "bad.csv", &format!("{}NaN\n", numbers(500)))]);
    let err = load_err(&nan, &options);
    assert!(err.contains("bad.csv") && err.contains("NaN at sample 500"), "{err}");

    let short = dir.path().join("short");
    class_folders(&short, &[("a", "1.csv", &numbers(1000)), ("b", "tiny.csv", &numbers(50))]);
    let err = load_err(&short, &options);
    assert!(err.contains("tiny.csv") && err.contains("50 samples") && err.contains("window of 64"), "{err}");

    let empty = dir.path().join("empty");
    class_folders(&empty, &[("a", "1.csv", &numbers(1000)), ("b", "readme.md", "nothing")]);
    let err = load_err(&empty, &options);
    assert!(err.contains("class `b` has no data") && err.contains("empty/b"), "{err}");

    // Long enough for a window, too short to give the test part one as well.
    let thin = dir.path().join("thin");
    class_folders(&thin, &[("a", "1.csv", &numbers(1000)), ("b", "2.csv", &numbers(100))]);
    let err = load_err(&thin, &options);
    assert!(err.contains("class `b` has no data in the") && err.contains("2.csv"), "{err}");
}

#[test]
fn a_manifest_with_a_wrong_variable_or_unknown_test_label_is_named() {
    // Absolute: the manifest lives elsewhere, and its paths are relative to itself.
    let cwru = shared("cwru").canonicalize().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.csv");
    let file = cwru.join("12k_Drive_End_B007_0_118.mat");
    std::fs::write(&manifest, format!("file,label,variable\n{},B007,X999_DE_time\n", file.display())).unwrap();
    let err = load_dataset(&DatasetSource::Manifest(manifest.clone()), &DatasetOptions::default()).unwrap_err();
    assert!(matches!(err, DataError::Variable { .. }), "{err}");
    let err = err.to_string();
    assert!(err.contains("B007_0_118.mat") && err.contains("X999_DE_time") && err.contains("X118_DE_time"), "{err}");

    let other = dir.path().join("t.csv");
    let ir = cwru.join("12k_Drive_End_IR007_0_105.mat");
    std::fs::write(&manifest, format!("file,label\n{},B007\n", file.display())).unwrap();
    std::fs::write(&other, format!("file,label\n{},IR007\n", ir.display())).unwrap();
    let options = DatasetOptions {
        test: Some(TestSelection { source: Some(DatasetSource::Manifest(other)), filter: vec![] }),
        ..DatasetOptions::default()
    };
    let err = load_dataset(&DatasetSource::Manifest(manifest), &options).unwrap_err().to_string();
    assert!(err.contains("IR007_0_105.mat") && err.contains("unknown label `IR007`") && err.contains("B007"), "{err}");

    let options = DatasetOptions { filter: vec![("load".into(), vec!["0".into()])], ..DatasetOptions::default() };
    let err = load_dataset(&DatasetSource::Manifest(cwru.join("manifest.csv")), &options).unwrap_err().to_string();
    assert!(err.contains("manifest.csv: no column `load`") && err.contains("load_hp"), "{err}");
}

#[test]
fn mnist_uses_the_official_test_set_and_carves_validation_from_train() {
    let options =
        DatasetOptions { max_per_class: Some(30), validation_fraction: 0.1, seed: 7, ..DatasetOptions::default() };
    let data = load_dataset(&DatasetSource::detect(&shared("mnist")).unwrap(), &options).unwrap();
    assert_eq!(data.classes, (0..10).map(|d| d.to_string()).collect::<Vec<_>>());
    assert_eq!(data.train.sample_shape, vec![1, 28, 28]);
    assert_eq!((data.train.len(), data.validation.len(), data.test.len()), (300, 300, 300));
    assert!(data.provenance.test.iter().all(|o| o.source == 1));
    assert!(data.provenance.train.iter().chain(&data.provenance.validation).all(|o| o.source == 0));
    assert!(overlapping(&data.provenance.train, &data.provenance.validation).is_empty());
    assert!(data.train.values.iter().all(|v| (0.0..=1.0).contains(v)));
    let mean = data.train.values.iter().sum::<f32>() / data.train.values.len() as f32;
    assert!((0.1..0.15).contains(&mean), "mean pixel {mean}");
}

#[test]
fn image_folders_split_per_class_and_reject_mixed_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let png = |w: u32, h: u32, v: u8| {
        let mut out = Vec::new();
        image::GrayImage::from_pixel(w, h, image::Luma([v]))
            .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    };
    for (class, value) in [("dark", 10u8), ("light", 240)] {
        std::fs::create_dir_all(dir.path().join(class)).unwrap();
        for i in 0..10 {
            std::fs::write(dir.path().join(class).join(format!("{i}.png")), png(5, 4, value)).unwrap();
        }
    }
    let source = DatasetSource::detect(dir.path()).unwrap();
    assert!(matches!(source, DatasetSource::ImageFolders(_)));
    let data = load_dataset(&source, &DatasetOptions::default()).unwrap();
    assert_eq!(data.train.sample_shape, vec![1, 4, 5]);
    assert_eq!((data.train.len(), data.validation.len(), data.test.len()), (12, 4, 4));
    let first_light = data.train.labels.iter().position(|&l| l == 1).unwrap();
    assert!((data.train.sample(first_light)[0] - 240.0 / 255.0).abs() < 1e-6);

    std::fs::write(dir.path().join("light").join("odd.png"), png(6, 4, 0)).unwrap();
    let err = load_dataset(&source, &DatasetOptions::default()).unwrap_err().to_string();
    assert!(err.contains("odd.png") && err.contains("4x6") && err.contains("share one size"), "{err}");
}

#[test]
fn evaluation_windows_tile_and_training_windows_overlap() {
    let eval: Vec<_> = windows(10_000, 2048, 2048).collect();
    assert_eq!(eval.len(), 4);
    assert!(eval.windows(2).all(|w| w[0].end == w[1].start));
    let train: Vec<_> = windows(10_000, 2048, 256).collect();
    assert_eq!(train.len(), (10_000 - 2048) / 256 + 1);
    assert!(train.iter().all(|r| r.end <= 10_000));
}

#[test]
fn speed_augmentation_adds_training_windows_at_the_new_speed_and_leaves_evaluation_alone() {
    let dir = tempfile::tempdir().unwrap();
    let tones = [("slow", 300.0), ("fast", 500.0)];
    for (class, hz) in tones {
        let csv: String = (0..60_000)
            .map(|i| format!("{}\n", (2.0 * std::f64::consts::PI * hz * i as f64 / 12_000.0).sin()))
            .collect();
        class_folders(dir.path(), &[(class, "tone.csv", &csv)]);
    }
    let source = DatasetSource::RecordingFolders(dir.path().into());
    let plain = DatasetOptions { default_sample_rate: Some(12_000), train_stride: 1024, ..DatasetOptions::default() };
    let sped = DatasetOptions { speed_factors: vec![0.97, 1.03], ..plain.clone() };
    let (base, data) = (load_dataset(&source, &plain).unwrap(), load_dataset(&source, &sped).unwrap());

    assert_eq!((data.validation.len(), data.test.len()), (base.validation.len(), base.test.len()));
    let expected = base.train.len() as f64 * (1.0 + 1.0 / 0.97 + 1.0 / 1.03);
    assert!(
        (data.train.len() as f64 - expected).abs() <= 6.0,
        "{} training windows, expected about {expected}",
        data.train.len()
    );
    assert_eq!(data.description.speed_factors, vec![0.97, 1.03]);

    // A window played at speed f spans f x 2048 samples of the recording and shows each tone
    // f times higher (zero crossings of 2048 samples resolve about 6 Hz).
    let p = &data.provenance;
    let mut seen = [0; 2];
    for (i, o) in p.train.iter().enumerate() {
        let hz = if data.classes[data.train.labels[i] as usize] == "slow" { 300.0 } else { 500.0 };
        let factor = o.len as f64 / 2048.0;
        let measured = frequency(data.train.sample(i), 12_000);
        assert!(
            (measured - hz * factor).abs() < 9.0,
            "window {i}: {measured} Hz from a {hz} Hz tone at speed {factor}"
        );
        if o.len < 2048 {
            seen[0] += 1;
        } else if o.len > 2048 {
            seen[1] += 1;
        }
    }
    assert!(seen[0] > 10 && seen[1] > 10, "{seen:?} windows slower and faster");
    assert!(overlapping(&p.train, &p.test).is_empty() && overlapping(&p.train, &p.validation).is_empty());

    for bad in [vec![1.0], vec![3.0]] {
        let message = load_err(dir.path(), &DatasetOptions { speed_factors: bad, ..plain.clone() });
        assert!(message.contains("speed factors"), "{message}");
    }
    let images = DatasetOptions { speed_factors: vec![1.03], ..DatasetOptions::default() };
    let message = load_dataset(&DatasetSource::Mnist(shared("mnist")), &images).unwrap_err().to_string();
    assert!(message.contains("recordings, not images"), "{message}");
}

#[test]
fn a_load_stops_before_its_next_file_once_told_to() {
    let source = DatasetSource::detect(&shared("cwru").join("manifest.csv")).unwrap();
    let err = drsn::data::load_dataset_until(&source, &paper_options(), &|| true).unwrap_err();
    assert!(matches!(err, drsn::data::DataError::Cancelled), "{err}");
}
