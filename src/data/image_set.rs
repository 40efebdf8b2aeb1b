//! Image data sets: class folders of PNG/JPEG, and MNIST's IDX files. Each image is its
//! own sample, so splitting by image cannot leak; splits are stratified per class.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::description::{filter_report, DatasetDescription, Files, SplitReport};
use super::load::{DatasetOptions, Guard};
use super::source::{describe_filter, entries, keeps, DatasetSource, Filter};
use super::split::{Parts, Split};
use super::{decode_idx, folder, image, DataError, Dataset, Origin};

/// Per class, which of its items (indices into `labels`) go to which part: a seeded
/// shuffle, then the first ones to test, the next to validation, the rest to training.
/// A part with a positive fraction gets at least one item of every class.
fn deal(labels: &[usize], classes: &[String], fractions: [f64; 3], rng: &mut StdRng) -> Result<Vec<Split>, DataError> {
    let mut assigned = vec![Split::Train; labels.len()];
    for (label, class) in classes.iter().enumerate() {
        let mut items: Vec<usize> = labels.iter().enumerate().filter(|(_, &l)| l == label).map(|(i, _)| i).collect();
        items.shuffle(rng);
        let n = items.len();
        let share = |f: f64| {
            if f > 0.0 {
                ((n as f64 * f).round() as usize).max(1)
            } else {
                0
            }
        };
        let (test, validation) = (share(fractions[2]), share(fractions[1]));
        if test + validation >= n {
            return Err(DataError::EmptyClass {
                class: class.clone(),
                detail: format!(" for training: its {n} item(s) are too few to give every part at least one"),
            });
        }
        for (k, &i) in items.iter().enumerate() {
            let Some(slot) = assigned.get_mut(i) else { continue };
            *slot = if k < test {
                Split::Test
            } else if k < test + validation {
                Split::Validation
            } else {
                Split::Train
            };
        }
    }
    Ok(assigned)
}

