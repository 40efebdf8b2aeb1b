//! The training loop: shuffled batches, optional noise, normalisation, cross-entropy,
//! L2 on kernels, an optimiser with a step schedule, validation after every epoch and
//! the best weights (by validation accuracy) restored at the end.

use std::time::Instant;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use tch::nn::OptimizerConfig;
use tch::{Kind, Tensor};
use utoipa::ToSchema;

use crate::data::{Dataset, Normalization, Samples};
use crate::nn::{Model, ModelSpec};

use super::average::WeightAverage;
use super::batch::make_batch;
use super::checkpoint::Snapshot;
use super::config::{Optimizer, TrainConfig};
use super::evaluate::accuracy;
use super::progress::{CancelToken, EpochMetrics, Progress, StepProgress};
use super::TrainError;

/// What a finished run reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TrainReport {
    /// One entry per epoch.
    pub history: Vec<EpochMetrics>,
    /// The epoch (1-based) whose weights the model holds now: the best by validation
    /// accuracy, or the last when there is no validation data.
    pub best_epoch: usize,
    pub best_val_accuracy: Option<f64>,
    pub steps: usize,
    pub train_samples: usize,
    pub elapsed_s: f64,
    /// Training samples per second over the whole run (validation included in the time).
    pub samples_per_s: f64,
}

/// A freshly initialised model whose weights depend only on `seed`.
pub fn init_model(spec: &ModelSpec, device: tch::Device, seed: u64) -> Result<Model, crate::nn::NnError> {
    tch::manual_seed(seed as i64);
    Model::new(spec, device)
}

/// Checks that samples fit the model: shape and label range.
pub fn check_samples(spec: &ModelSpec, samples: &Samples, part: &str) -> Result<(), TrainError> {
    let expected: Vec<usize> = spec.sample_shape().iter().map(|&s| s as usize).collect();
    if !samples.is_empty() && samples.sample_shape != expected {
        return Err(TrainError::Data(format!(
            "{part} samples have shape {:?} but the model takes {expected:?}",
            samples.sample_shape
        )));
    }
    if samples.values.len() != samples.len() * samples.sample_len() {
        return Err(TrainError::Data(format!(
            "{part}: {} values for {} samples of {} values",
            samples.values.len(),
            samples.len(),
            samples.sample_len()
        )));
    }
    if let Some(bad) = samples.labels.iter().find(|&&l| l < 0 || l >= spec.classes) {
        return Err(TrainError::Data(format!("{part}: label {bad} outside the model's {} classes", spec.classes)));
    }
    if let Some(i) = samples.values.iter().position(|v| !v.is_finite()) {
        let n = samples.sample_len().max(1);
        return Err(TrainError::Data(format!("{part}: sample {} holds a NaN or infinite value", i / n)));
    }
    Ok(())
}

