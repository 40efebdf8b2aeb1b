//! The physics evidence on one recording: the shaft speed (given, or estimated from the
//! spectrum within a range), the envelope spectrum of the most impulsive band, the peaks
//! found at each defect frequency and its harmonics with their prominence over the local
//! floor, and the fault family the evidence supports, or `none` / `inconclusive`.

use serde::Serialize;
use utoipa::ToSchema;

use super::bearing::{Bearing, DefectFrequencies, FaultFamily};
use super::envelope::{amplitude_spectrum, envelope_spectrum, most_impulsive_band, Band, Spectrum, Transformed};

/// How the shaft rate was known.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SpeedSource {
    /// Given (request, card, manifest).
    Given,
    /// Estimated from the spectrum within a range.
    Estimated,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, ToSchema)]
pub struct ShaftSpeed {
    pub hz: f64,
    pub rpm: f64,
    pub source: SpeedSource,
}

/// What to look for and where.
#[derive(Clone, Debug)]
pub struct Settings {
    pub bearing: Bearing,
    /// The shaft rate in Hz, when known.
    pub shaft_hz: Option<f64>,
    /// Where to look for it otherwise (Hz).
    pub shaft_range_hz: (f64, f64),
    /// Harmonics of each defect frequency looked at.
    pub harmonics: usize,
    /// A harmonic counts when it stands this far over its local floor (dB).
    pub prominence_db: f64,
    /// A family is supported only when its first peak stands at least this far out (dB).
    pub verdict_db: f64,
    /// And the verdict goes to it only when its peaks stand this far above every other
    /// family's on average (dB): one family must clearly dominate.
    pub lead_db: f64,
    /// Half-width of the window a peak is looked for in, as a share of its frequency (real
    /// defect frequencies slip 1-2% from the kinematic ones).
    pub tolerance: f64,
}

impl Settings {
    pub fn new(bearing: Bearing) -> Self {
        Settings {
            bearing,
            shaft_hz: None,
            shaft_range_hz: (10.0, 60.0),
            harmonics: 3,
            prominence_db: 6.0,
            verdict_db: 20.0,
            lead_db: 6.0,
            tolerance: 0.015,
        }
    }
}

/// One frequency looked at.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct Peak {
    /// What it is (`BPFO x2`, `BPFI - fr`, ...).
    pub what: String,
    pub expected_hz: f64,
    /// Where the highest bin within the tolerance was.
    pub found_hz: f64,
    /// Its height over the median of the spectrum around it (dB).
    pub prominence_db: f64,
}

/// The evidence for one fault family.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct FamilyEvidence {
    pub family: FaultFamily,
    /// The defect frequency and its harmonics (and, for the inner race, the sidebands at
    /// the shaft rate around it).
    pub peaks: Vec<Peak>,
    /// Harmonics that stand out.
    pub harmonics_found: usize,
}

impl FamilyEvidence {
    fn first_prominence(&self) -> f64 {
        self.peaks.first().map_or(f64::NEG_INFINITY, |p| p.prominence_db)
    }

    fn mean_prominence(&self, harmonics: usize) -> f64 {
        let taken: Vec<f64> = self.peaks.iter().take(harmonics).map(|p| p.prominence_db).collect();
        taken.iter().sum::<f64>() / taken.len().max(1) as f64
    }
}

/// What the physics says.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The evidence points at one family.
    Fault(FaultFamily),
    /// No defect frequency stands out.
    None,
    /// Some evidence, but not enough (or for more than one family).
    Inconclusive,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Evidence {
    pub bearing: String,
    pub shaft: ShaftSpeed,
    pub defect_frequencies_hz: DefectFrequencies,
    pub defect_orders: DefectFrequencies,
    pub band: Band,
    pub families: Vec<FamilyEvidence>,
    pub verdict: Verdict,
    /// Why, in a line.
    pub reason: String,
    /// The envelope spectrum up to a little past the highest harmonic looked at (for
    /// pictures): `[Hz, amplitude]` pairs.
    #[serde(skip)]
    #[schema(ignore)]
    pub envelope: Spectrum,
}

