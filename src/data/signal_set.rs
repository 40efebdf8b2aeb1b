//! Recordings to windows: read, bring to one rate, cut each recording in time into
//! train/validation/test stretches, then window each stretch on its own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::description::{DatasetDescription, Files, RateConversion, RecordingReport, SplitReport};
use super::load::{DatasetOptions, Guard};
use super::recording::{decode_named, ReadOptions};
use super::source::{describe_filter, entries, DatasetSource, Entry};
use super::split::{stretches, Parts, Split};
use super::{resample, windows, DataError, Dataset, Origin};

pub(crate) fn load(source: &DatasetSource, options: &DatasetOptions, guard: &Guard) -> Result<Dataset, DataError> {
    let train_entries = entries(source, &options.filter, guard)?;
    if train_entries.is_empty() {
        return Err(DataError::Options(format!(
            "the filter {} leaves no recording of {}",
            describe_filter(&options.filter),
            source.path().display()
        )));
    }
    let classes: Vec<String> =
        train_entries.iter().map(|e| e.label.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    let test_entries = test_entries(source, options, &train_entries, &classes, guard)?;

    let mut cutter = Cutter {
        reader: Reader { options, guard, common_rate: None, channels: None },
        rng: StdRng::seed_from_u64(options.seed),
        parts: None,
        planned: BTreeMap::new(),
        kept: 0,
    };
    let mut reports = Vec::new();
    let all = train_entries.iter().map(|e| (e, false)).chain(test_entries.iter().map(|e| (e, true)));
    for (index, (entry, is_test)) in all.enumerate() {
        reports.push(cutter.cut(index, entry, is_test, &classes)?);
    }
    let mut parts = cutter.parts.take().ok_or_else(|| DataError::Options("no recording was read".into()))?;
    let without_test = explain_empty_parts(&parts, &classes, &cutter.planned, options)?;
    if let Some(max) = options.max_per_class {
        parts.cap_per_class(max, classes.len(), &mut cutter.rng);
    }
    let sample_rate = options.sample_rate.or(cutter.reader.common_rate.as_ref().map(|(r, _)| *r));
    let sources = reports.iter().map(|r| r.file.clone()).collect();
    let description = describe(source, options, &classes, sample_rate, &cutter.reader, &parts, reports, without_test);
    Ok(parts.into_dataset(classes, sample_rate, sources, description))
}

/// Cuts recordings, one after another, into the parts' windows.
struct Cutter<'a> {
    reader: Reader<'a>,
    rng: StdRng,
    parts: Option<Parts>,
    /// Per class and part: the stretches meant for it, to explain a part left empty.
    planned: BTreeMap<(usize, &'static str), Vec<String>>,
    /// Windows kept so far, all parts.
    kept: usize,
}

impl Cutter<'_> {
    /// Reads one recording, assigns its stretches to parts (cut in time, or whole by the
    /// manifest or the test selection), windows each stretch; reports what it did.
    fn cut(
        &mut self,
        index: usize,
        entry: &Entry,
        is_test: bool,
        classes: &[String],
    ) -> Result<RecordingReport, DataError> {
        let options = self.reader.options;
        let window = options.window;
        let file = entry.path.display().to_string();
        let label = classes.binary_search(&entry.label).map_err(|_| DataError::UnknownLabel {
            file: file.clone(),
            label: entry.label.clone(),
            known: classes.join(", "),
        })?;
        let loaded = self.reader.read(entry)?;
        let len = loaded.channels.first().map_or(0, Vec::len);
        if len < window {
            let detail = match (loaded.sample_rate, loaded.resampled_from) {
                (Some(to), Some(from)) => format!(" at {to} Hz (resampled from {from} Hz)"),
                (Some(rate), None) => format!(" at {rate} Hz"),
                _ => String::new(),
            };
            return Err(DataError::TooShort { file, len, window, detail });
        }
        let (assigned, plan) = if is_test {
            ("test selection", vec![(Split::Test, 0..len)])
        } else if let Some(split) = entry.split {
            ("manifest split", vec![(split, 0..len)])
        } else {
            let mut order = Split::ALL;
            order.shuffle(&mut self.rng);
            ("cut in time", stretches(len, options.fractions(), order))
        };
        let parts = self.parts.get_or_insert_with(|| Parts::new(vec![loaded.channels.len(), window]));
        let mut report = RecordingReport {
            file: file.clone(),
            label: entry.label.clone(),
            variable: loaded.variable.clone(),
            channels: loaded.channels.len(),
            samples: len,
            sample_rate: loaded.sample_rate,
            resampled_from: loaded.resampled_from,
            assigned: assigned.into(),
            ..RecordingReport::default()
        };
        for (split, range) in plan {
            self.planned.entry((label, split.name())).or_default().push(format!("{file}: {} samples", range.len()));
            let stride = match split {
                Split::Train => options.train_stride,
                Split::Test => options.test_stride.unwrap_or(window),
                Split::Validation => options.validation_stride.unwrap_or(window),
            };
            // Counted before any is cut: a small stride on a long recording is many windows.
            let cuts = windows(range.len(), window, stride);
            self.reader.guard.count(self.kept.saturating_add(cuts.len()))?;
            let mut count = 0;
            for w in cuts {
                let start = range.start + w.start;
                let pieces = window_of(&loaded.channels, start, window, &file)?;
                parts.push(split, label as i64, Origin { source: index, start, len: window }, &pieces);
                count += 1;
            }
            if split == Split::Train {
                for &factor in &options.speed_factors {
                    count += push_at_speed(parts, &loaded.channels, range.clone(), factor, (index, label), options)?;
                }
            }
            self.kept += count;
            self.reader.guard.count(self.kept)?;
            report.stretches.insert(split.name().into(), [range.start, range.end]);
            report.windows.insert(split.name().into(), count);
        }
        Ok(report)
    }
}

