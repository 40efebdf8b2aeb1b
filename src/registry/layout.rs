//! Where models live on disk:
//!
//! - shipped models: `<models>/<name>/{card.json, weights.safetensors}`, one version each;
//! - versions made by the service: `<data-dir>/models/<name>/<version>/{card.json, weights.safetensors}`,
//!   with `<data-dir>/models/<name>/ACTIVE` holding the version in service (when absent,
//!   the highest version is).
//!
//! Folder names must match the card's name and version. Folders whose names start with a
//! dot are ignored, so that a version can be written under a temporary name and renamed
//! into place in one step.

use std::path::{Path, PathBuf};

use super::card::{ModelCard, CARD_FILE};
use super::RegistryError;

/// The marker file naming a model's active version.
pub const ACTIVE_FILE: &str = "ACTIVE";

/// Where a model version was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// In the models folder the service was started with.
    Shipped,
    /// In the service's data folder (made by a training job or copied there).
    DataDir,
}

/// A model version's card and folder, checked against its weights.
#[derive(Clone, Debug)]
pub struct Found {
    pub card: ModelCard,
    pub dir: PathBuf,
    pub origin: Origin,
}

/// Model names become folder names: lower-case letters, digits, `-`, `_` and `.`, not
/// starting with a dot, at most 64 characters.
pub fn validate_name(name: &str) -> Result<(), RegistryError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(RegistryError::Layout(format!(
            "invalid model name {name:?}: use 1 to 64 lower-case letters, digits, '-', '_' or '.', not starting with '.'"
        )))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError + '_ {
    move |source| RegistryError::Io { path: path.display().to_string(), source }
}

/// Sub-folders of `dir`, sorted, skipping hidden ones.
fn sub_dirs(dir: &Path) -> Result<Vec<PathBuf>, RegistryError> {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && entry.file_type().map_err(io(dir))?.is_dir() {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    Ok(dirs)
}

fn folder_name(dir: &Path) -> String {
    dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Every shipped model. A folder without a card is skipped with a warning; a card that is
/// wrong is an error (the service should not start with a broken shipped model).
pub fn scan_shipped(models_dir: &Path) -> Result<Vec<Found>, RegistryError> {
    if !models_dir.is_dir() {
        return Err(RegistryError::Layout(format!(
            "models folder {} does not exist (set --models / DRSN_MODELS)",
            models_dir.display()
        )));
    }
    let mut found = Vec::new();
    for dir in sub_dirs(models_dir)? {
        if !dir.join(CARD_FILE).is_file() {
            tracing::warn!(folder = %dir.display(), "no {CARD_FILE}; not a model folder, skipped");
            continue;
        }
        let card = ModelCard::read(&dir)?;
        if card.name != folder_name(&dir) {
            return Err(RegistryError::Layout(format!(
                "{}: the card names the model {:?}; the folder must have the same name",
                dir.join(CARD_FILE).display(),
                card.name
            )));
        }
        found.push(Found { card, dir, origin: Origin::Shipped });
    }
    Ok(found)
}

/// `<data-dir>/models`, created when missing.
pub fn data_models_dir(data_dir: &Path) -> Result<PathBuf, RegistryError> {
    let dir = data_dir.join("models");
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    Ok(dir)
}

/// Every version in the data folder. A version that cannot be read (say, a crash while it
/// was being written) is logged and skipped: it must not keep the service from starting.
pub fn scan_data(data_dir: &Path) -> Result<Vec<Found>, RegistryError> {
    let root = data_models_dir(data_dir)?;
    let mut found = Vec::new();
    for model_dir in sub_dirs(&root)? {
        let name = folder_name(&model_dir);
        for dir in sub_dirs(&model_dir)? {
            match read_version(&dir, &name) {
                Ok(card) => found.push(Found { card, dir, origin: Origin::DataDir }),
                Err(e) => tracing::error!(folder = %dir.display(), error = %e, "model version skipped"),
            }
        }
    }
    Ok(found)
}

/// Reads a version folder `<name>/<version>/`, checking both names against the card.
pub fn read_version(dir: &Path, name: &str) -> Result<ModelCard, RegistryError> {
    let card = ModelCard::read(dir)?;
    let version = folder_name(dir);
    if card.name != name || card.version.to_string() != version {
        return Err(RegistryError::Layout(format!(
            "{}: the card says {} version {} but the folder is {name}/{version}",
            dir.join(CARD_FILE).display(),
            card.name,
            card.version
        )));
    }
    Ok(card)
}

/// The version recorded as active in the data folder, if any.
pub fn read_active(data_dir: &Path, name: &str) -> Result<Option<u32>, RegistryError> {
    let path = data_dir.join("models").join(name).join(ACTIVE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map(Some).map_err(|_| {
            RegistryError::Layout(format!("{}: expected a version number, found {:?}", path.display(), text.trim()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&path)(e)),
    }
}

/// Records `version` as active, replacing the marker atomically (write, then rename).
pub fn write_active(data_dir: &Path, name: &str, version: u32) -> Result<(), RegistryError> {
    let dir = data_dir.join("models").join(name);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let tmp = dir.join(format!(".{ACTIVE_FILE}.tmp"));
    let path = dir.join(ACTIVE_FILE);
    std::fs::write(&tmp, format!("{version}\n")).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))
}