/// The shaft rate within `range` Hz whose first harmonics stand highest over the
/// spectrum's local floor: a harmonic sum on the whitened spectrum, first with a little
/// slack around every harmonic (speed wanders), then refined on the exact bins.
pub fn estimate_shaft_hz(spectrum: &Spectrum, range: (f64, f64), harmonics: usize) -> f64 {
    let whitened = whiten(spectrum, 5.0);
    let res = spectrum.resolution_hz;
    let at = |target: f64, half: f64| -> f64 {
        whitened
            .get(spectrum.bins(target - half, target + half))
            .unwrap_or_default()
            .iter()
            .fold(0.0f64, |m, &v| m.max(v))
    };
    let score = |f: f64, exact: bool| -> f64 {
        (1..=harmonics)
            .map(|h| {
                let target = f * h as f64;
                let half = if exact { 0.0 } else { (target * 0.003).max(res) };
                at(target, half).max(1e-12).ln()
            })
            .sum()
    };
    let best_in = |low: f64, high: f64, step: f64, exact: bool| -> f64 {
        let mut best = (f64::NEG_INFINITY, low);
        let mut f = low;
        while f <= high {
            let s = score(f, exact);
            if s > best.0 {
                best = (s, f);
            }
            f += step;
        }
        best.1
    };
    let coarse = best_in(range.0, range.1, res / 4.0, false);
    best_in(coarse - res, coarse + res, res / 8.0, true)
}

/// The spectrum divided by its running median over `window_hz` (peaks over the floor).
fn whiten(spectrum: &Spectrum, window_hz: f64) -> Vec<f64> {
    let half = ((window_hz / spectrum.resolution_hz) / 2.0).ceil() as usize;
    let a = &spectrum.amplitudes;
    // A coarse median (every `stride`-th window) keeps this linear enough for 10 s records.
    let stride = (half / 4).max(1);
    let mut floors = Vec::with_capacity(a.len() / stride + 1);
    let mut i = 0;
    while i < a.len() {
        floors.push(median(a.get(i.saturating_sub(half)..(i + half + 1).min(a.len())).unwrap_or_default()));
        i += stride;
    }
    a.iter().enumerate().map(|(i, &v)| v / floors.get(i / stride).copied().unwrap_or(1.0).max(1e-15)).collect()
}

fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    let mid = v.len() / 2;
    v.select_nth_unstable_by(mid, f64::total_cmp);
    v.get(mid).copied().unwrap_or_default()
}

/// The highest bin within `tolerance` of `expected` and its prominence over the median of
/// the spectrum from 0.8 to 1.2 times `expected`.
fn peak(spectrum: &Spectrum, what: String, expected: f64, tolerance: f64) -> Peak {
    let half = (expected * tolerance).max(1.5 * spectrum.resolution_hz);
    let window = spectrum.bins(expected - half, expected + half);
    let (bin, height) = window
        .clone()
        .filter_map(|b| Some((b, *spectrum.amplitudes.get(b)?)))
        .fold((window.start, 0.0f64), |best, (b, v)| if v > best.1 { (b, v) } else { best });
    let floor = median(spectrum.amplitudes.get(spectrum.bins(expected * 0.8, expected * 1.2)).unwrap_or_default());
    let prominence_db = 20.0 * (height.max(1e-15) / floor.max(1e-15)).log10();
    Peak { what, expected_hz: expected, found_hz: spectrum.frequency(bin), prominence_db }
}