/// Trains `model` on `data.train`, validating on `data.validation` after every epoch, and
/// leaves the model holding the best weights (with `ema_decay`, the best of the weights'
/// running average, which is also what is validated). `on_progress` is called after every step and
/// every epoch; `cancel` is checked before every step and ends the run with
/// [`TrainError::Cancelled`] (the model then holds whatever the last step left).
pub fn train(
    model: &mut Model,
    data: &Dataset,
    normalization: Normalization,
    config: &TrainConfig,
    on_progress: &mut dyn FnMut(&Progress),
    cancel: &CancelToken,
) -> Result<TrainReport, TrainError> {
    let steps_per_epoch = check_fit(model.spec(), data, config)?;
    if let Some(t) = config.threads {
        tch::set_num_threads(t as i32);
    }
    tch::manual_seed(config.seed as i64);
    let mut run = Run {
        data,
        normalization,
        config,
        steps_per_epoch,
        optimizer: optimizer(model, config)?,
        average: config.ema_decay.map(|d| WeightAverage::new(model.var_store(), d)),
        kernels: model.kernels().into_iter().map(|k| k.shallow_clone()).collect(),
        rng: StdRng::seed_from_u64(config.seed),
        order: (0..data.train.len()).collect(),
        started: Instant::now(),
        done: 0,
        trained: 0,
    };
    let mut history = Vec::with_capacity(config.epochs);
    let mut best = Best::default();
    for epoch in 0..config.epochs {
        let (loss, train_accuracy, lr) = run.epoch(model, epoch, on_progress, cancel)?;
        // Validated (and kept, if best) is the average when there is one.
        run.swap_average();
        let val_accuracy =
            (!data.validation.is_empty()).then(|| accuracy(model, &data.validation, normalization)).transpose();
        let is_best = match &val_accuracy {
            Ok(v) => best.consider(*v, epoch + 1, model),
            Err(_) => false,
        };
        run.swap_average();
        let val_accuracy = val_accuracy?;
        let metrics = EpochMetrics {
            epoch: epoch + 1,
            epochs: config.epochs,
            loss,
            train_accuracy,
            val_accuracy,
            lr,
            best: is_best,
            elapsed_s: run.started.elapsed().as_secs_f64(),
            eta_s: run.eta(),
        };
        on_progress(&Progress::Epoch(metrics.clone()));
        history.push(metrics);
    }
    let (best_epoch, best_val_accuracy) = match best.restore(model) {
        Some(restored) => restored,
        None => {
            // Nothing validated: the last weights, averaged if asked.
            run.swap_average();
            (config.epochs, None)
        }
    };
    let elapsed_s = run.started.elapsed().as_secs_f64();
    Ok(TrainReport {
        history,
        best_epoch,
        best_val_accuracy,
        steps: run.done,
        train_samples: data.train.len(),
        elapsed_s,
        samples_per_s: run.trained as f64 / elapsed_s.max(1e-9),
    })
}

/// Checks that the data fits the model and the settings; returns the steps per epoch.
fn check_fit(spec: &ModelSpec, data: &Dataset, config: &TrainConfig) -> Result<usize, TrainError> {
    config.validate()?;
    check_samples(spec, &data.train, "training")?;
    check_samples(spec, &data.validation, "validation")?;
    if !data.classes.is_empty() && data.classes.len() as i64 != spec.classes {
        return Err(TrainError::Data(format!(
            "the data set has {} classes but the model {}",
            data.classes.len(),
            spec.classes
        )));
    }
    let n = data.train.len();
    // A last batch of one sample would break batch norm; it is left out of that epoch
    // (the shuffle changes which sample it is).
    let steps_per_epoch = n / config.batch_size + usize::from(n % config.batch_size >= 2);
    if steps_per_epoch == 0 {
        return Err(TrainError::Data(format!("{n} training samples; at least 2 are needed")));
    }
    Ok(steps_per_epoch)
}

fn optimizer(model: &Model, config: &TrainConfig) -> Result<tch::nn::Optimizer, TrainError> {
    let vs = model.var_store();
    match config.optimizer {
        Optimizer::Adam => tch::nn::Adam::default().build(vs, config.lr),
        Optimizer::Sgd { momentum } => tch::nn::Sgd { momentum, ..Default::default() }.build(vs, config.lr),
    }
    .map_err(|e| TrainError::Torch(e.to_string()))
}

/// The state of a training run between steps.
struct Run<'a> {
    data: &'a Dataset,
    normalization: Normalization,
    config: &'a TrainConfig,
    steps_per_epoch: usize,
    optimizer: tch::nn::Optimizer,
    average: Option<WeightAverage>,
    /// The kernels L2 applies to.
    kernels: Vec<Tensor>,
    rng: StdRng,
    /// The training samples in this epoch's order.
    order: Vec<usize>,
    started: Instant,
    /// Steps done, samples trained on.
    done: usize,
    trained: usize,
}

