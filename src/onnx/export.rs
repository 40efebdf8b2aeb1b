//! A model's eval-mode network written as an ONNX graph, from its spec and its weights:
//! the same operations as `nn::Network::forward_t(train = false)`, in the same order, so
//! that an ONNX runtime gives the same values (checked by the parity tests). Batch norm
//! stays a node: the runtime folds it into the preceding convolution where it can.

use std::collections::HashMap;

use prost::Message;
use tch::Tensor;

use super::graph::{float, int, ints, Graph};
use super::proto::{ModelProto, OperatorSetIdProto};
use super::OnnxError;
use crate::nn::{flat_values, Arch, Model, ModelSpec, ShrinkUnit, BN_EPS};

/// Opset 17: `ReduceMean` still takes its axes as an attribute; every runtime since 2022.
const OPSET: i64 = 17;
const IR_VERSION: i64 = 8;
pub const INPUT: &str = "windows";

/// The names of the graph's outputs, in order. Diagnostics are per unit: see [`unit_output`].
pub const LOGITS: &str = "logits";
pub const PROBABILITIES: &str = "probabilities";
pub const FEATURES: &str = "features";
pub const STAGE_FEATURES: &str = "stage_features";
pub const UNIT_OUTPUTS: [&str; 4] = ["thresholds", "scales", "mean_abs", "zeroed_fraction"];

/// `unit` is the unit's name, e.g. `units.3` or `members.1.units.3`.
pub fn unit_output(unit: &str, what: &str) -> String {
    format!("{unit}.{what}")
}

/// The serialised graph (`.onnx` bytes), with every unit's diagnostics as outputs when
/// `diagnostics`, and the shrinkage units whose diagnostics those are.
pub fn export(model: &Model, diagnostics: bool) -> Result<(Vec<u8>, Vec<ShrinkUnit>), OnnxError> {
    let weights = Weights(model.var_store().variables());
    let spec = model.spec();
    let mut b = Builder { g: Graph::default(), w: &weights, spec, spatial: spec.dim.spatial() };
    let mut outputs = [PROBABILITIES, LOGITS, FEATURES, STAGE_FEATURES].map(String::from).to_vec();
    let mut units = Vec::new();

    let mut pooled = Vec::new();
    for m in 0..spec.members.max(1) as usize {
        pooled.push(b.member(&spec.member_prefix(m), diagnostics, &mut outputs, &mut units)?);
    }
    // An ensemble's: the members' mean logits, their features side by side.
    let (logits, features, stage_features) = match pooled.as_slice() {
        [one] => (one.logits.clone(), one.features.clone(), one.stage_features.clone()),
        many => {
            let pick = |f: fn(&Pooled) -> &str| many.iter().map(f).collect::<Vec<&str>>();
            let concat = vec![int("axis", 1)];
            (
                b.g.node("Mean", &pick(|p| &p.logits), vec![]),
                b.g.node("Concat", &pick(|p| &p.features), concat.clone()),
                b.g.node("Concat", &pick(|p| &p.stage_features), concat),
            )
        }
    };
    // In the graph, so that a caller needs no tensor maths of its own.
    let probabilities = b.g.node("Softmax", &[&logits], vec![int("axis", -1)]);
    b.g.rename(&probabilities, PROBABILITIES)?;
    b.g.rename(&logits, LOGITS)?;
    b.g.rename(&features, FEATURES)?;
    b.g.rename(&stage_features, STAGE_FEATURES)?;

    let mut shape = vec![None, Some(spec.in_channels)];
    shape.extend(spec.input_size.iter().map(|&n| Some(n)));
    let model = ModelProto {
        ir_version: IR_VERSION,
        producer_name: "drsn".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(b.g.finish(INPUT, &shape, &outputs)),
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
    };
    Ok((model.encode_to_vec(), units))
}

/// A member's pooled outputs: names of graph values.
struct Pooled {
    logits: String,
    features: String,
    stage_features: String,
}

struct Weights(HashMap<String, Tensor>);

impl Weights {
    fn get(&self, name: &str) -> Result<(Vec<i64>, Vec<f32>), OnnxError> {
        let t = self.0.get(name).ok_or_else(|| OnnxError::Export(format!("the model has no variable {name}")))?;
        let values = flat_values(t).map_err(|e| OnnxError::Export(format!("{name}: {e}")))?;
        Ok((t.size(), values))
    }
}

