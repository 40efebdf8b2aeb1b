//! The model card: everything the service needs to feed a model the way it was trained,
//! and everything an engineer needs to know where it came from.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::data::{DatasetDescription, Normalization};
use crate::nn::ModelSpec;
use crate::ood::OodCalibration;
use crate::physics::{FaultFamily, IsoGroup, SensorUnit};
use crate::train::RunMetrics;

/// File names inside a model folder.
pub const CARD_FILE: &str = "card.json";
pub const WEIGHTS_FILE: &str = "weights.safetensors";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelCard {
    pub name: String,
    pub version: u32,
    pub spec: ModelSpec,
    /// Class names, index `i` is output `i`.
    pub classes: Vec<String>,
    /// Sampling rate in Hz the model expects (1-D models); recordings at another rate
    /// are resampled to it.
    #[serde(default)]
    pub sample_rate: Option<u32>,
    /// Window length in samples (1-D) and the stride used to cut training windows.
    #[serde(default)]
    pub window: Option<WindowInfo>,
    /// Applied to every window or image before the network sees it.
    pub normalization: Normalization,
    /// What the model was trained on.
    #[serde(default)]
    pub data: CardData,
    /// What training measured: held-out accuracy, per class, the noise sweep, the history.
    #[serde(default)]
    pub metrics: RunMetrics,
    /// The machine it was trained for (bearing, shaft speed, sensor): what the physics
    /// second opinion on its diagnoses needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<MachineInfo>,
    /// How the model says "I don't know": its out-of-distribution score, the statistics it
    /// needs and the threshold calibrated on held-out windows. Absent: no window is flagged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ood: Option<OodCalibration>,
    pub created_at: DateTime<Utc>,
    /// Hex SHA-256 of `weights.safetensors`.
    pub weights_sha256: String,
}

/// The machine a model was trained for.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct MachineInfo {
    /// Nominal shaft speed, rpm.
    pub shaft_rpm: Option<f64>,
    /// The speeds it runs at, `[low, high]` rpm: where the shaft speed is looked for.
    pub shaft_rpm_range: Option<[f64; 2]>,
    /// A bearing of the built-in table (`6205-2RS JEM SKF`, `6203-2RS JEM SKF`, `cwru-de`, `cwru-fe`).
    pub bearing: Option<String>,
    pub sensor_unit: Option<SensorUnit>,
    /// ISO 10816-3/20816-3 machine group and foundation, for the severity zone.
    pub iso_group: Option<IsoGroup>,
    /// The fault family of classes whose names do not say it.
    pub families: std::collections::BTreeMap<String, FaultFamily>,
}

impl MachineInfo {
    /// The family of `class`: as this card says, else as its name says.
    pub fn family(&self, class: &str) -> FaultFamily {
        self.families.get(class).copied().unwrap_or_else(|| FaultFamily::from_class(class))
    }
}

/// What a model was trained on: the data layer's report, and for versions made by a job,
/// the job and the data set path it named.
#[derive(Clone, Debug, Default, PartialEq, Serialize, ToSchema)]
pub struct CardData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Relative to the data root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    pub description: DatasetDescription,
}

impl From<DatasetDescription> for CardData {
    fn from(description: DatasetDescription) -> Self {
        CardData { job: None, dataset: None, description }
    }
}

impl<'de> Deserialize<'de> for CardData {
    /// Cards written by `drsn train` before this type held the description itself, not
    /// under `description`: both read.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Default, Deserialize)]
        #[serde(default)]
        struct Nested {
            job: Option<String>,
            dataset: Option<String>,
            description: Option<DatasetDescription>,
        }
        use serde::de::Error;
        let value = serde_json::Value::deserialize(deserializer)?;
        let nested: Nested = serde_json::from_value(value.clone()).map_err(D::Error::custom)?;
        let description = match nested.description {
            Some(description) => description,
            None => serde_json::from_value(value).map_err(D::Error::custom)?,
        };
        Ok(CardData { job: nested.job, dataset: nested.dataset, description })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WindowInfo {
    pub length: usize,
    pub train_stride: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not a valid model card: {source}")]
    Parse { path: String, source: serde_json::Error },
    #[error("{0}")]
    Invalid(String),
}

impl ModelCard {
    /// Reads `card.json` from a model folder and checks it against its weights file.
    pub fn read(dir: &Path) -> Result<Self, CardError> {
        let path = dir.join(CARD_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|source| CardError::Io { path: path.display().to_string(), source })?;
        let card: ModelCard = serde_json::from_str(&text)
            .map_err(|source| CardError::Parse { path: path.display().to_string(), source })?;
        card.spec.validate().map_err(|e| CardError::Invalid(format!("{}: {e}", path.display())))?;
        if card.classes.len() as i64 != card.spec.classes {
            return Err(CardError::Invalid(format!(
                "{}: {} class names for a spec with {} classes",
                path.display(),
                card.classes.len(),
                card.spec.classes
            )));
        }
        let actual = sha256_file(&dir.join(WEIGHTS_FILE))?;
        if actual != card.weights_sha256 {
            return Err(CardError::Invalid(format!(
                "{}: weights checksum {actual} does not match the card's {}",
                dir.join(WEIGHTS_FILE).display(),
                card.weights_sha256
            )));
        }
        Ok(card)
    }

    /// Writes the card as pretty JSON into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), CardError> {
        let path = dir.join(CARD_FILE);
        let io = |source| CardError::Io { path: path.display().to_string(), source };
        let text = serde_json::to_string_pretty(self).map_err(|e| io(std::io::Error::other(e)))?;
        std::fs::write(&path, text + "\n").map_err(io)
    }
}

/// Hex SHA-256 of a file's contents.
pub fn sha256_file(path: &Path) -> Result<String, CardError> {
    let bytes = std::fs::read(path).map_err(|source| CardError::Io { path: path.display().to_string(), source })?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}
