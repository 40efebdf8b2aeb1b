//! Model cards and weights on disk, their versions, and the version in service per name.
//!
//! The registry knows what exists; the engine holds what is loaded. Every change goes
//! through the registry, which loads a version into the engine (with a warm-up pass)
//! before it is put into service, so that a request never meets a model that is not ready.
// On the path of every request or job: no panicking shortcuts outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

mod card;
mod folder;
mod layout;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

pub use card::{sha256_file, CardData, CardError, MachineInfo, ModelCard, WindowInfo, CARD_FILE, WEIGHTS_FILE};
pub use folder::{write_model_folder, CardInfo};
pub use layout::{validate_name, Origin, ACTIVE_FILE};

use crate::engine::{Engine, EngineError, ModelKey};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("unknown model {name:?}; known models: {known}")]
    UnknownModel { name: String, known: String },
    #[error("model {name:?} has no version {version}; versions: {known}")]
    UnknownVersion { name: String, version: u32, known: String },
    #[error(transparent)]
    Card(#[from] CardError),
    #[error("{0}")]
    Layout(String),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// One model version: its card and where its files are.
#[derive(Clone, Debug)]
pub struct ModelEntry {
    pub card: ModelCard,
    pub dir: PathBuf,
    pub origin: Origin,
}

impl ModelEntry {
    pub fn key(&self) -> ModelKey {
        ModelKey { name: self.card.name.clone(), version: self.card.version }
    }

    pub fn weights(&self) -> PathBuf {
        self.dir.join(WEIGHTS_FILE)
    }
}

/// A model name with its versions, for listings.
#[derive(Clone, Debug)]
pub struct ModelVersions {
    pub active: Arc<ModelEntry>,
    pub versions: Vec<Arc<ModelEntry>>,
}

#[derive(Debug, Default)]
struct Versions {
    versions: BTreeMap<u32, Arc<ModelEntry>>,
    active: u32,
    loaded: BTreeSet<u32>,
}

impl Versions {
    fn known(&self) -> String {
        self.versions.keys().map(|v| v.to_string()).collect::<Vec<_>>().join(", ")
    }
}

pub struct Registry {
    data_dir: PathBuf,
    engine: Engine,
    models: RwLock<BTreeMap<String, Versions>>,
    /// Serialises changes (add, activate, load on demand) so that two never interleave.
    changes: tokio::sync::Mutex<()>,
    /// Most versions kept loaded besides the active ones: requests that name a version
    /// load it on demand, and must not fill the engine's memory with every version there is.
    max_inactive_loaded: usize,
    /// When each loaded version was last asked for, to unload the least recently used.
    last_used: Mutex<HashMap<ModelKey, Instant>>,
}

/// Versions kept loaded besides the active ones, unless configured otherwise.
pub const DEFAULT_MAX_LOADED_VERSIONS: usize = 4;

impl Registry {
    /// Reads every shipped model and every version in the data folder, picks the active
    /// version of each name, and loads those into the engine (warm-up included).
    pub async fn open(models_dir: &Path, data_dir: &Path, engine: Engine) -> Result<Registry, RegistryError> {
        Self::open_with(models_dir, data_dir, engine, DEFAULT_MAX_LOADED_VERSIONS).await
    }

    /// [`Registry::open`], keeping at most `max_inactive_loaded` versions loaded besides
    /// the active ones.
    pub async fn open_with(
        models_dir: &Path,
        data_dir: &Path,
        engine: Engine,
        max_inactive_loaded: usize,
    ) -> Result<Registry, RegistryError> {
        let mut found = layout::scan_shipped(models_dir)?;
        found.extend(layout::scan_data(data_dir)?);
        let mut models: BTreeMap<String, Versions> = BTreeMap::new();
        for f in found {
            validate_name(&f.card.name)?;
            let versions = models.entry(f.card.name.clone()).or_default();
            let entry = Arc::new(ModelEntry { card: f.card, dir: f.dir, origin: f.origin });
            if let Some(other) = versions.versions.insert(entry.card.version, entry.clone()) {
                return Err(RegistryError::Layout(format!(
                    "{} version {} is in both {} and {}; remove one",
                    entry.card.name,
                    entry.card.version,
                    other.dir.display(),
                    entry.dir.display()
                )));
            }
        }
        for (name, versions) in models.iter_mut() {
            let Some(&highest) = versions.versions.keys().next_back() else { continue };
            versions.active = match layout::read_active(data_dir, name)? {
                Some(v) if versions.versions.contains_key(&v) => v,
                Some(v) => {
                    tracing::warn!(model = %name, version = v, highest, "the recorded active version is missing; serving the highest");
                    highest
                }
                None => highest,
            };
        }
        let registry = Registry {
            data_dir: data_dir.to_path_buf(),
            engine,
            models: RwLock::new(models),
            changes: tokio::sync::Mutex::new(()),
            max_inactive_loaded,
            last_used: Mutex::new(HashMap::new()),
        };
        for name in registry.names() {
            let entry = registry.active(&name)?;
            registry.load(&entry).await?;
        }
        Ok(registry)
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Versions>> {
        // A panic while holding the lock leaves consistent data (every write is one insert).
        self.models.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Versions>> {
        self.models.write().unwrap_or_else(|p| p.into_inner())
    }

    fn unknown(&self, name: &str) -> RegistryError {
        let known = self.names();
        let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
        RegistryError::UnknownModel { name: name.to_string(), known }
    }

    pub fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// Every model with its active version and all versions, by name.
    pub fn list(&self) -> Vec<ModelVersions> {
        self.read()
            .values()
            .filter_map(|v| {
                Some(ModelVersions {
                    active: v.versions.get(&v.active)?.clone(),
                    versions: v.versions.values().cloned().collect(),
                })
            })
            .collect()
    }

    /// The version in service for `name`.
    pub fn active(&self, name: &str) -> Result<Arc<ModelEntry>, RegistryError> {
        // The read guard ends with this statement: `unknown` reads again.
        let found = self.read().get(name).and_then(|v| v.versions.get(&v.active).cloned());
        found.ok_or_else(|| self.unknown(name))
    }

    /// Every version of `name` with the active one.
    pub fn versions(&self, name: &str) -> Result<ModelVersions, RegistryError> {
        self.list().into_iter().find(|m| m.active.card.name == name).ok_or_else(|| self.unknown(name))
    }

    /// One version of `name`, whether in service or not.
    pub fn version(&self, name: &str, version: u32) -> Result<Arc<ModelEntry>, RegistryError> {
        let models = self.read();
        let Some(v) = models.get(name) else {
            drop(models);
            return Err(self.unknown(name));
        };
        v.versions.get(&version).cloned().ok_or_else(|| RegistryError::UnknownVersion {
            name: name.to_string(),
            version,
            known: v.known(),
        })
    }

    /// The version to run a request on: the active one, or the one asked for, loading it
    /// into the engine first if it is not in service.
    pub async fn for_inference(&self, name: &str, version: Option<u32>) -> Result<Arc<ModelEntry>, RegistryError> {
        let entry = match version {
            None => return self.active(name),
            Some(v) => self.version(name, v)?,
        };
        self.touch(entry.key());
        if !self.is_loaded(&entry) {
            let _guard = self.changes.lock().await;
            self.load(&entry).await?;
            self.unload_least_used().await;
        }
        Ok(entry)
    }

    /// Every version loaded in the engine now.
    pub fn loaded(&self) -> Vec<ModelKey> {
        self.read()
            .iter()
            .flat_map(|(name, v)| v.loaded.iter().map(|&version| ModelKey { name: name.clone(), version }))
            .collect()
    }

    fn touch(&self, key: ModelKey) {
        self.last_used.lock().unwrap_or_else(|p| p.into_inner()).insert(key, Instant::now());
    }

    /// Unloads the least recently used versions that are not in service while more than
    /// `max_inactive_loaded` are loaded. Call with `changes` held.
    async fn unload_least_used(&self) {
        let mut inactive: Vec<ModelKey> = self
            .read()
            .iter()
            .flat_map(|(name, v)| {
                v.loaded
                    .iter()
                    .filter(|&&n| n != v.active)
                    .map(|&version| ModelKey { name: name.clone(), version })
                    .collect::<Vec<_>>()
            })
            .collect();
        if inactive.len() <= self.max_inactive_loaded {
            return;
        }
        {
            let used = self.last_used.lock().unwrap_or_else(|p| p.into_inner());
            inactive.sort_by_key(|k| used.get(k).copied());
        }
        let excess = inactive.len() - self.max_inactive_loaded;
        for key in inactive.into_iter().take(excess) {
            if let Err(e) = self.engine.unload(key.clone()).await {
                tracing::warn!(model = %key, error = %e, "could not unload a version");
                continue;
            }
            if let Some(v) = self.write().get_mut(&key.name) {
                v.loaded.remove(&key.version);
            }
            self.last_used.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
            tracing::info!(model = %key, "version unloaded (least recently used)");
        }
    }

    fn is_loaded(&self, entry: &ModelEntry) -> bool {
        self.read().get(&entry.card.name).is_some_and(|v| v.loaded.contains(&entry.card.version))
    }

    /// Loads a version into the engine unless it is there already.
    async fn load(&self, entry: &ModelEntry) -> Result<(), RegistryError> {
        if self.is_loaded(entry) {
            return Ok(());
        }
        self.engine.load(entry.key(), entry.card.spec.clone(), entry.weights(), entry.card.ood.clone()).await?;
        if let Some(v) = self.write().get_mut(&entry.card.name) {
            v.loaded.insert(entry.card.version);
        }
        Ok(())
    }

    /// `<data-dir>/models`, where new versions go.
    pub fn data_models_dir(&self) -> Result<PathBuf, RegistryError> {
        layout::data_models_dir(&self.data_dir)
    }

    /// The folder a new version of `name` must be written to (`<data-dir>/models/<name>/<version>`).
    pub fn version_dir(&self, name: &str, version: u32) -> Result<PathBuf, RegistryError> {
        validate_name(name)?;
        Ok(self.data_models_dir()?.join(name).join(version.to_string()))
    }

    /// One more than the highest version of `name` (1 for a new name).
    pub fn next_version(&self, name: &str) -> u32 {
        self.read().get(name).and_then(|v| v.versions.keys().next_back().copied()).unwrap_or(0) + 1
    }

    /// Registers a version written to [`Registry::version_dir`] and loads it into the
    /// engine; it is not put into service (see [`Registry::activate`]). A new name becomes
    /// active with its first version.
    pub async fn add_version(&self, name: &str, version: u32) -> Result<Arc<ModelEntry>, RegistryError> {
        let dir = self.version_dir(name, version)?;
        let card = layout::read_version(&dir, name)?;
        let _guard = self.changes.lock().await;
        if self.read().get(name).is_some_and(|v| v.versions.contains_key(&version)) {
            return Err(RegistryError::Layout(format!("{name} version {version} exists already")));
        }
        let entry = Arc::new(ModelEntry { card, dir, origin: Origin::DataDir });
        self.engine.load(entry.key(), entry.card.spec.clone(), entry.weights(), entry.card.ood.clone()).await?;
        let first = {
            let mut models = self.write();
            let first = !models.contains_key(name);
            let v = models.entry(name.to_string()).or_default();
            v.versions.insert(version, entry.clone());
            v.loaded.insert(version);
            if first {
                v.active = version;
            }
            first
        };
        if first {
            layout::write_active(&self.data_dir, name, version)?;
        }
        self.touch(entry.key());
        self.unload_least_used().await;
        tracing::info!(model = %name, version, "model version added");
        Ok(entry)
    }

    /// Puts `version` of `name` into service: loaded first, then switched to, then recorded
    /// in the data folder so that a restart serves it too. The version it replaces stays
    /// loaded, so that requests already on their way finish and a roll-back is instant.
    pub async fn activate(&self, name: &str, version: u32) -> Result<Arc<ModelEntry>, RegistryError> {
        let entry = self.version(name, version)?;
        let _guard = self.changes.lock().await;
        self.load(&entry).await?;
        layout::write_active(&self.data_dir, name, version)?;
        let replaced = self.write().get_mut(name).map(|v| std::mem::replace(&mut v.active, version));
        // The version it replaces stays loaded for a while: a roll-back is then instant.
        if let Some(old) = replaced {
            self.touch(ModelKey { name: name.to_string(), version: old });
        }
        self.unload_least_used().await;
        tracing::info!(model = %name, version, "model version activated");
        Ok(entry)
    }
}
