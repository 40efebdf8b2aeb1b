//! `drsn analyze`: the physics evidence on a recording (shaft speed, envelope spectrum of
//! the most impulsive band, peaks at the bearing's defect frequencies, the family they
//! support), or on every recording of a manifest against its labels.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;

use crate::data::{read_recording, resample, windows, Limits, ReadOptions, Samples};
use crate::nn::Model;
use crate::physics::{agreement, analyze, Agreement, Bearing, Evidence, FaultFamily, Settings, Verdict, WindowVerdict};
use crate::registry::{ModelCard, WEIGHTS_FILE};

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// A recording (.wav, .csv, .npy, .mat), or a manifest CSV (`file`, `label`, and
    /// optionally `rpm`, `sampling_rate_hz`, `variable`) to analyze every recording it
    /// lists and compare the verdicts with the labels.
    pub recording: PathBuf,
    /// The bearing: a designation from the built-in table (`6205-2RS JEM SKF`, `6203-2RS
    /// JEM SKF`, or `cwru-de`, `cwru-fe`).
    #[arg(long, env = "DRSN_BEARING", default_value = "cwru-de")]
    pub bearing: String,
    /// Shaft speed in rpm; without it (and without a manifest `rpm`) it is estimated within
    /// --rpm-range.
    #[arg(long)]
    pub rpm: Option<f64>,
    /// Where to look for the shaft speed, `LOW:HIGH` rpm.
    #[arg(long, default_value = "600:3600")]
    pub rpm_range: String,
    /// Estimate the shaft speed even where the manifest gives it (and report the error).
    #[arg(long)]
    pub estimate_speed: bool,
    /// Sampling rate of files that do not state one (CSV, .npy, .mat).
    #[arg(long)]
    pub sample_rate: Option<u32>,
    /// MAT variable (default `*_DE_time`).
    #[arg(long)]
    pub variable: Option<String>,
    /// A model folder: with a manifest, every recording is also diagnosed by the model (the
    /// family most of its windows get) and the physics verdict compared with it; with one
    /// recording, its verdict on every window is counted and drawn under the spectrum.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Also draw the envelope spectrum with the defect frequencies marked, as SVG (one
    /// recording).
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

fn rpm_range(text: &str) -> anyhow::Result<(f64, f64)> {
    let (lo, hi) = text.split_once(':').context("--rpm-range takes LOW:HIGH")?;
    let (lo, hi): (f64, f64) = (lo.trim().parse()?, hi.trim().parse()?);
    if !(lo > 0.0 && hi > lo) {
        bail!("--rpm-range {text}: LOW and HIGH must be positive, LOW below HIGH");
    }
    Ok((lo, hi))
}

