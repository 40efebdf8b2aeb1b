//! What a client asks a training job to do (the body of `POST /jobs`), and its checks.
//! Everything that can be checked without reading the data is checked before the job is
//! queued; the runner turns the request into the data and training settings it runs with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::limits::JobLimits;
use crate::data::{DatasetOptions, DatasetSource, Limits, NoiseKind, Normalization, TestSelection};
use crate::datasets::resolve_inside;
use crate::nn::{Arch, Dim, ModelSpec};
use crate::registry::{validate_name, ModelCard};
use crate::train::{NoiseAugment, NoiseSetting, Optimizer, TrainConfig};

/// Most classes or families one job may leave out of training.
const MAX_LEAVE_OUT: usize = 64;

/// The longest idempotency key accepted.
pub const MAX_KEY_LEN: usize = 200;

/// A training job: which model, on which data, with which network and settings, and what
/// to do with the result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// Model name: an existing model gets a new version, a new name starts at version 1
    /// (lower-case letters, digits, '-', '_', '.').
    pub model: String,
    /// The dataset, as a path relative to the data root: a folder of class folders
    /// (recordings or images), a manifest `.csv`, or an MNIST folder. Uploaded datasets
    /// are at `datasets/<name>`.
    pub dataset: String,
    /// How the data is read, windowed and split.
    #[serde(default)]
    pub data: DataSettings,
    /// A network preset (`paper-1d`, `seed-2d`, `mnist-2d`), with `arch`; or give `spec`.
    /// Neither: `paper-1d`. Not allowed with `init: active` (the active model's network is used).
    #[serde(default)]
    pub preset: Option<String>,
    /// Architecture for the preset (default `drsn-cw`).
    #[serde(default)]
    pub arch: Option<Arch>,
    /// A full network spec instead of a preset; its class count must match the data.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub spec: Option<ModelSpec>,
    /// Per-window normalisation (default: `z-score` for signals, `none` for images; with
    /// `init: active`, the active model's).
    #[serde(default)]
    pub normalization: Option<Normalization>,
    #[serde(default)]
    pub train: TrainSettings,
    /// Noise added to training samples (augmentation).
    #[serde(default)]
    pub augment: Option<NoiseAugment>,
    /// Fixed noise added to the validation and test parts (a noisy-test experiment).
    #[serde(default)]
    pub test_noise: Option<NoiseSetting>,
    /// Noise kinds for an SNR sweep (-5..+5 dB) on the test part after training.
    #[serde(default)]
    pub snr_sweep: Vec<NoiseKind>,
    #[serde(default)]
    pub init: Init,
    #[serde(default)]
    pub promote: Promotion,
    /// A client-chosen key: a repeated request with the same key returns the first job
    /// instead of starting another (also accepted as the `Idempotency-Key` header).
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// The machine the model is for (bearing, shaft speed, sensor unit), for the physics
    /// second opinion; default: the version in service's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<crate::registry::MachineInfo>,
    /// How the new version's out-of-distribution score is chosen and calibrated (default:
    /// `mahalanobis-stages` at 1% false alarms on the validation part).
    #[serde(default)]
    pub ood: crate::train::OodSettings,
    /// Open-set evaluation: classes (or fault families: `ball`, `inner_race`, `outer_race`,
    /// `normal`, `cage`) left out of training; the card's `metrics.open_set` then says how
    /// many of their windows each out-of-distribution score flags. Needs `promote: never`
    /// (such a probe must not replace a model that knows every class).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leave_out: Vec<String>,
    /// Adapt instead of training (needs `init: active`): the active version's batch-norm
    /// statistics are re-estimated on the dataset's training windows, their labels unused
    /// (AdaBN), and its out-of-distribution score refitted; labelled test windows, where
    /// the dataset has them, judge the new version for promotion.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adapt: bool,
    /// A comparison instead of one run: the preset's network in each architecture, trained
    /// once per seed with the same data and recipe and judged clean and under noise on the
    /// same test windows. The report goes into the new version's card (`metrics.comparison`);
    /// the version is the recommended network's best seed, promoted as any job's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare: Option<CompareSettings>,
}