/// Fails when a class has no training windows, or none in a part its recordings had
/// stretches for (saying why); returns the classes the test selection holds nothing of.
fn explain_empty_parts(
    parts: &Parts,
    classes: &[String],
    planned: &BTreeMap<(usize, &'static str), Vec<String>>,
    options: &DatasetOptions,
) -> Result<Vec<String>, DataError> {
    let mut without_test = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        for split in Split::ALL {
            if parts.count(split, label as i64) > 0 {
                continue;
            }
            let stretches = planned.get(&(label, split.name())).map(Vec::as_slice).unwrap_or_default();
            if split == Split::Test && options.test.is_some() {
                without_test.push(class.clone());
            } else if split == Split::Train || !stretches.is_empty() {
                let detail = if stretches.is_empty() {
                    " for training: the manifest puts all its recordings in other parts".to_string()
                } else {
                    format!(
                        " in the {} part: its {} stretches ({}) are shorter than one window of {}",
                        split.name(),
                        split.name(),
                        stretches.join(", "),
                        options.window
                    )
                };
                return Err(DataError::EmptyClass { class: class.clone(), detail });
            }
        }
    }
    Ok(without_test)
}

#[allow(clippy::too_many_arguments)]
fn describe(
    source: &DatasetSource,
    options: &DatasetOptions,
    classes: &[String],
    sample_rate: Option<u32>,
    reader: &Reader,
    parts: &Parts,
    reports: Vec<RecordingReport>,
    without_test: Vec<String>,
) -> DatasetDescription {
    let fractions = options.fractions();
    let rate_conversions = reports
        .iter()
        .filter_map(|r| Some(RateConversion { file: r.file.clone(), from: r.resampled_from?, to: r.sample_rate? }))
        .collect();
    DatasetDescription {
        classes: classes.to_vec(),
        sample_rate,
        window: Some(options.window),
        train_stride: Some(options.train_stride),
        eval_stride: Some(options.test_stride.unwrap_or(options.window)),
        validation_stride: Some(options.validation_stride.unwrap_or(options.window)),
        channels: reader.channels.as_ref().map(|(n, _)| *n),
        split: Some(SplitReport {
            method: "each recording is cut in time into contiguous train/validation/test stretches \
                     (their order drawn per recording from the seed) and windows are cut inside \
                     each stretch, so no window spans two parts; manifest `split` and a test \
                     selection assign whole recordings"
                .into(),
            fractions: [("train", fractions[0]), ("validation", fractions[1]), ("test", fractions[2])]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            seed: options.seed,
        }),
        max_per_class: options.max_per_class,
        speed_factors: options.speed_factors.clone(),
        files: Files::Recordings(reports),
        rate_conversions,
        counts: parts.counts(classes),
        classes_without_test_data: without_test,
        ..options.describe(source)
    }
}

/// Training windows of one stretch played at `factor` times its speed: the stretch is
/// resampled by `1 / factor` (a machine `factor` times faster shows every frequency
/// `factor` times higher) and windowed as usual. Each window's origin is the span of the
/// recording it was made from, inside the stretch. Returns how many were added.
fn push_at_speed(
    parts: &mut Parts,
    channels: &[Vec<f32>],
    range: std::ops::Range<usize>,
    factor: f64,
    (source, label): (usize, usize),
    options: &DatasetOptions,
) -> Result<usize, DataError> {
    // Rates as a ratio of small whole numbers, which the resampler wants.
    const BASE: u32 = 1000;
    let to = (BASE as f64 / factor).round() as u32;
    let played: Vec<Vec<f32>> = channels
        .iter()
        .map(|c| resample(c.get(range.clone()).unwrap_or_default(), BASE, to, &options.limits))
        .collect::<Result<_, _>>()?;
    let scale = BASE as f64 / to as f64;
    let window = options.window;
    let mut count = 0;
    for w in windows(played.first().map_or(0, Vec::len), window, options.train_stride) {
        let pieces = window_of(&played, w.start, window, "a recording played at another speed")?;
        let start = range.start + (w.start as f64 * scale) as usize;
        let len = ((window as f64 * scale).ceil() as usize).min(range.end - start);
        parts.push(Split::Train, label as i64, Origin { source, start, len }, &pieces);
        count += 1;
    }
    Ok(count)
}