impl Run<'_> {
    /// Puts the weights' average in the model, or (called again) the live weights back.
    fn swap_average(&mut self) {
        if let Some(average) = &mut self.average {
            average.swap();
        }
    }

    /// Seconds left, from the pace so far.
    fn eta(&self) -> f64 {
        let total = self.steps_per_epoch * self.config.epochs;
        self.started.elapsed().as_secs_f64() / self.done.max(1) as f64 * total.saturating_sub(self.done) as f64
    }

    /// One pass over the shuffled training samples: mean loss, training accuracy, lr.
    fn epoch(
        &mut self,
        model: &mut Model,
        epoch: usize,
        on_progress: &mut dyn FnMut(&Progress),
        cancel: &CancelToken,
    ) -> Result<(f64, f64, f64), TrainError> {
        let (config, n) = (self.config, self.data.train.len());
        let lr = config.lr_at(epoch);
        self.optimizer.set_lr(lr);
        self.order.shuffle(&mut self.rng);
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0i64, 0usize);
        for step in 0..self.steps_per_epoch {
            if cancel.is_cancelled() {
                return Err(TrainError::Cancelled { epoch: epoch + 1, step: step + 1 });
            }
            let end = ((step + 1) * config.batch_size).min(n);
            let indices = self.order.get(step * config.batch_size..end).unwrap_or_default();
            let batch = indices.len();
            let augment = config.augment.as_ref().map(|a| (a, &mut self.rng as &mut dyn rand::RngCore));
            let (xs, ys) = make_batch(&self.data.train, indices, self.normalization, augment, model.device());
            let (loss, hits) = self.step(model, &xs, &ys);
            if !loss.is_finite() {
                return Err(TrainError::Diverged { epoch: epoch + 1, step: step + 1, lr });
            }
            loss_sum += loss;
            correct += hits;
            seen += batch;
            self.trained += batch;
            self.done += 1;
            on_progress(&Progress::Step(StepProgress {
                epoch: epoch + 1,
                epochs: config.epochs,
                step: step + 1,
                steps_per_epoch: self.steps_per_epoch,
                loss: loss_sum / (step + 1) as f64,
                train_accuracy: correct as f64 / seen as f64,
                lr,
                elapsed_s: self.started.elapsed().as_secs_f64(),
                eta_s: self.eta(),
            }));
        }
        Ok((loss_sum / self.steps_per_epoch as f64, correct as f64 / seen.max(1) as f64, lr))
    }

    /// One optimiser step on a batch: its loss and how many it got right.
    fn step(&mut self, model: &mut Model, xs: &Tensor, ys: &Tensor) -> (f64, i64) {
        let forward = model.forward_t(xs, true);
        let loss = forward.loss(ys);
        let logits = forward.logits;
        self.optimizer.zero_grad();
        loss.backward();
        // L2 on kernels as gradients: d/dw (wd * w^2) = 2 wd w, the same update as adding
        // the term to the loss (the seed's Keras l2) without building it.
        let weight_decay = self.config.weight_decay;
        if weight_decay > 0.0 {
            tch::no_grad(|| {
                for k in &self.kernels {
                    let mut g = k.grad();
                    if g.defined() {
                        let _ = g.g_add_(&(k * (2.0 * weight_decay)));
                    }
                }
            });
        }
        self.optimizer.step();
        if let Some(average) = &mut self.average {
            average.update();
        }
        let correct = logits.argmax(-1, false).eq_tensor(ys).sum(Kind::Int64).int64_value(&[]);
        // Per member, so that an ensemble's figure reads like a single network's.
        (loss.double_value(&[]) / model.spec().members.max(1) as f64, correct)
    }
}

/// The best epoch by validation accuracy, and its weights.
#[derive(Default)]
struct Best(Option<(f64, usize, Snapshot)>);

impl Best {
    /// Keeps the model's weights if `val_accuracy` is the best so far (ties go to the later
    /// epoch: same accuracy, more training); says whether it was.
    fn consider(&mut self, val_accuracy: Option<f64>, epoch: usize, model: &Model) -> bool {
        let is_best = match (val_accuracy, &self.0) {
            (Some(acc), Some((best, _, _))) => acc >= *best,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if let (true, Some(acc)) = (is_best, val_accuracy) {
            self.0 = Some((acc, epoch, Snapshot::take(model.var_store())));
        }
        is_best
    }

    /// Puts the best weights back; their epoch and accuracy, if any epoch was validated.
    fn restore(self, model: &mut Model) -> Option<(usize, Option<f64>)> {
        let (acc, epoch, snapshot) = self.0?;
        snapshot.restore(model.var_store());
        Some((epoch, Some(acc)))
    }
}
