//! An exponential moving average of a model's weights over the optimiser's steps (batch-norm
//! running statistics included). The average of the weights the last few hundred steps
//! visited sits in a flatter part of the loss than any one of them, which is what carries a
//! model to a load or noise level it did not train on; it also shrinks the spread between
//! seeds, which is what made a single run's figure untrustworthy.

use tch::nn::VarStore;
use tch::{Kind, Tensor};

use super::checkpoint::sorted_variables;

pub struct WeightAverage {
    decay: f64,
    steps: u64,
    /// Each variable of the store and its average, in the store's name order.
    pairs: Vec<(Tensor, Tensor)>,
}

impl WeightAverage {
    /// Starts the average at the store's current weights.
    pub fn new(vs: &VarStore, decay: f64) -> Self {
        let pairs = sorted_variables(vs)
            .into_iter()
            .map(|(_, live)| {
                let avg = live.detach().copy();
                (live, avg)
            })
            .collect();
        WeightAverage { decay, steps: 0, pairs }
    }

    /// Folds the weights after an optimiser step into the average. Early on the decay is
    /// lowered to `(1 + t) / (10 + t)` so that the initial weights do not linger in it.
    pub fn update(&mut self) {
        self.steps += 1;
        let t = self.steps as f64;
        let decay = self.decay.min((1.0 + t) / (10.0 + t));
        tch::no_grad(|| {
            for (live, avg) in &mut self.pairs {
                if is_float(live) {
                    // avg += (1 - decay) * (live - avg)
                    let _ = avg.lerp_(live, 1.0 - decay);
                } else {
                    avg.copy_(live);
                }
            }
        });
    }

    /// Exchanges the live weights and the average: the model then holds the average (for
    /// validation or at the end) and a second call puts the live weights back.
    pub fn swap(&mut self) {
        tch::no_grad(|| {
            for (live, avg) in &mut self.pairs {
                let held = live.copy();
                live.copy_(avg);
                avg.copy_(&held);
            }
        });
    }
}

fn is_float(t: &Tensor) -> bool {
    matches!(t.kind(), Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::Init;
    use tch::Device;

    fn value(t: &Tensor) -> f64 {
        t.double_value(&[0])
    }

    #[test]
    fn the_average_follows_the_closed_form_and_swaps_back_and_forth() {
        let vs = VarStore::new(Device::Cpu);
        let mut w = vs.root().var("w", &[1], Init::Const(0.0));
        let mut average = WeightAverage::new(&vs, 0.9);
        let _ = tch::no_grad(|| w.fill_(1.0));
        // Weights held at 1 from 0: the average is 1 - prod(decay_t).
        let mut left = 1.0;
        for t in 1..=30 {
            average.update();
            left *= f64::min(0.9, (1.0 + t as f64) / (10.0 + t as f64));
        }
        average.swap();
        assert!((value(&w) - (1.0 - left)).abs() < 1e-6, "average {} expected {}", value(&w), 1.0 - left);
        average.swap();
        assert_eq!(value(&w), 1.0, "the live weight is back");
    }
}