struct Builder<'w> {
    g: Graph,
    w: &'w Weights,
    spec: &'w ModelSpec,
    spatial: usize,
}

impl Builder<'_> {
    /// One member of the network, its variables under `prefix`: its logits, pooled
    /// features and stage features (graph values), its shrinkage units added to `units`
    /// and, with `diagnostics`, their outputs to `outputs`.
    fn member(
        &mut self,
        prefix: &str,
        diagnostics: bool,
        outputs: &mut Vec<String>,
        units: &mut Vec<ShrinkUnit>,
    ) -> Result<Pooled, OnnxError> {
        let spec = self.spec;
        let mut h = self.conv(INPUT, &format!("{prefix}stem.conv"), spec.stem.stride, spec.stem.kernel)?;
        let mut width = spec.stem.channels;
        let mut stage_pools = Vec::new();
        let mut index = 0;
        for (stage, s) in spec.stages.iter().enumerate() {
            for u in 0..s.units {
                let p = format!("{prefix}units.{index}");
                let stride = if u == 0 { s.stride } else { 1 };
                let a = self.bn_relu(&h, &format!("{p}.bn1"))?;
                let r = self.conv(&a, &format!("{p}.conv1"), stride, spec.kernel)?;
                let r = self.bn_relu(&r, &format!("{p}.bn2"))?;
                let mut r = self.conv(&r, &format!("{p}.conv2"), 1, spec.kernel)?;
                if spec.arch != Arch::Resnet {
                    r = self.shrink(&r, &p, spec.arch == Arch::DrsnCs, diagnostics)?;
                    if diagnostics {
                        outputs.extend(UNIT_OUTPUTS.iter().map(|what| unit_output(&p, what)));
                    }
                    units.push(ShrinkUnit { name: p.as_str().into(), stage });
                }
                let id = self.identity(&h, stride, width, s.channels);
                h = self.g.node("Add", &[&r, &id], vec![]);
                width = s.channels;
                index += 1;
            }
            // After the stage's last unit (a spec has at least one unit a stage).
            let abs = self.g.node("Abs", &[&h], vec![]);
            stage_pools.push(self.global_average(&abs));
        }
        let head = self.bn_relu(&h, &format!("{prefix}head.bn"))?;
        let features = self.global_average(&head);
        let logits = self.dense(&features, &format!("{prefix}head.fc"))?;
        let refs: Vec<&str> = stage_pools.iter().map(String::as_str).collect();
        let stage_features = self.g.node("Concat", &refs, vec![int("axis", 1)]);
        Ok(Pooled { logits, features, stage_features })
    }

    fn param(&mut self, name: &str) -> Result<String, OnnxError> {
        let (dims, values) = self.w.get(name)?;
        Ok(self.g.constant(name, &dims, &values))
    }

    /// `nn::layers::Conv`: "same" padding of `kernel / 2` on every side.
    fn conv(&mut self, x: &str, p: &str, stride: i64, kernel: i64) -> Result<String, OnnxError> {
        let (w, bias) = (self.param(&format!("{p}.weight"))?, self.param(&format!("{p}.bias"))?);
        let attrs = vec![
            ints("kernel_shape", &vec![kernel; self.spatial]),
            ints("strides", &vec![stride; self.spatial]),
            ints("pads", &vec![kernel / 2; 2 * self.spatial]),
        ];
        Ok(self.g.node("Conv", &[x, &w, &bias], attrs))
    }

    /// `nn::layers::Norm` in eval mode (running statistics), then ReLU.
    fn bn_relu(&mut self, x: &str, p: &str) -> Result<String, OnnxError> {
        let names = ["weight", "bias", "running_mean", "running_var"].map(|v| format!("{p}.{v}"));
        let mut inputs = vec![x.to_string()];
        for name in &names {
            inputs.push(self.param(name)?);
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let bn = self.g.node("BatchNormalization", &refs, vec![float("epsilon", BN_EPS as f32)]);
        Ok(self.g.node("Relu", &[&bn], vec![]))
    }

    /// `nn::layers::Dense`: `x W^T + b`.
    fn dense(&mut self, x: &str, p: &str) -> Result<String, OnnxError> {
        let (w, bias) = (self.param(&format!("{p}.weight"))?, self.param(&format!("{p}.bias"))?);
        Ok(self.g.node("Gemm", &[x, &w, &bias], vec![int("transB", 1)]))
    }

    fn spatial_axes(&self) -> Vec<i64> {
        (2..2 + self.spatial as i64).collect()
    }

    /// `nn::layers::global_average`: `N x C x ...` to `N x C`.
    fn global_average(&mut self, x: &str) -> String {
        let axes = self.spatial_axes();
        self.g.node("ReduceMean", &[x], vec![ints("axes", &axes), int("keepdims", 0)])
    }

    /// `nn::shrink::Shrinkage` at inference: `x - clamp(x, -tau, tau)`, with
    /// `tau = sigmoid(FC(ReLU(BN(FC(GAP|x|))))) * GAP|x|` (averaged over channels when
    /// `shared`). With `diagnostics`, its values become graph outputs named after `p`.
    fn shrink(&mut self, x: &str, p: &str, shared: bool, diagnostics: bool) -> Result<String, OnnxError> {
        let abs = self.g.node("Abs", &[x], vec![]);
        let mean_abs = self.global_average(&abs);
        let z = self.dense(&mean_abs, &format!("{p}.shrink.fc1"))?;
        let z = self.bn_relu(&z, &format!("{p}.shrink.bn"))?;
        let z = self.dense(&z, &format!("{p}.shrink.fc2"))?;
        let scales = self.g.node("Sigmoid", &[&z], vec![]);
        let level = if shared {
            self.g.node("ReduceMean", &[&mean_abs], vec![ints("axes", &[1]), int("keepdims", 1)])
        } else {
            mean_abs.clone()
        };
        let thresholds = self.g.node("Mul", &[&scales, &level], vec![]);
        let axes = self.g.ints(&self.spatial_axes());
        let tau = self.g.node("Unsqueeze", &[&thresholds, &axes], vec![]);
        let below = self.g.node("Min", &[x, &tau], vec![]);
        let neg_tau = self.g.node("Neg", &[&tau], vec![]);
        let inside = self.g.node("Max", &[&below, &neg_tau], vec![]);
        let out = self.g.node("Sub", &[x, &inside], vec![]);
        if diagnostics {
            let zero = self.g.constant(&format!("{p}.zero"), &[], &[0.0]);
            let zeros = self.g.node("Equal", &[&out, &zero], vec![]);
            let zeros = self.g.node("Cast", &[&zeros], vec![int("to", super::proto::FLOAT as i64)]);
            let mut axes = vec![1];
            axes.extend(self.spatial_axes());
            let zeroed = self.g.node("ReduceMean", &[&zeros], vec![ints("axes", &axes), int("keepdims", 0)]);
            for (what, value) in UNIT_OUTPUTS.iter().zip([&thresholds, &scales, &mean_abs, &zeroed]) {
                self.g.rename(value, &unit_output(p, what))?;
            }
        }
        Ok(out)
    }

    /// `nn::unit::ResidualUnit::add_identity`'s shortcut: every `stride`-th sample, with
    /// zero channels around it when the unit widens from `c_in` to `c_out`.
    fn identity(&mut self, x: &str, stride: i64, c_in: i64, c_out: i64) -> String {
        let mut id = x.to_string();
        if stride > 1 {
            let n = self.spatial;
            let starts = self.g.ints(&vec![0; n]);
            let ends = self.g.ints(&vec![i64::MAX; n]);
            let axes = self.g.ints(&self.spatial_axes());
            let steps = self.g.ints(&vec![stride; n]);
            id = self.g.node("Slice", &[&id, &starts, &ends, &axes, &steps], vec![]);
        }
        if c_out != c_in {
            let before = (c_out - c_in) / 2;
            let after = c_out - c_in - before;
            // Begins of every axis (N, C, spatial...), then ends: only the channel axis is padded.
            let rank = 2 + self.spatial;
            let pads: Vec<i64> = (0..2 * rank)
                .map(|i| match i {
                    1 => before,
                    i if i == rank + 1 => after,
                    _ => 0,
                })
                .collect();
            let pads = self.g.ints(&pads);
            id = self.g.node("Pad", &[&id, &pads], vec![]);
        }
        id
    }
}
