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

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::registry::{ModelEntry, Origin, Registry, RegistryError};
use crate::store::{ModelVersionRow, NewModelVersion, Store, StoreError};

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

/// A version number held for a job while it writes the version's folder; versions are
/// numbered one at a time, across job workers.
pub struct Reservation<'a> {
    pub name: String,
    pub version: u32,
    /// Where the folder goes once complete.
    pub dir: PathBuf,
    _numbering: tokio::sync::MutexGuard<'a, ()>,
}

pub struct Catalog {
    registry: Arc<Registry>,
    store: Store,
    /// Serialises choosing a version number and registering it.
    numbering: tokio::sync::Mutex<()>,
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
            if store.active_version(&active.name).await?.map(|v| v.version) != Some(i64::from(active.version)) {
                store.activate(&active.name, i64::from(active.version)).await?;
            }
        }
        Ok(Catalog { registry, store, numbering: tokio::sync::Mutex::new(()) })
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The next version of `name` (one more than any the registry or the store knows) and
    /// its folder; held until the reservation is dropped or added.
    pub async fn reserve(&self, name: &str) -> Result<Reservation<'_>, CatalogError> {
        let guard = self.numbering.lock().await;
        let stored = u32::try_from(self.store.max_version(name).await?).unwrap_or(0);
        let version = self.registry.next_version(name).max(stored + 1);
        let dir = self.registry.version_dir(name, version)?;
        Ok(Reservation { name: name.to_string(), version, dir, _numbering: guard })
    }

    /// Puts the complete folder `written` (the reserved version's card and weights) in
    /// place: recorded, moved to the version's folder, registered and loaded. On any
    /// failure nothing of it remains.
    pub async fn add(
        &self,
        reservation: Reservation<'_>,
        written: &Path,
        job_id: Option<String>,
    ) -> Result<Arc<ModelEntry>, CatalogError> {
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
        self.store.insert_version(&new).await?;
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
        Ok(entry)
    }

    /// Puts `version` of `name` into service (loaded first), then records it.
    pub async fn activate(&self, name: &str, version: u32) -> Result<Arc<ModelEntry>, CatalogError> {
        let entry = self.registry.activate(name, version).await?;
        self.store.activate(name, i64::from(version)).await?;
        Ok(entry)
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
