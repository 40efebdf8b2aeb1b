//! Drift: the share of a model's recent windows flagged out of distribution. When it rises
//! above the warning level, the machine, the sensor or the model's world has changed and
//! retraining (or adapting) is due; the log says so once per crossing.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;
use utoipa::ToSchema;

use crate::telemetry;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DriftSettings {
    /// How many of the most recent windows the share is taken over.
    pub windows: usize,
    /// The share above which the log warns.
    pub warn_share: f64,
}

impl Default for DriftSettings {
    fn default() -> Self {
        DriftSettings { windows: 1000, warn_share: 0.2 }
    }
}

/// A model's drift figures, as `GET /models/{name}` shows them.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct DriftView {
    /// Windows the share is over: the most recent answers that hold the configured number
    /// (whole answers are kept, so it can be a little more).
    pub windows: usize,
    /// Of them, flagged out of distribution.
    pub flagged: usize,
    pub flagged_share: f64,
    pub warn_share: f64,
    /// Whether the share is above the warning level.
    pub drifting: bool,
}

#[derive(Default)]
struct Recent {
    /// Per request: (windows, flagged), oldest first.
    batches: VecDeque<(usize, usize)>,
    windows: usize,
    flagged: usize,
    warned: bool,
}

/// Recent flag counts per model name, shared by every handler.
pub struct DriftMonitor {
    settings: DriftSettings,
    models: Mutex<HashMap<String, Recent>>,
}

impl DriftMonitor {
    pub fn new(settings: DriftSettings) -> Self {
        DriftMonitor { settings, models: Mutex::new(HashMap::new()) }
    }

    /// Records one answer of `model`: `windows` scored, `flagged` of them out of distribution.
    pub fn record(&self, model: &str, windows: usize, flagged: usize) -> DriftView {
        metrics::counter!(telemetry::OOD_WINDOWS, "model" => model.to_string()).increment(flagged as u64);
        let mut models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        let recent = models.entry(model.to_string()).or_default();
        recent.batches.push_back((windows, flagged));
        recent.windows += windows;
        recent.flagged += flagged;
        // Drop whole old answers while the rest still covers the window count.
        while let Some(&(w, f)) = recent.batches.front() {
            if recent.windows - w < self.settings.windows {
                break;
            }
            recent.batches.pop_front();
            recent.windows -= w;
            recent.flagged -= f;
        }
        let view = self.view_of(recent);
        metrics::gauge!(telemetry::OOD_RECENT_SHARE, "model" => model.to_string()).set(view.flagged_share);
        if view.drifting && !recent.warned {
            recent.warned = true;
            tracing::warn!(
                model,
                flagged_share = view.flagged_share,
                windows = view.windows,
                warn_share = view.warn_share,
                "more recent windows than expected are out of distribution: the machine, the sensor or the \
                 model's world may have changed; check the sensor, then retrain or adapt the model"
            );
        } else if recent.warned && view.flagged_share < self.settings.warn_share / 2.0 {
            // Warn again only after the share has fallen well below the level.
            recent.warned = false;
        }
        view
    }

    /// The figures of `model`, `None` before its first scored window.
    pub fn view(&self, model: &str) -> Option<DriftView> {
        let models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        models.get(model).map(|r| self.view_of(r))
    }

    fn view_of(&self, recent: &Recent) -> DriftView {
        let share = if recent.windows == 0 { 0.0 } else { recent.flagged as f64 / recent.windows as f64 };
        DriftView {
            windows: recent.windows,
            flagged: recent.flagged,
            flagged_share: share,
            warn_share: self.settings.warn_share,
            drifting: share > self.settings.warn_share,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_covers_the_most_recent_windows() {
        let monitor = DriftMonitor::new(DriftSettings { windows: 100, warn_share: 0.2 });
        for _ in 0..10 {
            monitor.record("m", 10, 0);
        }
        assert_eq!(monitor.view("m").unwrap().flagged_share, 0.0);
        let view = monitor.record("m", 50, 50);
        assert_eq!((view.windows, view.flagged), (100, 50));
        assert!(view.drifting);
        for _ in 0..10 {
            monitor.record("m", 10, 0);
        }
        let view = monitor.view("m").unwrap();
        assert_eq!((view.windows, view.flagged, view.drifting), (100, 0, false));
        assert!(monitor.view("other").is_none());
    }
}
