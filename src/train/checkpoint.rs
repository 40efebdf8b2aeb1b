//! The best weights so far, kept in memory: a deep copy of every variable of a VarStore
//! (batch-norm running statistics included).

use tch::nn::VarStore;
use tch::Tensor;

pub struct Snapshot(Vec<(String, Tensor)>);

/// Every variable of the store (shared, not copied), in name order: the same order on every
/// call, whatever the store's hash map does.
pub fn sorted_variables(vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

impl Snapshot {
    pub fn take(vs: &VarStore) -> Self {
        Snapshot(sorted_variables(vs).into_iter().map(|(name, t)| (name, t.detach().copy())).collect())
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