pub(crate) fn load_folders(
    source: &DatasetSource,
    options: &DatasetOptions,
    guard: &Guard,
) -> Result<Dataset, DataError> {
    let train_entries = entries(source, &options.filter, guard)?;
    let classes: Vec<String> =
        train_entries.iter().map(|e| e.label.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    if classes.is_empty() {
        return Err(DataError::Options(format!(
            "the filter {} leaves no image of {}",
            describe_filter(&options.filter),
            source.path().display()
        )));
    }
    let mut test_entries = Vec::new();
    if let Some(selection) = &options.test {
        let test_source = selection.source.as_ref().unwrap_or(source);
        if !matches!(test_source, DatasetSource::ImageFolders(_)) {
            return Err(DataError::Options(format!(
                "the test selection ({}) must be image folders, like the training source",
                test_source.path().display()
            )));
        }
        test_entries = entries(test_source, &selection.filter, guard)?;
        for e in &test_entries {
            if classes.binary_search(&e.label).is_err() {
                let file = e.path.display().to_string();
                return Err(DataError::UnknownLabel { file, label: e.label.clone(), known: classes.join(", ") });
            }
            if train_entries.iter().any(|t| t.path == e.path) {
                return Err(DataError::Options(format!(
                    "{} is in both the training and the test selection",
                    e.path.display()
                )));
            }
        }
    }
    let label_of = |entry: &super::source::Entry| {
        classes.binary_search(&entry.label).map_err(|_| DataError::UnknownLabel {
            file: entry.path.display().to_string(),
            label: entry.label.clone(),
            known: classes.join(", "),
        })
    };
    let labels: Vec<usize> = train_entries.iter().map(label_of).collect::<Result<_, _>>()?;
    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut assigned = deal(&labels, &classes, options.fractions(), &mut rng)?;
    assigned.extend(std::iter::repeat_n(Split::Test, test_entries.len()));

    let mut parts: Option<Parts> = None;
    let mut first: Option<(usize, usize, PathBuf)> = None;
    let mut sources = Vec::new();
    let all = train_entries.iter().chain(&test_entries);
    for (index, (entry, split)) in all.zip(&assigned).enumerate() {
        let file = entry.path.display().to_string();
        guard.count(index + 1)?;
        let (values, height, width) = image::decode(&guard.read(&entry.path)?, &file, guard.limits())?;
        match &first {
            None => first = Some((height, width, entry.path.clone())),
            Some((h, w, path)) if (*h, *w) != (height, width) => {
                return Err(DataError::malformed(
                    &file,
                    format!(
                        "{height}x{width} pixels, but {} is {h}x{w}; all images must share one size",
                        path.display()
                    ),
                ))
            }
            Some(_) => {}
        }
        let parts = parts.get_or_insert_with(|| Parts::new(vec![1, height, width]));
        parts.push(*split, label_of(entry)? as i64, Origin { source: index, start: 0, len: 1 }, &[&values]);
        sources.push(file);
    }
    let mut parts = parts.ok_or_else(|| DataError::Options("no image was read".into()))?;
    if let Some(max) = options.max_per_class {
        parts.cap_per_class(max, classes.len(), &mut rng);
    }
    let fractions = options.fractions();
    let description = DatasetDescription {
        classes: classes.clone(),
        image_shape: first.as_ref().map(|(h, w, _)| [*h, *w]),
        split: Some(split_report(
            "images dealt per class after a seeded shuffle",
            &[("train", fractions[0]), ("validation", fractions[1]), ("test", fractions[2])],
            options.seed,
        )),
        max_per_class: options.max_per_class,
        files: Files::Paths(sources.clone()),
        counts: parts.counts(&classes),
        ..options.describe(source)
    };
    Ok(parts.into_dataset(classes, None, sources, description))
}

fn split_report(method: &str, fractions: &[(&str, f64)], seed: u64) -> SplitReport {
    SplitReport { method: method.into(), fractions: fractions.iter().map(|(k, v)| (k.to_string(), *v)).collect(), seed }
}

/// The first file in `dir` whose name starts with `prefix` (e.g. `train-images`).
fn find(dir: &Path, prefix: &str) -> Result<PathBuf, DataError> {
    folder::file_names(dir)?
        .into_iter()
        .find(|n| n.starts_with(prefix))
        .map(|n| dir.join(n))
        .ok_or_else(|| DataError::malformed(&dir.display().to_string(), format!("no MNIST file `{prefix}*` here")))
}

/// Images and labels of one MNIST file pair, filtered by label.
struct Part {
    images: Vec<u8>,
    rows: usize,
    cols: usize,
    /// Indices into the file of the images kept, and their labels.
    kept: Vec<(usize, u8)>,
    images_path: PathBuf,
    labels_path: PathBuf,
}

fn read_part(dir: &Path, prefix: &str, filter: &Filter, guard: &Guard) -> Result<Part, DataError> {
    let images_path = find(dir, &format!("{prefix}-images"))?;
    let labels_path = find(dir, &format!("{prefix}-labels"))?;
    let name = |p: &Path| p.display().to_string();
    let (images, [count, rows, cols]) =
        decode_idx::<3>(&guard.read(&images_path)?, &name(&images_path), guard.limits())?;
    let (labels, _) = decode_idx::<1>(&guard.read(&labels_path)?, &name(&labels_path), guard.limits())?;
    if labels.len() != count {
        return Err(DataError::malformed(
            &labels_path.display().to_string(),
            format!("{} labels for the {count} images of {}", labels.len(), images_path.display()),
        ));
    }
    let kept = labels
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            let label = l.to_string();
            keeps(filter, |c| (c == "label").then_some(label.as_str()))
        })
        .map(|(i, &l)| (i, l))
        .collect();
    Ok(Part { images, rows, cols, kept, images_path, labels_path })
}