/// What a comparison job compares and under which conditions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CompareSettings {
    /// The preset's architectures to compare.
    pub archs: Vec<Arch>,
    /// Networks of your own besides `archs`, by name (up to 8): each takes the preset's
    /// input; its class count is set to the data's. Two candidates or more in all.
    #[schema(value_type = BTreeMap<String, Object>)]
    pub specs: BTreeMap<String, ModelSpec>,
    /// Runs per architecture (seeds 0, 1, ...), 1 to 10.
    pub seeds: u64,
    /// Noise kinds of the test conditions, besides clean.
    pub noise: Vec<NoiseKind>,
    /// Their SNRs in dB (at most 11, within -40..40).
    pub snr_db: Vec<f64>,
}

impl Default for CompareSettings {
    fn default() -> Self {
        CompareSettings {
            archs: vec![Arch::DrsnCw, Arch::DrsnCs, Arch::Resnet],
            specs: BTreeMap::new(),
            seeds: 3,
            noise: vec![NoiseKind::Gaussian, NoiseKind::Laplacian, NoiseKind::Pink],
            snr_db: vec![-4.0, -8.0],
        }
    }
}

impl CompareSettings {
    fn check(&self, request: &JobRequest, limits: &JobLimits) -> Result<(), Invalid> {
        let bad = |problem: &str| Err(invalid("compare", problem));
        if request.init != Init::Scratch || request.spec.is_some() || request.adapt || !request.leave_out.is_empty() {
            return bad("compares presets trained from scratch: leave out spec, init: active, adapt and leave_out");
        }
        let mut distinct = self.archs.clone();
        distinct.sort_by_key(|a| a.to_string());
        distinct.dedup();
        if distinct.len() != self.archs.len() || distinct.len() + self.specs.len() < 2 {
            return bad("name two or more different networks (archs, specs)");
        }
        if self.specs.len() > 8 {
            return bad("at most 8 specs");
        }
        let preset = ModelSpec::preset(request.preset.as_deref().unwrap_or("paper-1d"), Arch::DrsnCw, 2)
            .map_err(|e| invalid("preset", e))?;
        for (name, spec) in &self.specs {
            if name.is_empty() || name.len() > 64 || self.archs.iter().any(|a| a.to_string() == *name) {
                return bad("spec names are 1 to 64 characters and not an arch's name");
            }
            let named = |problem: String| invalid("compare.specs", format!("{name}: {problem}"));
            spec.validate().map_err(|e| named(e.to_string()))?;
            limits.check_spec(spec).map_err(|e| named(e.problem))?;
            if (spec.dim, &spec.input_size, spec.in_channels) != (preset.dim, &preset.input_size, preset.in_channels) {
                return Err(named("takes another input than the preset".into()));
            }
        }
        if !(1..=10).contains(&self.seeds) {
            return bad("seeds must lie in 1..=10");
        }
        if self.snr_db.len() > 11 || self.snr_db.iter().any(|s| !(-40.0..=40.0).contains(s)) || self.noise.len() > 8 {
            return bad("at most 11 SNRs within -40..40 dB and 8 noise kinds");
        }
        Ok(())
    }

    /// Training runs the comparison makes, counting each member of an ensemble spec as a run.
    pub fn runs(&self) -> usize {
        let networks = self.specs.values().map(|s| s.members.max(1) as usize).sum::<usize>() + self.archs.len();
        networks * self.seeds as usize
    }
}

/// Where the weights start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// Freshly initialised (seeded).
    #[default]
    Scratch,
    /// The weights of the model's active version (fine-tuning); same network and classes.
    Active,
}

/// Whether the new version is put into service when the job succeeds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Promotion {
    /// Keep the active version (the first version of a new model is always active).
    Never,
    /// Put the new version into service.
    Always,
    /// Put it into service if its held-out accuracy is at least the active version's on
    /// the same test data.
    #[default]
    IfBetter,
}

