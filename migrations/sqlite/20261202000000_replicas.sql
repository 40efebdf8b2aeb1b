-- Jobs claimed with a lease (the replica that runs it and until when it holds it; renewed
-- by the replica's heartbeat), and model versions shared through the database.
ALTER TABLE jobs ADD COLUMN owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_until TEXT;

-- Card and weights of versions made by jobs, so that every replica can serve them.
CREATE TABLE model_files (
    name     TEXT NOT NULL,
    version  INTEGER NOT NULL,
    card     BLOB NOT NULL,
    weights  BLOB NOT NULL,
    PRIMARY KEY (name, version),
    FOREIGN KEY (name, version) REFERENCES model_versions (name, version) ON DELETE CASCADE
);

-- Version numbers handed out to jobs, so that two replicas never write the same version.
CREATE TABLE version_numbers (
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    reserved_at TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