pub fn run(args: AnalyzeArgs) -> anyhow::Result<()> {
    let bearing = Bearing::named(&args.bearing).with_context(|| format!("unknown bearing {:?}", args.bearing))?;
    let (lo, hi) = rpm_range(&args.rpm_range)?;
    let mut settings = Settings::new(bearing);
    settings.shaft_range_hz = (lo / 60.0, hi / 60.0);
    if args.recording.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) && is_manifest(&args.recording)? {
        return run_manifest(&args, &settings);
    }
    let options = ReadOptions { variable: args.variable.clone(), ..ReadOptions::default() };
    let recording = read_recording(&args.recording, &options)?;
    let rate = recording.sample_rate.or(args.sample_rate).context("the file states no rate: give --sample-rate")?;
    let channel = recording.channels.first().context("the recording holds no channel")?;
    settings.shaft_hz = args.rpm.map(|r| r / 60.0);
    let evidence = analyze(channel, f64::from(rate), &settings);
    println!("{}", serde_json::to_string_pretty(&evidence)?);
    let verdicts = match args.model.as_deref().map(Diagnoser::open).transpose()? {
        Some(diagnoser) => diagnoser.windows(channel, f64::from(rate))?,
        None => Vec::new(),
    };
    if !verdicts.is_empty() {
        let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
        for w in &verdicts {
            *counts.entry(w.label.as_str()).or_default() += 1;
        }
        let flagged = verdicts.iter().filter(|w| w.out_of_distribution).count();
        eprintln!("the model's verdicts on {} windows: {counts:?}; {flagged} out of distribution", verdicts.len());
    }
    if let Some(path) = &args.plot {
        let title = format!(
            "{}: {:?}, shaft {:.0} rpm, band {:.0}-{:.0} Hz",
            args.recording.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            evidence.verdict,
            evidence.shaft.rpm,
            evidence.band.low_hz,
            evidence.band.high_hz
        );
        let svg = crate::physics::envelope_svg(&evidence, &title, &verdicts).map_err(anyhow::Error::msg)?;
        std::fs::write(path, svg).with_context(|| path.display().to_string())?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn is_manifest(path: &Path) -> anyhow::Result<bool> {
    let mut reader = ::csv::Reader::from_path(path)?;
    let headers = reader.headers()?;
    Ok(headers.iter().any(|h| h == "file") && headers.iter().any(|h| h == "label"))
}

/// One recording of a manifest, analyzed.
struct Row {
    truth: FaultFamily,
    evidence: Evidence,
    /// The estimated speed's error against the manifest's, in %.
    speed_error: Option<f64>,
    /// The model's family and how the physics stands to it.
    model: Option<(FaultFamily, Agreement)>,
}

/// A model folder, loaded for diagnosing whole recordings.
struct Diagnoser {
    card: ModelCard,
    model: Model,
}

impl Diagnoser {
    fn open(dir: &Path) -> anyhow::Result<Diagnoser> {
        let card = ModelCard::read(dir)?;
        let model = Model::load(&card.spec, &dir.join(WEIGHTS_FILE), tch::Device::Cpu)?;
        Ok(Diagnoser { card, model })
    }

    /// The model's verdict on every window of `signal` (at `rate`), windows side by side.
    fn windows(&self, signal: &[f32], rate: f64) -> anyhow::Result<Vec<WindowVerdict>> {
        let target = self.card.sample_rate.context("the model records no rate")?;
        let signal = resample(signal, rate.round() as u32, target, &Limits::FILES)?;
        let length = self.card.window.as_ref().map_or(2048, |w| w.length);
        let ranges: Vec<_> = windows(signal.len(), length, length).collect();
        let values = ranges.iter().flat_map(|w| signal.get(w.clone()).unwrap_or_default()).copied().collect();
        let samples = Samples { values, sample_shape: vec![1, length], labels: vec![0; ranges.len()] };
        let predictions = crate::train::predict(&self.model, &samples, self.card.normalization)?;
        let flagged = match &self.card.ood {
            Some(ood) => crate::train::score_samples(&self.model, &samples, self.card.normalization, ood)?
                .into_iter()
                .map(|s| ood.flags(s))
                .collect(),
            None => vec![false; ranges.len()],
        };
        let machine = self.card.machine.clone().unwrap_or_default();
        let seconds = |i: usize| i as f64 / f64::from(target);
        Ok(ranges
            .iter()
            .zip(predictions)
            .zip(flagged)
            .map(|((w, p), out_of_distribution)| {
                let label = self.card.classes.get(p as usize).cloned().unwrap_or_default();
                WindowVerdict {
                    start_s: seconds(w.start),
                    end_s: seconds(w.end),
                    family: machine.family(&label),
                    label,
                    out_of_distribution,
                }
            })
            .collect())
    }

    /// The family of the label most windows of `signal` (at `rate`) get.
    fn family(&self, signal: &[f32], rate: f64) -> anyhow::Result<FaultFamily> {
        let mut votes: std::collections::BTreeMap<FaultFamily, usize> = Default::default();
        for w in self.windows(signal, rate)? {
            *votes.entry(w.family).or_default() += 1;
        }
        Ok(votes.into_iter().max_by_key(|(_, v)| *v).map_or(FaultFamily::Other, |(f, _)| f))
    }
}

fn run_manifest(args: &AnalyzeArgs, settings: &Settings) -> anyhow::Result<()> {
    let base = args.recording.parent().unwrap_or(Path::new("."));
    let mut reader = ::csv::Reader::from_path(&args.recording)?;
    let headers = reader.headers()?.clone();
    let column = |name: &str| headers.iter().position(|h| h == name);
    let (file, label) = (column("file").context("no file column")?, column("label").context("no label column")?);
    let (rpm, rate, variable) = (column("rpm"), column("sampling_rate_hz"), column("variable"));
    let diagnoser = args.model.as_deref().map(Diagnoser::open).transpose()?;
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record?;
        let cell = |i: Option<usize>| i.and_then(|i| record.get(i)).filter(|v| !v.is_empty());
        let path = base.join(cell(Some(file)).context("empty file cell")?);
        let options = ReadOptions { variable: cell(variable).map(String::from), ..ReadOptions::default() };
        let recording = read_recording(&path, &options).with_context(|| path.display().to_string())?;
        let sample_rate = match cell(rate) {
            Some(r) => r.parse::<f64>()?,
            None => f64::from(recording.sample_rate.or(args.sample_rate).context("no rate")?),
        };
        let given: Option<f64> = cell(rpm).map(str::parse).transpose()?;
        let channel = recording.channels.first().context("no channel")?;
        let mut s = settings.clone();
        s.shaft_hz = if args.estimate_speed { None } else { given.map(|r| r / 60.0) };
        let evidence = analyze(channel, sample_rate, &s);
        let speed_error = given.filter(|_| args.estimate_speed).map(|g| (evidence.shaft.rpm - g) / g * 100.0);
        let label = cell(Some(label)).unwrap_or_default().to_string();
        let truth = FaultFamily::from_class(&label);
        eprintln!(
            "{:<40} {:<8} {:?} (shaft {:.1} rpm{}) {}",
            path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            label,
            evidence.verdict,
            evidence.shaft.rpm,
            speed_error.map(|e| format!(", {e:+.2}%")).unwrap_or_default(),
            evidence.reason
        );
        let model = match &diagnoser {
            Some(d) => {
                let family = d.family(channel, sample_rate)?;
                Some((family, agreement(family, evidence.verdict).0))
            }
            None => None,
        };
        rows.push(Row { truth, evidence, speed_error, model });
    }
    print_table(&rows);
    Ok(())
}