/// How the dataset is read (see `drsn train --help` for the same options).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DataSettings {
    /// Distance between training windows in samples (default: a quarter window).
    pub train_stride: Option<usize>,
    /// Distance between test windows (default: the window; overlapping test windows stay
    /// leak-free).
    pub test_stride: Option<usize>,
    /// Distance between validation windows (default: the window): more windows choose the
    /// best epoch and the out-of-distribution threshold more surely.
    pub validation_stride: Option<usize>,
    /// Rate every recording is resampled to (default: the active model's for `init:
    /// active`, else none, and recordings must agree).
    pub sample_rate: Option<u32>,
    /// Rate of recordings whose file and manifest do not say (CSV, `.npy`, `.mat`).
    pub default_sample_rate: Option<u32>,
    pub channels: Option<Vec<usize>>,
    /// MAT variable name or pattern (default `*_DE_time`); it overrides a manifest's `variable` column.
    pub variable: Option<String>,
    /// CSV column, by name or 0-based index.
    pub column: Option<String>,
    pub validation_fraction: Option<f64>,
    pub test_fraction: Option<f64>,
    pub seed: Option<u64>,
    /// Rows to keep, by manifest column (or `file`/`label` for class folders).
    pub filter: BTreeMap<String, Vec<String>>,
    /// Test data taken apart (e.g. another load): its own dataset path and/or filter.
    pub test: Option<TestSettings>,
    /// At most this many windows per class in each part (quick runs).
    pub max_per_class: Option<usize>,
    /// Speed augmentation: further training windows at these speeds, e.g. `[0.97, 1.03]`.
    pub speed_factors: Vec<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TestSettings {
    /// Path relative to the data root (default: the job's dataset).
    pub dataset: Option<String>,
    pub filter: BTreeMap<String, Vec<String>>,
}

/// Starting recipe.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Recipe {
    /// Adam, lr 1e-3, batch 100, 5 epochs, L2 1e-4 (the seed).
    #[default]
    SeedAdam,
    /// SGD momentum 0.9, lr 0.1 dropping tenfold at 40% and 80%, batch 128, 100 epochs (the paper).
    PaperSgd,
}

/// Training settings: a recipe, with any field overridden.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSettings {
    pub recipe: Recipe,
    #[schema(value_type = Option<Object>)]
    pub optimizer: Option<Optimizer>,
    pub lr: Option<f64>,
    pub lr_milestones: Option<Vec<f64>>,
    pub lr_gamma: Option<f64>,
    pub epochs: Option<usize>,
    pub batch_size: Option<usize>,
    pub weight_decay: Option<f64>,
    pub seed: Option<u64>,
    /// Keep an exponential moving average of the weights with this decay, in (0, 1).
    pub ema_decay: Option<f64>,
}

/// A request that cannot run, with what is wrong.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{field}: {problem}")]
pub struct Invalid {
    pub field: &'static str,
    pub problem: String,
}

fn invalid(field: &'static str, problem: impl std::fmt::Display) -> Invalid {
    Invalid { field, problem: problem.to_string() }
}

/// The most epochs one job may ask for.
pub const MAX_EPOCHS: usize = 10_000;

/// The network a job trains, before the class count is known.
#[derive(Clone, Debug, PartialEq)]
pub enum NetworkChoice {
    Preset {
        name: String,
        arch: Arch,
    },
    Spec(ModelSpec),
    /// The active version's network (`init: active`).
    Active(Box<ModelCard>),
}

impl NetworkChoice {
    /// The spec for `classes` classes.
    pub fn spec(&self, classes: usize) -> Result<ModelSpec, Invalid> {
        match self {
            NetworkChoice::Preset { name, arch } => {
                ModelSpec::preset(name, *arch, classes as i64).map_err(|e| invalid("preset", e))
            }
            NetworkChoice::Spec(spec) => same_classes(spec, classes),
            NetworkChoice::Active(card) => same_classes(&card.spec, classes),
        }
    }

    fn dim(&self) -> Result<Dim, Invalid> {
        Ok(match self {
            NetworkChoice::Preset { name, arch } => {
                ModelSpec::preset(name, *arch, 2).map_err(|e| invalid("preset", e))?.dim
            }
            NetworkChoice::Spec(spec) => spec.dim,
            NetworkChoice::Active(card) => card.spec.dim,
        })
    }
}

/// A request checked and resolved against the data root and the model in service.
#[derive(Clone, Debug)]
pub struct Plan {
    pub source: DatasetSource,
    pub options: DatasetOptions,
    pub network: NetworkChoice,
    pub normalization: Normalization,
    pub config: TrainConfig,
}

