//! The fused CPU forward: a 1-D model's eval-mode network in plain Rust, built from its
//! spec and weights, one window at a time through activations that stay in the core's
//! cache (a `paper-1d` window's largest is 16 KiB): each unit's second batch norm folded
//! into its first convolution, the convolutions computed in register tiles, the
//! shrinkage, the shortcut and the diagnostics in passes over the unit's output. At
//! these networks' sizes libtorch and ONNX Runtime spend most of a forward pass between
//! operators (README: "Where the forward's time goes"); here there is nothing between them.
//!
//! libtorch stays the reference: the parity tests and the engine's load check hold these
//! values to libtorch's. 2-D models are not covered (they run on ONNX Runtime or libtorch).

// On the path of every request: no panicking shortcuts outside tests. The layers index
// slices whose sizes the constructor checked against the spec; they stay out of this rule.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

#[cfg(target_arch = "x86_64")]
mod avx2;
pub(crate) mod layers;
mod member;

use std::collections::HashMap;

use tch::Tensor;

use crate::nn::{flat_values, Arch, Dim, ForwardValues, Model, ModelSpec, ShrinkUnit, UnitValues, BN_EPS};
use layers::{Affine, Conv, Dense};
use member::{Member, Scratch, Shrink, Sink, Unit};

#[derive(Debug, thiserror::Error)]
pub enum FusedError {
    #[error("the fused forward runs 1-D networks only")]
    Unsupported,
    #[error("weights: {0}")]
    Weights(String),
    #[error("invalid input: {0}")]
    Input(String),
    #[error("load check: {0}")]
    Check(String),
}

/// A 1-D model ready for the fused forward.
#[derive(Debug)]
pub struct FusedModel {
    members: Vec<Member>,
    /// Every member's shrinkage units, in the order the network reports them.
    units: Vec<ShrinkUnit>,
    in_channels: usize,
    len: usize,
    classes: usize,
    /// Threads a forward pass of several windows is split over.
    threads: usize,
    /// Scratch sizes: the largest activation and the widest layer.
    sizes: (usize, usize),
    fma: bool,
}

impl FusedModel {
    /// Reads `model`'s weights (eval-mode batch norms become multiply-adds) for forward
    /// passes over `threads` threads.
    pub fn new(model: &Model, threads: usize) -> Result<Self, FusedError> {
        let spec = model.spec();
        if spec.dim != Dim::One {
            return Err(FusedError::Unsupported);
        }
        let weights = Weights(model.var_store().variables());
        let members = (0..spec.members.max(1) as usize)
            .map(|m| member(&weights, spec, &spec.member_prefix(m)))
            .collect::<Result<Vec<_>, _>>()?;
        let len = spec.input_size.first().copied().unwrap_or(0) as usize;
        let sizes = members.iter().map(|m| m.sizes(len)).fold((0, 0), |a, b| (a.0.max(b.0), a.1.max(b.1)));
        Ok(FusedModel {
            members,
            units: spec
                .shrink_units()
                .into_iter()
                .map(|(name, stage)| ShrinkUnit { name: name.into(), stage })
                .collect(),
            in_channels: spec.in_channels as usize,
            len,
            classes: spec.classes as usize,
            threads: threads.max(1),
            sizes,
            fma: fma_available(),
        })
    }

    /// Runs `n` windows (`inputs` row-major, `n x in_channels x len`), split over the
    /// model's threads.
    pub fn infer(&self, inputs: &[f32], n: usize, diagnostics: bool) -> Result<ForwardValues, FusedError> {
        self.infer_over(inputs, n, diagnostics, self.threads)
    }

    /// The same on the calling thread alone, starting none (for a caller on an async
    /// runtime's thread).
    pub fn infer_here(&self, inputs: &[f32], n: usize, diagnostics: bool) -> Result<ForwardValues, FusedError> {
        self.infer_over(inputs, n, diagnostics, 1)
    }

