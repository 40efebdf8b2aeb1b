-- Training jobs, their per-epoch metrics, the model versions they produce, and datasets
-- uploaded over HTTP. Timestamps are RFC 3339 text in UTC (sqlx's chrono encoding).

CREATE TABLE jobs (
    id               TEXT PRIMARY KEY NOT NULL,           -- UUID v4
    -- Client-supplied; a repeated POST with the same key returns the first job.
    idempotency_key  TEXT UNIQUE,
    model_name       TEXT NOT NULL,
    -- The validated request as JSON, exactly what the runner executes.
    request          TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    created_at       TEXT NOT NULL,
    started_at       TEXT,
    finished_at      TEXT,
    -- Progress of a running job (1-based epoch and step within the epoch).
    epoch            INTEGER,
    epochs           INTEGER,
    step             INTEGER,
    steps            INTEGER,
    eta_seconds      REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
    error            TEXT,
    -- The model version a succeeded job wrote (name is model_name).
    model_version    INTEGER,
    -- What a succeeded job measured and decided (held-out accuracy, promotion), JSON.
    result           TEXT,
    -- Terminal states carry their finish time; only failed ones carry an error.
    CHECK ((status IN ('succeeded', 'failed', 'cancelled')) = (finished_at IS NOT NULL)),
    CHECK ((status = 'failed') = (error IS NOT NULL))
);
CREATE INDEX jobs_by_status ON jobs (status, created_at);
CREATE INDEX jobs_by_created ON jobs (created_at);

CREATE TABLE job_epochs (
    job_id          TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    epoch           INTEGER NOT NULL CHECK (epoch >= 1),
    -- Mean cross-entropy over the epoch's training steps.
    loss            REAL NOT NULL,
    train_accuracy  REAL NOT NULL,
    -- NULL when the dataset has no validation part.
    val_accuracy    REAL,
    lr              REAL NOT NULL,
    -- Best epoch so far by validation accuracy (its weights are the ones kept).
    best            INTEGER NOT NULL CHECK (best IN (0, 1)),
    elapsed_s       REAL NOT NULL,
    recorded_at     TEXT NOT NULL,
    PRIMARY KEY (job_id, epoch)
);

CREATE TABLE model_versions (
    name            TEXT NOT NULL,
    version         INTEGER NOT NULL CHECK (version >= 1),
    -- The model folder (card.json + weights.safetensors).
    path            TEXT NOT NULL,
    weights_sha256  TEXT NOT NULL,
    -- Held-out metrics from the model card, JSON.
    metrics         TEXT NOT NULL,
    -- The job that trained it; NULL for versions found on disk (shipped models).
    job_id          TEXT REFERENCES jobs (id) ON DELETE SET NULL,
    active          INTEGER NOT NULL DEFAULT 0 CHECK (active IN (0, 1)),
    created_at      TEXT NOT NULL,
    activated_at    TEXT,
    PRIMARY KEY (name, version)
);
-- At most one active version per model name.
CREATE UNIQUE INDEX model_versions_one_active ON model_versions (name) WHERE active = 1;

CREATE TABLE datasets (
    name        TEXT PRIMARY KEY NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE dataset_files (
    dataset      TEXT NOT NULL REFERENCES datasets (name) ON DELETE CASCADE,
    label        TEXT NOT NULL,
    file         TEXT NOT NULL,
    bytes        INTEGER NOT NULL,
    -- wav, csv, npy, mat, png, jpeg
    kind         TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    uploaded_at  TEXT NOT NULL,
    PRIMARY KEY (dataset, label, file)
);
