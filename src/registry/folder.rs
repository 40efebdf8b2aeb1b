//! Writing a trained model as a folder the service can load: `weights.safetensors` and
//! `card.json`. The card is written last, so a folder with a card is a complete model.

use std::path::Path;

use chrono::Utc;

use crate::data::Normalization;
use crate::nn::Model;

use super::card::{sha256_file, CardError, ModelCard, WindowInfo, WEIGHTS_FILE};
use super::layout::validate_name;

/// Everything on a card that the model itself does not say.
#[derive(Clone, Debug)]
pub struct CardInfo {
    pub name: String,
    pub version: u32,
    pub classes: Vec<String>,
    pub sample_rate: Option<u32>,
    pub window: Option<WindowInfo>,
    pub normalization: Normalization,
    pub data: super::CardData,
    pub metrics: crate::train::RunMetrics,
    /// The machine it is for, if known.
    pub machine: Option<super::MachineInfo>,
    /// How it says "I don't know", if calibrated.
    pub ood: Option<crate::ood::OodCalibration>,
}

/// Writes `model` and its card into `dir` (created if missing; an earlier model there is
/// replaced). Returns the card as written.
pub fn write_model_folder(dir: &Path, model: &Model, info: CardInfo) -> Result<ModelCard, CardError> {
    // The registry's rule, so that every folder written here can be served.
    validate_name(&info.name).map_err(|e| CardError::Invalid(e.to_string()))?;
    if info.classes.len() as i64 != model.spec().classes {
        return Err(CardError::Invalid(format!(
            "{} class names for a model with {} classes",
            info.classes.len(),
            model.spec().classes
        )));
    }
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| CardError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    // Saved under a temporary name and renamed, so a reader never sees half a file.
    let tmp = dir.join(".weights.partial.safetensors");
    model.save(&tmp).map_err(|e| CardError::Invalid(e.to_string()))?;
    let weights = dir.join(WEIGHTS_FILE);
    std::fs::rename(&tmp, &weights).map_err(io(&weights))?;
    let card = ModelCard {
        name: info.name,
        version: info.version,
        spec: model.spec().clone(),
        classes: info.classes,
        sample_rate: info.sample_rate,
        window: info.window,
        normalization: info.normalization,
        data: info.data,
        metrics: info.metrics,
        machine: info.machine,
        ood: info.ood,
        created_at: Utc::now(),
        weights_sha256: sha256_file(&weights)?,
    };
    card.write(dir)?;
    Ok(card)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{Arch, ModelSpec};

    fn info(classes: usize) -> CardInfo {
        CardInfo {
            name: "tiny-test".into(),
            version: 3,
            classes: (0..classes).map(|i| format!("c{i}")).collect(),
            sample_rate: Some(12_000),
            window: Some(WindowInfo { length: 2048, train_stride: 512 }),
            normalization: Normalization::ZScore,
            data: Default::default(),
            metrics: crate::train::RunMetrics { validation_accuracy: Some(0.5), ..Default::default() },
            machine: None,
            ood: None,
        }
    }

    #[test]
    fn a_written_folder_reads_back_with_a_matching_checksum_and_the_same_weights() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("models").join("tiny-test");
        let spec = ModelSpec::preset("paper-1d", Arch::DrsnCs, 4).unwrap();
        let model = Model::new(&spec, tch::Device::Cpu).unwrap();
        let written = write_model_folder(&out, &model, info(4)).unwrap();
        let read = ModelCard::read(&out).unwrap();
        assert_eq!(read, written);
        assert_eq!(read.metrics.validation_accuracy, Some(0.5));
        assert_eq!(read.window.as_ref().unwrap().length, 2048);
        assert!(!out.join(".weights.partial.safetensors").exists());
        let loaded = Model::load(&spec, &out.join(WEIGHTS_FILE), tch::Device::Cpu).unwrap();
        let xs = tch::Tensor::randn([2, 1, 2048], (tch::Kind::Float, tch::Device::Cpu));
        let a = model.infer(&xs, false).unwrap().logits;
        let b = loaded.infer(&xs, false).unwrap().logits;
        assert!(a.allclose(&b, 1e-6, 1e-6, false));
    }

    #[test]
    fn bad_names_and_class_counts_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let spec = ModelSpec::preset("seed-2d", Arch::DrsnCw, 10).unwrap();
        let model = Model::new(&spec, tch::Device::Cpu).unwrap();
        let err = write_model_folder(dir.path(), &model, info(3)).unwrap_err().to_string();
        assert!(err.contains("3 class names") && err.contains("10 classes"), "{err}");
        let bad = CardInfo { name: "../escape".into(), ..info(10) };
        let err = write_model_folder(dir.path(), &model, bad).unwrap_err().to_string();
        assert!(err.contains("../escape"), "{err}");
        // A name the service would refuse to load is refused here already.
        let upper = CardInfo { name: "Bearing".into(), ..info(10) };
        let err = write_model_folder(dir.path(), &model, upper).unwrap_err().to_string();
        assert!(err.contains("lower-case"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