impl JobRequest {
    /// Checks the request and resolves it: the dataset path inside `data_root` (canonical)
    /// and readable, the network, the data and training settings, all within `limits`;
    /// the files it reads will be read within `files`. `active` is the card of the model's
    /// active version, if the model exists.
    pub fn plan(
        &self,
        data_root: &Path,
        active: Option<&ModelCard>,
        limits: &JobLimits,
        files: &Limits,
    ) -> Result<Plan, Invalid> {
        validate_name(&self.model).map_err(|e| invalid("model", e))?;
        self.ood.validate().map_err(|e| invalid("ood", e))?;
        if !self.leave_out.is_empty() && self.promote != Promotion::Never {
            // A model that never saw some classes must not replace one that did.
            return Err(invalid("leave_out", "a model trained without some classes is a probe: give promote: never"));
        }
        if let Some(compare) = &self.compare {
            compare.check(self, limits)?;
        }
        if self.adapt && (self.init != Init::Active || !self.leave_out.is_empty()) {
            return Err(invalid("adapt", "adapts the active version: give init: active, and no leave_out"));
        }
        if self.leave_out.len() > MAX_LEAVE_OUT || self.leave_out.iter().any(|n| n.is_empty() || n.len() > 256) {
            return Err(invalid("leave_out", format!("at most {MAX_LEAVE_OUT} names of 1 to 256 characters")));
        }
        if let Some(key) = &self.idempotency_key {
            if key.is_empty() || key.len() > MAX_KEY_LEN {
                return Err(invalid("idempotency_key", format!("must be 1 to {MAX_KEY_LEN} characters")));
            }
        }
        let source = resolve_source(data_root, &self.dataset, "dataset")?;
        let network = self.network(active)?;
        if let NetworkChoice::Spec(spec) = &network {
            limits.check_spec(spec)?;
        }
        let dim = network.dim()?;
        let normalization = match (&self.normalization, &network) {
            (Some(n), NetworkChoice::Active(card)) if *n != card.normalization => {
                return Err(invalid("normalization", "must be the active model's with init: active"))
            }
            (Some(n), _) => *n,
            (None, NetworkChoice::Active(card)) => card.normalization,
            (None, _) if dim == Dim::Two => Normalization::None,
            (None, _) => Normalization::ZScore,
        };
        let mut options = self.data_options(data_root, &network)?;
        if network.dim()? == Dim::One {
            limits.check_stride(options.train_stride)?;
        }
        options.limits = *files;
        options.root = Some(data_root.to_path_buf());
        options.max_windows = Some(limits.max_windows);
        let config = self.train_config()?;
        Ok(Plan { source, options, network, normalization, config })
    }

    fn network(&self, active: Option<&ModelCard>) -> Result<NetworkChoice, Invalid> {
        match self.init {
            Init::Active => {
                if self.preset.is_some() || self.arch.is_some() || self.spec.is_some() {
                    return Err(invalid(
                        "init",
                        "with init: active the active version's network is used; leave out preset, arch and spec",
                    ));
                }
                let card = active.ok_or_else(|| {
                    invalid(
                        "init",
                        format!("model {:?} has no active version to start from; use init: scratch", self.model),
                    )
                })?;
                Ok(NetworkChoice::Active(Box::new(card.clone())))
            }
            Init::Scratch => match (&self.preset, &self.spec) {
                (Some(_), Some(_)) => Err(invalid("spec", "give a preset or a spec, not both")),
                (None, Some(spec)) => {
                    if self.arch.is_some_and(|a| a != spec.arch) {
                        return Err(invalid("arch", "conflicts with the spec's arch"));
                    }
                    spec.validate().map_err(|e| invalid("spec", e))?;
                    Ok(NetworkChoice::Spec(spec.clone()))
                }
                (preset, None) => {
                    let name = preset.clone().unwrap_or_else(|| "paper-1d".into());
                    let arch = self.arch.unwrap_or(Arch::DrsnCw);
                    ModelSpec::preset(&name, arch, 2).map_err(|e| invalid("preset", e))?;
                    Ok(NetworkChoice::Preset { name, arch })
                }
            },
        }
    }

