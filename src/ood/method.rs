//! The scores drsn can compute, and which is the default (chosen by measurement: README,
//! "Out of distribution").

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OodMethod {
    /// 1 - the largest softmax probability (Hendrycks and Gimpel, 2017): the baseline.
    MaxSoftmax,
    /// Free energy, -logsumexp(logits) (Liu et al., 2020).
    Energy,
    /// The smallest class-conditional Mahalanobis distance (one shared covariance) of the
    /// pooled features the classifier reads (Lee et al., 2018).
    Mahalanobis,
    /// The same on every stage's mean |activation| together with the pooled features: it
    /// sees what the shrinkage stages passed, not only what the classifier kept.
    #[default]
    MahalanobisStages,
}

impl OodMethod {
    pub const ALL: [OodMethod; 4] =
        [OodMethod::MaxSoftmax, OodMethod::Energy, OodMethod::Mahalanobis, OodMethod::MahalanobisStages];

    /// Whether the method needs a Gaussian fitted on training features.
    pub fn needs_fit(self) -> bool {
        matches!(self, OodMethod::Mahalanobis | OodMethod::MahalanobisStages)
    }

    pub fn name(self) -> &'static str {
        match self {
            OodMethod::MaxSoftmax => "max-softmax",
            OodMethod::Energy => "energy",
            OodMethod::Mahalanobis => "mahalanobis",
            OodMethod::MahalanobisStages => "mahalanobis-stages",
        }
    }
}

impl std::fmt::Display for OodMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for OodMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OodMethod::ALL.into_iter().find(|m| m.name() == s.trim()).ok_or_else(|| {
            let names: Vec<&str> = OodMethod::ALL.iter().map(|m| m.name()).collect();
            format!("unknown out-of-distribution method {s:?}; expected one of {}", names.join(", "))
        })
    }
}