pub(crate) fn load_mnist(dir: &Path, options: &DatasetOptions, guard: &Guard) -> Result<Dataset, DataError> {
    let test_filter = match &options.test {
        None => &options.filter,
        Some(selection) if selection.source.is_none() => &selection.filter,
        Some(_) => {
            return Err(DataError::Options(
                "MNIST is tested on its official test set; a test selection may only filter it".into(),
            ))
        }
    };
    for (column, _) in options.filter.iter().chain(test_filter) {
        if column != "label" {
            let file = dir.display().to_string();
            return Err(DataError::Column { file, wanted: column.clone(), present: "label".into() });
        }
    }
    let train = read_part(dir, "train", &options.filter, guard)?;
    let test = read_part(dir, "t10k", test_filter, guard)?;
    guard.count(train.kept.len() + test.kept.len())?;
    if (train.rows, train.cols) != (test.rows, test.cols) {
        return Err(DataError::malformed(
            &test.images_path.display().to_string(),
            format!("{}x{} images, the training images are {}x{}", test.rows, test.cols, train.rows, train.cols),
        ));
    }
    let classes: Vec<String> =
        train.kept.iter().map(|(_, l)| *l).collect::<BTreeSet<_>>().into_iter().map(|l| l.to_string()).collect();
    if classes.is_empty() {
        return Err(DataError::Options(format!(
            "the filter {} leaves no MNIST image",
            describe_filter(&options.filter)
        )));
    }
    let label_of = |l: u8| {
        classes.binary_search(&l.to_string()).map_err(|_| DataError::UnknownLabel {
            file: test.labels_path.display().to_string(),
            label: l.to_string(),
            known: classes.join(", "),
        })
    };
    if let Some((_, l)) = test.kept.iter().find(|(_, l)| label_of(*l).is_err()) {
        let file = test.labels_path.display().to_string();
        return Err(DataError::UnknownLabel { file, label: l.to_string(), known: classes.join(", ") });
    }
    let labels: Vec<usize> = train.kept.iter().map(|(_, l)| label_of(*l)).collect::<Result<_, _>>()?;
    let mut rng = StdRng::seed_from_u64(options.seed);
    let assigned =
        deal(&labels, &classes, [1.0 - options.validation_fraction, options.validation_fraction, 0.0], &mut rng)?;

    let (rows, cols) = (train.rows, train.cols);
    let pixels = rows * cols;
    let mut parts = Parts::new(vec![1, rows, cols]);
    let mut scaled = vec![0.0f32; pixels];
    let batches = [(0, &train, assigned), (1, &test, vec![Split::Test; test.kept.len()])];
    for (source, part, splits) in &batches {
        for (&(i, l), split) in part.kept.iter().zip(splits) {
            let image = part.images.get(i * pixels..(i + 1) * pixels).ok_or_else(|| {
                DataError::malformed(&part.images_path.display().to_string(), format!("image {i} is cut short"))
            })?;
            for (v, &p) in scaled.iter_mut().zip(image) {
                *v = p as f32 / 255.0;
            }
            let label = label_of(l)? as i64;
            parts.push(*split, label, Origin { source: *source, start: i, len: 1 }, &[&scaled]);
        }
    }
    if let Some(max) = options.max_per_class {
        parts.cap_per_class(max, classes.len(), &mut rng);
    }
    let files: Vec<String> = [&train.images_path, &train.labels_path, &test.images_path, &test.labels_path]
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let description = DatasetDescription {
        source: Some(DatasetSource::Mnist(dir.to_path_buf()).describe()),
        filter: filter_report(&options.filter),
        test_filter: Some(filter_report(test_filter)),
        classes: classes.clone(),
        image_shape: Some([rows, cols]),
        scale: Some("pixel / 255".into()),
        split: Some(split_report(
            "official test set; validation dealt per class from the official training set after a seeded shuffle",
            &[("validation_of_train", options.validation_fraction)],
            options.seed,
        )),
        max_per_class: options.max_per_class,
        files: Files::Paths(files),
        counts: parts.counts(&classes),
        ..DatasetDescription::default()
    };
    let sources = vec![train.images_path.display().to_string(), test.images_path.display().to_string()];
    Ok(parts.into_dataset(classes, None, sources, description))
}