    fn data_options(&self, data_root: &Path, network: &NetworkChoice) -> Result<DatasetOptions, Invalid> {
        let d = &self.data;
        let defaults = DatasetOptions::default();
        let spec = network.spec_any()?;
        let window = match spec.dim {
            Dim::One => spec.input_size.first().map_or(0, |&l| l as usize),
            Dim::Two => defaults.window,
        };
        let active_rate = match network {
            NetworkChoice::Active(card) => card.sample_rate,
            _ => None,
        };
        let test = d
            .test
            .as_ref()
            .map(|t| -> Result<TestSelection, Invalid> {
                Ok(TestSelection {
                    source: t
                        .dataset
                        .as_deref()
                        .map(|p| resolve_source(data_root, p, "data.test.dataset"))
                        .transpose()?,
                    filter: filter(&t.filter),
                })
            })
            .transpose()?;
        let options = DatasetOptions {
            window,
            train_stride: d.train_stride.unwrap_or((window / 4).max(1)),
            test_stride: d.test_stride,
            validation_stride: d.validation_stride,
            sample_rate: d.sample_rate.or(active_rate),
            default_sample_rate: d.default_sample_rate,
            channels: d.channels.clone(),
            variable: d.variable.clone(),
            column: d.column.clone(),
            validation_fraction: d.validation_fraction.unwrap_or(defaults.validation_fraction),
            test_fraction: d.test_fraction.unwrap_or(defaults.test_fraction),
            seed: d.seed.unwrap_or(defaults.seed),
            filter: filter(&d.filter),
            test,
            max_per_class: d.max_per_class,
            speed_factors: d.speed_factors.clone(),
            ..DatasetOptions::default()
        };
        options.validate().map_err(|e| invalid("data", e))?;
        if let Some(channels) = &options.channels {
            if channels.len() as i64 != spec.in_channels {
                return Err(invalid(
                    "data.channels",
                    format!(
                        "{} channels selected for a network with {} input channels",
                        channels.len(),
                        spec.in_channels
                    ),
                ));
            }
        }
        Ok(options)
    }

    fn train_config(&self) -> Result<TrainConfig, Invalid> {
        let t = &self.train;
        let base = match t.recipe {
            Recipe::SeedAdam => TrainConfig::seed_adam(),
            Recipe::PaperSgd => TrainConfig::paper_sgd(),
        };
        let config = TrainConfig {
            optimizer: t.optimizer.unwrap_or(base.optimizer),
            lr: t.lr.unwrap_or(base.lr),
            lr_milestones: t.lr_milestones.clone().unwrap_or(base.lr_milestones),
            lr_gamma: t.lr_gamma.unwrap_or(base.lr_gamma),
            epochs: t.epochs.unwrap_or(base.epochs),
            batch_size: t.batch_size.unwrap_or(base.batch_size),
            weight_decay: t.weight_decay.unwrap_or(base.weight_decay),
            seed: t.seed.unwrap_or(base.seed),
            augment: self.augment.clone(),
            // Set process-wide by the service, not per job.
            threads: None,
            ema_decay: t.ema_decay,
        };
        if config.epochs > MAX_EPOCHS {
            return Err(invalid("train.epochs", format!("at most {MAX_EPOCHS}")));
        }
        config.validate().map_err(|e| invalid("train", e))?;
        Ok(config)
    }
}

impl NetworkChoice {
    /// A spec with a placeholder class count, for the input shape.
    fn spec_any(&self) -> Result<ModelSpec, Invalid> {
        Ok(match self {
            NetworkChoice::Preset { name, arch } => {
                ModelSpec::preset(name, *arch, 2).map_err(|e| invalid("preset", e))?
            }
            NetworkChoice::Spec(spec) => spec.clone(),
            NetworkChoice::Active(card) => card.spec.clone(),
        })
    }
}

fn same_classes(spec: &ModelSpec, classes: usize) -> Result<ModelSpec, Invalid> {
    if spec.classes != classes as i64 {
        return Err(invalid("spec", format!("the network has {} classes but the data has {classes}", spec.classes)));
    }
    Ok(spec.clone())
}

fn filter(map: &BTreeMap<String, Vec<String>>) -> Vec<(String, Vec<String>)> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// A dataset path inside the data root, readable, of a kind the data layer reads.
fn resolve_source(data_root: &Path, path: &str, field: &'static str) -> Result<DatasetSource, Invalid> {
    let real: PathBuf = resolve_inside(data_root, path).map_err(|e| invalid(field, e))?;
    if real.is_dir() {
        std::fs::read_dir(&real).map_err(|e| invalid(field, format!("{path:?} cannot be read: {e}")))?;
    } else {
        std::fs::File::open(&real).map_err(|e| invalid(field, format!("{path:?} cannot be read: {e}")))?;
    }
    DatasetSource::detect(&real).map_err(|e| invalid(field, e))
}
