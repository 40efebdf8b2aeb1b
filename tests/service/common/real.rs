//! The shipped models and the real data sets from `../shared/data` (`DRSN_SHARED_DATA`).

use std::path::{Path, PathBuf};

use drsn::data::{self, ReadOptions};
use drsn::registry::ModelCard;

/// The repository's `models/` folder.
pub fn shipped() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    assert!(dir.join("cwru-bearing/card.json").is_file(), "{} holds no cwru-bearing model", dir.display());
    dir
}

/// The shared data folder (canonical), or a failure naming it and its variable.
pub fn shared_root() -> PathBuf {
    shared("cwru/manifest.csv");
    data::shared_data_root().canonicalize().expect("shared data root")
}

pub fn shared(sub: &str) -> PathBuf {
    let path = data::shared_data_root().join(sub);
    assert!(
        path.exists(),
        "{} is missing: these tests need the real data sets (set DRSN_SHARED_DATA to the folder holding cwru/ and mnist/)",
        path.display()
    );
    path
}

/// One test recording of the CWRU model card: its label and its test stretch, at 12 kHz.
pub struct TestStretch {
    pub label: String,
    pub file: String,
    pub samples: Vec<f32>,
}

/// Every test stretch the card lists, read from the real files (resampled to the model's
/// rate with the service's resampler where the card says training did).
pub fn cwru_test_stretches(card: &ModelCard) -> Vec<TestStretch> {
    let files = card.data.description.files.recordings();
    assert!(!files.is_empty(), "the card lists its files");
    let rate = card.sample_rate.expect("cwru-bearing has a rate");
    files
        .iter()
        .filter_map(|f| {
            let [start, end] = *f.stretches.get("test")?;
            let name = Path::new(&f.file).file_name()?.to_string_lossy().into_owned();
            let options = ReadOptions { variable: f.variable.clone(), ..ReadOptions::default() };
            let recording =
                data::read_recording(&shared(&format!("cwru/{name}")), &options).expect("a readable CWRU file");
            let mut signal = recording.channels.into_iter().next().unwrap();
            if let Some(from) = f.resampled_from {
                signal = data::resample(&signal, from, rate, &data::Limits::DEFAULT).unwrap();
            }
            Some(TestStretch { label: f.label.clone(), file: name, samples: signal[start..end].to_vec() })
        })
        .collect()
}

/// The first `n` MNIST test digits: 8-bit pixels and labels.
pub fn mnist_test(n: usize) -> (Vec<Vec<u8>>, Vec<u8>) {
    let (pixels, count, rows, cols) =
        data::read_idx_images(&shared("mnist/t10k-images-idx3-ubyte.gz"), &data::Limits::FILES).unwrap();
    let labels = data::read_idx_labels(&shared("mnist/t10k-labels-idx1-ubyte.gz"), &data::Limits::FILES).unwrap();
    assert_eq!((rows, cols, labels.len()), (28, 28, count));
    let n = n.min(count);
    (pixels.chunks(784).take(n).map(<[u8]>::to_vec).collect(), labels[..n].to_vec())
}
