//! The three parts of a data set, and how samples are dealt into them: recordings are cut
//! in time into contiguous stretches (one per part) before any window is cut, so that no
//! window spans two parts; the parts are then filled window by window, each window
//! remembering where it came from.
// Parts are `[_; 3]` indexed by `Split` (always 0..3), and sample indices come from the
// parts' own lengths: indexing here cannot go out of range.
#![allow(clippy::indexing_slicing)]

use std::ops::Range;

use rand::rngs::StdRng;
use rand::seq::index::sample;

use super::{Dataset, Origin, Provenance, Samples};

/// A part of a data set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Split {
    Train,
    Validation,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Validation, Split::Test];

    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Split> {
        match text.to_ascii_lowercase().as_str() {
            "train" | "training" => Some(Split::Train),
            "val" | "valid" | "validation" => Some(Split::Validation),
            "test" | "testing" => Some(Split::Test),
            _ => None,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Cuts `0..len` into contiguous stretches, in `order`, sized by `fractions` (train,
/// validation, test; the train stretch takes what rounding leaves). Empty stretches are left out.
pub(crate) fn stretches(len: usize, fractions: [f64; 3], order: [Split; 3]) -> Vec<(Split, Range<usize>)> {
    let validation = (len as f64 * fractions[1]).round() as usize;
    let test = ((len as f64 * fractions[2]).round() as usize).min(len - validation);
    let sizes = [len - validation - test, validation, test];
    let mut start = 0;
    let mut out = Vec::new();
    for split in order {
        let size = sizes[split.index()];
        if size > 0 {
            out.push((split, start..start + size));
        }
        start += size;
    }
    out
}

/// The three parts being filled.
pub(crate) struct Parts {
    samples: [Samples; 3],
    origins: [Vec<Origin>; 3],
}

impl Parts {
    pub fn new(sample_shape: Vec<usize>) -> Self {
        let empty = Samples { sample_shape, ..Default::default() };
        Parts { samples: [empty.clone(), empty.clone(), empty], origins: Default::default() }
    }

    /// Adds one sample made of `pieces` (one per channel), in order.
    pub fn push(&mut self, split: Split, label: i64, origin: Origin, pieces: &[&[f32]]) {
        let part = &mut self.samples[split.index()];
        for piece in pieces {
            part.values.extend_from_slice(piece);
        }
        part.labels.push(label);
        self.origins[split.index()].push(origin);
    }

    pub fn count(&self, split: Split, label: i64) -> usize {
        self.samples[split.index()].labels.iter().filter(|&&l| l == label).count()
    }

    /// Keeps at most `max` samples of each class in each part, drawn with `rng`, in their
    /// original order.
    pub fn cap_per_class(&mut self, max: usize, classes: usize, rng: &mut StdRng) {
        for split in Split::ALL {
            let (samples, origins) = (&self.samples[split.index()], &self.origins[split.index()]);
            let mut keep = Vec::new();
            for label in 0..classes as i64 {
                let of_class: Vec<usize> = (0..samples.len()).filter(|&i| samples.labels[i] == label).collect();
                if of_class.len() <= max {
                    keep.extend(of_class);
                } else {
                    keep.extend(sample(rng, of_class.len(), max).into_iter().map(|k| of_class[k]));
                }
            }
            keep.sort_unstable();
            let n = samples.sample_len();
            let mut kept = Samples { sample_shape: samples.sample_shape.clone(), ..Default::default() };
            kept.values.reserve(keep.len() * n);
            for &i in &keep {
                kept.values.extend_from_slice(samples.sample(i));
                kept.labels.push(samples.labels[i]);
            }
            self.origins[split.index()] = keep.iter().map(|&i| origins[i]).collect();
            self.samples[split.index()] = kept;
        }
    }

    /// Counts per class name in each part, for the description.
    pub fn counts(&self, classes: &[String]) -> super::description::Counts {
        Split::ALL
            .iter()
            .map(|&split| {
                let per_class = classes
                    .iter()
                    .enumerate()
                    .map(|(label, name)| (name.clone(), self.count(split, label as i64)))
                    .collect();
                (split.name().to_string(), per_class)
            })
            .collect()
    }

    /// The data set these parts make; `sources` names what `Origin::source` indexes.
    pub fn into_dataset(
        self,
        classes: Vec<String>,
        sample_rate: Option<u32>,
        sources: Vec<String>,
        description: super::DatasetDescription,
    ) -> Dataset {
        let [train, validation, test] = self.samples;
        let [train_origins, validation_origins, test_origins] = self.origins;
        Dataset {
            classes,
            sample_rate,
            train,
            validation,
            test,
            description,
            provenance: Provenance {
                sources,
                train: train_origins,
                validation: validation_origins,
                test: test_origins,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn stretches_tile_the_recording_in_the_given_order() {
        let s = stretches(1000, [0.7, 0.15, 0.15], [Split::Test, Split::Train, Split::Validation]);
        assert_eq!(s, vec![(Split::Test, 0..150), (Split::Train, 150..850), (Split::Validation, 850..1000)]);
        let s = stretches(10, [0.8, 0.2, 0.0], Split::ALL);
        assert_eq!(s, vec![(Split::Train, 0..8), (Split::Validation, 8..10)]);
    }

    #[test]
    fn capping_keeps_classes_balanced_and_origins_aligned() {
        let mut parts = Parts::new(vec![1, 1]);
        for i in 0..10 {
            let origin = Origin { source: 0, start: i, len: 1 };
            parts.push(Split::Train, (i % 2) as i64, origin, &[&[i as f32]]);
        }
        parts.cap_per_class(3, 2, &mut StdRng::seed_from_u64(1));
        assert_eq!((parts.count(Split::Train, 0), parts.count(Split::Train, 1)), (3, 3));
        let dataset = parts.into_dataset(vec!["a".into(), "b".into()], None, vec!["x".into()], Default::default());
        let train = &dataset.train;
        for (i, o) in dataset.provenance.train.iter().enumerate() {
            assert_eq!(train.sample(i)[0], o.start as f32);
            assert_eq!(train.labels[i], (o.start % 2) as i64);
        }
    }
}
