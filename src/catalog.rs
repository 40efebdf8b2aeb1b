//! The one owner of model versions. The registry serves them (folders, `ACTIVE` markers,
//! the engine) and the store records them (SQLite); every addition, activation and
//! listing goes through the catalog, which keeps the one invariant here:
//!
//! **A version the registry serves is recorded in the store first, and the store's
//! active version of every name is the registry's.**
//!
//! At start-up [`Catalog::open`] records the versions found on disk that the store does
//! not know (shipped models, folders copied in by hand) and takes the registry's active
//! versions; afterwards only [`Catalog::add`] and [`Catalog::activate`] change anything,
//! and [`Catalog::list`] never writes.
//!
//! **Replicas sharing a database (PostgreSQL)**: the store is the truth and each replica's
//! registry follows it. Versions made by jobs are stored with their files (models are a few
//! hundred kB: no shared volume is needed, and a version and its files commit together);
//! [`Catalog::sync`] writes the versions a replica lacks into its data folder and puts the
//! store's active versions into service. It runs at start, when another replica notifies a
//! change, and every few seconds in case a notification was missed. At start a replica
//! takes the store's active versions; only names the store has no active version of take
//! the registry's.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::registry::{ModelEntry, Origin, Registry, RegistryError, CARD_FILE, WEIGHTS_FILE};
use crate::store::{Channel, ModelFiles, ModelVersionRow, NewModelVersion, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(String),
}

/// One version as the API lists it.
#[derive(Clone, Debug)]
pub struct Listed {
    pub row: ModelVersionRow,
    pub origin: Origin,
    pub active: bool,
}

/// A version number handed out to a job for the version it writes; the store never hands
/// out the same number twice, whichever replica asks.
pub struct Reservation {
    pub name: String,
    pub version: u32,
    /// Where the folder goes once complete.
    pub dir: PathBuf,
}

pub struct Catalog {
    registry: Arc<Registry>,
    store: Store,
    /// Serialises add, activate and sync: a sync must not take from the store a version
    /// this replica is adding (it is recorded before it is in place).
    changes: tokio::sync::Mutex<()>,
}

impl Catalog {
    /// Brings the store in line with what the registry found on disk.
    pub async fn open(registry: Arc<Registry>, store: Store) -> Result<Catalog, CatalogError> {
        for model in registry.list() {
            for entry in &model.versions {
                let job_id = match entry.card.data.job.as_deref() {
                    Some(id) if store.job(id).await?.is_some() => Some(id.to_string()),
                    _ => None,
                };
                store.ensure_version(&record(entry, job_id)).await?;
            }
            let active = &model.active.card;
            let stored = store.active_version(&active.name).await?.map(|v| v.version);
            // A replica follows the shared store; the only process on its own store leads it.
            let follow = store.is_shared() && stored.is_some();
            if !follow && stored != Some(i64::from(active.version)) {
                store.activate(&active.name, i64::from(active.version)).await?;
            }
        }
        let catalog = Catalog { registry, store, changes: tokio::sync::Mutex::new(()) };
        // A version that cannot be taken now is retried at every poll; it must not keep
        // the replica from starting.
        if catalog.store.is_shared() {
            if let Err(e) = catalog.sync().await {
                tracing::warn!(error = %e, "could not bring model versions in line with the store at start");
            }
        }
        Ok(catalog)
    }

    /// Brings this replica's registry in line with the shared store: versions it lacks are
    /// written from their stored files and added; each name's active version is put into
    /// service. A version that fails is logged and skipped (the next sync tries again).
    /// Returns how many versions were added or activated.
    pub async fn sync(&self) -> Result<usize, CatalogError> {
        let _changing = self.changes.lock().await;
        let mut changed = 0;
        let rows = self.store.all_versions().await?;
        for row in &rows {
            let Ok(version) = u32::try_from(row.version) else { continue };
            if self.registry.version(&row.name, version).is_ok() {
                continue;
            }
            let Some(files) = self.store.version_files(&row.name, row.version).await? else {
                tracing::warn!(model = %row.name, version, "a replica has a version this one cannot serve (no stored files; shipped elsewhere?)");
                continue;
            };
            match self.materialise(&row.name, version, &files).await {
                Ok(()) => changed += 1,
                Err(e) => {
                    tracing::warn!(model = %row.name, version, error = %e, "could not take a version from the store")
                }
            }
        }
        for row in rows.iter().filter(|r| r.active) {
            let Ok(version) = u32::try_from(row.version) else { continue };
            let serving = self.registry.active(&row.name).ok().map(|e| e.card.version);
            if serving != Some(version) && self.registry.version(&row.name, version).is_ok() {
                match self.registry.activate(&row.name, version).await {
                    Ok(_) => changed += 1,
                    Err(e) => {
                        tracing::warn!(model = %row.name, version, error = %e, "could not put the store's active version into service")
                    }
                }
            }
        }
        Ok(changed)
    }