/// Looks at a recording (one channel, at `rate` Hz).
pub fn analyze(signal: &[f32], rate: f64, settings: &Settings) -> Evidence {
    let x: Vec<f64> = signal.iter().map(|&v| f64::from(v)).collect();
    let shaft = match settings.shaft_hz {
        Some(hz) => ShaftSpeed { hz, rpm: hz * 60.0, source: SpeedSource::Given },
        None => {
            let hz = estimate_shaft_hz(&amplitude_spectrum(&x, rate), settings.shaft_range_hz, 5);
            ShaftSpeed { hz, rpm: hz * 60.0, source: SpeedSource::Estimated }
        }
    };
    let orders = settings.bearing.orders();
    let hz = orders.scaled(shaft.hz);
    // Impacts ring structural resonances well above the defect frequencies' harmonics, in
    // a band wide enough to carry the highest one looked at (and its sidebands).
    let highest = (hz.bpfi * settings.harmonics as f64 + shaft.hz) * 1.2;
    let transformed = Transformed::new(&x, rate);
    let band = most_impulsive_band(&transformed, 4, highest.max(200.0), highest);
    let segment = (rate * 1.5).round() as usize;
    let envelope = envelope_spectrum(&transformed, &band, segment.next_power_of_two());
    let h = settings.harmonics;
    let series = |name: &str, f: f64| -> Vec<Peak> {
        (1..=h).map(|k| peak(&envelope, format!("{name} x{k}"), f * k as f64, settings.tolerance)).collect()
    };
    let mut inner = series("BPFI", hz.bpfi);
    inner.push(peak(&envelope, "BPFI - fr".into(), hz.bpfi - shaft.hz, settings.tolerance));
    inner.push(peak(&envelope, "BPFI + fr".into(), hz.bpfi + shaft.hz, settings.tolerance));
    let mut families = vec![
        FamilyEvidence { family: FaultFamily::InnerRace, peaks: inner, harmonics_found: 0 },
        FamilyEvidence { family: FaultFamily::OuterRace, peaks: series("BPFO", hz.bpfo), harmonics_found: 0 },
        // A ball defect strikes both races: its evidence is at twice the spin frequency.
        FamilyEvidence { family: FaultFamily::Ball, peaks: series("2 x BSF", 2.0 * hz.bsf), harmonics_found: 0 },
        FamilyEvidence { family: FaultFamily::Cage, peaks: series("FTF", hz.ftf), harmonics_found: 0 },
    ];
    for f in &mut families {
        f.harmonics_found = f.peaks.iter().take(h).filter(|p| p.prominence_db >= settings.prominence_db).count();
    }
    let (verdict, reason) = decide(&families, settings);
    let top = (hz.bpfi + shaft.hz) * (h as f64 + 0.5);
    let envelope = Spectrum {
        resolution_hz: envelope.resolution_hz,
        amplitudes: envelope.amplitudes.get(envelope.bins(0.0, top)).unwrap_or_default().to_vec(),
    };
    Evidence {
        bearing: settings.bearing.name.clone(),
        shaft,
        defect_frequencies_hz: hz,
        defect_orders: orders,
        band,
        families,
        verdict,
        reason,
        envelope,
    }
}

/// A family is supported when its defect frequency stands out clearly (`verdict_db`) and
/// at least one more harmonic stands out; the verdict goes to the strongest supported
/// family only when its peaks stand `lead_db` above every other family's on average (one
/// family clearly dominates); otherwise the evidence is inconclusive.
fn decide(families: &[FamilyEvidence], settings: &Settings) -> (Verdict, String) {
    let t = settings.prominence_db;
    let mut supported: Vec<&FamilyEvidence> = families
        .iter()
        .filter(|f| {
            f.family != FaultFamily::Cage && f.first_prominence() >= settings.verdict_db && f.harmonics_found >= 2
        })
        .collect();
    supported.sort_by(|a, b| b.mean_prominence(settings.harmonics).total_cmp(&a.mean_prominence(settings.harmonics)));
    let describe = |f: &FamilyEvidence| {
        format!(
            "{} at {} of {} harmonics ({:.1} dB at 1x)",
            f.family.name(),
            f.harmonics_found,
            settings.harmonics,
            f.first_prominence()
        )
    };
    // The lead of the strongest supported family over every other race or ball family.
    let lead = |f: &FamilyEvidence| {
        let others = families
            .iter()
            .filter(|o| o.family != f.family && o.family != FaultFamily::Cage)
            .map(|o| o.mean_prominence(settings.harmonics))
            .fold(f64::NEG_INFINITY, f64::max);
        f.mean_prominence(settings.harmonics) - others
    };
    match supported.as_slice() {
        [first, ..] if lead(first) >= settings.lead_db => (
            Verdict::Fault(first.family),
            format!("peaks for {}, {:.1} dB above any other family", describe(first), lead(first)),
        ),
        [one] => (
            Verdict::Inconclusive,
            format!("peaks for {}, but only {:.1} dB above another family", describe(one), lead(one)),
        ),
        [first, second, ..] => {
            (Verdict::Inconclusive, format!("peaks for both {} and {}", describe(first), describe(second)))
        }
        [] => match families
            .iter()
            .filter(|f| f.family != FaultFamily::Cage)
            .max_by(|a, b| a.first_prominence().total_cmp(&b.first_prominence()))
        {
            Some(f) if f.first_prominence() >= t || f.harmonics_found >= 1 => {
                (Verdict::Inconclusive, format!("some evidence, not enough: {}", describe(f)))
            }
            _ => (Verdict::None, format!("no defect frequency stands {t} dB over the envelope spectrum's floor")),
        },
    }
}

