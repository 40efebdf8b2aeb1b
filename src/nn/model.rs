//! A network together with its variables: build, run, save and load `.safetensors`.

use std::collections::BTreeMap;
use std::path::Path;

use tch::nn::VarStore;
use tch::{Device, Tensor};

use super::network::{Forward, Network};
use super::spec::ModelSpec;
use super::NnError;

pub struct Model {
    spec: ModelSpec,
    vs: VarStore,
    net: Network,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("spec", &self.spec).field("device", &self.vs.device()).finish()
    }
}

impl Model {
    /// A freshly initialised model (he-normal kernels) on `device`.
    pub fn new(spec: &ModelSpec, device: Device) -> Result<Self, NnError> {
        spec.validate()?;
        let vs = VarStore::new(device);
        let net = Network::new(&vs.root(), spec);
        Ok(Model { spec: spec.clone(), vs, net })
    }

    /// A model whose weights come from `weights` (a `.safetensors` file), which must hold
    /// exactly the variables of `spec`, with the same shapes.
    pub fn load(spec: &ModelSpec, weights: &Path, device: Device) -> Result<Self, NnError> {
        let mut model = Model::new(spec, device)?;
        model.load_weights(weights)?;
        Ok(model)
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    pub fn var_store(&self) -> &VarStore {
        &self.vs
    }

    pub fn var_store_mut(&mut self) -> &mut VarStore {
        &mut self.vs
    }

    pub fn kernels(&self) -> Vec<&Tensor> {
        self.net.kernels()
    }

    /// Checks a batch's shape against the spec: `N x C x L` or `N x C x H x W`.
    pub fn check_input(&self, xs: &Tensor) -> Result<(), NnError> {
        let size = xs.size();
        let sample = self.spec.sample_shape();
        if size.len() != sample.len() + 1 || size[1..] != sample[..] || size[0] < 1 {
            return Err(NnError::Input(format!(
                "expected a batch of shape [N, {}], got {size:?}",
                sample.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(())
    }

    /// Inference: eval mode, no gradients, on the model's device.
    pub fn infer(&self, xs: &Tensor, diagnostics: bool) -> Result<Forward, NnError> {
        self.check_input(xs)?;
        let device = self.device();
        let xs = if xs.device() == device { xs.shallow_clone() } else { xs.to_device(device) };
        Ok(tch::no_grad(|| self.net.forward_t(&xs, false, diagnostics)))
    }

    /// Forward pass with gradients; `train` selects batch-norm's mode.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Forward {
        self.net.forward_t(xs, train, false)
    }

    /// Writes every variable to a `.safetensors` file.
    pub fn save(&self, path: &Path) -> Result<(), NnError> {
        self.vs.save(path).map_err(|e| NnError::Weights(format!("{}: {e}", path.display())))
    }

    /// Replaces the weights with those in `path`, refusing files that do not fit the spec.
    pub fn load_weights(&mut self, path: &Path) -> Result<(), NnError> {
        let bad = |msg: String| NnError::Weights(format!("{}: {msg}", path.display()));
        let named = Tensor::read_safetensors(path).map_err(|e| bad(e.to_string()))?;
        let mut file: BTreeMap<String, Tensor> = named.into_iter().collect();
        let vars: BTreeMap<String, Tensor> = self.vs.variables().into_iter().collect();
        let mut problems = Vec::new();
        for (name, var) in &vars {
            match file.get(name) {
                None => problems.push(format!("missing {name}")),
                Some(t) if t.size() != var.size() => problems.push(format!(
                    "{name} has shape {:?} in the file but {:?} in the spec",
                    t.size(),
                    var.size()
                )),
                Some(_) => {}
            }
        }
        for name in file.keys().filter(|n| !vars.contains_key(*n)) {
            problems.push(format!("unexpected {name}"));
        }
        if !problems.is_empty() {
            let shown = problems.iter().take(5).cloned().collect::<Vec<_>>().join("; ");
            let more = problems.len().saturating_sub(5);
            let tail = if more > 0 { format!(" (and {more} more)") } else { String::new() };
            return Err(bad(format!("weights do not fit the model spec: {shown}{tail}")));
        }
        tch::no_grad(|| {
            for (name, mut var) in vars {
                let src = file.remove(&name).expect("checked above");
                var.copy_(&src.to_kind(var.kind()).to_device(var.device()));
            }
        });
        Ok(())
    }
}