fn print_table(rows: &[Row]) {
    println!("| truth | recordings | right | wrong family | inconclusive | none |");
    println!("|---|---|---|---|---|---|");
    for family in [FaultFamily::InnerRace, FaultFamily::OuterRace, FaultFamily::Ball, FaultFamily::Normal] {
        let of: Vec<&Row> = rows.iter().filter(|r| r.truth == family).collect();
        if of.is_empty() {
            continue;
        }
        let count = |f: &dyn Fn(&Verdict) -> bool| of.iter().filter(|r| f(&r.evidence.verdict)).count();
        let right = count(&|v| match v {
            Verdict::Fault(f) => *f == family,
            Verdict::None => family == FaultFamily::Normal,
            Verdict::Inconclusive => false,
        });
        let wrong = count(&|v| matches!(v, Verdict::Fault(f) if *f != family));
        let inconclusive = count(&|v| *v == Verdict::Inconclusive);
        let none = count(&|v| *v == Verdict::None);
        println!("| {} | {} | {right} | {wrong} | {inconclusive} | {none} |", family.name(), of.len());
    }
    let judged: Vec<(FaultFamily, FaultFamily, Agreement)> =
        rows.iter().filter_map(|r| r.model.map(|(m, a)| (r.truth, m, a))).collect();
    if !judged.is_empty() {
        let count = |a: Agreement| judged.iter().filter(|(_, _, x)| *x == a).count();
        let right = judged.iter().filter(|(t, m, _)| t == m).count();
        println!(
            "\nthe model's family right on {right} of {} recordings; the physics agrees with it on {}, disagrees on {}, inconclusive on {}",
            judged.len(),
            count(Agreement::Agrees),
            count(Agreement::Disagrees),
            count(Agreement::Inconclusive)
        );
    }
    let mut errors: Vec<f64> = rows.iter().filter_map(|r| r.speed_error.map(f64::abs)).collect();
    if !errors.is_empty() {
        errors.sort_by(f64::total_cmp);
        let within = errors.iter().filter(|&&e| e <= 1.0).count();
        let median = errors.get(errors.len() / 2).copied().unwrap_or_default();
        let worst = errors.last().copied().unwrap_or_default();
        println!(
            "\nshaft speed estimated on {} recordings: within 1% on {within} ({:.0}%), median error {median:.2}%, worst {worst:.2}%",
            errors.len(),
            within as f64 * 100.0 / errors.len() as f64
        );
    }
}