    fn infer_over(
        &self,
        inputs: &[f32],
        n: usize,
        diagnostics: bool,
        threads: usize,
    ) -> Result<ForwardValues, FusedError> {
        let per_window = self.in_channels * self.len;
        if n == 0 || inputs.len() != per_window * n {
            return Err(FusedError::Input(format!("{} values for {n} windows of {per_window}", inputs.len())));
        }
        let parts = threads.min(n);
        let per_part = n.div_ceil(parts);
        let mut outputs: Vec<Part> = if parts == 1 {
            vec![self.run(inputs, diagnostics)]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = inputs
                    .chunks(per_part * per_window)
                    .map(|chunk| scope.spawn(move || self.run(chunk, diagnostics)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().map_err(|_| FusedError::Input("a forward thread failed".into())))
                    .collect::<Result<Vec<Part>, FusedError>>()
            })?
        };
        let mut all = outputs.remove(0);
        for part in outputs {
            all.append(part);
        }
        let probabilities = all.logits.chunks_exact(self.classes).flat_map(softmax).collect();
        let units = if diagnostics {
            self.units
                .iter()
                .zip(all.units)
                .map(|(unit, [thresholds, scales, mean_abs, zeroed_fraction])| UnitValues {
                    unit: unit.clone(),
                    thresholds,
                    scales,
                    mean_abs,
                    zeroed_fraction,
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(ForwardValues {
            windows: n,
            probabilities,
            logits: all.logits,
            features: all.features,
            stage_features: all.stage_features,
            units,
        })
    }

    /// The windows of `inputs`, on this thread, in the widest instruction set the CPU has.
    fn run(&self, inputs: &[f32], diagnostics: bool) -> Part {
        #[cfg(target_arch = "x86_64")]
        if self.fma {
            // SAFETY: `fma` is true only where the CPU reports AVX2 and FMA.
            return unsafe { self.run_fma(inputs, diagnostics) };
        }
        self.run_with::<false>(inputs, diagnostics)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn run_fma(&self, inputs: &[f32], diagnostics: bool) -> Part {
        self.run_with::<true>(inputs, diagnostics)
    }

    #[inline(always)]
    fn run_with<const FMA: bool>(&self, inputs: &[f32], diagnostics: bool) -> Part {
        let per_window = self.in_channels * self.len;
        let n = inputs.len() / per_window;
        let mut part = Part {
            logits: vec![0.0; n * self.classes],
            features: Vec::new(),
            stage_features: Vec::new(),
            units: if diagnostics { vec![Default::default(); self.units.len()] } else { Vec::new() },
        };
        let mut scratch = Scratch::new(self.sizes.0, self.sizes.1);
        let per_member = self.units.len() / self.members.len();
        let members = self.members.len() as f32;
        for (x, logits) in inputs.chunks_exact(per_window).zip(part.logits.chunks_exact_mut(self.classes)) {
            for (m, member) in self.members.iter().enumerate() {
                let units = diagnostics.then(|| &mut part.units[m * per_member..(m + 1) * per_member]);
                let mut sink = Sink {
                    logits: &mut *logits,
                    features: &mut part.features,
                    stage_features: &mut part.stage_features,
                    units,
                };
                member.forward::<FMA>(x, self.len, &mut scratch, &mut sink);
            }
            // An ensemble's logits are its members' mean.
            if self.members.len() > 1 {
                logits.iter_mut().for_each(|l| *l /= members);
            }
        }
        part
    }
}

/// The results of a run of consecutive windows.
struct Part {
    logits: Vec<f32>,
    features: Vec<f32>,
    stage_features: Vec<f32>,
    units: Vec<[Vec<f32>; 4]>,
}

impl Part {
    fn append(&mut self, next: Part) {
        self.logits.extend(next.logits);
        self.features.extend(next.features);
        self.stage_features.extend(next.stage_features);
        for (mine, theirs) in self.units.iter_mut().zip(next.units) {
            for (a, b) in mine.iter_mut().zip(theirs) {
                a.extend(b);
            }
        }
    }
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// Whether this CPU runs the kernels' AVX2 + FMA copies.
pub(crate) fn fma_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A model's variables by name.
struct Weights(HashMap<String, Tensor>);

impl Weights {
    /// The values of `name`, which must hold `len` of them.
    fn get(&self, name: &str, len: usize) -> Result<Vec<f32>, FusedError> {
        let t = self.0.get(name).ok_or_else(|| FusedError::Weights(format!("the model has no variable {name}")))?;
        let values = flat_values(t).map_err(|e| FusedError::Weights(format!("{name}: {e}")))?;
        if values.len() != len {
            return Err(FusedError::Weights(format!("{name} holds {} values, the spec needs {len}", values.len())));
        }
        Ok(values)
    }

    fn conv(&self, p: &str, c_in: usize, c_out: usize, kernel: usize, stride: usize) -> Result<Conv, FusedError> {
        let weight = self.get(&format!("{p}.weight"), c_out * c_in * kernel)?;
        Ok(Conv::new(c_in, c_out, kernel, stride, weight, self.get(&format!("{p}.bias"), c_out)?))
    }

    fn dense(&self, p: &str, c_in: usize, c_out: usize) -> Result<Dense, FusedError> {
        Ok(Dense::new(
            c_in,
            c_out,
            self.get(&format!("{p}.weight"), c_out * c_in)?,
            self.get(&format!("{p}.bias"), c_out)?,
        ))
    }

    fn batch_norm(&self, p: &str, c: usize) -> Result<Affine, FusedError> {
        let [w, b, m, v] =
            ["weight", "bias", "running_mean", "running_var"].map(|what| self.get(&format!("{p}.{what}"), c));
        Ok(Affine::from_batch_norm(&w?, &b?, &m?, &v?, BN_EPS))
    }
}

/// One member's layers, its variables under `prefix`, as `nn::network::Member::new` names them.
fn member(w: &Weights, spec: &ModelSpec, prefix: &str) -> Result<Member, FusedError> {
    let size = |v: i64| v as usize;
    let stem = w.conv(
        &format!("{prefix}stem.conv"),
        size(spec.in_channels),
        size(spec.stem.channels),
        size(spec.stem.kernel),
        size(spec.stem.stride),
    )?;
    let mut width = size(spec.stem.channels);
    let mut units = Vec::with_capacity(spec.unit_count());
    for stage in &spec.stages {
        let c_out = size(stage.channels);
        for u in 0..stage.units {
            let p = format!("{prefix}units.{}", units.len());
            let stride = if u == 0 { size(stage.stride) } else { 1 };
            let mut conv1 = w.conv(&format!("{p}.conv1"), width, c_out, size(spec.kernel), stride)?;
            conv1.fold(&w.batch_norm(&format!("{p}.bn2"), c_out)?);
            let shrink = match spec.arch {
                Arch::Resnet => None,
                arch => {
                    let shared = arch == Arch::DrsnCs;
                    Some(Shrink {
                        fc1: w.dense(&format!("{p}.shrink.fc1"), c_out, c_out)?,
                        bn: w.batch_norm(&format!("{p}.shrink.bn"), c_out)?,
                        fc2: w.dense(&format!("{p}.shrink.fc2"), c_out, if shared { 1 } else { c_out })?,
                        shared,
                    })
                }
            };
            units.push(Unit {
                bn1: w.batch_norm(&format!("{p}.bn1"), width)?,
                conv1,
                conv2: w.conv(&format!("{p}.conv2"), c_out, c_out, size(spec.kernel), 1)?,
                shrink,
                stride,
                pad_before: (c_out - width) / 2,
                last_of_stage: u + 1 == stage.units,
            });
            width = c_out;
        }
    }
    Ok(Member {
        stem,
        units,
        head: w.batch_norm(&format!("{prefix}head.bn"), width)?,
        fc: w.dense(&format!("{prefix}head.fc"), width, size(spec.classes))?,
    })
}
