//! Class folders: `root/<class>/<file>`, one sub-folder per class. Listings are sorted so
//! that a data set reads the same on every machine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::source::Entry;
use super::DataError;

/// Recording files taken from class folders (not `.txt`: notes often sit beside data).
pub(crate) fn is_recording_file_name(name: &str) -> bool {
    has_extension(name, &["wav", "csv", "npy", "mat"])
}

pub(crate) fn is_image_name(name: &str) -> bool {
    has_extension(name, &["png", "jpg", "jpeg"])
}

fn has_extension(name: &str, extensions: &[&str]) -> bool {
    Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

fn listing(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let read = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut paths = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        if !entry.file_name().to_string_lossy().starts_with('.') {
            paths.push(entry.path());
        }
    }
    paths.sort();
    Ok(paths)
}

/// Names of the plain files in `dir`, sorted.
pub(crate) fn file_names(dir: &Path) -> Result<Vec<String>, DataError> {
    Ok(listing(dir)?
        .into_iter()
        .filter(|p| p.is_file())
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect())
}

/// The sub-folders of `root`, sorted.
pub(crate) fn class_dirs(root: &Path) -> Result<Vec<PathBuf>, DataError> {
    Ok(listing(root)?.into_iter().filter(|p| p.is_dir()).collect())
}

/// Every accepted file under `root/<class>/`, labelled with its folder's name, and the
/// columns these entries have (`file`, `label`).
pub(crate) fn entries(root: &Path, accept: fn(&str) -> bool) -> Result<(Vec<Entry>, Vec<String>), DataError> {
    let classes = class_dirs(root)?;
    if classes.is_empty() {
        return Err(DataError::malformed(
            &root.display().to_string(),
            "no class folders (expected one sub-folder per class)",
        ));
    }
    let mut entries = Vec::new();
    for dir in classes {
        let label = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let names: Vec<String> = file_names(&dir)?.into_iter().filter(|n| accept(n)).collect();
        if names.is_empty() {
            return Err(DataError::EmptyClass {
                class: label,
                detail: format!(": folder {} holds no file of a format read here", dir.display()),
            });
        }
        for name in names {
            let columns =
                BTreeMap::from([("file".to_string(), format!("{label}/{name}")), ("label".to_string(), label.clone())]);
            entries.push(Entry {
                path: dir.join(&name),
                label: label.clone(),
                columns,
                sample_rate: None,
                variable: None,
                channels: None,
                split: None,
            });
        }
    }
    Ok((entries, vec!["file".to_string(), "label".to_string()]))
}
