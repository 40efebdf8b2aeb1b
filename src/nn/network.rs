//! The whole network, `Conv -> units -> BN -> ReLU -> GAP -> FC`, built from a [`ModelSpec`]:
//! one such member, or an ensemble of several judging by their mean logits.

use tch::nn::Path;
use tch::Tensor;

use super::layers::{global_average, Conv, Dense, Norm, HE_NORMAL};
use super::shrink::ShrinkDiagnostics;
use super::spec::ModelSpec;
use super::unit::ResidualUnit;

/// Diagnostics of one named shrinkage unit for a batch.
#[derive(Debug)]
pub struct BlockDiagnostics {
    /// The unit's variable path, e.g. `units.4`.
    pub name: String,
    pub stage: usize,
    pub diagnostics: ShrinkDiagnostics,
}

/// What one forward pass yields.
#[derive(Debug)]
pub struct Forward {
    /// Unnormalised class scores, `N x classes` (what the loss takes).
    pub logits: Tensor,
    /// One entry per shrinkage unit, in order, when diagnostics were asked for.
    pub blocks: Vec<BlockDiagnostics>,
    /// The pooled features the classifier reads, `N x width` (after the head's BN-ReLU).
    pub features: Tensor,
    /// Mean |activation| per channel at the end of every stage, concatenated, `N x sum of
    /// stage widths`: what the out-of-distribution scores that look inside the network use.
    /// Empty in training mode, which has no use for it.
    pub stage_features: Tensor,
    /// Each member's logits in an ensemble (whose `logits` are their mean); empty for a
    /// single network.
    pub member_logits: Vec<Tensor>,
}

impl Forward {
    pub fn probabilities(&self) -> Tensor {
        self.logits.softmax(-1, tch::Kind::Float)
    }

    /// The training loss: cross-entropy of the logits, or in an ensemble the sum of each
    /// member's own (members learn side by side, each as if alone, not as one mixture).
    pub fn loss(&self, labels: &Tensor) -> Tensor {
        if self.member_logits.is_empty() {
            return self.logits.cross_entropy_for_logits(labels);
        }
        let losses: Vec<Tensor> = self.member_logits.iter().map(|l| l.cross_entropy_for_logits(labels)).collect();
        Tensor::stack(&losses, 0).sum(tch::Kind::Float)
    }
}

/// A whole network: one member, or an ensemble of members of the same shape.
#[derive(Debug)]
pub struct Network {
    members: Vec<Member>,
}

impl Network {
    /// Builds the variables under `p`: a single network's at the root, an ensemble's
    /// members under `members.{m}` (see [`ModelSpec::member_prefix`]).
    pub fn new(p: &Path, spec: &ModelSpec) -> Self {
        let members = (0..spec.members.max(1) as usize)
            .map(|m| {
                let prefix = spec.member_prefix(m);
                if spec.members == 1 {
                    Member::new(p, spec, prefix)
                } else {
                    Member::new(&(p / "members" / m), spec, prefix)
                }
            })
            .collect();
        Network { members }
    }

    /// Runs every member. An ensemble's logits are the members' mean, its features and
    /// stage features the members' side by side, its units every member's in order.
    pub fn forward_t(&self, xs: &Tensor, train: bool, diagnostics: bool) -> Forward {
        let mut outs: Vec<Forward> = self.members.iter().map(|m| m.forward_t(xs, train, diagnostics)).collect();
        if outs.len() == 1 {
            return outs.remove(0);
        }
        let member_logits: Vec<Tensor> = outs.iter().map(|f| f.logits.shallow_clone()).collect();
        let cat = |parts: Vec<&Tensor>| {
            if parts.iter().any(|t| !t.defined() || t.numel() == 0) {
                Tensor::new()
            } else {
                Tensor::cat(&parts, 1)
            }
        };
        Forward {
            logits: Tensor::stack(&member_logits, 0).mean_dim(0, false, tch::Kind::Float),
            features: cat(outs.iter().map(|f| &f.features).collect()),
            stage_features: cat(outs.iter().map(|f| &f.stage_features).collect()),
            blocks: outs.iter_mut().flat_map(|f| std::mem::take(&mut f.blocks)).collect(),
            member_logits,
        }
    }

    /// Every convolution and dense kernel: the seed puts L2 1e-4 on each, and on nothing else.
    pub fn kernels(&self) -> Vec<&Tensor> {
        self.members.iter().flat_map(Member::kernels).collect()
    }
}

/// One network: `Conv -> units -> BN -> ReLU -> GAP -> FC`.
#[derive(Debug)]
struct Member {
    stem: Conv,
    units: Vec<(usize, ResidualUnit)>,
    head_bn: Norm,
    head_fc: Dense,
    /// Put before the names of its units in diagnostics: empty, or `members.{m}.`.
    prefix: String,
}

impl Member {
    /// Builds the member's variables under `p` with explicit, stable names:
    /// `stem.conv`, `units.{i}.{bn1,conv1,bn2,conv2,shrink.{fc1,bn,fc2}}`, `head.{bn,fc}`.
    fn new(p: &Path, spec: &ModelSpec, prefix: String) -> Self {
        let spatial = spec.dim.spatial();
        let stem = Conv::new(
            p / "stem" / "conv",
            spatial,
            spec.in_channels,
            spec.stem.channels,
            spec.stem.kernel,
            spec.stem.stride,
        );
        let mut units = Vec::with_capacity(spec.unit_count());
        let mut width = spec.stem.channels;
        for (stage_idx, stage) in spec.stages.iter().enumerate() {
            for u in 0..stage.units {
                let stride = if u == 0 { stage.stride } else { 1 };
                let unit = ResidualUnit::new(
                    p / "units" / units.len(),
                    spec.arch,
                    spatial,
                    width,
                    stage.channels,
                    spec.kernel,
                    stride,
                );
                units.push((stage_idx, unit));
                width = stage.channels;
            }
        }
        Member {
            stem,
            units,
            head_bn: Norm::new(p / "head" / "bn", width),
            head_fc: Dense::new(p / "head" / "fc", width, spec.classes, HE_NORMAL),
            prefix,
        }
    }

    /// Runs the member; `train` selects batch statistics and updates the running ones.
    fn forward_t(&self, xs: &Tensor, train: bool, diagnostics: bool) -> Forward {
        let mut h = self.stem.forward_t(xs, train);
        let mut blocks = Vec::new();
        let mut stage_pools = Vec::new();
        for (i, (stage, unit)) in self.units.iter().enumerate() {
            let (out, diag) = unit.forward_t(&h, train, diagnostics);
            if let Some(diagnostics) = diag {
                blocks.push(BlockDiagnostics { name: format!("{}units.{i}", self.prefix), stage: *stage, diagnostics });
            }
            h = out;
            let last_of_stage = self.units.get(i + 1).is_none_or(|(next, _)| next != stage);
            if !train && last_of_stage {
                stage_pools.push(global_average(&h.abs()));
            }
        }
        let features = global_average(&self.head_bn.forward_t(&h, train).relu_());
        let stage_features = if stage_pools.is_empty() { Tensor::new() } else { Tensor::cat(&stage_pools, 1) };
        Forward { logits: self.head_fc.forward(&features), blocks, features, stage_features, member_logits: Vec::new() }
    }

    fn kernels(&self) -> Vec<&Tensor> {
        let mut k = vec![self.stem.kernel()];
        for (_, unit) in &self.units {
            k.extend(unit.kernels());
        }
        k.push(self.head_fc.kernel());
        k
    }
}