/// How the physics verdict stands to the model's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Agreement {
    Agrees,
    Disagrees,
    Inconclusive,
}

/// The model's family against the physics verdict, with a one-line reason.
pub fn agreement(model: FaultFamily, verdict: Verdict) -> (Agreement, String) {
    match (model, verdict) {
        (m, Verdict::Fault(p)) if m == p => {
            (Agreement::Agrees, format!("the envelope spectrum shows {} too", p.name()))
        }
        (FaultFamily::Normal, Verdict::None) => {
            (Agreement::Agrees, "no defect frequency stands out, as for a healthy bearing".into())
        }
        (m, Verdict::Fault(p)) => {
            (Agreement::Disagrees, format!("the model says {}, the envelope spectrum shows {}", m.name(), p.name()))
        }
        (FaultFamily::Normal, Verdict::Inconclusive) => {
            (Agreement::Inconclusive, "some defect-frequency evidence, not enough to call".into())
        }
        (m, Verdict::None) if m != FaultFamily::Other => {
            (Agreement::Inconclusive, format!("the model says {}, but no defect frequency stands out", m.name()))
        }
        _ => (Agreement::Inconclusive, "the physics cannot tell".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::synthetic::impacts;
    use super::*;

    const RATE: f64 = 12_000.0;

    fn settings(shaft_hz: f64) -> Settings {
        Settings { shaft_hz: Some(shaft_hz), ..Settings::new(Bearing::cwru_drive_end()) }
    }

    #[test]
    fn an_impulse_train_at_bpfo_is_an_outer_race_fault() {
        let fr = 29.95;
        let bpfo = Bearing::cwru_drive_end().orders().bpfo * fr;
        let e = analyze(&impacts(bpfo, |_| 1.0, 0.3, 8.0), RATE, &settings(fr));
        assert_eq!(e.verdict, Verdict::Fault(FaultFamily::OuterRace), "{}", e.reason);
        assert_eq!(agreement(FaultFamily::OuterRace, e.verdict).0, Agreement::Agrees);
        assert_eq!(agreement(FaultFamily::Ball, e.verdict).0, Agreement::Disagrees);
    }

    #[test]
    fn impacts_at_bpfi_modulated_by_the_shaft_are_an_inner_race_fault_with_sidebands() {
        let fr = 29.5;
        let bpfi = Bearing::cwru_drive_end().orders().bpfi * fr;
        // The defect passes through the load zone once a turn: amplitude modulation at fr.
        let gain = |t: f64| 0.6 + 0.4 * (2.0 * std::f64::consts::PI * fr * t).cos();
        let e = analyze(&impacts(bpfi, gain, 0.3, 8.0), RATE, &settings(fr));
        assert_eq!(e.verdict, Verdict::Fault(FaultFamily::InnerRace), "{}", e.reason);
        let inner = e.families.iter().find(|f| f.family == FaultFamily::InnerRace).unwrap();
        let sidebands: Vec<&Peak> = inner.peaks.iter().filter(|p| p.what.contains("fr")).collect();
        assert!(sidebands.iter().all(|p| p.prominence_db >= 6.0), "{sidebands:?}");
    }

    #[test]
    fn pure_noise_shows_no_fault_and_the_speed_is_found_from_its_harmonics() {
        let e = analyze(&impacts(1.0, |_| 0.0, 1.0, 8.0), RATE, &settings(30.0));
        assert_eq!(e.verdict, Verdict::None, "{}", e.reason);
        assert_eq!(agreement(FaultFamily::Normal, e.verdict).0, Agreement::Agrees);
        // A shaft at 29.3 Hz with harmonics in noise, looked for between 20 and 40 Hz.
        let noise = impacts(1.0, |_| 0.0, 1.0, 10.0);
        let x: Vec<f64> = noise
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let t = i as f64 / RATE;
                f64::from(n)
                    + (1..=4).map(|h| (2.0 * std::f64::consts::PI * 29.3 * h as f64 * t).sin() / h as f64).sum::<f64>()
            })
            .collect();
        let hz = estimate_shaft_hz(&amplitude_spectrum(&x, RATE), (20.0, 40.0), 5);
        assert!((hz - 29.3).abs() < 0.05, "{hz}");
    }
}