/// Samples `start..start + len` of every channel.
fn window_of<'a>(channels: &'a [Vec<f32>], start: usize, len: usize, file: &str) -> Result<Vec<&'a [f32]>, DataError> {
    channels
        .iter()
        .map(|c| c.get(start..start + len))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| DataError::malformed(file, "channels of different lengths"))
}

/// The test selection's recordings: labels known from training, no recording shared.
fn test_entries(
    source: &DatasetSource,
    options: &DatasetOptions,
    train: &[Entry],
    classes: &[String],
    guard: &Guard,
) -> Result<Vec<Entry>, DataError> {
    let Some(selection) = &options.test else {
        return Ok(Vec::new());
    };
    let test_source = selection.source.as_ref().unwrap_or(source);
    if !matches!(test_source, DatasetSource::Manifest(_) | DatasetSource::RecordingFolders(_)) {
        return Err(DataError::Options(format!(
            "the test selection ({}) must hold recordings, like the training source",
            test_source.path().display()
        )));
    }
    let chosen = entries(test_source, &selection.filter, guard)?;
    if chosen.is_empty() {
        return Err(DataError::Options(format!(
            "the test filter {} leaves no recording of {}",
            describe_filter(&selection.filter),
            test_source.path().display()
        )));
    }
    let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let train_files: BTreeSet<_> = train.iter().map(|e| canonical(&e.path)).collect();
    for entry in &chosen {
        let file = entry.path.display().to_string();
        if classes.binary_search(&entry.label).is_err() {
            return Err(DataError::UnknownLabel { file, label: entry.label.clone(), known: classes.join(", ") });
        }
        if train_files.contains(&canonical(&entry.path)) {
            return Err(DataError::Options(format!(
                "{file} is in both the training and the test selection; they must not share recordings"
            )));
        }
    }
    Ok(chosen)
}

struct Loaded {
    channels: Vec<Vec<f32>>,
    sample_rate: Option<u32>,
    resampled_from: Option<u32>,
    variable: Option<String>,
}

/// Reads recordings one after another, checking that they agree with the first
/// (channel count; rate, when not resampling).
struct Reader<'a> {
    options: &'a DatasetOptions,
    guard: &'a Guard<'a>,
    common_rate: Option<(u32, String)>,
    channels: Option<(usize, String)>,
}

impl Reader<'_> {
    fn read(&mut self, entry: &Entry) -> Result<Loaded, DataError> {
        let options = self.options;
        let file = entry.path.display().to_string();
        let read_options = ReadOptions {
            // One variable named for the whole data set (say `*_FE_time`, the fan-end
            // channel of every CWRU file) overrides the manifest's per-row choice.
            variable: options.variable.clone().or_else(|| entry.variable.clone()),
            column: options.column.clone(),
            channels: entry.channels.clone().or_else(|| options.channels.clone()),
            limits: options.limits,
        };
        let (recording, variable) = decode_named(&self.guard.read(&entry.path)?, &file, &read_options)?;
        let rate_error = |problem: String| DataError::SampleRate { file: file.clone(), problem };
        let declared = match (entry.sample_rate, recording.sample_rate) {
            (Some(m), Some(f)) if m != f => {
                return Err(rate_error(format!("the manifest says {m} Hz, the file says {f} Hz")))
            }
            (m, f) => m.or(f).or(options.default_sample_rate),
        };
        let mut channels = recording.channels;
        let mut resampled_from = None;
        match (options.sample_rate, declared) {
            (Some(target), Some(rate)) if rate != target => {
                channels =
                    channels.iter().map(|c| resample(c, rate, target, &options.limits)).collect::<Result<_, _>>()?;
                resampled_from = Some(rate);
            }
            (Some(target), None) => {
                return Err(rate_error(format!(
                    "unknown, so it cannot be brought to {target} Hz; give it in a manifest column \
                     `sampling_rate` or as the default sample rate"
                )))
            }
            (None, Some(rate)) => match &self.common_rate {
                None => self.common_rate = Some((rate, file.clone())),
                Some((common, first)) if *common != rate => {
                    return Err(rate_error(format!(
                        "{rate} Hz, but {first} is at {common} Hz; give a target sample rate to resample"
                    )))
                }
                Some(_) => {}
            },
            _ => {}
        }
        match &self.channels {
            None => self.channels = Some((channels.len(), file.clone())),
            Some((n, first)) if *n != channels.len() => {
                return Err(DataError::malformed(
                    &file,
                    format!(
                        "{} channel(s), but {first} has {n}; select channels so that every recording has as many",
                        channels.len()
                    ),
                ))
            }
            Some(_) => {}
        }
        Ok(Loaded { channels, sample_rate: options.sample_rate.or(declared), resampled_from, variable })
    }
}
