//! The best weights so far, kept in memory: a deep copy of every variable of a VarStore
//! (batch-norm running statistics included).

use tch::nn::VarStore;
use tch::Tensor;

pub struct Snapshot(Vec<(String, Tensor)>);

impl Snapshot {
    pub fn take(vs: &VarStore) -> Self {
        let mut vars: Vec<(String, Tensor)> =
            vs.variables().into_iter().map(|(name, t)| (name, t.detach().copy())).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        Snapshot(vars)
    }

    /// Writes the copied values back into the same variables, in place.
    pub fn restore(&self, vs: &VarStore) {
        let mut live = vs.variables();
        tch::no_grad(|| {
            for (name, saved) in &self.0 {
                if let Some(var) = live.get_mut(name) {
                    var.copy_(saved);
                }
            }
        });
    }
}