    /// Writes a stored version into the data folder (under a hidden name, then renamed into
    /// place) and adds it to the registry.
    async fn materialise(&self, name: &str, version: u32, files: &ModelFiles) -> Result<(), CatalogError> {
        let dir = self.registry.version_dir(name, version)?;
        let parent = dir.parent().ok_or_else(|| CatalogError::Io(format!("{} has no parent", dir.display())))?;
        let staging = parent.join(format!(".incoming-{version}-{}", uuid::Uuid::new_v4()));
        let io = |e: std::io::Error| CatalogError::Io(format!("{}: {e}", staging.display()));
        std::fs::create_dir_all(&staging).map_err(io)?;
        let written = std::fs::write(staging.join(CARD_FILE), &files.card)
            .and_then(|()| std::fs::write(staging.join(WEIGHTS_FILE), &files.weights))
            .and_then(|()| std::fs::rename(&staging, &dir));
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(io(e));
        }
        if let Err(e) = self.registry.add_version(name, version).await {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e.into());
        }
        tracing::info!(model = %name, version, "version taken from the shared store");
        Ok(())
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The next version of `name` (one more than any the registry or the store knows) and
    /// its folder; held until the reservation is dropped or added.
    pub async fn reserve(&self, name: &str) -> Result<Reservation, CatalogError> {
        let reserved = self.store.reserve_version(name, i64::from(self.registry.next_version(name))).await?;
        let version = u32::try_from(reserved)
            .map_err(|_| CatalogError::Io(format!("model {name} has run out of version numbers ({reserved})")))?;
        let dir = self.registry.version_dir(name, version)?;
        Ok(Reservation { name: name.to_string(), version, dir })
    }

    /// Puts the complete folder `written` (the reserved version's card and weights) in
    /// place: recorded, moved to the version's folder, registered and loaded. On any
    /// failure nothing of it remains.
    pub async fn add(
        &self,
        reservation: Reservation,
        written: &Path,
        job_id: Option<String>,
    ) -> Result<Arc<ModelEntry>, CatalogError> {
        let _changing = self.changes.lock().await;
        let (name, version, dir) = (&reservation.name, reservation.version, &reservation.dir);
        let card = crate::registry::ModelCard::read(written).map_err(RegistryError::from)?;
        let new = NewModelVersion {
            name: name.clone(),
            version: i64::from(version),
            path: dir.display().to_string(),
            weights_sha256: card.weights_sha256.clone(),
            metrics: summary(&card.metrics),
            job_id,
        };
        // Other replicas take the version from the store.
        let files = match self.store.is_shared() {
            true => Some(read_files(written)?),
            false => None,
        };
        self.store.insert_version(&new, files.as_ref()).await?;
        let placed = match std::fs::rename(written, dir) {
            Ok(()) => self.registry.add_version(name, version).await.map_err(CatalogError::from),
            Err(e) => Err(CatalogError::Io(format!("{}: {e}", dir.display()))),
        };
        let entry = match placed {
            Ok(entry) => entry,
            Err(e) => {
                let _ = std::fs::remove_dir_all(dir);
                if let Err(forget) = self.store.delete_version(name, i64::from(version)).await {
                    tracing::error!(model = %name, version, error = %forget, "could not forget a version that was not put in place");
                }
                return Err(e);
            }
        };
        // The first version of a new name is in service at once.
        if self.registry.active(name).is_ok_and(|a| a.card.version == version) {
            self.store.activate(name, i64::from(version)).await?;
        }
        self.tell_replicas(name).await;
        Ok(entry)
    }

    /// Puts `version` of `name` into service (loaded first), then records it.
    pub async fn activate(&self, name: &str, version: u32) -> Result<Arc<ModelEntry>, CatalogError> {
        // Made on another replica a moment ago: take it from the store first.
        if self.store.is_shared() && self.registry.version(name, version).is_err() {
            self.sync().await?;
        }
        let _changing = self.changes.lock().await;
        let entry = self.registry.activate(name, version).await?;
        self.store.activate(name, i64::from(version)).await?;
        self.tell_replicas(name).await;
        Ok(entry)
    }

    /// Other replicas sync at once (they also poll, so a lost notification only delays).
    async fn tell_replicas(&self, name: &str) {
        if let Err(e) = self.store.notify(Channel::Versions, name).await {
            tracing::warn!(model = %name, error = %e, "could not notify the other replicas; they will see it when they poll");
        }
    }

    /// Every version of `name`, oldest first, as recorded, with where it came from and
    /// whether it is in service. Reads only.
    pub async fn list(&self, name: &str) -> Result<Vec<Listed>, CatalogError> {
        let model = self.registry.versions(name)?;
        let active = model.active.card.version;
        let mut rows = self.store.versions(name).await?;
        let mut listed = Vec::with_capacity(model.versions.len());
        for entry in &model.versions {
            let version = i64::from(entry.card.version);
            // Every served version is recorded (see the invariant): the row is there.
            if let Some(i) = rows.iter().position(|r| r.version == version) {
                let row = rows.swap_remove(i);
                listed.push(Listed { row, origin: entry.origin, active: entry.card.version == active });
            }
        }
        listed.sort_by_key(|l| l.row.version);
        Ok(listed)
    }
}

/// A version folder's files, to store for other replicas.
fn read_files(dir: &Path) -> Result<ModelFiles, CatalogError> {
    let read = |file: &str| {
        let path = dir.join(file);
        std::fs::read(&path).map_err(|e| CatalogError::Io(format!("{}: {e}", path.display())))
    };
    Ok(ModelFiles { card: read(CARD_FILE)?, weights: read(WEIGHTS_FILE)? })
}

/// The store's record of a registry entry.
fn record(entry: &ModelEntry, job_id: Option<String>) -> NewModelVersion {
    let card = &entry.card;
    NewModelVersion {
        name: card.name.clone(),
        version: i64::from(card.version),
        path: entry.dir.display().to_string(),
        weights_sha256: card.weights_sha256.clone(),
        metrics: summary(&card.metrics),
        job_id,
    }
}

/// The brief metrics the store keeps, as JSON (the store does not know the type).
fn summary(metrics: &crate::train::RunMetrics) -> serde_json::Value {
    serde_json::to_value(metrics.summary()).unwrap_or_default()
}
