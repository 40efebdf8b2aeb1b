-- The same tables as SQLite's migrations (see migrations/sqlite), in PostgreSQL's types:
-- the service reads and writes both through the same queries.

CREATE TABLE jobs (
    id               TEXT PRIMARY KEY NOT NULL,
    -- Insertion order, to break ties between jobs created in the same microsecond.
    seq              BIGSERIAL NOT NULL,
    idempotency_key  TEXT UNIQUE,
    model_name       TEXT NOT NULL,
    request          JSONB NOT NULL,
    status           TEXT NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    created_at       TIMESTAMPTZ NOT NULL,
    started_at       TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    epoch            BIGINT,
    epochs           BIGINT,
    step             BIGINT,
    steps            BIGINT,
    eta_seconds      DOUBLE PRECISION,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    error            TEXT,
    model_version    BIGINT,
    result           JSONB,
    publishing       BOOLEAN NOT NULL DEFAULT FALSE,
    -- The replica running the job and until when its lease holds.
    owner            TEXT,
    lease_until      TIMESTAMPTZ,
    CHECK ((status IN ('succeeded', 'failed', 'cancelled')) = (finished_at IS NOT NULL)),
    CHECK ((status = 'failed') = (error IS NOT NULL))
);
CREATE INDEX jobs_by_status ON jobs (status, created_at, seq);
CREATE INDEX jobs_by_created ON jobs (created_at, seq);

CREATE TABLE job_epochs (
    job_id          TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    epoch           BIGINT NOT NULL CHECK (epoch >= 1),
    loss            DOUBLE PRECISION NOT NULL,
    train_accuracy  DOUBLE PRECISION NOT NULL,
    val_accuracy    DOUBLE PRECISION,
    lr              DOUBLE PRECISION NOT NULL,
    best            BOOLEAN NOT NULL,
    elapsed_s       DOUBLE PRECISION NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (job_id, epoch)
);

CREATE TABLE model_versions (
    name            TEXT NOT NULL,
    version         BIGINT NOT NULL CHECK (version >= 1),
    path            TEXT NOT NULL,
    weights_sha256  TEXT NOT NULL,
    metrics         JSONB NOT NULL,
    job_id          TEXT REFERENCES jobs (id) ON DELETE SET NULL,
    active          BOOLEAN NOT NULL DEFAULT FALSE,
    created_at      TIMESTAMPTZ NOT NULL,
    activated_at    TIMESTAMPTZ,
    PRIMARY KEY (name, version)
);
CREATE UNIQUE INDEX model_versions_one_active ON model_versions (name) WHERE active;

CREATE TABLE model_files (
    name     TEXT NOT NULL,
    version  BIGINT NOT NULL,
    card     BYTEA NOT NULL,
    weights  BYTEA NOT NULL,
    PRIMARY KEY (name, version),
    FOREIGN KEY (name, version) REFERENCES model_versions (name, version) ON DELETE CASCADE
);

CREATE TABLE version_numbers (
    name        TEXT NOT NULL,
    version     BIGINT NOT NULL,
    reserved_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE datasets (
    name        TEXT PRIMARY KEY NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE dataset_files (
    dataset      TEXT NOT NULL REFERENCES datasets (name) ON DELETE CASCADE,
    label        TEXT NOT NULL,
    file         TEXT NOT NULL,
    bytes        BIGINT NOT NULL,
    kind         TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    uploaded_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (dataset, label, file)
);
