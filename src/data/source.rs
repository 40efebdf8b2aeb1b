//! Where a data set comes from, and the list of labelled files it names, filtered on its
//! columns (manifest columns, or `file` and `label` for class folders).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::load::Guard;
use super::split::Split;
use super::{folder, manifest, DataError};

/// A data set on disk.
#[derive(Clone, Debug, PartialEq)]
pub enum DatasetSource {
    /// A folder with one sub-folder per class holding recordings (`.wav`, `.csv`, `.npy`, `.mat`).
    RecordingFolders(PathBuf),
    /// A manifest CSV: columns `file` (relative to the manifest) and `label`; optional
    /// `sampling_rate`/`sampling_rate_hz`, `variable`, `channel`, `split`; any other
    /// columns can be filtered on.
    Manifest(PathBuf),
    /// A folder with the MNIST IDX files (`train-images-idx3-ubyte[.gz]` and friends).
    Mnist(PathBuf),
    /// A folder with one sub-folder per class holding PNG/JPEG images.
    ImageFolders(PathBuf),
}

impl DatasetSource {
    /// Guesses the kind from the path: a `.csv` file is a manifest; a folder holding
    /// `train-images*` is MNIST; a folder of class folders of images is an image set; any
    /// other folder holds class folders of recordings.
    pub fn detect(path: &Path) -> Result<Self, DataError> {
        if path.is_file() {
            return match path.extension().and_then(|e| e.to_str()) {
                Some(e) if e.eq_ignore_ascii_case("csv") => Ok(DatasetSource::Manifest(path.into())),
                _ => Err(DataError::unsupported(
                    &path.display().to_string(),
                    "a data set is a manifest (.csv) or a folder",
                )),
            };
        }
        let names = folder::file_names(path)?;
        if names.iter().any(|n| n.starts_with("train-images")) {
            return Ok(DatasetSource::Mnist(path.into()));
        }
        for class in folder::class_dirs(path)? {
            if folder::file_names(&class)?.iter().any(|n| folder::is_image_name(n)) {
                return Ok(DatasetSource::ImageFolders(path.into()));
            }
        }
        Ok(DatasetSource::RecordingFolders(path.into()))
    }

    pub fn path(&self) -> &Path {
        match self {
            DatasetSource::RecordingFolders(p)
            | DatasetSource::Manifest(p)
            | DatasetSource::Mnist(p)
            | DatasetSource::ImageFolders(p) => p,
        }
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            DatasetSource::RecordingFolders(_) => "recording-folders",
            DatasetSource::Manifest(_) => "manifest",
            DatasetSource::Mnist(_) => "mnist",
            DatasetSource::ImageFolders(_) => "image-folders",
        }
    }

    pub(crate) fn describe(&self) -> super::description::SourceReport {
        super::description::SourceReport { kind: self.kind().into(), path: self.path().display().to_string() }
    }
}

/// Keep rows whose `column` holds one of `values`; every pair must hold.
pub type Filter = Vec<(String, Vec<String>)>;

/// Parses `column=v1,v2` (e.g. `load_hp=0,1`).
pub fn parse_filter(text: &str) -> Result<(String, Vec<String>), DataError> {
    let (column, values) = text
        .split_once('=')
        .ok_or_else(|| DataError::Options(format!("filter `{text}`: expected column=value[,value...]")))?;
    let values: Vec<String> = values.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect();
    if column.trim().is_empty() || values.is_empty() {
        return Err(DataError::Options(format!("filter `{text}`: expected column=value[,value...]")));
    }
    Ok((column.trim().to_string(), values))
}

/// One labelled file of a source, with what its manifest row says about it.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub path: PathBuf,
    pub label: String,
    /// Every column of its row (for filters and reports).
    pub columns: BTreeMap<String, String>,
    pub sample_rate: Option<u32>,
    pub variable: Option<String>,
    pub channels: Option<Vec<usize>>,
    pub split: Option<Split>,
}

/// The entries of a manifest or class-folder source, filtered.
pub(crate) fn entries(source: &DatasetSource, filter: &Filter, guard: &Guard) -> Result<Vec<Entry>, DataError> {
    let (entries, columns) = match source {
        DatasetSource::Manifest(path) => manifest::read(path, guard)?,
        DatasetSource::RecordingFolders(root) => folder::entries(root, folder::is_recording_file_name)?,
        DatasetSource::ImageFolders(root) => folder::entries(root, folder::is_image_name)?,
        DatasetSource::Mnist(path) => {
            return Err(DataError::unsupported(
                &path.display().to_string(),
                "MNIST cannot serve as the test selection of another data set",
            ))
        }
    };
    for (column, _) in filter {
        if !columns.contains(column) {
            return Err(DataError::Column {
                file: source.path().display().to_string(),
                wanted: column.clone(),
                present: columns.join(", "),
            });
        }
    }
    Ok(entries.into_iter().filter(|e| keeps(filter, |c| e.columns.get(c).map(String::as_str))).collect())
}

/// Whether a row passes the filter; values also match as numbers (`0` = `0.0`).
pub(crate) fn keeps<'a>(filter: &Filter, get: impl Fn(&str) -> Option<&'a str>) -> bool {
    filter.iter().all(|(column, values)| {
        let Some(cell) = get(column) else {
            return false;
        };
        values.iter().any(|v| v == cell || matches!((v.parse::<f64>(), cell.parse::<f64>()), (Ok(a), Ok(b)) if a == b))
    })
}

pub(crate) fn describe_filter(filter: &Filter) -> serde_json::Value {
    filter.iter().map(|(c, v)| (c.clone(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_match_numbers_loosely() {
        let f = vec![parse_filter("load_hp = 0, 1").unwrap()];
        assert_eq!(f, vec![("load_hp".to_string(), vec!["0".to_string(), "1".to_string()])]);
        assert!(keeps(&f, |_| Some("1.0")));
        assert!(!keeps(&f, |_| Some("2")));
        assert!(!keeps(&f, |_| None));
        assert!(parse_filter("load_hp").unwrap_err().to_string().contains("column=value"));
    }
}
